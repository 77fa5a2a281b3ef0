#include "storage/disk_tier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/checksum.h"
#include "common/log.h"
#include "storage/slot_format.h"

namespace tierkv::storage {
namespace {

constexpr uint32_t kMaxQueueDepth = 4096;

std::string SlabPath(const std::string& dir, uint32_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "slab-%05u.tkv", index);
  return (std::filesystem::path(dir) / name).string();
}

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<std::byte, FreeDeleter>;

AlignedBuf NewAlignedBlock() {
  auto* p = static_cast<std::byte*>(std::aligned_alloc(kIoAlign, kIoAlign));
  if (p != nullptr) std::memset(p, 0, kIoAlign);
  return AlignedBuf(p);
}

Status CheckOptions(const DiskTierOptions& o) {
  if (o.dir.empty()) return InvalidArgument("D tier: dir is empty");
  if (o.num_slots == 0 || o.num_slots == kInvalidSlot) {
    return InvalidArgument("D tier: num_slots must be in [1, 2^32 - 2], got " + std::to_string(o.num_slots));
  }
  if (o.slot_capacity == 0 || o.slot_capacity > kMaxDiskSlotCapacity) {
    return InvalidArgument("D tier: slot_capacity must be in [1, 1 GiB], got " + std::to_string(o.slot_capacity));
  }
  if (o.queue_depth == 0 || o.queue_depth > kMaxQueueDepth) {
    return InvalidArgument("D tier: queue_depth must be in [1, 4096], got " + std::to_string(o.queue_depth));
  }
  if (o.io_contexts == 0) return InvalidArgument("D tier: io_contexts must be >= 1");
  return OkStatus();
}

}  // namespace

// One op of a batch while it runs.
struct DiskTier::Pending {
  SlotId slot = kInvalidSlot;
  const WriteOp* write = nullptr;  // exactly one of write / read / header is set
  ReadOp* read = nullptr;
  HeaderRead* header = nullptr;    // header block only (recovery)
  uint32_t buf = 0;                // engine buffer while in flight (header, or whole slot)
  uint32_t io_length = 0;          // bytes of the transfer
  // Zero-copy: the payload segment goes straight from/to the caller's memory
  // (`direct`, direct_length bytes); the bounce buffer holds the header block only.
  std::byte* direct = nullptr;
  uint32_t direct_length = 0;
  bool done = false;
  Status status;
  SlotInfo info;
};

DiskTier::DiskTier(const DiskTierOptions& options, uint64_t stride, uint32_t slots_per_slab)
    : Tier(TierKind::kDisk, options.name, options.num_slots, options.slot_capacity),
      options_(options),
      stride_(stride),
      slots_per_slab_(slots_per_slab) {}

DiskTier::~DiskTier() {
  idle_engines_.clear();  // rings first, then the files they reference
  for (int fd : fds_) close(fd);
}

Result<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  const uint64_t stride = DiskSlotStride(options.slot_capacity);
  uint64_t per_slab = 1;
  if (options.max_slab_bytes > kSlabHeaderBytes + stride) {
    per_slab = std::min<uint64_t>(options.num_slots, (options.max_slab_bytes - kSlabHeaderBytes) / stride);
  }
  std::unique_ptr<DiskTier> tier(new DiskTier(options, stride, static_cast<uint32_t>(per_slab)));
  RETURN_IF_ERROR(tier->OpenSlabs());
  // One engine now: Open fails early when none can be made, and names it.
  ASSIGN_OR_RETURN(std::unique_ptr<IoEngine> engine, tier->AcquireEngine());
  tier->engine_name_ = std::string(engine->name());
  tier->ReleaseEngine(std::move(engine), true);
  LOG(DEBUG) << tier->name() << ": " << options.num_slots << " slots of " << options.slot_capacity << " bytes in "
             << tier->paths_.size() << " slab file(s) under " << options.dir << ", engine "
             << tier->engine_name_;
  return tier;
}

