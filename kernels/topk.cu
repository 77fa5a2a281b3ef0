// CUDA TopK (topk.h): one thread block of 1024 threads (SelectBatch: one per item).
//
// Radix select on the distinct 64-bit keys of topk_key.h, most significant byte
// first: each pass histograms the byte of the keys that share the prefix chosen so
// far (warp-aggregated shared-memory atomics), then a block scan over the 256
// buckets from the top finds the bucket holding the k-th largest key. The pass
// loop stops once that bucket is taken whole; threshold T = prefix (lower bytes 0)
// then selects exactly the k keys >= T. A block-wide scan compacts the selected
// indices in ascending order.
//
// Up to kMaxCachedKeys blocks (128K tokens of 32-token blocks fit), the keys are
// built once into shared memory; beyond, they are recomputed from scores/always
// on every pass (from L2). Single-CTA cost grows with num_blocks; sized for
// per-layer selections up to ~32K blocks (1M tokens of 32-token blocks).
#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"
#include "kernels/topk_key.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr uint32_t kNoBucket = 256;
constexpr uint32_t kMaxCachedKeys = 5632;  // 44 KiB of dynamic shared memory: no opt-in needed

__device__ __forceinline__ uint64_t KeyAt(const float* __restrict__ scores, const uint8_t* __restrict__ always,
                                          uint32_t i) {
  return TopKKey(scores[i], always != nullptr && always[i] != 0, i);
}

// Block-wide inclusive prefix sum of one value per thread; *total = the sum over
// the block. Every thread of the block must call it. smem: [kWarps].
__device__ uint32_t BlockInclusiveScan(uint32_t v, uint32_t* smem, uint32_t* total) {
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t y = __shfl_up_sync(kFullMask, v, o);
    if (lane >= static_cast<unsigned>(o)) v += y;
  }
  __syncthreads();  // smem may still be read from the previous call
  if (lane == 31) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    uint32_t w = smem[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(kFullMask, w, o);
      if (lane >= static_cast<unsigned>(o)) w += y;
    }
    smem[lane] = w;
  }
  __syncthreads();
  *total = smem[kWarps - 1];
  return v + (warp > 0 ? smem[warp - 1] : 0u);
}

// The whole selection of one item by one thread block; cached: [n] keys of dynamic
// shared memory when kCached.
template <bool kCached>
__device__ void TopKBlock(const float* __restrict__ scores, const uint8_t* __restrict__ always, uint32_t n, uint32_t k,
                          uint32_t* __restrict__ out_indices, float* __restrict__ out_scores, uint64_t* cached) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t scan[kWarps];
  __shared__ uint64_t s_prefix;
  __shared__ uint32_t s_krem;
  __shared__ int s_done;
  const unsigned tid = threadIdx.x, lane = tid & 31;
  if (tid == 0) {
    s_prefix = 0;
    s_krem = k;
    s_done = 0;
  }
  if constexpr (kCached) {
    for (uint32_t i = threadIdx.x; i < n; i += kThreads) cached[i] = KeyAt(scores, always, i);
  }  // published by the first __syncthreads below
  auto key_of = [&](uint32_t i) -> uint64_t {
    if constexpr (kCached) {
      return cached[i];
    } else {
      return KeyAt(scores, always, i);
    }
  };
  uint64_t mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    if (tid < 256) hist[tid] = 0;
    __syncthreads();  // hist cleared; s_prefix/s_krem of the previous pass visible
    const uint64_t prefix = s_prefix;
    const uint32_t krem = s_krem;
    for (uint32_t base = 0; base < n; base += kThreads) {  // same trip count in every warp
      const uint32_t i = base + tid;
      uint32_t bucket = kNoBucket;
      if (i < n) {
        const uint64_t key = key_of(i);
        if ((key & mask) == prefix) bucket = static_cast<uint32_t>(key >> shift) & 0xffu;
      }
      const unsigned peers = __match_any_sync(kFullMask, bucket);
      if (bucket != kNoBucket && lane == static_cast<unsigned>(__ffs(peers) - 1))
        atomicAdd(&hist[bucket], static_cast<uint32_t>(__popc(peers)));
    }
    __syncthreads();
    // Thread t < 256 holds bucket 255 - t: the scan counts keys at or above it.
    const uint32_t c = tid < 256 ? hist[255 - tid] : 0u;
    uint32_t total;
    const uint32_t incl = BlockInclusiveScan(c, scan, &total);
    if (tid < 256 && incl >= krem && incl - c < krem) {  // exactly one thread
      const uint32_t new_krem = krem - (incl - c);
      s_prefix = prefix | (static_cast<uint64_t>(255 - tid) << shift);
      s_krem = new_krem;
      s_done = c == new_krem ? 1 : 0;
    }
    mask |= uint64_t{0xff} << shift;
    __syncthreads();
    if (s_done) break;  // uniform
  }
  const uint64_t threshold = s_prefix;
  uint32_t written = 0;
  for (uint32_t base = 0; base < n; base += kThreads) {  // uniform trip count
    const uint32_t i = base + tid;
    const bool sel = i < n && key_of(i) >= threshold;
    uint32_t total;
    const uint32_t incl = BlockInclusiveScan(sel ? 1u : 0u, scan, &total);
    if (sel) {
      const uint32_t pos = written + incl - 1;
      if (pos < k) {
        out_indices[pos] = i;
        if (out_scores != nullptr) out_scores[pos] = scores[i];
      }
    }
    written += total;
    if (written >= k) break;  // uniform: total is the same in every thread
  }
}

