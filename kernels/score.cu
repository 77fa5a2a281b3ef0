// CUDA ScoreBlocks (score.h), three launches on one stream:
//   1. raw per-head scores s[h][b]: one warp per (block, KV head), lanes split
//      head_dim (summary modes) or the block's tokens (VQ mode); the warp scores
//      all q heads of the KV head's group while the summary row sits in L1.
//   2. (kSum only) per q head: max_b s[h][b] and Z_h = sum_b exp(scale*(s - max)).
//   3. per block: combine the heads (softmax sum or max).
// SelectBatch's scores (select_batch.h) run the same three kernels over a grid
// whose y dimension is the item.
#include <algorithm>
#include <cmath>

#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Raw scores for kMinMax (lo = min, hi = max) and kMean (lo = mean, hi unused),
// by the warps of the grid's x dimension (one sequence; SelectBatch: y = item).
template <typename S, bool kMinMax>
__device__ void SummaryScores(const float* __restrict__ query, const S* __restrict__ lo, const S* __restrict__ hi,
                              uint32_t num_blocks, uint32_t kv_heads, uint32_t group, uint32_t head_dim,
                              float* __restrict__ head_scores) {
  const unsigned lane = threadIdx.x & 31;
  const uint64_t total = uint64_t{num_blocks} * kv_heads;
  const uint64_t stride = uint64_t{gridDim.x} * kWarps;
  for (uint64_t w = uint64_t{blockIdx.x} * kWarps + threadIdx.x / 32; w < total; w += stride) {
    const uint64_t b = w / kv_heads;
    const uint32_t g = static_cast<uint32_t>(w - b * kv_heads);
    const S* lo_row = lo + w * head_dim;
    const S* hi_row = kMinMax ? hi + w * head_dim : nullptr;
    for (uint32_t h = g * group; h < (g + 1) * group; ++h) {
      const float* q = query + size_t{h} * head_dim;
      float acc = 0.f;
      for (uint32_t d = lane; d < head_dim; d += 32) {
        const float qd = q[d];
        if constexpr (kMinMax) {
          acc += fmaxf(qd * ToFloat(lo_row[d]), qd * ToFloat(hi_row[d]));
        } else {
          acc += qd * ToFloat(lo_row[d]);
        }
      }
      acc = WarpSum(acc);
      if (lane == 0) head_scores[size_t{h} * num_blocks + b] = acc;
    }
  }
}

template <typename S, bool kMinMax>
__global__ void __launch_bounds__(kThreads)
    SummaryScoreKernel(const float* __restrict__ query, const S* __restrict__ lo, const S* __restrict__ hi,
                       uint32_t num_blocks, uint32_t kv_heads, uint32_t group, uint32_t head_dim,
                       float* __restrict__ head_scores) {
  SummaryScores<S, kMinMax>(query, lo, hi, num_blocks, kv_heads, group, head_dim, head_scores);
}

template <typename S, bool kMinMax>
__global__ void __launch_bounds__(kThreads)
    BatchSummaryScoreKernel(const SelectBatchItem* __restrict__ items, uint32_t kv_heads, uint32_t group,
                            uint32_t head_dim) {
  const SelectBatchItem& it = items[blockIdx.y];
  SummaryScores<S, kMinMax>(it.query, static_cast<const S*>(kMinMax ? it.min_keys : it.mean_keys),
                            static_cast<const S*>(it.max_keys), it.num_blocks, kv_heads, group, head_dim,
                            it.head_scores);
}

// Raw scores for kVqLut: lanes walk the block's valid tokens; per lane a running
// max (kMax) or an online log-sum-exp (m, l) with l = sum exp(scale * (s - m)).
__global__ void __launch_bounds__(kThreads)
    VqScoreKernel(const uint8_t* __restrict__ codes, const float* __restrict__ lut, uint32_t num_blocks,
                  uint32_t kv_heads, uint32_t group, uint32_t block_tokens, uint32_t num_tokens, uint32_t m_sub,
                  bool lse, float scale, float* __restrict__ head_scores) {
  const unsigned lane = threadIdx.x & 31;
  const uint64_t total = uint64_t{num_blocks} * kv_heads;
  const uint64_t stride = uint64_t{gridDim.x} * kWarps;
  for (uint64_t w = uint64_t{blockIdx.x} * kWarps + threadIdx.x / 32; w < total; w += stride) {
    const uint64_t b = w / kv_heads;
    const uint32_t g = static_cast<uint32_t>(w - b * kv_heads);
    const uint32_t nt = static_cast<uint32_t>(min(uint64_t{block_tokens}, uint64_t{num_tokens} - b * block_tokens));
    const uint8_t* base = codes + w * block_tokens * m_sub;
    for (uint32_t h = g * group; h < (g + 1) * group; ++h) {
      const float* table = lut + size_t{h} * m_sub * 256;
      float m = -INFINITY, l = 0.f;
      for (uint32_t t = lane; t < nt; t += 32) {
        const uint8_t* c = base + size_t{t} * m_sub;
        float s = 0.f;
        for (uint32_t j = 0; j < m_sub; ++j) s += table[j * 256 + c[j]];
        if (!lse) {
          m = fmaxf(m, s);
        } else if (s > m) {
          l = l * expf(scale * (m - s)) + 1.f;
          m = s;
        } else {
          l += expf(scale * (s - m));
        }
      }
      const float mx = WarpMax(m);  // finite: every block has >= 1 valid token
      float result = mx;
      if (lse) {
        const float part = m == -INFINITY ? 0.f : l * expf(scale * (m - mx));
        result = mx + logf(WarpSum(part)) / scale;
      }
      if (lane == 0) head_scores[size_t{h} * num_blocks + b] = result;
    }
  }
}