Status DiskTier::OpenSlabs() {
  std::error_code ec;
  std::filesystem::create_directories(options_.dir, ec);
  if (ec) return IOError("create D tier directory " + options_.dir + ": " + ec.message());
  const uint32_t num_slabs = (options_.num_slots + slots_per_slab_ - 1) / slots_per_slab_;
  for (uint32_t i = 0; i < num_slabs; ++i) paths_.push_back(SlabPath(options_.dir, i));
  fds_.assign(num_slabs, -1);
  // Slab 0 is created last (each slab by rename), so its presence means the set is complete.
  if (std::filesystem::exists(paths_[0])) {
    for (uint32_t i = 0; i < num_slabs; ++i) RETURN_IF_ERROR(OpenSlab(i, paths_[i]));
    return OkStatus();
  }
  if (!options_.create_if_missing) return NotFound("no D tier slabs in " + options_.dir);
  std::random_device rd;
  tier_id_ = (uint64_t{rd()} << 32) | rd();
  for (uint32_t i = num_slabs; i-- > 0;) RETURN_IF_ERROR(CreateSlab(i, paths_[i]));
  const int dfd = open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return OkStatus();
}

Status DiskTier::CreateSlab(uint32_t index, const std::string& path) {
  const uint32_t first = index * slots_per_slab_;
  const uint32_t count = std::min(slots_per_slab_, options_.num_slots - first);
  const uint64_t size = kSlabHeaderBytes + uint64_t{count} * stride_;
  const std::string tmp = path + ".tmp";
  const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (options_.direct_io ? O_DIRECT : 0);
  const int fd = open(tmp.c_str(), flags, 0640);
  if (fd < 0 && errno == EINVAL && options_.direct_io) {
    return NotSupported("the file system of " + options_.dir + " refuses O_DIRECT (set direct_io = false)");
  }
  if (fd < 0) return FromErrno(errno, "create slab " + tmp);
  fds_[index] = fd;
  Status st;
  if (fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
    if (errno == EOPNOTSUPP) {
      if (ftruncate(fd, static_cast<off_t>(size)) != 0) st = FromErrno(errno, "size slab " + tmp);
    } else {
      st = FromErrno(errno, "preallocate " + std::to_string(size) + " bytes for slab " + tmp);
    }
  }
  AlignedBuf block = NewAlignedBlock();
  if (st.ok() && block == nullptr) st = ResourceExhausted("slab superblock buffer");
  if (st.ok()) {
    SlabSuperblock sb{};
    sb.tier_id = tier_id_;
    sb.slab_index = index;
    sb.slab_count = static_cast<uint32_t>(paths_.size());
    sb.first_slot = first;
    sb.slots_in_slab = count;
    sb.total_slots = options_.num_slots;
    sb.slot_capacity = options_.slot_capacity;
    sb.slot_stride = stride_;
    EncodeSlabSuperblock(sb, block.get());
    const ssize_t n = pwrite(fd, block.get(), kSlabHeaderBytes, 0);
    if (n != static_cast<ssize_t>(kSlabHeaderBytes)) {
      st = n < 0 ? FromErrno(errno, "write superblock of " + tmp) : IOError("short write of superblock of " + tmp);
    }
  }
  if (st.ok() && fdatasync(fd) != 0) st = FromErrno(errno, "sync slab " + tmp);
  if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) st = FromErrno(errno, "rename " + tmp);
  if (!st.ok()) unlink(tmp.c_str());
  return st;
}

Status DiskTier::OpenSlab(uint32_t index, const std::string& path) {
  const int flags = O_RDWR | O_CLOEXEC | (options_.direct_io ? O_DIRECT : 0);
  const int fd = open(path.c_str(), flags);
  if (fd < 0 && errno == EINVAL && options_.direct_io) {
    return NotSupported("the file system of " + options_.dir + " refuses O_DIRECT (set direct_io = false)");
  }
  if (fd < 0) return FromErrno(errno, "open slab " + path);
  fds_[index] = fd;
  AlignedBuf block = NewAlignedBlock();
  if (block == nullptr) return ResourceExhausted("slab superblock buffer");
  const ssize_t n = pread(fd, block.get(), kSlabHeaderBytes, 0);
  if (n < 0) return FromErrno(errno, "read superblock of " + path);
  if (n != static_cast<ssize_t>(kSlabHeaderBytes)) return Corruption(path + ": truncated superblock");
  SlabSuperblock sb;
  RETURN_IF_ERROR(DecodeSlabSuperblock(block.get(), path, &sb));
  if (index == 0) tier_id_ = sb.tier_id;
  const uint32_t first = index * slots_per_slab_;
  const uint32_t count = std::min(slots_per_slab_, options_.num_slots - first);
  if (sb.tier_id != tier_id_ || sb.slab_index != index) {
    return Corruption(path + ": belongs to another tier or position (slab " + std::to_string(sb.slab_index) + ")");
  }
  if (sb.slot_capacity != options_.slot_capacity || sb.total_slots != options_.num_slots ||
      sb.slab_count != paths_.size() || sb.first_slot != first || sb.slots_in_slab != count) {
    return InvalidArgument(path + ": created for " + std::to_string(sb.total_slots) + " slots of " +
                           std::to_string(sb.slot_capacity) + " bytes in " + std::to_string(sb.slab_count) +
                           " slabs; the options ask for " + std::to_string(options_.num_slots) + " slots of " +
                           std::to_string(options_.slot_capacity) + " bytes in " + std::to_string(paths_.size()));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return FromErrno(errno, "stat " + path);
  if (static_cast<uint64_t>(st.st_size) != kSlabHeaderBytes + uint64_t{count} * stride_) {
    return Corruption(path + ": file size " + std::to_string(st.st_size) + " does not match its superblock");
  }
  return OkStatus();
}

Status DiskTier::Sync() {
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (fdatasync(fds_[i]) != 0) return FromErrno(errno, "fdatasync " + paths_[i]);
  }
  return OkStatus();
}

