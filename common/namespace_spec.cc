#include "common/namespace_spec.h"

#include <algorithm>
#include <string_view>

namespace tierkv {

bool Acl::Allows(uint32_t uid, uint32_t gid) const {
  return std::find(uids.begin(), uids.end(), uid) != uids.end() ||
         std::find(gids.begin(), gids.end(), gid) != gids.end();
}

Status ValidateNamespaceName(const std::string& name) {
  if (name.empty() || name.size() > NamespaceSpec::kMaxNameLength) {
    return InvalidArgument("namespace name must have 1 to " + std::to_string(NamespaceSpec::kMaxNameLength) +
                           " characters, got " + std::to_string(name.size()));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.';
    if (!ok) return InvalidArgument("namespace name may use only letters, digits, '_', '-' and '.'");
  }
  return OkStatus();
}

std::string_view GranularityName(Granularity g) { return g == Granularity::kKvHead ? "head" : "layer"; }

Result<Granularity> ParseGranularity(std::string_view name) {
  if (name == "layer") return Granularity::kLayer;
  if (name == "head") return Granularity::kKvHead;
  return InvalidArgument("granularity must be \"layer\" or \"head\", got \"" + std::string(name) + "\"");
}

ModelSpec NamespaceSpec::StoredModel() const {
  if (granularity != Granularity::kKvHead || model.num_kv_heads == 0) return model;
  ModelSpec m = model;
  m.num_layers = model.num_layers * model.num_kv_heads;
  m.num_q_heads = model.num_q_heads / model.num_kv_heads;
  m.num_kv_heads = 1;
  return m;
}

Status NamespaceSpec::Validate() const {
  RETURN_IF_ERROR(ValidateNamespaceName(name));
  RETURN_IF_ERROR(model.Validate());
  const std::pair<const char*, uint64_t> budgets_by_name[] = {
      {"gpu_bytes", budgets.gpu_bytes}, {"host_bytes", budgets.host_bytes}, {"disk_bytes", budgets.disk_bytes}};
  for (const auto& [field, v] : budgets_by_name) {
    if (v > Budgets::kMaxBytes) {
      return InvalidArgument("budgets." + std::string(field) + " must be at most " +
                             std::to_string(Budgets::kMaxBytes) + ", got " + std::to_string(v));
    }
  }
  if (acl.uids.size() > kMaxAclEntries || acl.gids.size() > kMaxAclEntries) {
    return InvalidArgument("acl may list at most " + std::to_string(kMaxAclEntries) + " uids and gids");
  }
  if (prefix_publishers.size() > kMaxAclEntries) {
    return InvalidArgument("prefix_publishers may list at most " + std::to_string(kMaxAclEntries) + " uids");
  }
  if (model_id.size() > kMaxModelIdLength) {
    return InvalidArgument("model_id must have at most " + std::to_string(kMaxModelIdLength) + " characters, got " +
                           std::to_string(model_id.size()));
  }
  for (char c : model_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("_.:/@+-").find(c) != std::string_view::npos;
    if (!ok) return InvalidArgument("model_id may use only letters, digits and '_.:/@+-'");
  }
  if (granularity != Granularity::kLayer && granularity != Granularity::kKvHead) {
    return InvalidArgument("granularity must be layer or head");
  }
  if (granularity == Granularity::kKvHead &&
      uint64_t{model.num_layers} * model.num_kv_heads > ModelLimits::kMaxLayers) {
    return InvalidArgument("granularity head stores num_layers * num_kv_heads = " +
                           std::to_string(uint64_t{model.num_layers} * model.num_kv_heads) +
                           " per-head layers; at most " + std::to_string(ModelLimits::kMaxLayers));
  }
  return OkStatus();
}

}  // namespace tierkv
