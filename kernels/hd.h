// TIERKV_HD marks small inline functions compiled for both host and device, so
// that the CPU references and the CUDA kernels share one definition of the
// arithmetic that must agree bit for bit (conversions, quantization).
#pragma once

#if defined(__CUDACC__)
#define TIERKV_HD __host__ __device__ inline
#else
#define TIERKV_HD inline
#endif