__device__ float BlockReduce(float v, bool is_max, float* smem /* [kWarps] */) {
  v = is_max ? WarpMax(v) : WarpSum(v);
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  __syncthreads();  // smem may still be read by a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < kWarps ? smem[lane] : (is_max ? -INFINITY : 0.f);
  return is_max ? WarpMax(v) : WarpSum(v);
}

// One CTA per q head (blockIdx.x): stats[2h] = max_b s[h][b],
// stats[2h+1] = sum_b exp(scale*(s - max)).
__device__ void HeadStats(const float* __restrict__ head_scores, uint32_t num_blocks, float scale,
                          float* __restrict__ stats) {
  __shared__ float smem[kWarps];
  const float* s = head_scores + size_t{blockIdx.x} * num_blocks;
  float mx = -INFINITY;
  for (uint32_t b = threadIdx.x; b < num_blocks; b += kThreads) mx = fmaxf(mx, s[b]);
  mx = BlockReduce(mx, true, smem);
  float z = 0.f;
  for (uint32_t b = threadIdx.x; b < num_blocks; b += kThreads) z += expf(scale * (s[b] - mx));
  z = BlockReduce(z, false, smem);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = mx;
    stats[2 * blockIdx.x + 1] = z;
  }
}

__global__ void __launch_bounds__(kThreads)
    HeadStatsKernel(const float* __restrict__ head_scores, uint32_t num_blocks, float scale,
                    float* __restrict__ stats) {
  HeadStats(head_scores, num_blocks, scale, stats);
}

__global__ void __launch_bounds__(kThreads) BatchHeadStatsKernel(const SelectBatchItem* __restrict__ items, float scale) {
  const SelectBatchItem& it = items[blockIdx.y];
  HeadStats(it.head_scores, it.num_blocks, scale, it.stats);
}

__device__ void Combine(const float* __restrict__ head_scores, const float* __restrict__ stats, uint32_t num_blocks,
                        uint32_t num_q_heads, bool softmax, float scale, float* __restrict__ scores) {
  for (uint32_t b = blockIdx.x * kThreads + threadIdx.x; b < num_blocks; b += gridDim.x * kThreads) {
    float acc = softmax ? 0.f : -INFINITY;
    for (uint32_t h = 0; h < num_q_heads; ++h) {
      const float s = head_scores[size_t{h} * num_blocks + b];
      if (softmax) {
        acc += expf(scale * (s - stats[2 * h])) / stats[2 * h + 1];
      } else {
        acc = fmaxf(acc, s);
      }
    }
    scores[b] = acc;
  }
}

__global__ void __launch_bounds__(kThreads)
    CombineKernel(const float* __restrict__ head_scores, const float* __restrict__ stats, uint32_t num_blocks,
                  uint32_t num_q_heads, bool softmax, float scale, float* __restrict__ scores) {
  Combine(head_scores, stats, num_blocks, num_q_heads, softmax, scale, scores);
}

__global__ void __launch_bounds__(kThreads)
    BatchCombineKernel(const SelectBatchItem* __restrict__ items, uint32_t num_q_heads, bool softmax, float scale) {
  const SelectBatchItem& it = items[blockIdx.y];
  Combine(it.head_scores, it.stats, it.num_blocks, num_q_heads, softmax, scale, it.scores);
}

Status CheckPointers(const ScoreArgs& a) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.scores, "ScoreBlocks scores"));
  if (a.head_scores != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.head_scores, "ScoreBlocks head_scores"));
  switch (a.mode) {
    case ScoreMode::kMinMax:
      RETURN_IF_ERROR(CheckDeviceAccessible(a.query, "ScoreBlocks query"));
      RETURN_IF_ERROR(CheckDeviceAccessible(a.min_keys, "ScoreBlocks min_keys"));
      return CheckDeviceAccessible(a.max_keys, "ScoreBlocks max_keys");
    case ScoreMode::kMean:
      RETURN_IF_ERROR(CheckDeviceAccessible(a.query, "ScoreBlocks query"));
      return CheckDeviceAccessible(a.mean_keys, "ScoreBlocks mean_keys");
    case ScoreMode::kVqLut:
      RETURN_IF_ERROR(CheckDeviceAccessible(a.codes, "ScoreBlocks codes"));
      return CheckDeviceAccessible(a.lut, "ScoreBlocks lut");
  }
  return OkStatus();
}

}  // namespace

