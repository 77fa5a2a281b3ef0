#include "tierkv/channel.h"

#include "client/client_internal.h"
#include "common/shm.h"
#include "common/shm_ring.h"
#include "common/wire.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace tierkv {

// Everything a channel holds; DataChannel's methods forward here.
struct [[gnu::visibility("hidden")]] DataChannel::Impl {
  Impl(ShmRegion region, dp::ChannelHeader header) : region_(std::move(region)), header_(header) {}
  Status Submit(dp::RingRequest req);
  Result<dp::RingCompletion> WaitCompletion(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  Result<dp::RingCompletion> Call(const dp::RingRequest& req);
  Status Noop();
  Status Put(uint64_t seq, uint32_t layer, uint32_t first, std::span<const std::byte> data, uint64_t prefix_hash,
             bool* durable);
  Status Get(uint64_t seq, uint32_t layer, uint32_t first, std::span<std::byte> out);
  Result<uint64_t> Append(uint64_t seq, uint32_t layer, uint64_t first_token, uint32_t tokens,
                          std::span<const std::byte> kv);
  Result<Retrieval> Retrieve(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t budget);
  Result<Retrieval> Acquire(uint64_t seq, uint32_t layer, uint32_t first, uint32_t count, uint64_t release);
  // The refs of a Retrieve's or an Acquire's completion `c`, table entries at staging offset `at`.
  Retrieval TableOf(const dp::RingCompletion& c, size_t at, uint64_t entries) const;
  Status Release(uint64_t lease);
  std::span<const std::byte> BlockBytes(const BlockRef& ref) const;
  Status CopyBlock(const BlockRef& ref, std::span<std::byte> out) const;
  Status CloseSequence(uint64_t seq);
  Result<uint32_t> PrefixCall(dp::Op op, uint64_t seq, std::span<const int32_t> tokens);
  Status StartRetrieveOnGpu(uint64_t seq, uint32_t layer, const float* device_query, size_t query_floats,
                            uint32_t budget, void* stream);
  Result<GpuRetrieval> FinishRetrieveOnGpu(void* stream);
  Status AttachGpu(kernels::GpuEvent worker_event, const std::string& exchange_handle_hex, uint64_t exchange_bytes,
                   const std::string& daemon_event_hex);
  Status AttachEmulatedGpu(int fd, uint64_t exchange_bytes);
  bool gpu_path_emulated() const;

  std::span<uint8_t> staging() const { return {region_.data() + header_.staging_offset, header_.staging_bytes}; }
  std::span<const std::byte> host_arena() const { return {reinterpret_cast<const std::byte*>(host_.data()), host_.size()}; }
  std::span<const std::byte> gpu_arena() const { return {reinterpret_cast<const std::byte*>(gpu_.data()), gpu_.size()}; }

  ShmRegion region_;
  dp::ChannelHeader header_;
  ShmRegion host_, gpu_;
  kernels::IpcMemMapping gpu_ipc_;
  uint64_t gpu_ipc_bytes_ = 0;
  uint64_t block_bytes_ = 0;
  uint32_t table_heads_ = 1;
  uint64_t entry_bytes() const { return block_bytes_ / table_heads_; }
  SpscRing<dp::RingRequest> requests_;
  SpscRing<dp::RingCompletion> completions_;
  std::chrono::nanoseconds spin_{std::chrono::microseconds(200)};  // a waiting client has nothing else to do
  uint64_t next_tag_ = 1;
  struct GpuPath;
  std::unique_ptr<GpuPath> gpu_path_;
  std::shared_ptr<internal::Liveness> liveness_;  // null: not opened by a Client (tests, tools)
};

namespace internal {
struct ChannelAccess {
  static DataChannel::Impl& Get(const DataChannel& c) { return *c.impl_; }
  static std::unique_ptr<DataChannel> Make(std::unique_ptr<DataChannel::Impl> impl) {
    return std::unique_ptr<DataChannel>(new DataChannel(std::move(impl)));
  }
  static Result<std::unique_ptr<DataChannel>> Map(int fd, uint64_t total_bytes, const ChannelArenas& arenas);
};

Result<std::unique_ptr<DataChannel>> MapChannel(int fd, uint64_t total_bytes, const ChannelArenas& arenas) {
  return ChannelAccess::Map(fd, total_bytes, arenas);
}

Status Submit(DataChannel& ch, dp::RingRequest req) { return ChannelAccess::Get(ch).Submit(req); }
Result<dp::RingCompletion> WaitCompletion(DataChannel& ch, std::chrono::milliseconds timeout) {
  return ChannelAccess::Get(ch).WaitCompletion(timeout);
}
Result<dp::RingCompletion> Call(DataChannel& ch, const dp::RingRequest& req) { return ChannelAccess::Get(ch).Call(req); }
std::span<uint8_t> Staging(const DataChannel& ch) { return ChannelAccess::Get(ch).staging(); }
const dp::ChannelHeader& Header(const DataChannel& ch) { return ChannelAccess::Get(ch).header_; }
Status AttachGpu(DataChannel& ch, kernels::GpuEvent worker_event, const std::string& exchange_handle_hex,
                 uint64_t exchange_bytes, const std::string& daemon_event_hex) {
  return ChannelAccess::Get(ch).AttachGpu(std::move(worker_event), exchange_handle_hex, exchange_bytes,
                                          daemon_event_hex);
}
Status AttachEmulatedGpu(DataChannel& ch, int fd, uint64_t exchange_bytes) {
  return ChannelAccess::Get(ch).AttachEmulatedGpu(fd, exchange_bytes);
}

void SetLiveness(DataChannel& ch, std::shared_ptr<Liveness> liveness) {
  ChannelAccess::Get(ch).liveness_ = std::move(liveness);
}

Status CompletionStatus(const dp::RingCompletion& c, const char* op) {
  if (c.status == 0) return OkStatus();
  const auto code = c.status <= static_cast<uint8_t>(StatusCode::kInternal) ? static_cast<StatusCode>(c.status)
                                                                            : StatusCode::kInternal;
  return Status(code, std::string(op) + ": " + dp::DetailName(static_cast<dp::Detail>(c.detail)));
}

Result<std::unique_ptr<DataChannel>> ChannelAccess::Map(int fd, uint64_t total_bytes, const ChannelArenas& arenas) {
  // Take ownership of every descriptor first, so none leaks on an early return.
  Result<ShmRegion> host = arenas.host_fd >= 0 ? ShmRegion::Map(arenas.host_fd, arenas.host_bytes, false)
                                               : Result<ShmRegion>(ShmRegion());
  Result<ShmRegion> gpu = arenas.gpu_fd >= 0 ? ShmRegion::Map(arenas.gpu_fd, arenas.gpu_bytes, false)
                                             : Result<ShmRegion>(ShmRegion());
  if (total_bytes < dp::kHeaderBytes) {
    ::close(fd);
    return InvalidArgument("channel smaller than its header");
  }
  ASSIGN_OR_RETURN(ShmRegion region, ShmRegion::Map(fd, total_bytes, /*writable=*/true));
  if (!host.ok()) return host.status().WithContext("map the host arena");
  if (!gpu.ok()) return gpu.status().WithContext("map the emulated GPU arena");
  dp::ChannelHeader h;
  std::memcpy(&h, region.data(), sizeof h);
  const dp::ChannelHeader expect = dp::Layout(h.request_capacity, h.completion_capacity, h.staging_bytes);
  if (h.magic != dp::kChannelMagic || h.version != dp::kVersion ||
      std::memcmp(&h, &expect, sizeof h) != 0 || h.total_bytes != total_bytes) {
    return Corruption("channel header does not match the protocol");
  }
  auto ch = std::make_unique<DataChannel::Impl>(std::move(region), h);
  ch->host_ = std::move(host).value();
  ch->gpu_ = std::move(gpu).value();
  ch->block_bytes_ = arenas.block_bytes;
  if (arenas.table_heads == 0 || (arenas.block_bytes % arenas.table_heads) != 0) {
    return Corruption("open_channel: table_heads does not divide block_bytes");
  }
  ch->table_heads_ = arenas.table_heads;
  if (!arenas.gpu_ipc_handle.empty()) {
    kernels::IpcMemHandle handle;
    RETURN_IF_ERROR(wire::FromHex(arenas.gpu_ipc_handle, handle.bytes.data(), handle.bytes.size()));
    ASSIGN_OR_RETURN(ch->gpu_ipc_, kernels::IpcMemMapping::Open(handle));
    ch->gpu_ipc_bytes_ = arenas.gpu_bytes;
  }
  ASSIGN_OR_RETURN(ch->requests_, SpscRing<dp::RingRequest>::Attach(ch->region_.data() + h.request_offset,
                                                                    h.request_capacity));
  ASSIGN_OR_RETURN(ch->completions_, SpscRing<dp::RingCompletion>::Attach(
                                         ch->region_.data() + h.completion_offset, h.completion_capacity));
  return ChannelAccess::Make(std::move(ch));
}
}  // namespace internal

using internal::CompletionStatus;

Status DataChannel::Impl::Submit(dp::RingRequest req) {
  if (liveness_) RETURN_IF_ERROR(liveness_->Verdict());
  req.version = dp::kVersion;
  if (req.tag == 0) req.tag = next_tag_++;
  bool corrupt = false;
  if (!requests_.TryPush(req, &corrupt)) {
    return corrupt ? Corruption("request ring indices are inconsistent") : Busy("request ring is full");
  }
  return OkStatus();
}

Result<dp::RingCompletion> DataChannel::Impl::WaitCompletion(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Sleeps in slices: between two, the daemon's liveness is polled (decision 0010),
  // so a dead daemon fails the wait within a slice instead of the whole timeout.
  constexpr std::chrono::milliseconds kSlice{20};
  dp::RingCompletion c;
  for (bool first = true;; first = false) {
    bool corrupt = false;
    if (completions_.TryPop(&c, &corrupt)) return c;
    if (corrupt) return Corruption("completion ring indices are inconsistent");
    if (!first && liveness_) RETURN_IF_ERROR(liveness_->Check());
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Busy("no completion from tierkvd in time (is the daemon alive?)");
    completions_.WaitNotEmpty(first ? spin_ : std::chrono::nanoseconds(0),
                              std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::min<std::chrono::nanoseconds>(deadline - now, kSlice)));
  }
}

