// SentenceRetriever ("sentence", SentenceKV): units are sentence spans; a unit's
// vector is the mean of its post-RoPE keys per KV head; a block's per-head score
// is the largest q . unit over the units that touch the block (a sentence that
// straddles a block boundary counts for both blocks); heads then combine per
// RetrieverParams::head_combine.
//
// Boundaries: LayerKeys::sentence_starts (the trace's, given by the client). A
// layer without boundaries (the tiny model ships no tokenizer) is cut into spans
// of `len` tokens and Name() says "sentence:len=N(fixed)".
//   len  span length without boundaries, in [1, 65536]. Default: 24 (the
//        synthetic generator's mean sentence length).
//
// Causality: a unit is scored at a step when it starts at or before the step's
// position; the unit holding the position averages a few later tokens too (the
// same look-ahead a partial block summary has); its blocks are in the recent
// window whenever a sentence is shorter than the window.
//   bounds  given: the layer's boundaries when it has some, else fixed (Default);
//           fixed: always spans of `len` tokens (a control for the boundaries' worth).
//   out     1: each block also keeps its outlier key (the key farthest from the
//           block mean, BuildOutlierKeys), and a block's per-head score is the
//           larger of its sentence score and q . outlier: a needle token no
//           longer drowns in its sentence mean (issue 12, needles workload).
//           Costs one key per (block, KV head). Default: 0
// Index: one vector per (unit, KV head), float32, plus the unit range of each block.
// Thread-safety: as Retriever.
#pragma once

#include <string>
#include <vector>

#include "index/retriever.h"

namespace tierkv::index {

class SentenceRetriever final : public Retriever {
 public:
  // REQUIRES: fallback_len >= 1.
  explicit SentenceRetriever(uint32_t fallback_len = 24, bool force_fixed = false, bool outliers = false)
      : fallback_len_(fallback_len), force_fixed_(force_fixed), outliers_on_(outliers) {}
  std::string Name() const override;
  size_t IndexBytes() const override;
  uint64_t num_units() const { return unit_starts_.size(); }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;

 private:
  uint32_t fallback_len_;
  bool force_fixed_;
  bool used_fallback_ = false;
  std::vector<uint64_t> unit_starts_;  // strictly increasing, [0] == 0
  std::vector<float> units_;           // [units][num_kv_heads][head_dim]
  bool outliers_on_ = false;
  std::vector<float> outliers_;          // out=1: [blocks][num_kv_heads][head_dim] (BuildOutlierKeys)
  std::vector<float> outlier_scores_;
  std::vector<uint32_t> block_first_unit_, block_last_unit_;  // [blocks]: units touching the block
  std::vector<float> unit_scores_, head_scores_, scores_;
};

}  // namespace tierkv::index
