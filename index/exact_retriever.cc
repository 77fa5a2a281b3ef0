#include "index/exact_retriever.h"

#include <algorithm>

namespace tierkv::index {

size_t ExactRetriever::IndexBytes() const { return index_bytes_; }

Status ExactRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  index_bytes_ = size_t{layer.num_kv_heads} * layer.num_tokens * layer.head_dim * sizeof(float);
  scored_query_.clear();
  return OkStatus();
}

Status ExactRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                  std::vector<uint32_t>* selected) {
  const size_t n = size_t{query.num_q_heads} * query.head_dim;
  if (query.position == scored_position_ && scored_query_.size() == n &&
      std::equal(scored_query_.begin(), scored_query_.end(), query.q)) {
    SelectTopBlocks(std::span<const double>(scores_), num_blocks, always_kept, selected);
    return OkStatus();
  }
  scored_query_.clear();
  LayerKeys keys_only = layer();
  keys_only.values = nullptr;  // scores need the probabilities only
  RETURN_IF_ERROR(ComputeExactAttention(keys_only, query, &exact_));
  const uint32_t bt = params().block_tokens;
  if (params().head_combine == HeadCombine::kSum) {
    scores_ = SummedBlockMass(exact_, bt);
  } else {
    const std::vector<double> per_head = BlockMassPerHead(exact_, bt);
    const size_t blocks = per_head.size() / query.num_q_heads;
    scores_.assign(blocks, 0.0);
    for (size_t i = 0; i < per_head.size(); ++i) scores_[i % blocks] = std::max(scores_[i % blocks], per_head[i]);
  }
  scored_query_.assign(query.q, query.q + n);
  scored_position_ = query.position;
  SelectTopBlocks(std::span<const double>(scores_), num_blocks, always_kept, selected);
  return OkStatus();
}

}  // namespace tierkv::index
