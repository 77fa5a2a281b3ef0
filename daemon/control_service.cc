#include "daemon/control_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "common/log.h"
#include "daemon/budget_check.h"
#include "daemon/data_ops.h"
#include "daemon/remote_link.h"
#include "daemon/runtimes.h"
#include "storage/gpu_tier.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::daemon {
namespace {
constexpr std::string_view kKnownOps[] = {"hello",      "ping",           "create_namespace", "attach",
                                          "list_namespaces", "stats", "shutdown", "open_channel",
                                          "get_policy", "set_policy", "usage", "clients",
                                          "delete_namespace", "prefixes", "evict_prefixes"};

bool KnownOp(std::string_view op) {
  return std::find(std::begin(kKnownOps), std::end(kKnownOps), op) != std::end(kKnownOps);
}
}  // namespace

ControlService::ControlService(const Config& config, NamespaceRegistry* registry, Metrics* metrics,
                               std::function<void()> on_shutdown, Runtimes* runtimes)
    : config_(config),
      registry_(registry),
      metrics_(metrics),
      on_shutdown_(std::move(on_shutdown)),
      runtimes_(runtimes),
      channel_budget_(config.limits),
      retrieval_pool_(WorkerPool::HelpersFor(config.retrieval.workers)),
      gpu_description_(kernels::DescribeGpus()) {
  metrics_->SetNamespaces(static_cast<double>(registry_->size()));
  for (std::string_view op : kKnownOps) metrics_->CreateRequestSeries(op);
  for (const NamespaceRecord& r : registry_->List()) {
    if (!runtimes_ || runtimes_->Find(r.id)) metrics_->CreateNamespaceSeries(r.spec.name);
  }
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
  NoteSession(s);
  LOG(DEBUG) << "session " << s.id << " opened by pid " << peer.pid << " uid " << peer.uid;
  return s;
}

void ControlService::CloseSession(SessionState& s) {
  for (auto& ch : s.channels) ch->Stop();  // releases the client's leases
  channel_budget_.Release(s.peer.uid, s.channels.size(), s.channel_bytes);
  s.channels.clear();
  s.channel_bytes = 0;
  UpdateChannelGauges();
  if (!s.attached.empty()) {
    --attached_sessions_;
    s.attached.clear();
    UpdateAttachedGauge();
  }
  metrics_->SetConnections(static_cast<double>(--sessions_));
  {
    MutexLock lock(&sessions_mu_);
    session_info_.erase(s.id);
  }
  LOG(DEBUG) << "session " << s.id << " closed";
}

void ControlService::UpdateChannelGauges() {
  metrics_->SetChannels(static_cast<double>(channel_budget_.channels()),
                        static_cast<double>(channel_budget_.bytes()));
}

void ControlService::UpdateAttachedGauge() {
  metrics_->SetAttachedClients(static_cast<double>(attached_sessions_.load()));
}

ControlService::Reply ControlService::Handle(SessionState& s, std::string_view body) {
  ++requests_;
  // Before parsing: 1 MiB of "[[[[..." would cost the control thread ~300 ms.
  if (Status shape = wire::CheckJsonShape(body, config_.limits.control_max_json_depth,
                                          config_.limits.control_max_json_elements);
      !shape.ok()) {
    metrics_->CountRequest("invalid");
    return Finish(s, InvalidArgument(shape.message() + " (limits.control_max_json_depth, "
                                                        "limits.control_max_json_elements)"), nullptr);
  }
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
  Fds fds;
  Result<Json> result = Dispatch(s, op, *req, &fds);
  const bool ok = result.ok();
  Reply r = Finish(s, std::move(result), id);
  if (ok) {
    for (UniqueFd& fd : fds) r.fds.push_back(fd.release());
  }  // else: closed here, never sent with an error
  return r;
}

