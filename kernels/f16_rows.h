// Rows of f32 to IEEE f16 and back on the host, on the CPU's vector unit where it
// has F16C (cpu_simd.h's variants; the portable loops otherwise). The retrievers
// keep their summaries in f16 (decision 0029) and convert every put block's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/half.h"

namespace tierkv::kernels {

// out[i] = in[i] rounded to f16 as asked (half.h's FloatToF16 / Down / Up, bit for
// bit), values beyond f16's range saturated at +-65504 first. REQUIRES: no NaN.
void FloatRowToF16(const float* in, size_t n, Rounding rounding, uint16_t* out);

// out[i] = in[i] as f32 (exact).
void F16RowToFloatRow(const uint16_t* in, size_t n, float* out);

}  // namespace tierkv::kernels
