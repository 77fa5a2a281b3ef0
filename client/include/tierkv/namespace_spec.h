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

// What one stored block, and one entry of a Retrieve's table, holds
// (docs/decisions/0023-per-head-namespaces.md). Fixed when the namespace is created.
//   kLayer   a block is every KV head's K and V of block_tokens tokens of one
//            layer; a Retrieve selects one block set for the whole layer.
//   kKvHead  a block is ONE KV head's K and V ([block_tokens][head_dim] each):
//            each KV head gets its own top-k blocks, at the same bytes as per
//            layer (a budget of k blocks is k per KV head); Put, Get and Append
//            still move whole layer blocks (the daemon splits and joins them).
//            Needs num_layers * num_kv_heads <= ModelLimits::kMaxLayers.
enum class Granularity : uint8_t { kLayer = 0, kKvHead = 1 };
TIERKV_EXPORT std::string_view GranularityName(Granularity g);  // "layer", "head"
TIERKV_EXPORT Result<Granularity> ParseGranularity(std::string_view name);

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
  Granularity granularity = Granularity::kLayer;

  // The shape of one stored block: `model` per layer; per KV head, a model of
  // num_layers * num_kv_heads "layers" (stored layer = layer * kv + head) with one
  // KV head and its GQA group of query heads.
  ModelSpec StoredModel() const;
  // Entries of a Retrieve's table per budgeted block: 1 per layer, num_kv_heads per head.
  uint32_t TableHeads() const { return granularity == Granularity::kKvHead ? model.num_kv_heads : 1; }

  static constexpr size_t kMaxNameLength = 64;
  static constexpr size_t kMaxAclEntries = 256;
  static constexpr size_t kMaxModelIdLength = 128;
  // Validates the name, the model, the budgets and the ACL size; the error names the field.
  Status Validate() const;
  bool operator==(const NamespaceSpec&) const = default;
};

TIERKV_EXPORT Status ValidateNamespaceName(const std::string& name);

}  // namespace tierkv
