#include "kernels/backend.h"

#include <string>

#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

std::string_view BackendName(Backend backend) { return backend == Backend::kCuda ? "cuda" : "cpu"; }

Backend DefaultBackend() { return GpuCount() > 0 ? Backend::kCuda : Backend::kCpu; }

Status CheckBackend(Backend backend, std::string_view what) {
  switch (backend) {
    case Backend::kCpu:
      return OkStatus();
    case Backend::kCuda:
      if (!CudaCompiledIn()) return NotSupported(std::string(what) + ": built without CUDA");
      if (GpuCount() == 0) return NotSupported(std::string(what) + ": no CUDA device");
      return OkStatus();
  }
  return InvalidArgument(std::string(what) + ": unknown backend " + std::to_string(static_cast<int>(backend)));
}

}  // namespace tierkv::kernels
