// Validation, dispatch and the CPU reference of gather.h.
#include "kernels/gather.h"

#include <cstring>
#include <string>

#include "kernels/launch.h"

namespace tierkv::kernels {
namespace {

Status Validate(const BlockCopyArgs& a, const char* what) {
  if (a.n == 0) return OkStatus();
  if (a.src == nullptr || a.dst == nullptr) return InvalidArgument(std::string(what) + ": null src or dst array");
  if (a.block_bytes == 0 || a.block_bytes > kMaxBlockCopyBytes)
    return InvalidArgument(std::string(what) + ": block_bytes " + std::to_string(a.block_bytes) +
                           " out of range [1, " + std::to_string(kMaxBlockCopyBytes) + "]");
  return OkStatus();
}

Status BlockCopyCpu(const BlockCopyArgs& a, const char* what) {
  for (uint32_t i = 0; i < a.n; ++i) {
    if (a.src[i] == nullptr || a.dst[i] == nullptr)
      return InvalidArgument(std::string(what) + ": null address for block " + std::to_string(i));
  }
  for (uint32_t i = 0; i < a.n; ++i) std::memcpy(a.dst[i], a.src[i], a.block_bytes);
  return OkStatus();
}

Status BlockCopy(Backend backend, const BlockCopyArgs& a, GpuStream* stream, const char* what) {
  RETURN_IF_ERROR(CheckBackend(backend, what));
  RETURN_IF_ERROR(Validate(a, what));
  if (a.n == 0) return OkStatus();
  if (backend == Backend::kCuda) return internal::BlockCopyCuda(a, stream);
  return BlockCopyCpu(a, what);
}

}  // namespace

Status Gather(Backend backend, const GatherArgs& args, GpuStream* stream) {
  return BlockCopy(backend, args, stream, "Gather");
}

Status Scatter(Backend backend, const ScatterArgs& args, GpuStream* stream) {
  return BlockCopy(backend, args, stream, "Scatter");
}

}  // namespace tierkv::kernels
