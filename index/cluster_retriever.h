// ClusterRetriever ("cluster", LouisKV / ClusterKV): units are k-means clusters
// of the prompt's post-RoPE keys (FAISS, per KV head) and time-ordered segments
// of the generated tokens (RetrieverParams::prompt_tokens splits them; LouisKV
// clusters the prompt and segments the output). A unit's vector is its centroid
// (clusters) or mean key (segments); every token belongs to exactly one unit.
// Per query head, unit scores s_u = q . c_u (kernels ScoreBlocks), then per
// visible block b, from the units holding b's tokens (n_ub tokens of unit u):
//   map=mass  s_h[b] = (1/scale) log sum_u n_ub exp(scale * s_u): each token
//             scored as its unit's vector, so exp(scale * s_h[b]) is the block's
//             share of the approximated softmax mass (Default)
//   map=max   s_h[b] = max_u s_u over the units touching b
// then heads combine per RetrieverParams::head_combine.
//
// Keys:
//   size   mean tokens per prompt cluster: k = ceil(prompt / size) per KV head,
//          in [1, 2^20]. Default: 64
//   k      clusters per KV head; overrides size when > 0. Default: 0
//   seg    tokens per generated segment, in [1, 2^20]. Default: 32
//   iters  k-means iterations, in [1, 100]. Default: 10
//   train  FAISS trains on at most k * train prompt keys, in [4, 4096]. Default: 32
//   map    mass | max. Default: mass
//   out    1: each block also keeps its outlier key (BuildOutlierKeys) and a
//          block's per-head score is the larger of the map above and
//          q . outlier, so a needle token its centroid hides still ranks its
//          block (issue 12, needles workload). One key per (block, KV head). Default: 0
//
// Causality: clusters hold prompt tokens only; a step inside the prompt (before
// prompt_tokens) still scores them, future prompt tokens included. Segments are
// scored once they start at or before the step's position.
// Index: (k + segments) vectors per KV head, float32, plus per (KV head, block)
// the (unit, count) pairs of its tokens.
// Thread-safety: as Retriever.
#pragma once

#include <string>
#include <vector>

#include "index/retriever.h"

namespace tierkv::index {

struct ClusterOptions {
  uint32_t size = 64;
  uint32_t k = 0;
  uint32_t seg = 32;
  uint32_t iters = 10;
  uint32_t train = 32;
  bool mass = true;
  bool outliers = false;
};

class ClusterRetriever final : public Retriever {
 public:
  explicit ClusterRetriever(ClusterOptions options = {}) : opt_(options) {}
  std::string Name() const override;
  size_t IndexBytes() const override;
  uint32_t clusters_per_head() const { return k_; }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;
  // New tokens are generated ones: they extend the segments after the prompt
  // (the last partial segment's mean is recomputed); clusters are kept.
  Status ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) override;

 private:
  // Builds units_ rows of KV head g and its unit id per token (into unit_of).
  Status BuildHead(const LayerKeys& layer, uint32_t g, uint64_t prompt, std::vector<uint32_t>* unit_of);

  ClusterOptions opt_;
  uint32_t k_ = 0;             // prompt clusters per KV head
  uint64_t prompt_ = 0;        // prompt tokens
  uint64_t num_units_ = 0;     // k_ + segments
  std::vector<float> units_;   // [num_units_][num_kv_heads][head_dim]
  std::vector<float> outliers_, outlier_scores_;  // out=1: [blocks][num_kv_heads][head_dim]
  // Per KV head g, block b: entries [offsets_[g*B + b], offsets_[g*B + b + 1]) of
  // entry_unit_/entry_count_, in token order of first appearance.
  uint64_t num_blocks_ = 0;
  std::vector<uint64_t> offsets_;
  std::vector<uint32_t> entry_unit_;
  std::vector<uint16_t> entry_count_;
  std::vector<float> unit_scores_, head_scores_, scores_;
};

}  // namespace tierkv::index
