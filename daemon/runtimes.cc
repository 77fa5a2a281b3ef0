#include "daemon/runtimes.h"

namespace tierkv::daemon {

Status Runtimes::Open(const NamespaceRecord& record) {
  {
    MutexLock lock(&mu_);
    if (runtimes_.count(record.id)) return OkStatus();
  }
  ASSIGN_OR_RETURN(auto rt, NamespaceRuntime::Open(record, config_, manifest_));
  rt->AttachRemote(remote_);
  MutexLock lock(&mu_);
  runtimes_.emplace(record.id, std::shared_ptr<NamespaceRuntime>(std::move(rt)));
  return OkStatus();
}

std::shared_ptr<NamespaceRuntime> Runtimes::Find(NamespaceId id) const {
  MutexLock lock(&mu_);
  auto it = runtimes_.find(id);
  return it == runtimes_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<NamespaceRuntime>> Runtimes::Shared() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<NamespaceRuntime>> out;
  for (const auto& [id, rt] : runtimes_) out.push_back(rt);
  return out;
}

std::vector<NamespaceRuntime*> Runtimes::All() const {
  MutexLock lock(&mu_);
  std::vector<NamespaceRuntime*> out;
  for (const auto& [id, rt] : runtimes_) out.push_back(rt.get());
  return out;
}

Result<std::shared_ptr<NamespaceRuntime>> Runtimes::Remove(NamespaceId id) {
  MutexLock lock(&mu_);
  auto it = runtimes_.find(id);
  if (it == runtimes_.end()) return NotFound("no runtime for namespace " + std::to_string(id));
  std::shared_ptr<NamespaceRuntime> rt = std::move(it->second);
  runtimes_.erase(it);
  return rt;
}

}  // namespace tierkv::daemon
