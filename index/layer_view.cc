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

LayerKeys LayerKeysOf(const TraceInfo& info, const TraceLayer& layer) {
  LayerKeys v;
  v.num_kv_heads = info.num_kv_heads;
  v.head_dim = info.head_dim;
  v.num_tokens = info.num_tokens;
  v.keys = layer.keys.data();
  v.keys_pre = layer.keys_pre.data();
  v.values = layer.values.data();
  v.sentence_starts = info.sentence_starts;
  v.rope_style = info.rope_style;
  v.rope_theta = info.rope_theta;
  return v;
}

QueryView StepQuery(const TraceInfo& info, const TraceLayer& layer, uint64_t step) {
  QueryView q;
  q.num_q_heads = info.num_q_heads;
  q.head_dim = info.head_dim;
  const size_t off = step * info.num_q_heads * info.head_dim;
  q.q = layer.queries.data() + off;
  q.q_pre = layer.queries_pre.data() + off;
  q.position = info.step_positions[step];
  return q;
}

}  // namespace tierkv::index