Status DiskTier::SyncSlots(std::span<const SlotId> slots) {
  std::vector<bool> dirty(fds_.size(), false);
  for (SlotId s : slots) {
    if (s >= num_slots()) return InvalidArgument(name() + ": SyncSlots: slot " + std::to_string(s) + " out of range");
    dirty[s / slots_per_slab_] = true;
  }
  for (size_t i = 0; i < fds_.size(); ++i) {
    if (dirty[i] && fdatasync(fds_[i]) != 0) return FromErrno(errno, "fdatasync " + paths_[i]);
  }
  return OkStatus();
}

Result<SlabScan> DiskTier::Scan(const SlabScanOptions& options) const {
  SlabScan all;
  for (size_t i = 0; i < paths_.size(); ++i) {
    ASSIGN_OR_RETURN(SlabScan one, ScanSlabFile(paths_[i], options));
    if (one.superblock.tier_id != tier_id_) return Corruption(paths_[i] + ": belongs to another tier");
    if (i == 0) all.superblock = one.superblock;
    all.valid.insert(all.valid.end(), one.valid.begin(), one.valid.end());
    all.damaged.insert(all.damaged.end(), one.damaged.begin(), one.damaged.end());
    all.empty += one.empty;
  }
  return all;
}

// ---- engines ----

Result<std::unique_ptr<IoEngine>> DiskTier::AcquireEngine() {
  {
    std::unique_lock<std::mutex> lock(engines_mu_);
    engines_cv_.wait(lock, [&] { return !idle_engines_.empty() || engines_out_ < options_.io_contexts; });
    ++engines_out_;
    if (!idle_engines_.empty()) {
      std::unique_ptr<IoEngine> engine = std::move(idle_engines_.back());
      idle_engines_.pop_back();
      return engine;
    }
  }
  IoEngineOptions eo;
  eo.kind = options_.engine;
  eo.queue_depth = options_.queue_depth;
  eo.num_buffers = 2 * options_.queue_depth;  // see RunOnEngine
  eo.buffer_bytes = stride_;
  Result<std::unique_ptr<IoEngine>> engine =
      options_.engine_factory ? options_.engine_factory(eo) : CreateIoEngine(eo);
  Status st = engine.ok() ? (*engine)->RegisterFiles(fds_) : engine.status();
  if (!st.ok()) {
    ReleaseEngine(nullptr, false);
    return st.WithContext(name() + ": I/O engine");
  }
  return engine;
}

void DiskTier::ReleaseEngine(std::unique_ptr<IoEngine> engine, bool healthy) {
  std::lock_guard<std::mutex> lock(engines_mu_);
  --engines_out_;
  if (engine != nullptr && healthy) idle_engines_.push_back(std::move(engine));
  engines_cv_.notify_one();
}

// ---- the data path ----

namespace {
bool IoAligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kIoAlign == 0; }
}  // namespace