Result<dp::RingCompletion> DataChannel::Impl::Call(const dp::RingRequest& req) {
  RETURN_IF_ERROR(Submit(req));
  ASSIGN_OR_RETURN(dp::RingCompletion c, WaitCompletion());
  RETURN_IF_ERROR(CompletionStatus(c, "request"));
  return c;
}

Status DataChannel::Impl::Noop() {
  dp::RingRequest req{};
  req.op = dp::Op::kNoop;
  return Call(req).status();
}

}  // namespace tierkv

namespace tierkv {

Result<uint64_t> DataChannel::Impl::Append(uint64_t seq, uint32_t layer, uint64_t first_token, uint32_t tokens,
                                           std::span<const std::byte> kv) {
  if (tokens == 0 || kv.empty() || kv.size() % (size_t{2} * tokens) != 0) {
    return InvalidArgument("append: kv must hold K then V of `tokens` tokens ([kv_heads][tokens][head_dim] each)");
  }
  if (kv.size() > header_.staging_bytes) {
    return InvalidArgument("append: " + std::to_string(kv.size()) + " bytes do not fit the staging area of " +
                           std::to_string(header_.staging_bytes) + " (append fewer tokens per call)");
  }
  std::memcpy(staging().data(), kv.data(), kv.size());
  dp::RingRequest req{};
  req.op = dp::Op::kAppend;
  req.seq = seq;
  req.layer = layer;
  req.count = tokens;
  req.arg = first_token;
  req.length = kv.size();
  RETURN_IF_ERROR(Submit(req));
  ASSIGN_OR_RETURN(dp::RingCompletion c, WaitCompletion());
  if (c.status != 0 && c.detail == static_cast<uint8_t>(dp::Detail::kGap)) {
    return InvalidArgument("append: token " + std::to_string(first_token) + " is not where layer " +
                           std::to_string(layer) + " of sequence " + std::to_string(seq) + " ends (token " +
                           std::to_string(c.value) + "): gaps and overlaps are refused");
  }
  RETURN_IF_ERROR(CompletionStatus(c, "append"));
  return c.value;
}

Status DataChannel::Impl::Put(uint64_t seq, uint32_t layer, uint32_t first, std::span<const std::byte> data,
                        uint64_t prefix_hash, bool* durable) {
  if (block_bytes_ == 0 || data.empty() || data.size() % block_bytes_ != 0) {
    return InvalidArgument("put: data must be a whole number of blocks of " + std::to_string(block_bytes_) +
                           " bytes");
  }
  const size_t per_call = std::max<size_t>(1, header_.staging_bytes / block_bytes_);
  const size_t n = data.size() / block_bytes_;
  bool all_durable = true;
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(per_call, n - done);
    std::memcpy(staging().data(), data.data() + done * block_bytes_, k * block_bytes_);
    dp::RingRequest req{};
    req.op = dp::Op::kPut;
    req.seq = seq;
    req.layer = layer;
    req.block = first + static_cast<uint32_t>(done);
    req.count = static_cast<uint32_t>(k);
    req.length = k * block_bytes_;
    if (prefix_hash) {
      req.flags = dp::kFlagPrefixBlock;
      req.arg = prefix_hash;
    }
    RETURN_IF_ERROR(Submit(req));
    ASSIGN_OR_RETURN(dp::RingCompletion c, WaitCompletion());
    RETURN_IF_ERROR(CompletionStatus(c, "put"));
    all_durable = all_durable && c.value == 1;
    done += k;
  }
  if (durable) *durable = all_durable;
  return OkStatus();
}

