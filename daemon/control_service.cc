#include "daemon/control_service.h"

#include <unistd.h>

#include <algorithm>

#include "common/log.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::daemon {
namespace {
constexpr std::string_view kKnownOps[] = {"hello", "ping", "create_namespace", "attach", "list_namespaces",
                                          "stats", "shutdown", "open_channel"};

// Answers every data-plane op with kNotSupported (no handler factory installed).
class UnsupportedOps : public OpHandler {
 public:
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t>) override {
    return ErrorCompletion(req.tag, StatusCode::kNotSupported, dp::Detail::kOp);
  }
};

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
bool KnownOp(std::string_view op) {
  return std::find(std::begin(kKnownOps), std::end(kKnownOps), op) != std::end(kKnownOps);
}
}  // namespace

ControlService::ControlService(const Config& config, NamespaceRegistry* registry, Metrics* metrics,
                               std::function<void()> on_shutdown)
    : config_(config),
      registry_(registry),
      metrics_(metrics),
      on_shutdown_(std::move(on_shutdown)),
      gpu_description_(kernels::DescribeGpus()) {
  metrics_->SetNamespaces(static_cast<double>(registry_->size()));
}

bool ControlService::IsAdmin(uint32_t uid) const {
  if (uid == 0 || uid == ::geteuid()) return true;
  const auto& admins = config_.control.admin_uids;
  return std::find(admins.begin(), admins.end(), int64_t{uid}) != admins.end();
}

SessionState ControlService::OpenSession(const PeerCred& peer) {
  SessionState s;
  s.id = next_session_++;
  s.peer = peer;
  s.admin = IsAdmin(peer.uid);
  metrics_->SetConnections(static_cast<double>(++sessions_));
  LOG(DEBUG) << "session " << s.id << " opened by pid " << peer.pid << " uid " << peer.uid;
  return s;
}

void ControlService::CloseSession(SessionState& s) {
  for (auto& ch : s.channels) ch->Stop();  // releases the client's leases
  s.channels.clear();
  if (!s.attached.empty()) {
    --attached_sessions_;
    s.attached.clear();
    UpdateAttachedGauge();
  }
  metrics_->SetConnections(static_cast<double>(--sessions_));
  LOG(DEBUG) << "session " << s.id << " closed";
}

void ControlService::UpdateAttachedGauge() {
  metrics_->SetAttachedClients(static_cast<double>(attached_sessions_.load()));
}

ControlService::Reply ControlService::Handle(SessionState& s, std::string_view body) {
  ++requests_;
  auto req = wire::ParseBody(body);
  if (!req.ok()) {
    metrics_->CountRequest("invalid");
    return Finish(s, req.status(), nullptr);
  }
  const Json* id = nullptr;
  if (auto it = req->find("id"); it != req->end()) id = &*it;
  auto op_it = req->find("op");
  if (op_it == req->end() || !op_it->is_string()) {
    metrics_->CountRequest("invalid");
    return Finish(s, InvalidArgument("request needs a string field 'op'"), id);
  }
  const std::string op = op_it->get<std::string>();
  metrics_->CountRequest(KnownOp(op) ? op : "unknown");
  std::vector<int> fds;
  Reply r = Finish(s, Dispatch(s, op, *req, &fds), id);
  r.fds = std::move(fds);
  return r;
}

ControlService::Reply ControlService::TransportError(SessionState& s, const Status& status, bool disconnect) {
  metrics_->CountRequest("invalid");
  Reply r = Finish(s, status, nullptr);
  r.disconnect = r.disconnect || disconnect;
  if (disconnect) metrics_->CountDisconnect("bad_frame");
  return r;
}

ControlService::Reply ControlService::Finish(SessionState& s, Result<Json> result, const Json* id) {
  Reply r;
  if (result.ok()) {
    s.consecutive_errors = 0;
    r.body = std::move(result).value();
    r.body["ok"] = true;
  } else {
    const Status& st = result.status();
    metrics_->CountError(StatusCodeName(st.code()));
    r.body = wire::ErrorReply(st);
    LOG(DEBUG) << "session " << s.id << ": " << st.ToString();
    if (++s.consecutive_errors >= config_.control.max_consecutive_errors) {
      LOG(WARNING) << "session " << s.id << " (pid " << s.peer.pid << ", uid " << s.peer.uid << "): "
                   << s.consecutive_errors << " bad requests in a row; disconnecting";
      metrics_->CountDisconnect("too_many_errors");
      r.disconnect = true;
    }
  }
  if (id) r.body["id"] = *id;
  return r;
}

Result<wire::Json> ControlService::Dispatch(SessionState& s, const std::string& op, const Json& req,
                                           std::vector<int>* fds) {
  if (op == "hello") return Hello(s, req);
  if (!s.said_hello) return InvalidArgument("the first request must be hello (protocol version " +
                                            std::to_string(wire::kProtocolVersion) + ")");
  if (op == "ping") return Json::object();
  if (op == "create_namespace") return CreateNamespace(s, req);
  if (op == "attach") return Attach(s, req);
  if (op == "list_namespaces") return ListNamespaces(s, req);
  if (op == "stats") return Stats(s, req);
  if (op == "shutdown") return Shutdown(s, req);
  if (op == "open_channel") return OpenChannel(s, req, fds);
  return InvalidArgument("unknown op '" + op.substr(0, 64) + "'");
}

