// CUDA block copy for Gather/Scatter (gather.h): one launch copies all n blocks.
//
// Work split: every block is cut into tiles of kTileBytes; CTA t of the
// grid-stride loop copies tile (t % tiles_per_block) of block (t / tiles_per_block).
// Each thread keeps kUnroll loads in flight before storing, which is what keeps
// enough PCIe reads outstanding when the source is mapped host memory.
#include <algorithm>

#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr size_t kTileBytes = size_t{kThreads} * kUnroll * 16;  // 16 KiB, a multiple of 16

// Copies len bytes; src and dst are aligned to sizeof(W). Whole words go through
// W-sized loads/stores, the remaining len % sizeof(W) bytes one by one.
template <typename W>
__device__ __forceinline__ void CopyTile(const char* __restrict__ src, char* __restrict__ dst, size_t len) {
  const size_t words = len / sizeof(W);
  const W* s = reinterpret_cast<const W*>(src);
  W* d = reinterpret_cast<W*>(dst);
  for (size_t base = 0; base < words; base += size_t{kThreads} * kUnroll) {
    W r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const size_t w = base + static_cast<size_t>(u) * kThreads + threadIdx.x;
      if (w < words) r[u] = s[w];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const size_t w = base + static_cast<size_t>(u) * kThreads + threadIdx.x;
      if (w < words) d[w] = r[u];
    }
  }
  for (size_t b = words * sizeof(W) + threadIdx.x; b < len; b += kThreads) dst[b] = src[b];
}

__global__ void __launch_bounds__(kThreads)
    BlockCopyKernel(const void* const* __restrict__ src, void* const* __restrict__ dst, uint32_t n,
                    size_t block_bytes, uint64_t tiles_per_block) {
  const uint64_t total = uint64_t{n} * tiles_per_block;
  for (uint64_t t = blockIdx.x; t < total; t += gridDim.x) {
    const uint64_t i = t / tiles_per_block;
    const uint64_t j = t - i * tiles_per_block;
    const char* s = static_cast<const char*>(src[i]);
    char* d = static_cast<char*>(dst[i]);
    if (s == nullptr || d == nullptr) continue;  // uniform across the CTA
    const size_t off = j * kTileBytes;
    const size_t len = min(kTileBytes, block_bytes - off);
    s += off;
    d += off;
    const uintptr_t a = reinterpret_cast<uintptr_t>(s) | reinterpret_cast<uintptr_t>(d);
    if ((a & 15) == 0) {
      CopyTile<uint4>(s, d, len);
    } else if ((a & 7) == 0) {
      CopyTile<uint2>(s, d, len);
    } else if ((a & 3) == 0) {
      CopyTile<uint32_t>(s, d, len);
    } else {
      CopyTile<uint8_t>(s, d, len);
    }
  }
}

}  // namespace

Status BlockCopyCuda(const BlockCopyArgs& a, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.src, "Gather/Scatter src array"));
  RETURN_IF_ERROR(CheckDeviceAccessible(a.dst, "Gather/Scatter dst array"));
  const uint64_t tiles_per_block = (a.block_bytes + kTileBytes - 1) / kTileBytes;
  const uint64_t total = uint64_t{a.n} * tiles_per_block;
  // Enough CTAs to fill the device several times over; the loop covers the rest.
  const uint64_t cap = uint64_t{32} * static_cast<uint64_t>(CurrentDeviceSmCount());
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(total, std::max<uint64_t>(cap, 1)));
  BlockCopyKernel<<<grid, kThreads, 0, NativeStream(stream)>>>(a.src, a.dst, a.n, a.block_bytes, tiles_per_block);
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
