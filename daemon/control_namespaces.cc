// Namespace lifecycle and prefix cache ops of the control plane:
//   delete_namespace {namespace, force?}        admins only
//   prefixes         {namespace?}               the prefix cache of visible namespaces
//   evict_prefixes   {namespace, older_than_s?} admins only
// docs/decisions/0015-namespace-lifecycle.md.
#include <thread>

#include "common/log.h"
#include "daemon/control_service.h"
#include "daemon/namespace_files.h"
#include "daemon/runtimes.h"

namespace tierkv::daemon {
namespace {
using Json = wire::Json;

Result<bool> OptionalBool(const Json& req, const char* key) {
  auto it = req.find(key);
  if (it == req.end()) return false;
  if (!it->is_boolean()) return InvalidArgument(std::string(key) + " must be true or false");
  return it->get<bool>();
}

// Waits until `rt` is the only reference left (a control op or a metrics scrape
// that found the runtime before it was removed finishes quickly).
void WaitForLastReference(const std::shared_ptr<NamespaceRuntime>& rt) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (rt.use_count() > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (rt.use_count() > 1) LOG(WARNING) << "namespace runtime still referenced after 10 s; freed when released";
}
}  // namespace

std::vector<std::pair<uint64_t, int32_t>> ControlService::AttachedSessions(NamespaceId id, uint64_t except) const {
  std::vector<std::pair<uint64_t, int32_t>> out;
  MutexLock lock(&sessions_mu_);
  for (const auto& [session, info] : session_info_) {
    if (session == except) continue;
    if (std::find(info.attached.begin(), info.attached.end(), id) != info.attached.end()) {
      out.emplace_back(session, info.peer.pid);
    }
  }
  return out;
}

void ControlService::DetachAll(NamespaceId id) {
  MutexLock lock(&sessions_mu_);
  for (auto& [session, info] : session_info_) std::erase(info.attached, id);
}

// {namespace, force?} -> {namespace, namespace_id, detached_clients, records_deleted, disk_bytes_freed, ...}
Result<Json> ControlService::DeleteNamespace(SessionState& s, const Json& req) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not delete namespaces");
  ASSIGN_OR_RETURN(std::string name, wire::GetString(req, "namespace", "", NamespaceSpec::kMaxNameLength));
  ASSIGN_OR_RETURN(const bool force, OptionalBool(req, "force"));
  MutexLock one_at_a_time(&delete_mu_);
  auto rec = registry_->FindByName(name);
  if (!rec) return NotFound("no namespace named '" + name + "'");
  const auto attached = AttachedSessions(rec->id, s.id);
  if (!attached.empty() && !force) {
    std::string who;
    for (const auto& [session, pid] : attached) {
      who += (who.empty() ? "" : ", ") + std::string("session ") + std::to_string(session) + " (pid " +
             std::to_string(pid) + ")";
    }
    return Busy("namespace '" + name + "' has " + std::to_string(attached.size()) + " attached client(s): " + who +
                "; detach them first, or force (tierkvctl delete-namespace " + name +
                " --force): their channels then fail with 'namespace deleted'");
  }
  const auto t0 = std::chrono::steady_clock::now();
  // The commit point: once the record is gone the namespace does not exist (a
  // crash after it leaves files and records that the next start sweeps).
  RETURN_IF_ERROR(registry_->Remove(rec->id));
  metrics_->SetNamespaces(static_cast<double>(registry_->size()));
  DetachAll(rec->id);
  s.attached.erase(rec->id);
  uint64_t arena_bytes = 0;
  if (runtimes_) {
    auto rt = runtimes_->Remove(rec->id);
    if (rt.ok()) {
      (*rt)->gate()->Close();  // waits for ops in flight; later ops fail with kNamespaceDeleted
      arena_bytes = (*rt)->gpu().memory().bytes() + (*rt)->host().memory().bytes();
      WaitForLastReference(*rt);
      rt->reset();  // stops the migrator, unmaps the arenas, closes the D file
    }
  }
  Json reply{{"namespace", name}, {"namespace_id", rec->id}, {"detached_clients", attached.size()},
             {"arena_bytes_released", arena_bytes}};
  if (runtimes_) {
    ASSIGN_OR_RETURN(const uint64_t records, DeleteNamespaceRecords(runtimes_->manifest(), rec->id));
    ASSIGN_OR_RETURN(const uint64_t disk_bytes, RemoveNamespaceFiles(config_, rec->id));
    reply["records_deleted"] = records;
    reply["disk_bytes_freed"] = disk_bytes;
  }
  metrics_->ForgetNamespace(name);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  reply["took_ms"] = ms;
  LOG(INFO) << "namespace " << rec->id << " '" << name << "' deleted by session " << s.id << " (uid " << s.peer.uid
            << ")" << (attached.empty() ? "" : ", forced: " + std::to_string(attached.size()) + " client(s) detached")
            << ": " << reply.dump() << " in " << ms << " ms";
  return reply;
}

