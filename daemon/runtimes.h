// Runtimes: the NamespaceRuntime of every namespace the daemon serves, by id.
// Thread-safe. Runtimes are never removed while the daemon runs, so the pointers
// handed out stay valid until the Runtimes is destroyed.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {

class Runtimes {
 public:
  // `remote`: R (null when off), attached to every runtime opened; outlives this.
  Runtimes(const Config& config, storage::Manifest* manifest, storage::remote::RemoteTier* remote = nullptr)
      : config_(config), manifest_(manifest), remote_(remote) {}

  // Opens the runtime of `record` (recovering its blocks); OK if it is open already.
  Status Open(const NamespaceRecord& record);
  NamespaceRuntime* Find(NamespaceId id) const;
  std::vector<NamespaceRuntime*> All() const;
  storage::remote::RemoteTier* remote() const { return remote_; }

 private:
  const Config config_;
  storage::Manifest* const manifest_;
  storage::remote::RemoteTier* const remote_;
  mutable std::mutex mu_;
  std::map<NamespaceId, std::unique_ptr<NamespaceRuntime>> runtimes_;  // GUARDED_BY(mu_)
};

}  // namespace tierkv::daemon
