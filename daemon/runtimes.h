// Runtimes: the NamespaceRuntime of every namespace the daemon serves, by id.
// Thread-safe. A runtime is shared: Find hands out a reference that keeps it alive
// while a caller uses it, so that delete-namespace (Remove) never frees one under
// a control op or a metrics scrape; its memory goes when the last reference does.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "common/mutex.h"
#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {

class Runtimes {
 public:
  // `remote`: R (null when off), attached to every runtime opened; outlives this.
  Runtimes(const Config& config, storage::Manifest* manifest, storage::remote::RemoteTier* remote = nullptr)
      : config_(config), manifest_(manifest), remote_(remote) {}

  // Opens the runtime of `record` (recovering its blocks); OK if it is open already.
  Status Open(const NamespaceRecord& record);
  std::shared_ptr<NamespaceRuntime> Find(NamespaceId id) const;
  // Every runtime, shared (metrics scrapes, listings).
  std::vector<std::shared_ptr<NamespaceRuntime>> Shared() const;
  // Every runtime, unowned: valid until the next Remove (the shutdown drain, once
  // no control op runs).
  std::vector<NamespaceRuntime*> All() const;
  storage::remote::RemoteTier* remote() const { return remote_; }
  // Takes the runtime out (delete-namespace): later Finds miss it. Returns it (the
  // caller waits for other references to go, then destroys it); kNotFound if absent.
  Result<std::shared_ptr<NamespaceRuntime>> Remove(NamespaceId id);
  const Config& config() const { return config_; }
  storage::Manifest* manifest() const { return manifest_; }

 private:
  const Config config_;
  storage::Manifest* const manifest_;
  storage::remote::RemoteTier* const remote_;
  mutable Mutex mu_;
  std::map<NamespaceId, std::shared_ptr<NamespaceRuntime>> runtimes_ GUARDED_BY(mu_);
};

}  // namespace tierkv::daemon