Status DataChannel::Impl::Get(uint64_t seq, uint32_t layer, uint32_t first, std::span<std::byte> out) {
  if (block_bytes_ == 0 || out.empty() || out.size() % block_bytes_ != 0) {
    return InvalidArgument("get: out must be a whole number of blocks");
  }
  const size_t per_call = std::max<size_t>(1, header_.staging_bytes / block_bytes_);
  const size_t n = out.size() / block_bytes_;
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(per_call, n - done);
    dp::RingRequest req{};
    req.op = dp::Op::kGet;
    req.seq = seq;
    req.layer = layer;
    req.block = first + static_cast<uint32_t>(done);
    req.count = static_cast<uint32_t>(k);
    req.length = k * block_bytes_;
    ASSIGN_OR_RETURN(dp::RingCompletion c, Call(req));
    std::memcpy(out.data() + done * block_bytes_, staging().data(), k * block_bytes_);
    done += k;
    (void)c;
  }
  return OkStatus();
}

Result<DataChannel::Retrieval> DataChannel::Impl::Retrieve(uint64_t seq, uint32_t layer, std::span<const float> query,
                                                     uint32_t budget) {
  const size_t qbytes = query.size_bytes();
  const uint64_t entries = uint64_t{budget} * table_heads_;
  const size_t need = qbytes + entries * sizeof(dp::BlockTableEntry);
  if (budget == 0 || need > header_.staging_bytes) {
    return InvalidArgument("retrieve: the query and a table of " + std::to_string(entries) +
                           " entries do not fit the staging area");
  }
  std::memcpy(staging().data(), query.data(), qbytes);
  dp::RingRequest req{};
  req.op = dp::Op::kRetrieve;
  req.seq = seq;
  req.layer = layer;
  req.count = budget;
  req.length = need;
  ASSIGN_OR_RETURN(dp::RingCompletion c, Call(req));
  return TableOf(c, qbytes, entries);
}

