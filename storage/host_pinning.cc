#include "storage/host_pinning.h"

#include <memory>
#include <string>

#include "common/log.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::storage {
namespace {

// THE SINGLE CALL SITE of cudaHostRegister for H-tier arenas: the whole arena,
// mapped into the device address space (kernels read H slots over PCIe, the gather
// kernel's zero-copy path) and portable across devices. The registration is owned
// by the returned handle; the tier keeps it until it is destroyed, before the
// arena's memory goes.
Result<std::shared_ptr<kernels::HostRegistration>> RegisterWithGpu(const ArenaMemory& mem) {
  ASSIGN_OR_RETURN(kernels::HostRegistration reg, kernels::HostRegistration::Register(mem.base(), mem.bytes()));
  return std::make_shared<kernels::HostRegistration>(std::move(reg));
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
  Result<std::shared_ptr<kernels::HostRegistration>> handle = RegisterWithGpu(mem);
  if (!handle.ok()) {
    if (mode == PinMode::kRequired) return handle.status().WithContext(tier->name());
    LOG(WARNING) << tier->name() << ": arena of " << mem.bytes() << " bytes is not pinned, GPU copies from it "
                 << "will be slower: " << handle.status().ToString();
    return OkStatus();
  }
  auto* device_base = static_cast<std::byte*>((*handle)->device());
  tier->HoldUntilDestroyed(std::move(*handle), device_base);
  return OkStatus();
}

}  // namespace tierkv::storage
