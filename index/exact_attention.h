// The exact attention oracle (DESIGN §4): softmax(q . k / sqrt(head_dim)) of one
// decode step over every visible token, and the attention mass of each block.
// The exact retriever ranks blocks by it; the evaluation (eval/eval_metrics.h)
// scores every other retriever's selection against it. GQA mapping as in
// layer_view.h. Float32 inputs; sums in double.
// Thread-safety: free functions on caller-owned data; no shared state.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "index/layer_view.h"

namespace tierkv::index {

// Exact attention of one decode step over the tokens [0, position].
struct ExactAttention {
  uint32_t num_q_heads = 0;
  uint32_t head_dim = 0;
  uint64_t num_visible = 0;    // position + 1
  std::vector<float> probs;    // [num_q_heads][num_visible]; each row sums to 1
  std::vector<float> output;   // [num_q_heads][head_dim]; empty when the layer has no values
};

// kInvalidArgument when the query does not fit the layer (CheckQueryFitsLayer).
Status ComputeExactAttention(const LayerKeys& layer, const QueryView& query, ExactAttention* out);

// Attention mass per block: [num_q_heads][num_blocks] with num_blocks =
// ceil(num_visible / block_tokens). REQUIRES: block_tokens > 0.
std::vector<double> BlockMassPerHead(const ExactAttention& exact, uint32_t block_tokens);
// The same summed over query heads: [num_blocks]. This is the oracle's block
// score (DESIGN §4: heads combine by summed per-head softmax scores).
std::vector<double> SummedBlockMass(const ExactAttention& exact, uint32_t block_tokens);

// Attention mass per block summed over the query heads of each KV group:
// [num_kv_heads][num_blocks]. The per-KV-head oracle's block score (kSum).
std::vector<double> GroupBlockMass(const ExactAttention& exact, uint32_t num_kv_heads, uint32_t block_tokens);

}  // namespace tierkv::index
