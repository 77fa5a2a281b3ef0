// CUDA DecodeAttention (attention.h), split over the table ("flash-decoding"):
//   1. grid (splits, kv_heads): each thread block owns a contiguous range of table
//      entries and one KV head, and keeps for each q head of the group a running
//      max m, sum l and accumulator acc[head_dim] in shared memory. Tokens are
//      staged kChunk at a time: warps compute scaled scores (lanes split
//      head_dim), one warp per q head updates m/l and turns scores into weights,
//      then threads own (q head, d) pairs and accumulate weights * V (coalesced
//      over d). Partial (m, l, acc) go to the workspace.
//   2. one thread block per q head merges the splits.
#include <algorithm>
#include <cmath>

#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr uint32_t kChunk = 64;

struct AttnParams {
  const float* query;
  const void* const* block_ptrs;
  const char* slot_base;
  size_t slot_bytes;
  uint32_t num_slots;
  const uint32_t* slot_indices;
  const uint32_t* token_counts;
  uint32_t num_blocks, num_q_heads, kv_heads, group, head_dim, block_tokens, blocks_per_split;
  float scale;
  float* part_m;    // [splits][num_q_heads]
  float* part_l;    // [splits][num_q_heads]
  float* part_acc;  // [splits][num_q_heads][head_dim]
};

// Shared memory floats of one thread block: q, acc ([G][D] each), scores
// [G][kChunk], and m, l, corr ([G] each).
size_t PartialSmemBytes(uint32_t group, uint32_t head_dim) {
  return sizeof(float) * (size_t{2} * group * head_dim + size_t{group} * kChunk + size_t{3} * group);
}

template <typename T>
__device__ __forceinline__ const T* EntryBase(const AttnParams& p, uint64_t i) {
  if (p.block_ptrs != nullptr) return static_cast<const T*>(p.block_ptrs[i]);
  const uint32_t slot = p.slot_indices[i];
  if (slot >= p.num_slots) return nullptr;
  return reinterpret_cast<const T*>(p.slot_base + size_t{slot} * p.slot_bytes);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) AttnPartialKernel(AttnParams p) {
  extern __shared__ float smem[];
  const uint32_t G = p.group, D = p.head_dim;
  float* q_s = smem;
  float* acc = q_s + size_t{G} * D;
  float* S = acc + size_t{G} * D;
  float* m_s = S + size_t{G} * kChunk;
  float* l_s = m_s + G;
  float* corr = l_s + G;
  const uint32_t g = blockIdx.y, split = blockIdx.x;
  const unsigned tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  const uint32_t h0 = g * G;
  for (uint32_t i = tid; i < G * D; i += kThreads) {
    q_s[i] = p.query[size_t{h0} * D + i];
    acc[i] = 0.f;
  }
  for (uint32_t j = tid; j < G; j += kThreads) {
    m_s[j] = -INFINITY;
    l_s[j] = 0.f;
  }
  __syncthreads();
  const uint64_t b_begin = uint64_t{split} * p.blocks_per_split;
  const uint64_t b_end = min(b_begin + p.blocks_per_split, uint64_t{p.num_blocks});
  const size_t head_elems = size_t{p.block_tokens} * D;
  for (uint64_t b = b_begin; b < b_end; ++b) {
    // Uniform across the thread block: every thread reads the same entry.
    const T* base = EntryBase<T>(p, b);
    uint32_t count = p.token_counts != nullptr ? min(p.token_counts[b], p.block_tokens) : p.block_tokens;
    if (base == nullptr) count = 0;
    const T* K = base != nullptr ? base + size_t{g} * head_elems : nullptr;
    const T* V = base != nullptr ? base + (size_t{p.kv_heads} + g) * head_elems : nullptr;
    for (uint32_t t0 = 0; t0 < count; t0 += kChunk) {
      const uint32_t nt = min(kChunk, count - t0);
      // Scores: warp per token, lanes over d.
      for (uint32_t idx = warp; idx < nt; idx += kWarps) {
        const T* k = K + size_t{t0 + idx} * D;
        for (uint32_t j = 0; j < G; ++j) {
          const float* q = q_s + size_t{j} * D;
          float part = 0.f;
          for (uint32_t d = lane; d < D; d += 32) part += q[d] * ToFloat(k[d]);
          part = WarpSum(part);
          if (lane == 0) S[j * kChunk + idx] = p.scale * part;
        }
      }
      __syncthreads();
      // Online softmax update: warp per q head.
      for (uint32_t j = warp; j < G; j += kWarps) {
        float* sj = S + j * kChunk;
        float cm = -INFINITY;
        for (uint32_t idx = lane; idx < nt; idx += 32) cm = fmaxf(cm, sj[idx]);
        cm = WarpMax(cm);
        const float m_old = m_s[j];
        const float m_new = fmaxf(m_old, cm);
        float sum = 0.f;
        for (uint32_t idx = lane; idx < nt; idx += 32) {
          const float e = expf(sj[idx] - m_new);
          sj[idx] = e;
          sum += e;
        }
        sum = WarpSum(sum);
        if (lane == 0) {
          const float c = expf(m_old - m_new);  // 0 while m_old is -inf
          corr[j] = c;
          l_s[j] = l_s[j] * c + sum;
          m_s[j] = m_new;
        }
      }
      __syncthreads();
      // Accumulate: thread per (q head, d).
      for (uint32_t i = tid; i < G * D; i += kThreads) {
        const uint32_t j = i / D, d = i - j * D;
        const float* w = S + j * kChunk;
        float a = acc[i] * corr[j];
        for (uint32_t idx = 0; idx < nt; ++idx) a += w[idx] * ToFloat(V[size_t{t0 + idx} * D + d]);
        acc[i] = a;
      }
      __syncthreads();
    }
  }
  const size_t row = size_t{split} * p.num_q_heads + h0;
  for (uint32_t i = tid; i < G * D; i += kThreads) p.part_acc[row * D + i] = acc[i];
  for (uint32_t j = tid; j < G; j += kThreads) {
    p.part_m[row + j] = m_s[j];
    p.part_l[row + j] = l_s[j];
  }
}