IoRequest DiskTier::StartOp(IoEngine& engine, Pending& op, uint32_t buf) {
  op.buf = buf;
  std::byte* b = engine.buffers()->buffer(buf);
  IoRequest r;
  r.file = op.slot / slots_per_slab_;
  r.offset = kSlabHeaderBytes + uint64_t{op.slot % slots_per_slab_} * stride_;
  r.buf = b;
  r.buf_index = static_cast<int32_t>(buf);
  if (op.write != nullptr) {
    r.op = IoOp::kWrite;
    const std::span<const std::byte> payload = op.write->payload;
    const size_t padded = RoundUpIo(payload.size());
    std::memset(b, 0, kSlotHeaderBytes);
    const SlotInfo info{op.write->tag, static_cast<uint32_t>(payload.size()), op.write->encoding};
    EncodeSlotHeader(op.slot, info, Checksum64(payload.data(), payload.size()), b);
    if (options_.zero_copy && !payload.empty() && padded == payload.size() && IoAligned(payload.data())) {
      // The engine only reads from buf2 on a write.
      op.direct = const_cast<std::byte*>(payload.data());
      op.direct_length = static_cast<uint32_t>(padded);
    } else {
      if (!payload.empty()) std::memcpy(b + kSlotHeaderBytes, payload.data(), payload.size());
      std::memset(b + kSlotHeaderBytes + payload.size(), 0, padded - payload.size());
    }
    op.io_length = static_cast<uint32_t>(kSlotHeaderBytes + padded);
  } else if (op.header != nullptr) {
    r.op = IoOp::kRead;
    op.io_length = static_cast<uint32_t>(kSlotHeaderBytes);
  } else {
    r.op = IoOp::kRead;
    const std::span<std::byte> out = op.read->out;
    const size_t padded = RoundUpIo(std::min<size_t>(out.size(), slot_capacity()));
    if (options_.zero_copy && padded > 0 && out.size() >= padded && IoAligned(out.data())) {
      op.direct = out.data();
      op.direct_length = static_cast<uint32_t>(padded);
    }
    op.io_length = static_cast<uint32_t>(kSlotHeaderBytes + padded);
  }
  (op.direct != nullptr ? zero_copy_ : bounced_).fetch_add(1, std::memory_order_relaxed);
  if (op.direct != nullptr) {
    r.length = kSlotHeaderBytes;
    r.buf2 = op.direct;
    r.length2 = op.direct_length;
  } else {
    r.length = op.io_length;
  }
  return r;
}

Status DiskTier::FinishOp(Pending& op, int32_t result, const std::byte* buf) {
  const char* verb = op.write != nullptr ? "write" : "read";
  if (result < 0) {
    return FromErrno(-result, std::string(verb) + " " + name() + " slot " + std::to_string(op.slot));
  }
  if (static_cast<uint32_t>(result) != op.io_length) {
    if (op.write == nullptr && op.direct != nullptr) std::memset(op.direct, 0, op.direct_length);
    return IOError(std::string("short ") + verb + " of " + name() + " slot " + std::to_string(op.slot) + ": " +
                   std::to_string(result) + " of " + std::to_string(op.io_length) + " bytes");
  }
  if (op.write != nullptr) return OkStatus();
  if (op.header != nullptr) {
    SlotHeader h;
    RETURN_IF_ERROR(DecodeSlotHeader(buf, op.slot, slot_capacity(), &h));
    op.header->info = InfoOf(h);
    return OkStatus();
  }
  Status st = FinishRead(op, buf);
  // A failed zero-copy read leaves no unverified bytes in the caller's buffer.
  if (!st.ok() && op.direct != nullptr) std::memset(op.direct, 0, op.direct_length);
  return st;
}

Status DiskTier::FinishRead(Pending& op, const std::byte* buf) {
  // Messages are built on the error paths only: this runs for every read.
  SlotHeader h;
  Status st = DecodeSlotHeader(buf, op.slot, slot_capacity(), &h);
  if (!st.ok()) {
    if (st.code() == StatusCode::kNotFound) {
      return Corruption(name() + " slot " + std::to_string(op.slot) + ": written slot reads as never written");
    }
    return st.WithContext(name());
  }
  const SlotInfo info = InfoOf(h);
  if (!(info.tag == op.read->expect)) {
    mutable_stats().tag_mismatches.fetch_add(1, std::memory_order_relaxed);
    return Corruption(name() + " slot " + std::to_string(op.slot) + " holds (" + TagToString(info.tag) +
                      "), not the expected (" + TagToString(op.read->expect) + ")");
  }
  if (info.length > op.read->out.size()) {
    return InvalidArgument(name() + " slot " + std::to_string(op.slot) + ": buffer of " +
                           std::to_string(op.read->out.size()) + " bytes is smaller than the payload of " +
                           std::to_string(info.length));
  }
  const std::byte* payload = op.direct != nullptr ? op.direct : buf + kSlotHeaderBytes;
  st = VerifyPayload(h, payload);
  if (!st.ok()) return st.WithContext(name());
  if (op.direct == nullptr && info.length > 0) std::memcpy(op.read->out.data(), payload, info.length);
  op.info = info;
  return OkStatus();
}