Result<DataChannel::Retrieval> DataChannel::Impl::Acquire(uint64_t seq, uint32_t layer, uint32_t first,
                                                          uint32_t count, uint64_t release) {
  const uint64_t entries = uint64_t{count} * table_heads_;
  const uint64_t need = entries * sizeof(dp::BlockTableEntry);
  if (count == 0 || need > header_.staging_bytes) {
    return InvalidArgument("acquire: a table of " + std::to_string(entries) + " entries does not fit the staging area (" +
                           std::to_string(header_.staging_bytes) + " bytes)");
  }
  dp::RingRequest req{};
  req.op = dp::Op::kAcquire;
  req.seq = seq;
  req.layer = layer;
  req.block = first;
  req.count = count;
  req.length = need;
  req.arg = release;
  ASSIGN_OR_RETURN(dp::RingCompletion c, Call(req));
  return TableOf(c, 0, entries);
}

DataChannel::Retrieval DataChannel::Impl::TableOf(const dp::RingCompletion& c, size_t at, uint64_t entries) const {
  Retrieval r;
  r.lease = c.value;
  r.missing = static_cast<uint32_t>(c.value2);
  r.blocks.reserve(std::min<uint64_t>(c.count, entries));
  for (uint32_t i = 0; i < c.count && i < entries; ++i) {
    dp::BlockTableEntry e;
    std::memcpy(&e, staging().data() + at + i * sizeof e, sizeof e);
    r.blocks.push_back({e.block, e.tier, e.offset, e.head});
  }
  return r;
}

