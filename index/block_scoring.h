// Pieces the summary-based retrievers share: block summaries built with the
// kernels (BuildSummaries), per-head scores of "units" (representative keys,
// sentences, clusters) through ScoreBlocks, the reduction of unit scores to block
// scores, the head combination, and the top-k selection through kernels TopK.
//
// Layouts: unit vectors [num_units][num_kv_heads][head_dim] (ScoreBlocks' summary
// layout); per-head scores [num_q_heads][num_units]; GQA as in layer_view.h.
// Scores are logits before the softmax scale, i.e. q . k.
// Thread-safety: free functions on caller-owned data.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "index/layer_view.h"
#include "index/retriever.h"
#include "kernels/score.h"

namespace tierkv::index {

// Somewhere else than the CPU to score a summary retriever's blocks (minmax, mean;
// Retriever::SetScorer): the daemon's GPU mirror of the same rows
// (daemon/gpu_selector.h). It must select what the CPU path selects
// (kernels::ScoreBlocks then kernels::TopK, on any backend, within their stated
// tolerance); any error sends the selection back to the CPU.
class SummaryScorer {
 public:
  virtual ~SummaryScorer() = default;
  // args: the CPU path's ScoreArgs (mode, combine, shape, host pointers to the
  // query and to the retriever's summaries [num_blocks][kv][d]; `scores` unset).
  // Fills *selected with num_blocks blocks, ascending, always_kept first (as
  // TopKSelect). kNotSupported (or any error): score on the CPU.
  virtual Status Select(const kernels::ScoreArgs& args, std::span<const uint32_t> always_kept, uint64_t num_blocks,
                        std::vector<uint32_t>* selected) = 0;
};

// Per-(block, KV head) summaries of a layer's post-RoPE keys, each
// [num_blocks][num_kv_heads][head_dim] float32 (empty when not requested).
// A partial last block is summarized over its valid tokens.
struct BlockSummaries {
  uint64_t num_blocks = 0;
  std::vector<float> min, max, mean;
  size_t Bytes() const { return (min.size() + max.size() + mean.size()) * sizeof(float); }
};

// REQUIRES: layer.Validate() OK, block_tokens >= 1. kInvalidArgument when the
// layer has more blocks than ScoreBlocks accepts.
Status BuildBlockSummaries(const LayerKeys& layer, uint32_t block_tokens, bool want_minmax, bool want_mean,
                           BlockSummaries* out);

// One full block's summaries, each [num_kv_heads][head_dim] f32, reduced straight
// from its keys as stored: [num_kv_heads][block_tokens][head_dim] of `dtype`
// (what BuildBlockSummaries gives for those keys converted to f32, bit for bit).
// Null outputs are skipped, not all. kInvalidArgument on a shape the kernel refuses.
Status SummarizeBlock(uint32_t num_kv_heads, uint32_t head_dim, uint32_t block_tokens, const void* keys, DType dtype,
                      float* min, float* max, float* mean);

// Per-head scores q_h . u for every unit, through kernels::ScoreBlocks (kMean).
// units: [num_units][num_kv_heads][head_dim] (f32 or f16 rows); out: resized to
// [num_q_heads][num_units]. kInvalidArgument on shapes ScoreBlocks refuses.
Status ScoreUnitsPerHead(const QueryView& query, uint32_t num_kv_heads, std::span<const float> units,
                         uint64_t num_units, std::vector<float>* out);
Status ScoreUnitsPerHead(const QueryView& query, uint32_t num_kv_heads, std::span<const uint16_t> units_f16,
                         uint64_t num_units, std::vector<float>* out);

// score[b] = combine over heads of head_scores[h][b] (RetrieverParams.head_combine):
// kSum: sum_h softmax_b(scale * head_scores[h])[b] (as the kernels' ScoreBlocks combines),
// kMax: max_h head_scores[h][b]. Entries of -inf count as "no evidence": they
// get no softmax mass (a head whose every entry is -inf adds nothing), and a
// block that is -inf for every head stays -inf under kMax.
// head_scores: [num_heads][num_blocks]; out: resized to [num_blocks].
void CombineHeads(std::span<const float> head_scores, uint32_t num_heads, uint64_t num_blocks, HeadCombine combine,
                  float scale, std::vector<float>* out);

// Fills *selected with always_kept plus the best-scoring other blocks, num_blocks
// in all, ascending, through kernels::TopK (ties: lower block index first; NaN
// ranks lowest). REQUIRES: as SelectTopBlocks (retriever.h).
Status TopKSelect(std::span<const float> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                  std::vector<uint32_t>* selected);

// 1 / sqrt(head_dim): the attention softmax scale.
float SoftmaxScale(uint32_t head_dim);

// Mean of rows [begin, end) of one KV head's keys into out [head_dim].
// REQUIRES: begin < end <= layer.num_tokens.
void MeanKey(const LayerKeys& layer, uint32_t kv_head, uint64_t begin, uint64_t end, float* out);

// Representative keys of tokens [begin, end) of one KV head into reps
// [num_reps][head_dim]: row 0 is `mean` (the span's mean key); rows 1.. are keys
// of the span picked by greedy farthest point from the rows chosen so far
// (kcenter: an outlier key gets its own row) or by largest L2 norm (norm).
// Spans with fewer distinct keys repeat their last row.
// REQUIRES: begin < end <= layer.num_tokens, num_reps >= 1.
enum class RepPick : uint8_t { kKCenter, kNorm };
void PickRepresentatives(const LayerKeys& layer, uint32_t kv_head, uint64_t begin, uint64_t end, const float* mean,
                         uint32_t num_reps, RepPick pick, float* reps);

// Outlier keys (the out=1 option of the sentence and cluster retrievers,
// issue 12): per (block, KV head) the block's key farthest (L2) from the block's
// mean key: the token a mean-based unit hides most (a needle in a block of
// ordinary tokens). out: [num_blocks][num_kv_heads][head_dim].
// REQUIRES: layer.Validate() OK, block_tokens >= 1.
void BuildOutlierKeys(const LayerKeys& layer, uint32_t block_tokens, std::vector<float>* out);

// head_scores[h][b] = max(head_scores[h][b], q_h . outlier[b][g(h)]) for every
// visible block b but the last (it may hold tokens after the position; the
// recent window keeps it anyway). head_scores: [num_q_heads][visible];
// scratch: reused buffer. Errors of ScoreUnitsPerHead.
Status MaxWithOutlierKeys(const QueryView& query, uint32_t num_kv_heads, std::span<const float> outliers,
                          uint64_t visible, std::vector<float>* scratch, std::vector<float>* head_scores);

}  // namespace tierkv::index
