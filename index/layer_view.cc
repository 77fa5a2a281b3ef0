#include "index/layer_view.h"

#include <string>

namespace tierkv::index {

Status LayerKeys::Validate() const {
  if (num_kv_heads == 0 || head_dim == 0 || num_tokens == 0 || keys == nullptr) {
    return InvalidArgument("layer view needs num_kv_heads, head_dim, num_tokens > 0 and keys");
  }
  return OkStatus();
}

Status CheckQueryFitsLayer(const LayerKeys& layer, const QueryView& query) {
  RETURN_IF_ERROR(layer.Validate());
  if (query.q == nullptr) return InvalidArgument("query has no data");
  if (query.head_dim != layer.head_dim) {
    return InvalidArgument("query head_dim " + std::to_string(query.head_dim) + " != layer head_dim " +
                           std::to_string(layer.head_dim));
  }
  if (query.num_q_heads == 0 || query.num_q_heads % layer.num_kv_heads != 0) {
    return InvalidArgument("query has " + std::to_string(query.num_q_heads) +
                           " heads, not a positive multiple of the layer's " + std::to_string(layer.num_kv_heads) +
                           " KV heads");
  }
  if (query.position >= layer.num_tokens) {
    return InvalidArgument("query position " + std::to_string(query.position) + " is beyond the layer's " +
                           std::to_string(layer.num_tokens) + " tokens");
  }
  return OkStatus();
}

Status CheckBlockList(const char* what, std::span<const uint32_t> blocks, uint64_t num_blocks) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] >= num_blocks) {
      return InvalidArgument(std::string(what) + " block " + std::to_string(blocks[i]) + " is not below the " +
                             std::to_string(num_blocks) + " visible blocks");
    }
    if (i > 0 && blocks[i] <= blocks[i - 1]) {
      return InvalidArgument(std::string(what) + " blocks must be strictly increasing (entry " + std::to_string(i) +
                             ")");
    }
  }
  return OkStatus();
}

}  // namespace tierkv::index
