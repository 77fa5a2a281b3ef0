// Block-summary retrievers (DESIGN §4 "summary / unit": one unit per block).
//
// MinMaxRetriever ("minmax", Quest): per (block, KV head) the element-wise min and
// max of the block's post-RoPE keys; per query head the upper bound
// sum_d max(q_d min_d, q_d max_d) >= q . k of every key of the block; heads
// combine per RetrieverParams::head_combine (kernels ScoreBlocks kMinMax). Index:
// 2 vectors per (block, KV head), IEEE f16, min rounded down and max up so that
// the bound still holds (kernels::FloatRowToF16).
//
// MeanRetriever ("mean", "mean:r=R,pick=kcenter|norm", InfLLM / ShadowKV
// landmarks): per (block, KV head) R representative vectors; a block's per-head
// score is the largest q . rep over its representatives, then heads combine.
//   r     representatives per block, in [1, 64]. Default: 1 (the mean key only).
//   pick  how representatives 2..R are chosen among the block's keys (the first
//         is always the mean key, so r=1 is the mean-key retriever):
//         kcenter: greedy farthest point: each next one is the key farthest (L2)
//                  from every representative chosen so far; covers the block's
//                  spread, so an outlier key such as a planted needle gets its own
//                  representative. (Default)
//         norm:    the keys of largest L2 norm (InfLLM-style "salient" keys).
//   Blocks with fewer distinct keys than R repeat their last representative.
// Index: R vectors per (block, KV head), IEEE f16 (rounded to nearest).
//
// f16, not f32: scoring reads every row of every visible block at each step, so it
// is bound by the bytes read; f16 halves them and the index's memory (Quest keeps
// its page min/max in the model's f16 too). Measured: BENCHMARKS.md, "CPU scoring".
//
// Both score every visible block (a partial last block is summarized over its
// valid tokens, future ones included; that block is always in the recent window).
// Both index block by block too (Retriever::StartBlocks/PutBlock: the daemon's
// put path), to the same summaries as Build; and both take a SummaryScorer
// (block_scoring.h) for their kernel path (minmax; mean with r=1).
// Thread-safety: as Retriever.
#pragma once

#include <string>
#include <vector>

#include "index/block_scoring.h"
#include "index/retriever.h"

namespace tierkv::index {

class MinMaxRetriever final : public Retriever {
 public:
  std::string Name() const override { return "minmax"; }
  size_t IndexBytes() const override { return (min_.size() + max_.size()) * sizeof(uint16_t); }
  bool block_appendable() const override { return true; }
  bool SetScorer(SummaryScorer* scorer) override {
    scorer_ = scorer;
    return true;
  }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;
  Status StartBlocksImpl(uint32_t num_kv_heads, uint32_t head_dim, const RetrieverParams& params) override;
  Status PutBlockImpl(uint32_t block, std::span<const std::byte> keys, DType dtype) override;

 private:
  uint64_t num_blocks_ = 0;
  std::vector<uint16_t> min_, max_;  // [num_blocks][num_kv_heads][head_dim] f16
  std::vector<float> scores_;
  SummaryScorer* scorer_ = nullptr;
};

class MeanRetriever final : public Retriever {
 public:
  enum class Pick : uint8_t { kKCenter, kNorm };
  // REQUIRES: 1 <= reps <= 64 (the factory checks).
  explicit MeanRetriever(uint32_t reps = 1, Pick pick = Pick::kKCenter) : reps_(reps), pick_(pick) {}
  std::string Name() const override;
  size_t IndexBytes() const override { return reps_vec_.size() * sizeof(uint16_t); }
  bool block_appendable() const override { return true; }
  bool SetScorer(SummaryScorer* scorer) override {
    scorer_ = scorer;
    return true;
  }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;
  Status StartBlocksImpl(uint32_t num_kv_heads, uint32_t head_dim, const RetrieverParams& params) override;
  Status PutBlockImpl(uint32_t block, std::span<const std::byte> keys, DType dtype) override;

 private:
  uint32_t reps_;
  Pick pick_;
  SummaryScorer* scorer_ = nullptr;
  uint64_t num_blocks_ = 0;
  std::vector<uint16_t> reps_vec_;  // [num_blocks * reps_][num_kv_heads][head_dim] f16
  std::vector<float> unit_scores_, head_scores_, scores_;
};

}  // namespace tierkv::index
