#include "storage/host_pinning.h"

#include <string>

#include "common/log.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::storage {
namespace {

// ---------------------------------------------------------------------------
// THE SINGLE CALL SITE for cudaHostRegister of H-tier arenas.
// kernels/gpu_runtime.h does not yet wrap cudaHostRegister. When it gains an RAII
// wrapper (e.g. `Result<HostRegistration> RegisterHost(void*, size_t)`), call it
// here and return the registration as the handle (a shared_ptr owning it):
//   ASSIGN_OR_RETURN(auto reg, kernels::RegisterHost(mem.base(), mem.bytes()));
//   return std::shared_ptr<void>(std::make_shared<decltype(reg)>(std::move(reg)));
// Until then pinning reports kNotSupported and kAuto runs unpinned.
// ---------------------------------------------------------------------------
Result<std::shared_ptr<void>> RegisterWithGpu(const ArenaMemory& mem) {
  return NotSupported("pinning host memory: kernels/gpu_runtime.h has no HostRegister wrapper yet");
}

}  // namespace

Status PinHostTier(PinMode mode, ArenaTier* tier) {
  if (mode == PinMode::kOff) return OkStatus();
  const ArenaMemory& mem = tier->memory();
  if (!mem.host_accessible()) return InvalidArgument(tier->name() + ": only host arenas can be pinned");
  if (kernels::GpuCount() == 0) {
    if (mode == PinMode::kRequired) {
      return NotSupported(tier->name() + ": pinning required but no GPU is present (" +
                          kernels::DescribeGpus() + ")");
    }
    return OkStatus();
  }
  Result<std::shared_ptr<void>> handle = RegisterWithGpu(mem);
  if (!handle.ok()) {
    if (mode == PinMode::kRequired) return handle.status().WithContext(tier->name());
    LOG(WARNING) << tier->name() << ": arena of " << mem.bytes() << " bytes is not pinned, GPU copies from it "
                 << "will be slower: " << handle.status().ToString();
    return OkStatus();
  }
  tier->HoldUntilDestroyed(std::move(*handle));
  return OkStatus();
}

}  // namespace tierkv::storage