__global__ void __launch_bounds__(kThreads)
    AttnCombineKernel(const float* __restrict__ part_m, const float* __restrict__ part_l,
                      const float* __restrict__ part_acc, uint32_t splits, uint32_t num_q_heads, uint32_t head_dim,
                      float* __restrict__ out, float* __restrict__ lse) {
  __shared__ float s_max, s_sum;
  const uint32_t h = blockIdx.x;
  if (threadIdx.x == 0) {
    float mx = -INFINITY;
    for (uint32_t s = 0; s < splits; ++s) mx = fmaxf(mx, part_m[size_t{s} * num_q_heads + h]);
    float sum = 0.f;
    if (mx != -INFINITY) {
      for (uint32_t s = 0; s < splits; ++s) {
        const float m = part_m[size_t{s} * num_q_heads + h];
        if (m != -INFINITY) sum += part_l[size_t{s} * num_q_heads + h] * expf(m - mx);
      }
    }
    s_max = mx;
    s_sum = sum;
  }
  __syncthreads();
  const float mx = s_max, sum = s_sum;
  for (uint32_t d = threadIdx.x; d < head_dim; d += kThreads) {
    float a = 0.f;
    if (sum > 0.f) {
      for (uint32_t s = 0; s < splits; ++s) {
        const size_t r = size_t{s} * num_q_heads + h;
        const float m = part_m[r];
        if (m != -INFINITY) a += part_acc[r * head_dim + d] * expf(m - mx);
      }
      a /= sum;
    }
    out[size_t{h} * head_dim + d] = a;
  }
  if (threadIdx.x == 0 && lse != nullptr) lse[h] = sum > 0.f ? mx + logf(sum) : -INFINITY;
}

Status CheckPointers(const AttentionArgs& a) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.query, "DecodeAttention query"));
  RETURN_IF_ERROR(CheckDeviceAccessible(a.out, "DecodeAttention out"));
  if (a.lse != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.lse, "DecodeAttention lse"));
  if (a.token_counts != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.token_counts, "DecodeAttention token_counts"));
  if (a.block_ptrs != nullptr) return CheckDeviceAccessible(a.block_ptrs, "DecodeAttention block_ptrs");
  RETURN_IF_ERROR(CheckDeviceAccessible(a.slot_base, "DecodeAttention slot_base"));
  return CheckDeviceAccessible(a.slot_indices, "DecodeAttention slot_indices");
}

template <typename T>
Status LaunchPartial(const AttnParams& p, dim3 grid, size_t smem, cudaStream_t st) {
  if (smem > 48 * 1024) {
    int dev = 0, optin = 0;
    RETURN_IF_CUDA_ERROR(cudaGetDevice(&dev));
    RETURN_IF_CUDA_ERROR(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (smem > static_cast<size_t>(optin))
      return NotSupported("DecodeAttention: (q_heads / kv_heads) * head_dim too large for shared memory (" +
                          std::to_string(smem) + " > " + std::to_string(optin) + " bytes)");
    RETURN_IF_CUDA_ERROR(
        cudaFuncSetAttribute(AttnPartialKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  AttnPartialKernel<T><<<grid, kThreads, smem, st>>>(p);
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace

Status AttentionCuda(const AttentionArgs& a, GpuStream* stream) {
  RETURN_IF_ERROR(CheckPointers(a));
  const cudaStream_t st = NativeStream(stream);
  const AttentionSplit split = SplitAttention(a.num_blocks, a.num_kv_heads);
  DeviceScratch scratch;
  RETURN_IF_ERROR(scratch.Init(a.workspace, a.workspace_bytes, AttentionWorkspaceBytes(a), st));
  const size_t rows = size_t{split.splits} * a.num_q_heads;
  AttnParams p{};
  p.query = a.query;
  p.block_ptrs = a.block_ptrs;
  p.slot_base = static_cast<const char*>(a.slot_base);
  p.slot_bytes = a.slot_bytes;
  p.num_slots = a.num_slots;
  p.slot_indices = a.slot_indices;
  p.token_counts = a.token_counts;
  p.num_blocks = a.num_blocks;
  p.num_q_heads = a.num_q_heads;
  p.kv_heads = a.num_kv_heads;
  p.group = a.num_q_heads / a.num_kv_heads;
  p.head_dim = a.head_dim;
  p.block_tokens = a.block_tokens;
  p.blocks_per_split = split.blocks_per_split;
  p.scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / sqrtf(static_cast<float>(a.head_dim));
  p.part_m = static_cast<float*>(scratch.get());
  p.part_l = p.part_m + rows;
  p.part_acc = p.part_l + rows;
  const dim3 grid(split.splits, a.num_kv_heads);
  const size_t smem = PartialSmemBytes(p.group, p.head_dim);
  RETURN_IF_ERROR(
      DispatchDType(a.kv_dtype, [&](auto tag) { return LaunchPartial<decltype(tag)>(p, grid, smem, st); }));
  AttnCombineKernel<<<a.num_q_heads, kThreads, 0, st>>>(p.part_m, p.part_l, p.part_acc, split.splits, a.num_q_heads,
                                                        a.head_dim, a.out, a.lse);
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
