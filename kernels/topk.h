// Top-k selection over block scores (DESIGN §4 "selection"): the always-kept
// blocks (sinks, recent window) plus the highest-scoring others, k in all.
//
// Order used to select: always-kept blocks first, then higher score, then lower
// block index (ties). Equivalently every block gets the distinct 64-bit key
//   [always:1][score, order-preserving:32][2^31 - 1 - index:31]
// and the k largest keys are selected, so the result is unique and kCpu and kCuda
// agree exactly. NaN scores rank as -inf; -0 and +0 are equal. When more than k
// blocks are always-kept, the k best-scoring of them are returned.
// Output: the selected block indices in ascending order (the order a block table
// is built in), and optionally their scores.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

inline constexpr uint32_t kMaxTopKBlocks = 1u << 30;

struct TopKArgs {
  const float* scores = nullptr;    // [num_blocks]
  uint32_t num_blocks = 0;          // in [1, kMaxTopKBlocks]
  uint32_t k = 0;                   // in [0, num_blocks]; 0 selects nothing
  const uint8_t* always = nullptr;  // optional [num_blocks]: nonzero = always selected (counted in k)
  uint32_t* out_indices = nullptr;  // out [k], ascending
  float* out_scores = nullptr;      // optional out [k]: scores[out_indices[i]]
};

// kInvalidArgument for null scores/out_indices, num_blocks out of range or
// k > num_blocks. kCuda is asynchronous on `stream` and uses one thread block
// (radix select over the keys, 8 bits per pass, stopping as soon as the k-th key's
// bucket is exhausted, then an ordered compaction).
Status TopK(Backend backend, const TopKArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
