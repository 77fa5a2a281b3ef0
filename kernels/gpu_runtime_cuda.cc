// CUDA implementation of gpu_runtime.h (compiled only when TIERKV_WITH_CUDA=ON).
#include <cuda_runtime_api.h>

#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

bool CudaCompiledIn() { return true; }

int GpuCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" / "no driver" error
    return 0;
  }
  return n;
}

GpuInfo QueryGpu(int index) {
  GpuInfo info;
  cudaDeviceProp prop;
  if (index < 0 || index >= GpuCount() || cudaGetDeviceProperties(&prop, index) != cudaSuccess) return info;
  info.index = index;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.total_bytes = prop.totalGlobalMem;
  return info;
}

std::string DescribeGpus() {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::string s = "cuda " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
  const int n = GpuCount();
  if (n == 0) return s + ", no GPU device: the GPU tier is emulated in host memory";
  s += ", " + std::to_string(n) + " device(s):";
  for (int i = 0; i < n; ++i) {
    GpuInfo g = QueryGpu(i);
    s += " [" + std::to_string(i) + "] " + g.name + " sm_" + std::to_string(g.sm_major) +
         std::to_string(g.sm_minor) + " " + std::to_string(g.total_bytes >> 20) + " MiB";
  }
  return s;
}

}  // namespace tierkv::kernels
