// Block scoring for one (sequence, layer, step) (DESIGN §4): how relevant each
// stored block is to the current query, from per-block summaries, without
// reading the blocks. The scores feed TopK.
//
// Per query head h (GQA: q head h reads KV head h / (num_q_heads / num_kv_heads)):
//   kMinMax  s_h[b] = sum_d max(q_hd * min_bd, q_hd * max_bd)   (Quest upper bound of q.k)
//   kMean    s_h[b] = sum_d q_hd * mean_bd                      (q . mean key)
//   kVqLut   s_h[b,t] = sum_m lut[h][m][code[b][g][t][m]] for each valid token t,
//            s_h[b] = max_t s_h[b,t]                                     (VqReduce::kMax)
//                  or (1/scale) * log sum_t exp(scale * s_h[b,t])       (kLogSumExp)
//            (with LSE, exp(scale * s_h[b]) is the block's share of the approximated
//            softmax mass, so kSum below sums attention mass per block)
// Heads combine into one score per block (one block holds all heads; head_combine.h):
//   kSum         score[b] = sum_h softmax_b(scale * s_h)[b]   (in [0, num_q_heads])
//   kMax         score[b] = max_h s_h[b]
// scale is softmax_scale, or 1/sqrt(head_dim) when 0.
//
// Inputs are assumed finite. Accumulation is f32; kCpu and kCuda sum in different
// orders, so they agree to ~1e-6 relative, not bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"
#include "kernels/head_combine.h"

namespace tierkv::kernels {

enum class ScoreMode : uint8_t { kMinMax = 0, kMean = 1, kVqLut = 2 };
enum class VqReduce : uint8_t { kMax = 0, kLogSumExp = 1 };

inline constexpr uint32_t kMaxScoreBlocks = 1u << 24;
inline constexpr uint32_t kMaxVqSubspaces = 1024;

struct ScoreArgs {
  ScoreMode mode = ScoreMode::kMinMax;
  HeadCombine combine = HeadCombine::kSum;  // Default: summed per-head softmax.
  uint32_t num_q_heads = 0;   // in [1, kMaxHeads], a multiple of num_kv_heads
  uint32_t num_kv_heads = 0;  // in [1, kMaxHeads]
  uint32_t head_dim = 0;      // in [1, kMaxHeadDim]
  uint32_t num_blocks = 0;    // in [1, kMaxScoreBlocks]
  float softmax_scale = 0.f;  // Default (0): 1/sqrt(head_dim).
  const float* query = nullptr;  // [num_q_heads][head_dim] (kMinMax, kMean)

  // kMinMax: min_keys and max_keys; kMean: mean_keys. Each
  // [num_blocks][num_kv_heads][head_dim] of summary_dtype (BuildSummaries' layout).
  DType summary_dtype = DType::kF32;
  const void* min_keys = nullptr;
  const void* max_keys = nullptr;
  const void* mean_keys = nullptr;

  // kVqLut: per-token codes of each KV head's keys against a codebook of 256
  // centroids per subspace, and the lookup tables computed from the query:
  // lut[h][m][c] = q_h's subspace m . centroid c of KV head (h / group).
  uint32_t block_tokens = 0;   // in [1, kMaxBlockTokens]
  uint32_t num_tokens = 0;     // valid tokens; only the last block may be partial:
                               // in ((num_blocks - 1) * block_tokens, num_blocks * block_tokens]
  uint32_t num_subspaces = 0;  // M, in [1, kMaxVqSubspaces]
  const uint8_t* codes = nullptr;  // [num_blocks][num_kv_heads][block_tokens][M]
  const float* lut = nullptr;      // [num_q_heads][M][256]
  VqReduce vq_reduce = VqReduce::kMax;

  float* scores = nullptr;       // out [num_blocks]
  float* head_scores = nullptr;  // optional out [num_q_heads][num_blocks]: s_h[b] before combining

  // kCuda scratch of at least ScoreWorkspaceBytes(args) bytes, device memory; when
  // null or smaller, the call allocates stream-ordered memory (cudaMallocAsync).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Scratch bytes a kCuda ScoreBlocks call with these shapes needs.
size_t ScoreWorkspaceBytes(const ScoreArgs& args);

// kInvalidArgument for shapes out of range, a missing input of the chosen mode,
// null query/scores, or num_tokens inconsistent with num_blocks (kVqLut).
// kCuda is asynchronous on `stream`.
Status ScoreBlocks(Backend backend, const ScoreArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
