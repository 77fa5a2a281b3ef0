// CUDA BuildSummaries (summary.h): one CTA per (block, KV head) in a grid-stride
// loop; thread d walks the block's valid tokens in order, so the f32 sums match
// the CPU reference bit for bit. Reads of K[t][d] are coalesced across threads.
#include <algorithm>

#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kMaxThreads = 256;

template <typename S>
__device__ __forceinline__ void Store(S* out, size_t i, float v, int rounding);

// rounding: 0 nearest, -1 toward -inf, +1 toward +inf.
template <>
__device__ __forceinline__ void Store<float>(float* out, size_t i, float v, int) {
  out[i] = v;
}
template <>
__device__ __forceinline__ void Store<__half>(__half* out, size_t i, float v, int rounding) {
  out[i] = rounding < 0 ? __float2half_rd(v) : rounding > 0 ? __float2half_ru(v) : __float2half_rn(v);
}
template <>
__device__ __forceinline__ void Store<__nv_bfloat16>(__nv_bfloat16* out, size_t i, float v, int rounding) {
  out[i] = rounding < 0 ? __float2bfloat16_rd(v) : rounding > 0 ? __float2bfloat16_ru(v) : __float2bfloat16_rn(v);
}

template <typename K, typename S>
__global__ void __launch_bounds__(kMaxThreads)
    SummaryKernel(const char* __restrict__ keys, size_t stride, const uint32_t* __restrict__ token_counts,
                  uint32_t num_blocks, uint32_t kv_heads, uint32_t block_tokens, uint32_t head_dim,
                  S* __restrict__ min_out, S* __restrict__ max_out, S* __restrict__ mean_out) {
  const uint64_t total = uint64_t{num_blocks} * kv_heads;
  for (uint64_t w = blockIdx.x; w < total; w += gridDim.x) {
    const uint64_t b = w / kv_heads;
    const uint32_t h = static_cast<uint32_t>(w - b * kv_heads);
    uint32_t count = token_counts != nullptr ? token_counts[b] : block_tokens;
    count = max(1u, min(count, block_tokens));
    const K* k = reinterpret_cast<const K*>(keys + b * stride) + size_t{h} * block_tokens * head_dim;
    for (uint32_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
      float mn = INFINITY, mx = -INFINITY, sum = 0.f;
      for (uint32_t t = 0; t < count; ++t) {
        const float x = ToFloat(k[size_t{t} * head_dim + d]);
        mn = fminf(mn, x);
        mx = fmaxf(mx, x);
        sum = __fadd_rn(sum, x);
      }
      const size_t o = w * head_dim + d;
      if (min_out != nullptr) Store(min_out, o, mn, -1);
      if (max_out != nullptr) Store(max_out, o, mx, +1);
      if (mean_out != nullptr) Store(mean_out, o, __fdiv_rn(sum, static_cast<float>(count)), 0);
    }
  }
}

}  // namespace

Status SummariesCuda(const SummaryArgs& a, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.keys, "BuildSummaries keys"));
  if (a.token_counts != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.token_counts, "BuildSummaries token_counts"));
  for (const void* out : {a.min_out, a.max_out, a.mean_out}) {
    if (out != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(out, "BuildSummaries output"));
  }
  const size_t key_bytes = size_t{a.num_kv_heads} * a.block_tokens * a.head_dim * DTypeBytes(a.key_dtype);
  const size_t stride = a.block_stride_bytes != 0 ? a.block_stride_bytes : key_bytes;
  const uint64_t total = uint64_t{a.num_blocks} * a.num_kv_heads;
  const unsigned grid =
      static_cast<unsigned>(std::min<uint64_t>(total, uint64_t{64} * static_cast<uint64_t>(CurrentDeviceSmCount())));
  const unsigned threads = std::min<unsigned>(kMaxThreads, (a.head_dim + 31) / 32 * 32);
  cudaStream_t s = NativeStream(stream);
  DispatchDType(a.key_dtype, [&](auto k) {
    using K = decltype(k);
    DispatchDType(a.summary_dtype, [&](auto sd) {
      using S = decltype(sd);
      SummaryKernel<K, S><<<grid, threads, 0, s>>>(static_cast<const char*>(a.keys), stride, a.token_counts,
                                                   a.num_blocks, a.num_kv_heads, a.block_tokens, a.head_dim,
                                                   static_cast<S*>(a.min_out), static_cast<S*>(a.max_out),
                                                   static_cast<S*>(a.mean_out));
    });
  });
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