Result<wire::Json> ControlService::Hello(SessionState& s, const Json& req) {
  ASSIGN_OR_RETURN(uint64_t version, wire::GetUint(req, "version", "", UINT32_MAX));
  if (version != wire::kProtocolVersion) {
    return NotSupported("protocol version " + std::to_string(version) + " is not supported; this daemon speaks " +
                        std::to_string(wire::kProtocolVersion));
  }
  s.said_hello = true;
  return Json{{"version", wire::kProtocolVersion},
              {"daemon", "tierkvd " TIERKV_VERSION},
              {"session", s.id},
              {"uid", s.peer.uid},
              {"gid", s.peer.gid},
              {"admin", s.admin}};
}

Result<wire::Json> ControlService::CreateNamespace(SessionState& s, const Json& req) {
  if (!s.admin) {
    return PermissionDenied("uid " + std::to_string(s.peer.uid) +
                            " may not create namespaces (control.admin_uids lists who may)");
  }
  auto ns = req.find("namespace");
  if (ns == req.end()) return InvalidArgument("namespace is required");
  ASSIGN_OR_RETURN(NamespaceSpec spec, wire::NamespaceSpecFromJson(*ns));
  ASSIGN_OR_RETURN(auto created, registry_->Create(std::move(spec), s.peer.uid));
  metrics_->SetNamespaces(static_cast<double>(registry_->size()));
  return Json{{"namespace_id", created.record.id},
              {"created", created.created},
              {"namespace", wire::ToJson(created.record.spec)}};
}

Result<wire::Json> ControlService::Attach(SessionState& s, const Json& req) {
  ASSIGN_OR_RETURN(std::string name, wire::GetString(req, "namespace", "", NamespaceSpec::kMaxNameLength));
  auto rec = registry_->FindByName(name);
  // The same answer for "absent" and "not allowed" would hide which names exist;
  // operators prefer the clear one, and names are not secrets here.
  if (!rec) return NotFound("no namespace named '" + name + "'");
  if (!rec->spec.acl.Allows(s.peer.uid, s.peer.gid)) {
    return PermissionDenied("uid " + std::to_string(s.peer.uid) + " gid " + std::to_string(s.peer.gid) +
                            " is not in the ACL of namespace '" + name + "'");
  }
  if (s.attached.empty()) {
    ++attached_sessions_;
    UpdateAttachedGauge();
  }
  s.attached.insert(rec->id);
  LOG(INFO) << "session " << s.id << " (pid " << s.peer.pid << ") attached to '" << name << "'";
  return Json{{"namespace_id", rec->id}, {"namespace", wire::ToJson(rec->spec)}};
}

Result<wire::Json> ControlService::ListNamespaces(SessionState& s, const Json&) {
  Json list = Json::array();
  for (const NamespaceRecord& r : registry_->List()) {
    if (!s.admin && !r.spec.acl.Allows(s.peer.uid, s.peer.gid)) continue;
    Json j = wire::ToJson(r.spec);
    j["namespace_id"] = r.id;
    list.push_back(std::move(j));
  }
  return Json{{"namespaces", std::move(list)}};
}

Result<wire::Json> ControlService::Stats(SessionState&, const Json&) {
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return Json{{"uptime_s", uptime},
              {"version", TIERKV_VERSION},
              {"connections", sessions_.load()},
              {"clients_attached", attached_sessions_.load()},
              {"namespaces", registry_->size()},
              {"requests", requests_.load()},
              {"metrics_url", metrics_->url()},
              {"gpu", gpu_description_}};
}

Result<wire::Json> ControlService::Shutdown(SessionState& s, const Json&) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not shut the daemon down");
  LOG(INFO) << "shutdown asked by session " << s.id << " (pid " << s.peer.pid << ", uid " << s.peer.uid << ")";
  if (!shutting_down_.exchange(true) && on_shutdown_) on_shutdown_();
  return Json::object();
}

}  // namespace tierkv::daemon

namespace tierkv::daemon {

// {namespace, request_entries?, completion_entries?, staging_bytes?} -> layout + the memfd.
Result<wire::Json> ControlService::OpenChannel(SessionState& s, const Json& req, std::vector<int>* fds) {
  ASSIGN_OR_RETURN(std::string name, wire::GetString(req, "namespace", "", NamespaceSpec::kMaxNameLength));
  auto rec = registry_->FindByName(name);
  if (!rec || !s.attached.count(rec->id)) return InvalidArgument("attach to namespace '" + name + "' first");
  const auto& dpc = config_.data_plane;
  if (s.channels.size() >= dpc.max_channels_per_client) {
    return ResourceExhausted("at most " + std::to_string(dpc.max_channels_per_client) +
                             " channels per client (data_plane.max_channels_per_client)");
  }
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
  std::unique_ptr<OpHandler> handler;
  if (handler_factory_) {
    ASSIGN_OR_RETURN(handler, handler_factory_(*rec, s));
  } else {
    handler = std::make_unique<UnsupportedOps>();
  }
  auto disconnect = s.disconnect;
  const uint64_t session = s.id;
  ASSIGN_OR_RETURN(auto channel,
                   Channel::Open("tierkv-channel-" + std::to_string(s.id) + "-" + std::to_string(s.channels.size()),
                                 o, std::move(handler), &channel_stats_, [disconnect, session](const Status& why) {
                                   LOG(WARNING) << "session " << session << ": " << why.ToString() << "; disconnecting";
                                   if (disconnect) disconnect(why);
                                 }));
  const dp::ChannelHeader& h = channel->layout();
  fds->push_back(channel->fd());
  s.channels.push_back(std::move(channel));
  return Json{{"channel", s.channels.size() - 1},
              {"namespace_id", rec->id},
              {"total_bytes", h.total_bytes},
              {"request_entries", h.request_capacity},
              {"completion_entries", h.completion_capacity},
              {"staging_bytes", h.staging_bytes}};
}

}  // namespace tierkv::daemon
