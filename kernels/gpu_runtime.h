// The GPU runtime as the rest of tierkv sees it: no CUDA types cross this header.
// Only kernels/ includes CUDA headers (DESIGN §9). With TIERKV_WITH_CUDA=OFF, or
// on a machine without a device, GpuCount() is 0 and callers use the emulated
// (host-memory) paths and the CPU references.
#pragma once

#include <string>

namespace tierkv::kernels {

struct GpuInfo {
  int index = -1;
  std::string name;          // "NVIDIA H100 80GB HBM3"
  int sm_major = 0, sm_minor = 0;
  size_t total_bytes = 0;
};

// True when the build has CUDA compiled in.
bool CudaCompiledIn();
// Devices visible to this process; 0 without CUDA or without a driver/device.
int GpuCount();
// Info of device `index`; index -1 when the device does not exist.
GpuInfo QueryGpu(int index);
// "cuda 13.0, 1 device(s): NVIDIA H100 ..." or "no GPU (CUDA compiled in, no device)".
std::string DescribeGpus();

}  // namespace tierkv::kernels