struct DataChannel::Impl::GpuPath {
  ShmRegion emulated;              // the emulated exchange (no GPU in the daemon), else empty
  kernels::GpuEvent worker_event;  // recorded by this process after each query copy
  kernels::GpuEvent daemon_event;  // recorded by the daemon after each table
  kernels::IpcMemMapping exchange;
  uint64_t exchange_bytes = 0;
  bool in_flight = false;
  size_t table_offset = 0;
  uint32_t budget = 0;
};

DataChannel::DataChannel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DataChannel::~DataChannel() = default;

Status DataChannel::Impl::AttachGpu(kernels::GpuEvent worker_event, const std::string& exchange_handle_hex,
                              uint64_t exchange_bytes, const std::string& daemon_event_hex) {
  auto path = std::make_unique<GpuPath>();
  path->worker_event = std::move(worker_event);
  kernels::IpcMemHandle buffer;
  RETURN_IF_ERROR(wire::FromHex(exchange_handle_hex, buffer.bytes.data(), buffer.bytes.size()));
  ASSIGN_OR_RETURN(path->exchange, kernels::IpcMemMapping::Open(buffer));
  kernels::IpcEventHandle event;
  RETURN_IF_ERROR(wire::FromHex(daemon_event_hex, event.bytes.data(), event.bytes.size()));
  ASSIGN_OR_RETURN(path->daemon_event, kernels::GpuEvent::OpenIpc(event));
  path->exchange_bytes = exchange_bytes;
  gpu_path_ = std::move(path);
  return OkStatus();
}

Status DataChannel::Impl::AttachEmulatedGpu(int fd, uint64_t exchange_bytes) {
  auto path = std::make_unique<GpuPath>();
  ASSIGN_OR_RETURN(path->emulated, ShmRegion::Map(fd, exchange_bytes, /*writable=*/true));
  path->exchange_bytes = exchange_bytes;
  gpu_path_ = std::move(path);
  return OkStatus();
}

bool DataChannel::Impl::gpu_path_emulated() const { return gpu_path_ && gpu_path_->emulated.data() != nullptr; }

Status DataChannel::Impl::StartRetrieveOnGpu(uint64_t seq, uint32_t layer, const float* device_query,
                                       size_t query_floats, uint32_t budget, void* stream) {
  if (!gpu_path_) return InvalidArgument("retrieve on GPU: the channel was opened without the GPU path");
  if (liveness_) RETURN_IF_ERROR(liveness_->Verdict());  // a retrieval lost with the daemon stays "in flight"
  if (gpu_path_->in_flight) return InvalidArgument("retrieve on GPU: finish the previous retrieval first");
  const size_t qbytes = query_floats * sizeof(float);
  const size_t need = qbytes + uint64_t{budget} * table_heads_ * sizeof(dp::BlockTableEntry);
  // The table follows the query: start the query where the table lands 16-byte aligned.
  const size_t offset = (16 - qbytes % 16) % 16;
  if (budget == 0 || device_query == nullptr || offset + need > gpu_path_->exchange_bytes) {
    return InvalidArgument("retrieve on GPU: the query and a table of " + std::to_string(budget) +
                           " entries do not fit the exchange buffer (" + std::to_string(gpu_path_->exchange_bytes) +
                           " bytes)");
  }
  if (gpu_path_emulated()) {
    std::memcpy(gpu_path_->emulated.data() + offset, device_query, qbytes);  // a host pointer here
  } else {
    kernels::GpuStream worker = kernels::GpuStream::Borrow(stream);
    RETURN_IF_ERROR(kernels::CopyAsync(static_cast<std::byte*>(gpu_path_->exchange.data()) + offset, device_query,
                                       qbytes, kernels::CopyKind::kDeviceToDevice, &worker));
    RETURN_IF_ERROR(gpu_path_->worker_event.Record(&worker));
  }
  dp::RingRequest req{};
  req.op = dp::Op::kRetrieve;
  req.flags = dp::kFlagGpu;
  req.seq = seq;
  req.layer = layer;
  req.count = budget;
  req.offset = offset;
  req.length = need;
  RETURN_IF_ERROR(Submit(req));
  gpu_path_->in_flight = true;
  gpu_path_->table_offset = offset + qbytes;
  gpu_path_->budget = budget * table_heads_;  // table entries
  return OkStatus();
}