template <bool kCached>
__global__ void __launch_bounds__(kThreads)
    TopKKernel(const float* __restrict__ scores, const uint8_t* __restrict__ always, uint32_t n, uint32_t k,
               uint32_t* __restrict__ out_indices, float* __restrict__ out_scores) {
  extern __shared__ uint64_t cached[];  // [n] when kCached
  TopKBlock<kCached>(scores, always, n, k, out_indices, out_scores, cached);
}

// SelectBatch: one thread block per item.
template <bool kCached>
__global__ void __launch_bounds__(kThreads) BatchTopKKernel(const SelectBatchItem* __restrict__ items) {
  extern __shared__ uint64_t cached[];  // [largest item's n] when kCached
  const SelectBatchItem& it = items[blockIdx.x];
  TopKBlock<kCached>(it.scores, it.always, it.num_blocks, it.k, it.out_indices, nullptr, cached);
}

}  // namespace

Status TopKCuda(const TopKArgs& a, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.scores, "TopK scores"));
  RETURN_IF_ERROR(CheckDeviceAccessible(a.out_indices, "TopK out_indices"));
  if (a.always != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.always, "TopK always"));
  if (a.out_scores != nullptr) RETURN_IF_ERROR(CheckDeviceAccessible(a.out_scores, "TopK out_scores"));
  const cudaStream_t st = NativeStream(stream);
  if (a.num_blocks <= kMaxCachedKeys) {
    TopKKernel<true><<<1, kThreads, a.num_blocks * sizeof(uint64_t), st>>>(a.scores, a.always, a.num_blocks, a.k,
                                                                          a.out_indices, a.out_scores);
  } else {
    TopKKernel<false><<<1, kThreads, 0, st>>>(a.scores, a.always, a.num_blocks, a.k, a.out_indices, a.out_scores);
  }
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

Status TopKBatchCuda(const SelectBatchArgs& a, uint32_t max_blocks, GpuStream* stream) {
  const cudaStream_t st = NativeStream(stream);
  if (max_blocks <= kMaxCachedKeys) {
    BatchTopKKernel<true><<<a.num_items, kThreads, max_blocks * sizeof(uint64_t), st>>>(a.device_items);
  } else {
    BatchTopKKernel<false><<<a.num_items, kThreads, 0, st>>>(a.device_items);
  }
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