Status DiskTier::RunOnEngine(IoEngine& engine, std::vector<Pending>& ops) {
  IoBufferPool* pool = engine.buffers();
  std::vector<uint32_t> free_bufs;
  for (uint32_t i = pool->count(); i-- > 0;) free_bufs.push_back(i);
  std::vector<IoCompletion> completed;
  auto record = [&](const IoCompletion& c) { completed.push_back(c); };
  size_t next = 0;
  auto refill = [&] {
    while (next < ops.size() && !free_bufs.empty() && engine.in_flight() < engine.queue_depth()) {
      const uint32_t buf = free_bufs.back();
      free_bufs.pop_back();
      IoRequest r = StartOp(engine, ops[next], buf);
      r.user_data = next;
      Status st = engine.Prepare(r);
      if (!st.ok()) {
        ops[next].status = st;
        ops[next].done = true;
        free_bufs.push_back(buf);
      }
      ++next;
    }
  };
  while (next < ops.size() || engine.in_flight() > 0) {
    refill();
    if (engine.in_flight() == 0) continue;
    RETURN_IF_ERROR(engine.Reap(1, record).status());
    // The pool holds two buffers per queue slot, so the queue is refilled and
    // submitted (without waiting) before the CPU verifies and copies what completed.
    refill();
    RETURN_IF_ERROR(engine.Reap(0, record).status());
    for (const IoCompletion& c : completed) {
      Pending& op = ops[c.user_data];
      op.status = FinishOp(op, c.result, pool->buffer(op.buf));
      op.done = true;
      free_bufs.push_back(op.buf);
    }
    completed.clear();
  }
  return OkStatus();
}

void DiskTier::RunBatch(std::vector<Pending>& ops) {
  Result<std::unique_ptr<IoEngine>> engine = AcquireEngine();
  Status failed = engine.ok() ? RunOnEngine(**engine, ops) : engine.status();
  if (!failed.ok()) {
    LOG(ERROR) << name() << ": I/O engine failed, " << ops.size() << " ops of the batch fail: " << failed.ToString();
    for (Pending& op : ops) {
      if (!op.done) op.status = failed.code() == StatusCode::kIOError ? failed : IOError(failed.ToString());
    }
  }
  if (engine.ok()) ReleaseEngine(std::move(*engine), failed.ok());
}

Status DiskTier::WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                           PayloadEncoding encoding) {
  WriteOp op(slot, tag, payload, encoding);
  std::vector<Pending> ops(1);
  ops[0].slot = slot;
  ops[0].write = &op;
  RunBatch(ops);
  return ops[0].status;
}

Status DiskTier::ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out, SlotInfo* info) {
  ReadOp op(slot, expect, out);
  std::vector<Pending> ops(1);
  ops[0].slot = slot;
  ops[0].read = &op;
  RunBatch(ops);
  if (ops[0].status.ok()) *info = ops[0].info;
  return ops[0].status;
}

void DiskTier::WriteBatchImpl(std::span<WriteOp* const> ops) {
  std::vector<Pending> pending(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    pending[i].slot = ops[i]->slot;
    pending[i].write = ops[i];
  }
  RunBatch(pending);
  for (size_t i = 0; i < ops.size(); ++i) ops[i]->status = pending[i].status;
}

void DiskTier::ReadBatchImpl(std::span<ReadOp* const> ops) {
  std::vector<Pending> pending(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    pending[i].slot = ops[i]->slot;
    pending[i].read = ops[i];
  }
  RunBatch(pending);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i]->status = pending[i].status;
    if (pending[i].status.ok()) ops[i]->info = pending[i].info;
  }
}

Status DiskTier::ReadHeaders(std::span<HeaderRead> reads) {
  std::vector<Pending> pending(reads.size());
  for (size_t i = 0; i < reads.size(); ++i) {
    if (reads[i].slot >= num_slots()) {
      return InvalidArgument(name() + ": ReadHeaders: slot " + std::to_string(reads[i].slot) + " out of range");
    }
    pending[i].slot = reads[i].slot;
    pending[i].header = &reads[i];
  }
  if (pending.empty()) return OkStatus();
  RunBatch(pending);
  for (size_t i = 0; i < reads.size(); ++i) reads[i].status = pending[i].status;
  return OkStatus();
}

}  // namespace tierkv::storage