ControlService::Reply ControlService::TransportError(SessionState& s, const Status& status, bool disconnect) {
  metrics_->CountRequest("invalid");
  Reply r = Finish(s, status, nullptr);
  r.disconnect = r.disconnect || disconnect;
  if (disconnect) metrics_->CountDisconnect("bad_frame");
  return r;
}

ControlService::Reply ControlService::Refusal(SessionState& s, const Status& status) {
  metrics_->CountError(StatusCodeName(status.code()));
  Reply r;
  r.body = wire::ErrorReply(status);
  r.disconnect = true;
  LOG(DEBUG) << "session " << s.id << " (pid " << s.peer.pid << ", uid " << s.peer.uid
             << ") refused: " << status.message();
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

Result<wire::Json> ControlService::Dispatch(SessionState& s, const std::string& op, const Json& req, Fds* fds) {
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
  if (op == "delete_namespace") return DeleteNamespace(s, req);
  if (op == "prefixes") return Prefixes(s, req);
  if (op == "evict_prefixes") return EvictPrefixes(s, req);
  if (op == "get_policy") return GetPolicy(s, req);
  if (op == "set_policy") return SetPolicy(s, req);
  if (op == "usage") return Usage(s, req);
  if (op == "clients") return Clients(s, req);
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
  // Budgets the machine cannot hold are refused before anything is allocated or
  // stored; the record is persisted only once its runtime opened (all or nothing).
  if (runtimes_ && !registry_->FindByName(spec.name)) {
    RETURN_IF_ERROR(CheckBudgets(spec, config_, /*at_creation=*/true));
  }
  std::function<Status(const NamespaceRecord&)> open;
  if (runtimes_) open = [this](const NamespaceRecord& rec) { return runtimes_->Open(rec); };
  ASSIGN_OR_RETURN(auto created, registry_->Create(std::move(spec), s.peer.uid, open));
  metrics_->SetNamespaces(static_cast<double>(registry_->size()));
  metrics_->CreateNamespaceSeries(created.record.spec.name);
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
  NoteSession(s);
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
              {"gpu", gpu_description_},
              {"remote", RemoteStatusJson(runtimes_ ? runtimes_->remote() : nullptr)}};
}

Result<wire::Json> ControlService::Shutdown(SessionState& s, const Json&) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not shut the daemon down");
  LOG(INFO) << "shutdown asked by session " << s.id << " (pid " << s.peer.pid << ", uid " << s.peer.uid << ")";
  if (!shutting_down_.exchange(true) && on_shutdown_) on_shutdown_();
  return Json::object();
}

void ControlService::NoteSession(const SessionState& s) {
  MutexLock lock(&sessions_mu_);
  SessionInfo& info = session_info_[s.id];
  info.peer = s.peer;
  info.attached.assign(s.attached.begin(), s.attached.end());
  info.channels = s.channels.size();
}

// The namespace `req` names (when it names one), else every namespace the session may see.
Result<std::vector<NamespaceRecord>> ControlService::VisibleNamespaces(const SessionState& s, const Json& req) {
  if (req.contains("namespace")) {
    ASSIGN_OR_RETURN(NamespaceRecord rec, VisibleNamespace(s, req));
    return std::vector<NamespaceRecord>{rec};
  }
  std::vector<NamespaceRecord> recs;
  for (const auto& r : registry_->List()) {
    if (s.admin || r.spec.acl.Allows(s.peer.uid, s.peer.gid)) recs.push_back(r);
  }
  return recs;
}

Result<NamespaceRecord> ControlService::VisibleNamespace(const SessionState& s, const Json& req) {
  ASSIGN_OR_RETURN(std::string name, wire::GetString(req, "namespace", "", NamespaceSpec::kMaxNameLength));
  auto rec = registry_->FindByName(name);
  if (!rec) return NotFound("no namespace named '" + name + "'");
  if (!s.admin && !rec->spec.acl.Allows(s.peer.uid, s.peer.gid)) {
    return PermissionDenied("namespace '" + name + "' is not visible to uid " + std::to_string(s.peer.uid));
  }
  if (!runtimes_ || !runtimes_->Find(rec->id)) return NotSupported("namespace '" + name + "' has no runtime");
  return *rec;
}

