// The AVX2 + FMA + F16C variant of cpu_simd.h (compiled with -mavx2 -mfma -mf16c).
#define TIERKV_SIMD_NS avx2
#define TIERKV_SIMD_NAME "avx2"
#include "kernels/cpu_simd_impl.h"