Result<DataChannel::GpuRetrieval> DataChannel::Impl::FinishRetrieveOnGpu(void* stream) {
  if (!gpu_path_ || !gpu_path_->in_flight) return InvalidArgument("retrieve on GPU: nothing in flight");
  Result<dp::RingCompletion> c = WaitCompletion();
  if (!c.ok()) return c.status();  // still in flight: a later call may collect it
  gpu_path_->in_flight = false;
  if (c->status != static_cast<uint8_t>(StatusCode::kOk)) return CompletionStatus(*c, "retrieve on GPU");
  const bool emulated = gpu_path_emulated();
  if (!emulated) {
    kernels::GpuStream worker = kernels::GpuStream::Borrow(stream);
    if (Status st = worker.Wait(gpu_path_->daemon_event); !st.ok()) {
      Release(c->value).IgnoreError();  // the caller never sees this lease
      return st;
    }
  }
  GpuRetrieval r;
  r.lease = c->value;
  r.count = std::min(c->count, gpu_path_->budget);
  r.missing = static_cast<uint32_t>(c->value2);
  const auto* base = emulated ? static_cast<const void*>(gpu_path_->emulated.data()) : gpu_path_->exchange.data();
  r.table = reinterpret_cast<const BlockTableEntry*>(static_cast<const std::byte*>(base) + gpu_path_->table_offset);
  return r;
}

Status DataChannel::Impl::Release(uint64_t lease) {
  dp::RingRequest req{};
  req.op = dp::Op::kRelease;
  req.arg = lease;
  return Call(req).status();
}

std::span<const std::byte> DataChannel::Impl::BlockBytes(const BlockRef& ref) const {
  std::span<const std::byte> arena = ref.tier == 0 ? gpu_arena() : host_arena();
  const uint64_t bytes = entry_bytes();
  if (ref.offset > arena.size() || bytes > arena.size() - ref.offset) return {};
  return arena.subspan(ref.offset, bytes);
}

Status DataChannel::Impl::CopyBlock(const BlockRef& ref, std::span<std::byte> out) const {
  const uint64_t bytes = entry_bytes();
  if (ref.tier > 1) return InvalidArgument("CopyBlock: tier " + std::to_string(ref.tier) + " (0 = G, 1 = H)");
  if (out.size() < bytes) {
    return InvalidArgument("CopyBlock: out holds " + std::to_string(out.size()) + " bytes, an entry " +
                           std::to_string(bytes));
  }
  if (ref.tier == 0 && gpu_ipc_.data() != nullptr) {
    if (ref.offset > gpu_ipc_bytes_ || bytes > gpu_ipc_bytes_ - ref.offset) {
      return InvalidArgument("CopyBlock: offset " + std::to_string(ref.offset) + " is outside the G arena");
    }
    return kernels::Copy(out.data(), static_cast<const std::byte*>(gpu_ipc_.data()) + ref.offset, bytes,
                         kernels::CopyKind::kDeviceToHost);
  }
  const std::span<const std::byte> src = BlockBytes(ref);
  if (src.empty()) {
    return InvalidArgument("CopyBlock: tier " + std::to_string(ref.tier) + " offset " + std::to_string(ref.offset) +
                           " is outside the mapped arenas");
  }
  std::memcpy(out.data(), src.data(), bytes);
  return OkStatus();
}

Status DataChannel::Impl::CloseSequence(uint64_t seq) {
  dp::RingRequest req{};
  req.op = dp::Op::kCloseSequence;
  req.seq = seq;
  return Call(req).status();
}

