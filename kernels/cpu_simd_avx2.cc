// The AVX2 + FMA variant of cpu_simd.h (compiled with -mavx2 -mfma).
#define TIERKV_SIMD_NS avx2
#define TIERKV_SIMD_NAME "avx2"
#include "kernels/cpu_simd_impl.h"