// {namespace} -> {policy}
Result<wire::Json> ControlService::GetPolicy(SessionState& s, const Json& req) {
  ASSIGN_OR_RETURN(NamespaceRecord rec, VisibleNamespace(s, req));
  const std::shared_ptr<NamespaceRuntime> rt = runtimes_->Find(rec.id);
  if (!rt) return NotFound("namespace '" + rec.spec.name + "' was just deleted");
  return Json{{"namespace", rec.spec.name}, {"policy", rt->PolicyJson()}};
}

// {namespace, policy: {field: value, ...}} -> {policy}. Admins only.
Result<wire::Json> ControlService::SetPolicy(SessionState& s, const Json& req) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not change policies");
  ASSIGN_OR_RETURN(NamespaceRecord rec, VisibleNamespace(s, req));
  auto changes = req.find("policy");
  if (changes == req.end()) return InvalidArgument("policy is required");
  const std::shared_ptr<NamespaceRuntime> rt = runtimes_->Find(rec.id);
  if (!rt) return NotFound("namespace '" + rec.spec.name + "' was just deleted");
  RETURN_IF_ERROR(rt->SetPolicy(*changes));
  return Json{{"namespace", rec.spec.name}, {"policy", rt->PolicyJson()}};
}

namespace {
wire::Json TierUsage(const storage::Tier& t) {
  const uint64_t slot = t.slot_capacity();
  return wire::Json{{"slots", t.num_slots()},
                    {"used_slots", t.used_slots()},
                    {"capacity_bytes", uint64_t{t.num_slots()} * slot},
                    {"used_bytes", uint64_t{t.used_slots()} * slot}};
}
}  // namespace

// {namespace?} -> {namespaces: [{name, blocks, sequences, tiers: {G, H, D}, ...}]}
Result<wire::Json> ControlService::Usage(SessionState& s, const Json& req) {
  if (!runtimes_) return NotSupported("this daemon has no storage");
  ASSIGN_OR_RETURN(const std::vector<NamespaceRecord> recs, VisibleNamespaces(s, req));
  Json list = Json::array();
  for (const auto& r : recs) {
    const std::shared_ptr<NamespaceRuntime> rt = runtimes_->Find(r.id);
    if (!rt) continue;
    Json tiers{{"G", TierUsage(rt->gpu())}, {"H", TierUsage(rt->host())}};
    if (rt->disk()) tiers["D"] = TierUsage(*rt->disk());
    list.push_back(Json{{"name", r.spec.name},
                        {"namespace_id", r.id},
                        {"blocks", rt->store().num_blocks()},
                        {"sequences", rt->store().num_sequences()},
                        {"metadata_bytes", rt->store().MetadataBytes()},
                        {"summary_bytes", rt->retrieval().SummaryBytes()},
                        {"gpu_emulated", rt->gpu_emulated()},
                        {"tiers", tiers}});
  }
  return Json{{"namespaces", list}};
}

// {} -> {clients: [{session, pid, uid, gid, namespaces, channels}]}. Admins only.
Result<wire::Json> ControlService::Clients(SessionState& s, const Json&) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not list clients");
  Json list = Json::array();
  MutexLock lock(&sessions_mu_);
  for (const auto& [id, info] : session_info_) {
    Json names = Json::array();
    for (NamespaceId ns : info.attached) {
      auto rec = registry_->FindById(ns);
      if (rec) names.push_back(rec->spec.name);
    }
    list.push_back(Json{{"session", id},
                        {"pid", info.peer.pid},
                        {"uid", info.peer.uid},
                        {"gid", info.peer.gid},
                        {"namespaces", names},
                        {"channels", info.channels}});
  }
  return Json{{"clients", list}};
}

}  // namespace tierkv::daemon
