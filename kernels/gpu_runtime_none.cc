// gpu_runtime.h for builds without CUDA (TIERKV_WITH_CUDA=OFF).
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

bool CudaCompiledIn() { return false; }
int GpuCount() { return 0; }
GpuInfo QueryGpu(int) { return {}; }
std::string DescribeGpus() { return "built without CUDA: the GPU tier is emulated in host memory"; }

}  // namespace tierkv::kernels
