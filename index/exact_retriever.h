// ExactRetriever: the oracle (DESIGN §4). Scores every visible block by its true
// attention mass, computed from every key: per query head the softmax over tokens
// [0, position], summed per block, then combined over heads (sum by default, or
// max). Its selection is the best any retriever can do under the same head
// combination; its cost is a full scan of the keys, which is why the others exist.
// Repeated Select calls for the same query (several budgets of one step) reuse
// the block scores of the previous call.
#pragma once

#include "index/exact_attention.h"
#include "index/retriever.h"

namespace tierkv::index {

class ExactRetriever final : public Retriever {
 public:
  std::string Name() const override { return "exact"; }
  // The keys it scans at every step: num_kv_heads * num_tokens * head_dim floats.
  size_t IndexBytes() const override;

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;

 private:
  size_t index_bytes_ = 0;
  ExactAttention exact_;        // scratch, reused across steps
  std::vector<double> scores_;  // [visible blocks] for (scored_query_, scored_position_)
  std::vector<float> scored_query_;
  uint64_t scored_position_ = 0;
};

}  // namespace tierkv::index
