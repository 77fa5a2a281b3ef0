// open_channel: a data-plane channel and the descriptors the client maps (the
// channel's memfd, the namespace's arenas read-only, an emulated GPU exchange).
// Every descriptor is a UniqueFd until the reply goes out: on any error they are
// closed, never sent (ControlService::Handle passes them only with an OK reply).
#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/control_service.h"
#include "daemon/data_ops.h"
#include "daemon/namespace_gate.h"
#include "daemon/runtimes.h"
#include "kernels/gpu_runtime.h"
#include "storage/gpu_tier.h"

namespace tierkv::daemon {
namespace {
// Answers every data-plane op with kNotSupported (no handler factory installed).
class UnsupportedOps : public OpHandler {
 public:
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t>) override {
    return ErrorCompletion(req.tag, StatusCode::kNotSupported, dp::Detail::kOp);
  }
};

// open_channel's GPU fields ("gpu": true, and "gpu_worker_event" when the worker
// has a GPU): a device exchange ordered by the worker's exported interprocess event
// (hex) when G is device memory, an emulated one (memfd) when G is emulated. Its
// size: "gpu_exchange_bytes", else data_plane.gpu_exchange_bytes.
// The GPU exchange's size: "gpu_exchange_bytes", else data_plane.gpu_exchange_bytes.
Result<uint64_t> ExchangeBytes(const wire::Json& req, const DataPlaneSection& dpc) {
  if (!req.contains("gpu_exchange_bytes")) return dpc.gpu_exchange_bytes;
  ASSIGN_OR_RETURN(uint64_t bytes, wire::GetUint(req, "gpu_exchange_bytes", "", dpc.max_staging_bytes));
  if (bytes == 0) return InvalidArgument("gpu_exchange_bytes must be positive");
  return bytes;
}

Result<std::unique_ptr<GpuExchange>> OpenGpuExchange(const wire::Json& req, NamespaceRuntime* rt,
                                                     const DataPlaneSection& dpc, const std::string& name) {
  const bool worker_gpu = req.contains("gpu_worker_event");
  kernels::IpcEventHandle worker_event;
  if (worker_gpu) {
    ASSIGN_OR_RETURN(std::string hex, wire::GetString(req, "gpu_worker_event", "", 2 * sizeof(worker_event)));
    Status st = wire::FromHex(hex, worker_event.bytes.data(), worker_event.bytes.size());
    if (!st.ok()) return InvalidArgument("gpu_worker_event: " + st.message());
  }
  ASSIGN_OR_RETURN(const uint64_t bytes, ExchangeBytes(req, dpc));
  if (rt == nullptr) return NotSupported("the namespace has no data plane in this daemon");
  if (rt->gpu_emulated()) {
    if (worker_gpu) {
      return NotSupported("this daemon's G tier is emulated in host memory (no GPU): a worker with a GPU needs a "
                          "daemon with one");
    }
    return GpuExchange::OpenEmulated(name + "-gpu", bytes);
  }
  if (!worker_gpu) return InvalidArgument("gpu_worker_event is required: this daemon's G tier is device memory");
  return GpuExchange::Open(/*device=*/0, worker_event, bytes);
}

// Whether open_channel asks for the GPU path: "gpu": true, or a worker event.
Result<bool> WantsGpu(const wire::Json& req) {
  const auto gpu = req.find("gpu");
  if (gpu != req.end() && !gpu->is_boolean()) return InvalidArgument("gpu must be true or false");
  return (gpu != req.end() && gpu->get<bool>()) || req.contains("gpu_worker_event");
}

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// A read-only descriptor of an arena's memfd (through /proc: the memfd itself is
// sealed against new writable descriptors, not against read-only ones).
Result<UniqueFd> ReadOnlyArenaFd(const storage::ArenaTier& a) {
  if (!a.memory().sealed_for_readers()) {
    return NotSupported("arena " + a.name() + " is not sealed against writes (the kernel lacks "
                        "F_SEAL_FUTURE_WRITE, Linux >= 5.1): refusing to share it with clients");
  }
  UniqueFd ro(::open(("/proc/self/fd/" + std::to_string(a.fd())).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro.valid()) return FromErrno(errno, "reopen arena " + a.name() + " read-only");
  return ro;
}

Result<UniqueFd> Dup(int fd, const char* what) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) return FromErrno(errno, std::string("dup ") + what);
  return copy;
}
}  // namespace

