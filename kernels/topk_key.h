// PRIVATE to kernels/: the selection key of topk.h, shared by the CPU reference
// and the CUDA kernel.
#pragma once

#include <cstdint>

#include "kernels/half.h"
#include "kernels/hd.h"

namespace tierkv::kernels::internal {

// Maps a float to a uint32 whose unsigned order is the float order; NaN maps
// like -inf and -0 like +0.
TIERKV_HD uint32_t OrderedScoreBits(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) u = 0xff800000u;  // NaN -> -inf
  if (u == 0x80000000u) u = 0;                           // -0 -> +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The distinct selection key of block `index` (index < 2^31).
TIERKV_HD uint64_t TopKKey(float score, bool always, uint32_t index) {
  return (static_cast<uint64_t>(always) << 63) | (static_cast<uint64_t>(OrderedScoreBits(score)) << 31) |
         static_cast<uint64_t>(0x7fffffffu - index);
}

}  // namespace tierkv::kernels::internal