Result<uint32_t> DataChannel::Impl::PrefixCall(dp::Op op, uint64_t seq, std::span<const int32_t> tokens) {
  if (tokens.size_bytes() > staging().size()) return InvalidArgument("prefix: tokens do not fit the staging area");
  if (!tokens.empty()) std::memcpy(staging().data(), tokens.data(), tokens.size_bytes());
  dp::RingRequest req{};
  req.op = op;
  req.seq = seq;
  req.count = static_cast<uint32_t>(tokens.size());
  req.length = tokens.size_bytes();
  ASSIGN_OR_RETURN(dp::RingCompletion c, Call(req));
  return c.count;
}

// --- The public API: forwards to Impl ---

Status DataChannel::Noop() { return impl_->Noop(); }
Status DataChannel::Put(uint64_t seq, uint32_t layer, uint32_t first, std::span<const std::byte> data,
                        uint64_t prefix_hash, bool* durable) {
  return impl_->Put(seq, layer, first, data, prefix_hash, durable);
}
Result<uint64_t> DataChannel::Append(uint64_t seq, uint32_t layer, uint64_t first_token, uint32_t tokens,
                                     std::span<const std::byte> kv) {
  return impl_->Append(seq, layer, first_token, tokens, kv);
}
Status DataChannel::Get(uint64_t seq, uint32_t layer, uint32_t first, std::span<std::byte> out) {
  return impl_->Get(seq, layer, first, out);
}
Result<DataChannel::Retrieval> DataChannel::Retrieve(uint64_t seq, uint32_t layer, std::span<const float> query,
                                                     uint32_t budget) {
  return impl_->Retrieve(seq, layer, query, budget);
}
Result<DataChannel::Retrieval> DataChannel::Acquire(uint64_t seq, uint32_t layer, uint32_t first, uint32_t count,
                                                    uint64_t release) {
  return impl_->Acquire(seq, layer, first, count, release);
}
Status DataChannel::Release(uint64_t lease) { return impl_->Release(lease); }
std::span<const std::byte> DataChannel::BlockBytes(const BlockRef& ref) const { return impl_->BlockBytes(ref); }
Status DataChannel::CopyBlock(const BlockRef& ref, std::span<std::byte> out) const {
  return impl_->CopyBlock(ref, out);
}
Status DataChannel::CloseSequence(uint64_t seq) { return impl_->CloseSequence(seq); }
Result<uint32_t> DataChannel::LookupPrefix(std::span<const int32_t> tokens) {
  return impl_->PrefixCall(dp::Op::kLookupPrefix, 0, tokens);
}
Result<uint32_t> DataChannel::LoadPrefix(uint64_t seq, std::span<const int32_t> tokens) {
  return impl_->PrefixCall(dp::Op::kLoadPrefix, seq, tokens);
}
Status DataChannel::StartRetrieveOnGpu(uint64_t seq, uint32_t layer, const float* device_query, size_t query_floats,
                                       uint32_t budget, void* stream) {
  return impl_->StartRetrieveOnGpu(seq, layer, device_query, query_floats, budget, stream);
}
Result<DataChannel::GpuRetrieval> DataChannel::FinishRetrieveOnGpu(void* stream) {
  return impl_->FinishRetrieveOnGpu(stream);
}
bool DataChannel::gpu_path() const { return impl_->gpu_path_ != nullptr; }
bool DataChannel::gpu_path_emulated() const { return impl_->gpu_path_emulated(); }
std::span<const std::byte> DataChannel::host_arena() const { return impl_->host_arena(); }
std::span<const std::byte> DataChannel::gpu_arena() const { return impl_->gpu_arena(); }
uint64_t DataChannel::block_bytes() const { return impl_->block_bytes_; }
uint32_t DataChannel::table_heads() const { return impl_->table_heads_; }
uint64_t DataChannel::entry_bytes() const { return impl_->entry_bytes(); }
void* DataChannel::gpu_arena_device() const { return impl_->gpu_ipc_.data(); }
uint64_t DataChannel::gpu_arena_device_bytes() const { return impl_->gpu_ipc_bytes_; }
void DataChannel::set_spin(std::chrono::nanoseconds spin) { impl_->spin_ = spin; }

}  // namespace tierkv