Result<ChannelOptions> ControlService::ChannelOptionsOf(const Json& req) const {
  const auto& dpc = config_.data_plane;
  ChannelOptions o;
  o.spin = std::chrono::microseconds(dpc.spin_us);
  o.staging_bytes = dpc.default_staging_bytes;
  const std::pair<const char*, uint32_t*> rings[] = {{"request_entries", &o.request_capacity},
                                                     {"completion_entries", &o.completion_capacity}};
  for (auto [key, out] : rings) {
    if (!req.contains(key)) continue;
    ASSIGN_OR_RETURN(uint64_t v, wire::GetUint(req, key, "", dpc.max_ring_entries));
    if (!PowerOfTwo(v) || v < 2) return InvalidArgument(std::string(key) + " must be a power of two >= 2");
    *out = static_cast<uint32_t>(v);
  }
  if (req.contains("staging_bytes")) {
    ASSIGN_OR_RETURN(o.staging_bytes, wire::GetUint(req, "staging_bytes", "", dpc.max_staging_bytes));
    if (o.staging_bytes == 0) return InvalidArgument("staging_bytes must be positive");
  }
  return o;
}

// {namespace, request_entries?, completion_entries?, staging_bytes?, gpu?, ...} -> layout + the memfd.
Result<wire::Json> ControlService::OpenChannel(SessionState& s, const Json& req, Fds* fds) {
  ASSIGN_OR_RETURN(std::string name, wire::GetString(req, "namespace", "", NamespaceSpec::kMaxNameLength));
  auto rec = registry_->FindByName(name);
  if (!rec) return NotFound("no namespace named '" + name + "'");
  if (!s.attached.count(rec->id)) return InvalidArgument("attach to namespace '" + name + "' first");
  const auto& dpc = config_.data_plane;
  if (s.channels.size() >= dpc.max_channels_per_client) {
    return ResourceExhausted("at most " + std::to_string(dpc.max_channels_per_client) +
                             " channels per client (data_plane.max_channels_per_client)");
  }
  ASSIGN_OR_RETURN(const ChannelOptions o, ChannelOptionsOf(req));
  if (runtimes_ && !runtimes_->Find(rec->id)) {
    return NotSupported("namespace '" + name + "' is not served: its runtime failed to open at start (the daemon "
                        "log says why)");
  }
  ASSIGN_OR_RETURN(const bool wants_gpu, WantsGpu(req));
  // What the channel will cost, charged before anything is created (limits.*).
  uint64_t cost = dp::Layout(o.request_capacity, o.completion_capacity, o.staging_bytes).total_bytes;
  if (wants_gpu) {
    ASSIGN_OR_RETURN(const uint64_t exchange, ExchangeBytes(req, dpc));
    cost += exchange;
  }
  RETURN_IF_ERROR(channel_budget_.Reserve(s.peer.uid, s.admin, cost));
  Result<Json> reply = OpenChannelCharged(s, req, *rec, o, wants_gpu, fds);
  if (!reply.ok()) {
    channel_budget_.Release(s.peer.uid, 1, cost);
    fds->clear();  // closes what was opened
  } else {
    s.channel_bytes += cost;
  }
  UpdateChannelGauges();
  return reply;
}

std::unique_ptr<OpHandler> ControlService::ChannelHandler(const SessionState& s, const NamespaceRecord& rec,
                                                          const std::shared_ptr<NamespaceRuntime>& rt,
                                                          std::unique_ptr<GpuExchange> gpu) {
  if (!rt) return std::make_unique<UnsupportedOps>();
  const std::string& ns = rec.spec.name;
  if (gpu) gpu->SetLatency(&metrics_->RetrievalLatency(ns, "gpu_query"), &metrics_->RetrievalLatency(ns, "gpu_table"));
  auto ops = std::make_unique<NamespaceOps>(
      rt.get(),
      NamespaceOps::Latency{&metrics_->RetrievalLatency(ns, "select"), &metrics_->RetrievalLatency(ns, "acquire"),
                            &metrics_->RetrievalLatency(ns, "total")},
      std::move(gpu), Caller{s.peer.uid, s.admin},
      RetrieveBatchConfig{&retrieval_pool_, config_.limits.max_retrieve_batch});
  return std::make_unique<GatedOps>(rt->gate(), std::move(ops));
}

