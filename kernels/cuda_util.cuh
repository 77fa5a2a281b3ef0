// PRIVATE to kernels/*.cu: small device helpers shared by the kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/model_spec.h"
#include "kernels/cuda_check.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels::internal {

inline cudaStream_t NativeStream(GpuStream* stream) {
  return stream == nullptr ? nullptr : static_cast<cudaStream_t>(stream->native());
}

// Multiprocessors of the current device (for sizing grids); 1 on error.
int CurrentDeviceSmCount();

// kInvalidArgument naming `what` unless `p` is device-accessible (device memory,
// pinned/registered host memory, or managed memory). Catches host arrays passed to
// a kCuda call before the kernel faults and poisons the context.
Status CheckDeviceAccessible(const void* p, const char* what);

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Element loads as float from the storage types used for DType.
__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

// Calls f(T{}) with T the CUDA storage type of `dtype` (float, __half, __nv_bfloat16).
template <typename F>
decltype(auto) DispatchDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF16:
      return f(__half{});
    case DType::kBF16:
      return f(__nv_bfloat16{});
    case DType::kF32:
      break;
  }
  return f(float{});
}

// Device scratch memory for one kernel call: the caller's workspace when it is
// large enough, else stream-ordered memory (cudaMallocAsync) released on the same
// stream by the destructor.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  ~DeviceScratch() {
    if (owned_ != nullptr) cudaFreeAsync(owned_, stream_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  Status Init(void* workspace, size_t workspace_bytes, size_t need, cudaStream_t stream) {
    stream_ = stream;
    if (need == 0) return OkStatus();
    if (workspace != nullptr && workspace_bytes >= need) {
      RETURN_IF_ERROR(CheckDeviceAccessible(workspace, "workspace"));
      ptr_ = workspace;
      return OkStatus();
    }
    RETURN_IF_CUDA_ERROR(cudaMallocAsync(&owned_, need, stream));
    ptr_ = owned_;
    return OkStatus();
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  void* owned_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

// Bytes rounded up to a multiple of 256 (so that scratch sub-arrays stay aligned).
constexpr size_t AlignScratch(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

}  // namespace tierkv::kernels::internal
