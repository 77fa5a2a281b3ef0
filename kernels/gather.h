// Gather (H->G promotion) and scatter (G->H demotion) of KV blocks: n independent
// copies of `block_bytes` each, from arbitrary source addresses to arbitrary
// destination addresses, in ONE kernel launch. On kCuda the sources of a gather
// are typically mapped pinned host memory (PinnedHostBuffer::device(),
// HostRegistration::device()): the kernel reads them over PCIe ("zero-copy"),
// which BENCHMARKS.md measured at ~50 GB/s versus ~17 GB/s for one cudaMemcpy
// per block. 16-byte vector loads are used where source and destination are both
// 16-byte aligned (8/4-byte words, then single bytes, otherwise).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

struct BlockCopyArgs {
  // [n] source block addresses. kCpu: host arrays of host addresses. kCuda: the
  // arrays themselves and every address in them must be device-accessible
  // (device memory, or mapped pinned host memory through its device pointer).
  const void* const* src = nullptr;
  // [n] destination block addresses; same rules as src.
  void* const* dst = nullptr;
  uint32_t n = 0;          // number of blocks; 0 is a no-op
  size_t block_bytes = 0;  // bytes per block, in [1, kMaxBlockCopyBytes]
};
using GatherArgs = BlockCopyArgs;
using ScatterArgs = BlockCopyArgs;

inline constexpr size_t kMaxBlockCopyBytes = size_t{1} << 30;

// Copies src[i][0, block_bytes) to dst[i] for every i < n.
// REQUIRES: no source range overlaps a destination range, and no two destination
// ranges overlap (the copies run in parallel, in no particular order).
// kInvalidArgument for null arrays, block_bytes out of range, or (kCpu only) a
// null entry; kCuda skips null entries (the arrays are not host-readable there).
// kCuda is asynchronous on `stream` (nullptr: the legacy default stream).
Status Gather(Backend backend, const GatherArgs& args, GpuStream* stream = nullptr);
// The same copy in the G->H direction; named separately so that call sites say
// which way blocks move.
Status Scatter(Backend backend, const ScatterArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