Status ControlService::ShareArenas(const NamespaceRuntime& rt, Json* reply, Fds* fds) {
  // The namespace's arenas, read-only: the client reads its blocks where a block
  // table points. A real G tier travels as a CUDA IPC handle instead (GPU path).
  (*reply)["block_bytes"] = rt.model().BlockBytes();
  // Per KV head a Retrieve returns table_heads runs of entries, each pointing at a
  // stored block of block_bytes / table_heads bytes (docs/decisions/0023).
  (*reply)["table_heads"] = rt.record().spec.TableHeads();
  (*reply)["slot_stride"] = rt.host().slot_stride();
  (*reply)["host_arena_bytes"] = rt.host().memory().bytes();
  (*reply)["gpu_emulated"] = rt.gpu_emulated();
  (*reply)["gpu_arena_bytes"] = rt.gpu().memory().bytes();
  std::vector<const storage::ArenaTier*> arenas = {&rt.host()};
  if (rt.gpu_emulated()) {
    arenas.push_back(&rt.gpu());
  } else {
    ASSIGN_OR_RETURN(kernels::IpcMemHandle handle, storage::ExportGpuArena(rt.gpu()));
    (*reply)["gpu_ipc_handle"] = wire::ToHex(handle.bytes.data(), handle.bytes.size());
  }
  for (const storage::ArenaTier* a : arenas) {
    ASSIGN_OR_RETURN(UniqueFd ro, ReadOnlyArenaFd(*a));
    fds->push_back(std::move(ro));
  }
  return OkStatus();
}

// OpenChannel once the channel's cost is charged. Descriptors, in order: the
// channel, the H arena, the emulated G arena, the emulated GPU exchange.
Result<wire::Json> ControlService::OpenChannelCharged(SessionState& s, const Json& req, const NamespaceRecord& rec,
                                                      const ChannelOptions& o, bool wants_gpu, Fds* fds) {
  const std::shared_ptr<NamespaceRuntime> rt = runtimes_ ? runtimes_->Find(rec.id) : nullptr;
  const std::string channel_name = "tierkv-channel-" + std::to_string(s.id) + "-" + std::to_string(s.channels.size());
  std::unique_ptr<GpuExchange> gpu;
  Json gpu_reply;
  UniqueFd exchange_fd;  // emulated exchange, read-write: the client writes queries there
  if (wants_gpu) {
    ASSIGN_OR_RETURN(gpu, OpenGpuExchange(req, rt.get(), config_.data_plane, channel_name));
    gpu_reply = Json{{"gpu_exchange_bytes", gpu->bytes()}, {"gpu_exchange_emulated", gpu->emulated()}};
    if (gpu->emulated()) {
      ASSIGN_OR_RETURN(exchange_fd, Dup(gpu->fd(), "the GPU exchange fd"));
    } else {
      gpu_reply["gpu_exchange_handle"] = wire::ToHex(gpu->buffer_handle().bytes.data(), 64);
      gpu_reply["gpu_daemon_event"] = wire::ToHex(gpu->event_handle().bytes.data(), 64);
    }
  }
  auto disconnect = s.disconnect;
  const uint64_t session = s.id;
  ChannelOptions options = o;
  options.pin_for_gpu = rt && !rt->gpu_emulated();  // puts and gets copy between staging and a real G
  ASSIGN_OR_RETURN(auto channel,
                   Channel::Open(channel_name, options, ChannelHandler(s, rec, rt, std::move(gpu)), &channel_stats_,
                                 [disconnect, session](const Status& why) {
                                   LOG(WARNING) << "session " << session << ": " << why.ToString() << "; disconnecting";
                                   if (disconnect) disconnect(why);
                                 }));
  const dp::ChannelHeader& h = channel->layout();
  Json reply{{"channel", s.channels.size()},
             {"namespace_id", rec.id},
             {"total_bytes", h.total_bytes},
             {"request_entries", h.request_capacity},
             {"completion_entries", h.completion_capacity},
             {"staging_bytes", h.staging_bytes}};
  if (!gpu_reply.is_null()) reply.update(gpu_reply);
  ASSIGN_OR_RETURN(UniqueFd channel_fd, Dup(channel->fd(), "channel fd"));
  fds->push_back(std::move(channel_fd));
  if (rt) RETURN_IF_ERROR(ShareArenas(*rt, &reply, fds));
  if (exchange_fd.valid()) fds->push_back(std::move(exchange_fd));
  s.channels.push_back(std::move(channel));
  NoteSession(s);
  return reply;
}

}  // namespace tierkv::daemon
