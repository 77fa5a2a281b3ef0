// The G tier in device memory: an ArenaMemory over one cudaMalloc allocation
// (kernels/gpu_runtime.h keeps CUDA types out of storage/).
#include "kernels/gpu_runtime.h"
#include "storage/gpu_tier.h"

namespace tierkv::storage {
namespace {

class DeviceArena final : public ArenaMemory {
 public:
  explicit DeviceArena(kernels::DeviceBuffer buffer) : buffer_(std::move(buffer)) {}
  std::byte* base() const override { return static_cast<std::byte*>(buffer_.data()); }
  size_t bytes() const override { return buffer_.size(); }
  bool host_accessible() const override { return false; }
  Status CopyIn(size_t offset, const std::byte* src, size_t n) override {
    return kernels::Copy(base() + offset, src, n, kernels::CopyKind::kHostToDevice);
  }
  Status CopyOut(size_t offset, std::byte* dst, size_t n) const override {
    return kernels::Copy(dst, base() + offset, n, kernels::CopyKind::kDeviceToHost);
  }
  const kernels::DeviceBuffer& buffer() const { return buffer_; }

 private:
  kernels::DeviceBuffer buffer_;
};

}  // namespace

Result<kernels::IpcMemHandle> ExportGpuArena(const ArenaTier& tier) {
  const auto* device = dynamic_cast<const DeviceArena*>(&tier.memory());
  if (!device) return NotSupported("the G tier is emulated in host memory: nothing to export over CUDA IPC");
  return device->buffer().ExportIpc();
}

Result<std::unique_ptr<ArenaTier>> CreateGpuTier(const GpuTierOptions& options, bool* emulated) {
  *emulated = kernels::GpuCount() == 0;
  if (*emulated) return CreateEmulatedGpuTier(options);
  if (options.num_slots == 0 || options.slot_capacity == 0) return InvalidArgument("G tier of 0 slots or bytes");
  RETURN_IF_ERROR(kernels::SetDevice(options.device));
  const size_t bytes = size_t{options.num_slots} * ArenaTier::SlotStride(options.slot_capacity);
  ASSIGN_OR_RETURN(kernels::DeviceBuffer buffer, kernels::DeviceBuffer::Allocate(bytes));
  return std::make_unique<ArenaTier>(TierKind::kGpu, options.name, std::make_unique<DeviceArena>(std::move(buffer)),
                                     options.num_slots, options.slot_capacity);
}

}  // namespace tierkv::storage