Status ScoreCuda(const ScoreArgs& a, GpuStream* stream) {
  RETURN_IF_ERROR(CheckPointers(a));
  const cudaStream_t st = NativeStream(stream);
  const float scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / sqrtf(static_cast<float>(a.head_dim));
  const size_t hs_bytes = AlignScratch(size_t{a.num_q_heads} * a.num_blocks * sizeof(float));
  DeviceScratch scratch;
  RETURN_IF_ERROR(scratch.Init(a.workspace, a.workspace_bytes, ScoreWorkspaceBytes(a), st));
  float* head_scores = a.head_scores != nullptr ? a.head_scores : static_cast<float*>(scratch.get());
  float* stats = reinterpret_cast<float*>(static_cast<char*>(scratch.get()) + hs_bytes);

  const uint32_t group = a.num_q_heads / a.num_kv_heads;
  const uint64_t warps = uint64_t{a.num_blocks} * a.num_kv_heads;
  const uint64_t cap = uint64_t{16} * static_cast<uint64_t>(CurrentDeviceSmCount());
  const unsigned grid1 = static_cast<unsigned>(std::min<uint64_t>((warps + kWarps - 1) / kWarps, cap));
  if (a.mode == ScoreMode::kVqLut) {
    VqScoreKernel<<<grid1, kThreads, 0, st>>>(a.codes, a.lut, a.num_blocks, a.num_kv_heads, group, a.block_tokens,
                                              a.num_tokens, a.num_subspaces, a.vq_reduce == VqReduce::kLogSumExp,
                                              scale, head_scores);
  } else {
    const bool minmax = a.mode == ScoreMode::kMinMax;
    DispatchDType(a.summary_dtype, [&](auto tag) {
      using S = decltype(tag);
      if (minmax) {
        SummaryScoreKernel<S, true><<<grid1, kThreads, 0, st>>>(
            a.query, static_cast<const S*>(a.min_keys), static_cast<const S*>(a.max_keys), a.num_blocks,
            a.num_kv_heads, group, a.head_dim, head_scores);
      } else {
        SummaryScoreKernel<S, false><<<grid1, kThreads, 0, st>>>(a.query, static_cast<const S*>(a.mean_keys),
                                                                 nullptr, a.num_blocks, a.num_kv_heads, group,
                                                                 a.head_dim, head_scores);
      }
    });
  }
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  const bool softmax = a.combine == HeadCombine::kSum;
  if (softmax) {
    HeadStatsKernel<<<a.num_q_heads, kThreads, 0, st>>>(head_scores, a.num_blocks, scale, stats);
    RETURN_IF_CUDA_ERROR(cudaGetLastError());
  }
  const unsigned grid3 = static_cast<unsigned>(std::min<uint64_t>((a.num_blocks + kThreads - 1) / kThreads, cap));
  CombineKernel<<<grid3, kThreads, 0, st>>>(head_scores, stats, a.num_blocks, a.num_q_heads, softmax, scale,
                                            a.scores);
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

Status ScoreBatchCuda(const SelectBatchArgs& a, uint32_t max_blocks, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.device_items, "SelectBatch device_items"));
  const cudaStream_t st = NativeStream(stream);
  const float scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / sqrtf(static_cast<float>(a.head_dim));
  const uint32_t group = a.num_q_heads / a.num_kv_heads;
  // x: enough warps for the largest item, split so that the whole grid stays
  // about what one large selection launches; items with fewer blocks exit early.
  const uint64_t cap = std::max<uint64_t>(1, uint64_t{64} * static_cast<uint64_t>(CurrentDeviceSmCount()) / a.num_items);
  const uint64_t warps = uint64_t{max_blocks} * a.num_kv_heads;
  const dim3 grid1(static_cast<unsigned>(std::min<uint64_t>((warps + kWarps - 1) / kWarps, cap)), a.num_items);
  const bool minmax = a.mode == ScoreMode::kMinMax;
  DispatchDType(a.summary_dtype, [&](auto tag) {
    using S = decltype(tag);
    if (minmax) {
      BatchSummaryScoreKernel<S, true><<<grid1, kThreads, 0, st>>>(a.device_items, a.num_kv_heads, group, a.head_dim);
    } else {
      BatchSummaryScoreKernel<S, false><<<grid1, kThreads, 0, st>>>(a.device_items, a.num_kv_heads, group, a.head_dim);
    }
  });
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  const bool softmax = a.combine == HeadCombine::kSum;
  if (softmax) {
    BatchHeadStatsKernel<<<dim3(a.num_q_heads, a.num_items), kThreads, 0, st>>>(a.device_items, scale);
    RETURN_IF_CUDA_ERROR(cudaGetLastError());
  }
  const dim3 grid3(static_cast<unsigned>(std::min<uint64_t>((max_blocks + kThreads - 1) / kThreads, cap)), a.num_items);
  BatchCombineKernel<<<grid3, kThreads, 0, st>>>(a.device_items, a.num_q_heads, softmax, scale);
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
