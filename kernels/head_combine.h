// HeadCombine: how per-head block scores combine into one score per block (DESIGN
// §4), over every query head of a layer (per-layer selection) or over the query
// heads of one GQA group (per-KV-head selection). The one definition: the kernels'
// ScoreArgs (score.h), index/'s RetrieverParams (index::HeadCombine names this
// type) and the daemon's retrieval policy all use it.
#pragma once

#include <cstdint>

namespace tierkv::kernels {

enum class HeadCombine : uint8_t {
  // score[b] = sum_h softmax_b(scale * s_h)[b]: each head's attention mass over the
  // blocks, summed over heads (in [0, num_heads]).
  kSum = 0,
  // score[b] = max_h s_h[b].
  kMax = 1,
};

}  // namespace tierkv::kernels
