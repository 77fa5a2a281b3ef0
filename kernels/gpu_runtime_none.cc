// gpu_runtime.h for builds without CUDA (TIERKV_WITH_CUDA=OFF): no device, every
// call that would need one returns kNotSupported.
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {
namespace {

Status NoCuda(const char* what) { return NotSupported(std::string(what) + ": built without CUDA"); }

}  // namespace

bool CudaCompiledIn() { return false; }
int GpuCount() { return 0; }
GpuInfo QueryGpu(int) { return {}; }
std::string DescribeGpus() { return "built without CUDA: the GPU tier is emulated in host memory"; }

Status SetDevice(int) { return NoCuda("SetDevice"); }
Status DeviceSynchronize() { return NoCuda("DeviceSynchronize"); }

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda("DeviceBuffer::Allocate"); }
DeviceBuffer::~DeviceBuffer() = default;
Result<IpcMemHandle> DeviceBuffer::ExportIpc() const { return NoCuda("DeviceBuffer::ExportIpc"); }

Result<PinnedHostBuffer> PinnedHostBuffer::Allocate(size_t) { return NoCuda("PinnedHostBuffer::Allocate"); }
PinnedHostBuffer::~PinnedHostBuffer() = default;

Result<HostRegistration> HostRegistration::Register(void*, size_t) { return NoCuda("HostRegistration::Register"); }
HostRegistration::~HostRegistration() = default;

Result<IpcMemMapping> IpcMemMapping::Open(const IpcMemHandle&) { return NoCuda("IpcMemMapping::Open"); }
IpcMemMapping::~IpcMemMapping() = default;

Result<GpuStream> GpuStream::Create() { return NoCuda("GpuStream::Create"); }
GpuStream::~GpuStream() = default;
Status GpuStream::Synchronize() { return NoCuda("GpuStream::Synchronize"); }
Result<bool> GpuStream::Query() { return NoCuda("GpuStream::Query"); }
Status GpuStream::Wait(const GpuEvent&) { return NoCuda("GpuStream::Wait"); }

Result<GpuEvent> GpuEvent::Create(Kind) { return NoCuda("GpuEvent::Create"); }
Result<GpuEvent> GpuEvent::OpenIpc(const IpcEventHandle&) { return NoCuda("GpuEvent::OpenIpc"); }
GpuEvent::~GpuEvent() = default;
Status GpuEvent::Record(GpuStream*) { return NoCuda("GpuEvent::Record"); }
Status GpuEvent::Synchronize() { return NoCuda("GpuEvent::Synchronize"); }
Result<bool> GpuEvent::Query() { return NoCuda("GpuEvent::Query"); }
Result<IpcEventHandle> GpuEvent::ExportIpc() const { return NoCuda("GpuEvent::ExportIpc"); }
Result<float> GpuEvent::ElapsedMs(const GpuEvent&, const GpuEvent&) { return NoCuda("GpuEvent::ElapsedMs"); }

Status CopyAsync(void*, const void*, size_t, CopyKind, GpuStream*) { return NoCuda("CopyAsync"); }
Status Copy(void*, const void*, size_t, CopyKind) { return NoCuda("Copy"); }
Status MemsetAsync(void*, int, size_t, GpuStream*) { return NoCuda("MemsetAsync"); }

}  // namespace tierkv::kernels
