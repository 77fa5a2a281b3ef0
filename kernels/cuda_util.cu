#include <atomic>
#include <string>

#include "kernels/cuda_util.cuh"

namespace tierkv::kernels::internal {

int CurrentDeviceSmCount() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return 1;
  }
  int n = cache[dev].load(std::memory_order_relaxed);
  if (n > 0) return n;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    cudaGetLastError();
    return 1;
  }
  cache[dev].store(n, std::memory_order_relaxed);
  return n;
}

Status CheckDeviceAccessible(const void* p, const char* what) {
  if (p == nullptr) return InvalidArgument(std::string(what) + ": null pointer");
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return InvalidArgument(std::string(what) + ": pointer is not known to CUDA");
  }
  if (attr.type == cudaMemoryTypeUnregistered || attr.devicePointer == nullptr)
    return InvalidArgument(std::string(what) +
                           ": pageable host memory is not device-accessible (use device or pinned memory)");
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
