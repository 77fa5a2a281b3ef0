// NamespaceRegistry: the namespaces a daemon serves, persisted in the manifest's
// "namespaces" column family (key: big-endian id; value: JSON record).
//
// Thread-safe. Ids are assigned by the daemon, never reused, stable across restarts.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/mutex.h"
#include "common/namespace_spec.h"
#include "storage/manifest.h"

namespace tierkv::daemon {

struct NamespaceRecord {
  NamespaceId id = 0;
  NamespaceSpec spec;
  uint32_t created_by_uid = 0;
};

class NamespaceRegistry {
 public:
  // Loads every namespace stored in the manifest. The manifest must outlive this.
  static Result<std::unique_ptr<NamespaceRegistry>> Load(storage::Manifest* manifest, size_t max_namespaces);

  struct CreateResult {
    NamespaceRecord record;
    bool created = false;  // false: it existed with the same model shape
  };
  // Creates `spec` (validated by the caller). An empty ACL becomes {creator_uid}.
  // Same name and same model: returns the existing record, created=false.
  // Same name, another model: kAlreadyExists naming both shapes; nothing changes.
  // kResourceExhausted past max_namespaces. `open` (may be null) runs before the
  // record is persisted (the namespace's runtime): when it fails nothing is stored
  // and its error is returned. It runs under the registry's lock.
  Result<CreateResult> Create(NamespaceSpec spec, uint32_t creator_uid,
                              const std::function<Status(const NamespaceRecord&)>& open = nullptr);
  // Deletes a namespace's record (delete-namespace; its id is never reused).
  Status Remove(NamespaceId id);
  std::optional<NamespaceRecord> FindByName(const std::string& name) const;
  std::optional<NamespaceRecord> FindById(NamespaceId id) const;
  std::vector<NamespaceRecord> List() const;
  size_t size() const;

 private:
  NamespaceRegistry(storage::Manifest* manifest, size_t max) : manifest_(manifest), max_(max) {}

  storage::Manifest* const manifest_;
  const size_t max_;
  mutable Mutex mu_;
  std::map<NamespaceId, NamespaceRecord> by_id_ GUARDED_BY(mu_);
  std::map<std::string, NamespaceId> by_name_ GUARDED_BY(mu_);
  NamespaceId next_id_ GUARDED_BY(mu_) = 1;
};

}  // namespace tierkv::daemon