namespace {
Json PrefixJson(const storage::BlockStore::PrefixUsage& u) {
  return Json{{"hash", wire::ToHex(&u.hash, sizeof u.hash)},
              {"position", u.position},
              {"blocks", u.blocks},
              {"bytes", u.bytes},
              {"sequences", u.sequences},
              {"idle_s", u.idle_s},
              {"where", Json{{"G", u.in_gpu}, {"H", u.in_host}, {"D", u.on_disk}}}};
}
}  // namespace

// {namespace?, limit?} -> {namespaces: [{name, prefixes, blocks, bytes, unused_prefixes, unused_bytes,
//                                         oldest_idle_s, entries: [...]}]}
Result<Json> ControlService::Prefixes(SessionState& s, const Json& req) {
  if (!runtimes_) return NotSupported("this daemon has no storage");
  uint64_t limit = 100;
  if (req.contains("limit")) {
    ASSIGN_OR_RETURN(limit, wire::GetUint(req, "limit", "", 1u << 20));
  }
  ASSIGN_OR_RETURN(const std::vector<NamespaceRecord> recs, VisibleNamespaces(s, req));
  Json list = Json::array();
  for (const auto& r : recs) {
    const std::shared_ptr<NamespaceRuntime> rt = runtimes_->Find(r.id);
    if (!rt) continue;
    auto usage = rt->store().ListPrefixes();
    // Most idle first: what evict-prefixes --older-than would take first.
    std::sort(usage.begin(), usage.end(), [](const auto& a, const auto& b) { return a.idle_s > b.idle_s; });
    uint64_t blocks = 0, bytes = 0, unused = 0, unused_bytes = 0;
    Json entries = Json::array();
    for (const auto& u : usage) {
      blocks += u.blocks;
      bytes += u.bytes;
      if (u.sequences == 0) {
        ++unused;
        unused_bytes += u.bytes;
      }
      if (entries.size() < limit) entries.push_back(PrefixJson(u));
    }
    list.push_back(Json{{"name", r.spec.name},
                        {"prefixes", usage.size()},
                        {"blocks", blocks},
                        {"bytes", bytes},
                        {"unused_prefixes", unused},
                        {"unused_bytes", unused_bytes},
                        {"oldest_idle_s", usage.empty() ? 0.0 : usage.front().idle_s},
                        {"entries", entries}});
  }
  return Json{{"namespaces", list}};
}

// {namespace, older_than_s?} -> {namespace, evicted_prefixes, evicted_blocks, evicted_bytes, kept_in_use, kept_young}
Result<Json> ControlService::EvictPrefixes(SessionState& s, const Json& req) {
  if (!s.admin) return PermissionDenied("uid " + std::to_string(s.peer.uid) + " may not evict prefixes");
  ASSIGN_OR_RETURN(NamespaceRecord rec, VisibleNamespace(s, req));
  uint64_t older_than = 0;
  if (req.contains("older_than_s")) {
    ASSIGN_OR_RETURN(older_than, wire::GetUint(req, "older_than_s", "", uint64_t{10} * 365 * 86400));
  }
  const std::shared_ptr<NamespaceRuntime> rt = runtimes_->Find(rec.id);
  if (!rt) return NotFound("namespace '" + rec.spec.name + "' was just deleted");
  const auto e = rt->store().EvictPrefixes(std::chrono::seconds(older_than));
  LOG(INFO) << "namespace '" << rec.spec.name << "': evicted " << e.prefixes << " cached prefix(es) idle >= "
            << older_than << " s (" << e.blocks << " blocks, " << e.bytes << " bytes); kept " << e.kept_in_use
            << " in use, " << e.kept_young << " younger";
  return Json{{"namespace", rec.spec.name},   {"evicted_prefixes", e.prefixes}, {"evicted_blocks", e.blocks},
              {"evicted_bytes", e.bytes},     {"kept_in_use", e.kept_in_use},   {"kept_young", e.kept_young}};
}

}  // namespace tierkv::daemon
