#include "daemon/runtimes.h"

namespace tierkv::daemon {

Status Runtimes::Open(const NamespaceRecord& record) {
  {
    std::lock_guard lock(mu_);
    if (runtimes_.count(record.id)) return OkStatus();
  }
  ASSIGN_OR_RETURN(auto rt, NamespaceRuntime::Open(record, config_, manifest_));
  rt->AttachRemote(remote_);
  std::lock_guard lock(mu_);
  runtimes_.emplace(record.id, std::move(rt));
  return OkStatus();
}

NamespaceRuntime* Runtimes::Find(NamespaceId id) const {
  std::lock_guard lock(mu_);
  auto it = runtimes_.find(id);
  return it == runtimes_.end() ? nullptr : it->second.get();
}

std::vector<NamespaceRuntime*> Runtimes::All() const {
  std::lock_guard lock(mu_);
  std::vector<NamespaceRuntime*> out;
  for (const auto& [id, rt] : runtimes_) out.push_back(rt.get());
  return out;
}

}  // namespace tierkv::daemon
