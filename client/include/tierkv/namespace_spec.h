// NamespaceSpec: what a client asks for when it creates a namespace: one tenant +
// one model shape, with budgets per tier and an access list.
// Self-contained: needs only the C++ standard library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tierkv/export.h"
#include "tierkv/model_spec.h"
#include "tierkv/status.h"

namespace tierkv {

// Bytes a namespace may use in each tier. 0 means "no limit of its own": the
// namespace shares the tier's capacity with the others.
struct Budgets {
  uint64_t gpu_bytes = 0;
  uint64_t host_bytes = 0;
  uint64_t disk_bytes = 0;
  static constexpr uint64_t kMaxBytes = uint64_t{1} << 50;  // 1 PiB per tier
  bool operator==(const Budgets&) const = default;
};

// Who may attach. A peer (identified by SO_PEERCRED) may attach when its uid is in
// uids or its gid is in gids. An empty ACL admits only the uid that created it.
struct TIERKV_EXPORT Acl {
  std::vector<uint32_t> uids;
  std::vector<uint32_t> gids;
  bool Allows(uint32_t uid, uint32_t gid) const;
  bool operator==(const Acl&) const = default;
};

struct TIERKV_EXPORT NamespaceSpec {
  std::string name;  // [A-Za-z0-9_.-], 1 to 64 characters
  ModelSpec model;
  Budgets budgets;
  Acl acl;
  // Uids whose prefix blocks every member of the namespace sees (LookupPrefix,
  // LoadPrefix). Anyone else's prefix blocks are seen by their own uid only
  // (docs/decisions/0007-owners-and-prefix-scope.md). Empty by default.
  std::vector<uint32_t> prefix_publishers;
  // The model's identity as the engine names it (name and revision, e.g.
  // "meta-llama/Llama-3.1-8B@5206a32"): 1 to 128 of [A-Za-z0-9_.:/@+-], or empty.
  // Blocks shared through the remote tier R are keyed by it (with the name and the
  // shape), so two models of one shape never see each other's blocks; a namespace
  // without one never uses R. Default: empty (namespaces created before it existed).
  std::string model_id;

  static constexpr size_t kMaxNameLength = 64;
  static constexpr size_t kMaxAclEntries = 256;
  static constexpr size_t kMaxModelIdLength = 128;
  // Validates the name, the model, the budgets and the ACL size; the error names the field.
  Status Validate() const;
  bool operator==(const NamespaceSpec&) const = default;
};

TIERKV_EXPORT Status ValidateNamespaceName(const std::string& name);

}  // namespace tierkv
