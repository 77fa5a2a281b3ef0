// Block summaries built at put time (DESIGN §4): per KV head, the element-wise
// min, max and mean of a block's keys over its valid tokens. min/max feed the
// Quest-style bound of ScoreBlocks(kMinMax), mean feeds kMean.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

struct SummaryArgs {
  DType key_dtype = DType::kBF16;      // element type of the keys
  DType summary_dtype = DType::kF32;   // element type of min_out/max_out/mean_out
  uint32_t num_kv_heads = 0;           // in [1, ModelLimits::kMaxHeads]
  uint32_t block_tokens = 0;           // in [1, ModelLimits::kMaxBlockTokens]
  uint32_t head_dim = 0;               // in [1, ModelLimits::kMaxHeadDim]
  uint32_t num_blocks = 0;             // blocks to summarize; 0 is a no-op
  // Block b's keys K[num_kv_heads][block_tokens][head_dim] start at
  // keys + b * block_stride_bytes (a block slot holds K then V, so the stride is
  // usually ModelSpec::BlockBytes()). 0 means K-only blocks packed back to back.
  const void* keys = nullptr;
  size_t block_stride_bytes = 0;
  // Optional [num_blocks]: valid tokens of each block (a prefix), in
  // [1, block_tokens]; nullptr means every block is full. kCpu refuses values out
  // of range; kCuda (the array is not host-readable there) clamps them into range.
  const uint32_t* token_counts = nullptr;
  // Outputs, each [num_blocks][num_kv_heads][head_dim] of summary_dtype (the
  // layout ScoreBlocks reads); any of them may be nullptr to skip it, not all.
  // Narrower summary types round min down and max up, so the Quest bound computed
  // from them is still an upper bound; mean rounds to nearest. Accumulation is f32,
  // summed over tokens in order, so kCpu and kCuda agree bit for bit.
  void* min_out = nullptr;
  void* max_out = nullptr;
  void* mean_out = nullptr;
};

// kInvalidArgument for shapes out of range, null keys, no output, or a stride
// smaller than one block's keys. kCuda is asynchronous on `stream`.
Status BuildSummaries(Backend backend, const SummaryArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
