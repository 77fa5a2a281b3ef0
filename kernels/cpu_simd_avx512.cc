// The AVX-512 variant of cpu_simd.h (compiled with -mavx512f -mavx512dq -mavx2 -mfma -mf16c).
#define TIERKV_SIMD_NS avx512
#define TIERKV_SIMD_NAME "avx512"
#include "kernels/cpu_simd_impl.h"
