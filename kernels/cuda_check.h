// PRIVATE to kernels/: included only by *_cuda.cc and *.cu files (it pulls in CUDA
// headers). Turns a cudaError_t into a tierkv Status at the boundary.
#pragma once

#include <cuda_runtime_api.h>

#include "common/status.h"

namespace tierkv::kernels::internal {

// "cudaMalloc(&p, bytes): out of memory (cudaErrorMemoryAllocation) at
// kernels/gpu_runtime_cuda.cc:57". Out of memory maps to kResourceExhausted, no
// device/driver to kNotSupported, the rest to kDeviceError. Clears the (non-sticky)
// last error so that it does not resurface at the next call.
Status CudaErrorToStatus(cudaError_t err, const char* expr, const char* file, int line);

}  // namespace tierkv::kernels::internal

// Returns a Status from the enclosing function when `expr` (a cudaError_t) fails.
#define RETURN_IF_CUDA_ERROR(expr)                                                          \
  do {                                                                                      \
    const cudaError_t _tierkv_cuda_err = (expr);                                            \
    if (_tierkv_cuda_err != cudaSuccess)                                                    \
      return ::tierkv::kernels::internal::CudaErrorToStatus(_tierkv_cuda_err, #expr, __FILE__, \
                                                            __LINE__);                      \
  } while (0)
