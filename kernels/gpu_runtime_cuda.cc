// CUDA implementation of gpu_runtime.h (compiled only when TIERKV_WITH_CUDA=ON).
#include <cuda_runtime_api.h>

#include <cstring>
#include <string_view>

#include "kernels/cuda_check.h"
#include "kernels/gpu_runtime.h"

static_assert(CUDA_IPC_HANDLE_SIZE == 64, "IpcMemHandle/IpcEventHandle assume 64-byte handles");
static_assert(sizeof(cudaIpcMemHandle_t) == 64 && sizeof(cudaIpcEventHandle_t) == 64);

namespace tierkv::kernels {
namespace internal {

Status CudaErrorToStatus(cudaError_t err, const char* expr, const char* file, int line) {
  cudaGetLastError();  // reset the non-sticky last error
  std::string_view f(file);
  if (size_t pos = f.rfind("kernels/"); pos != std::string_view::npos) f.remove_prefix(pos);
  std::string msg = std::string(expr) + ": " + cudaGetErrorString(err) + " (" + cudaGetErrorName(err) +
                    ") at " + std::string(f) + ":" + std::to_string(line);
  switch (err) {
    case cudaErrorMemoryAllocation:
      return ResourceExhausted(std::move(msg));
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return NotSupported(std::move(msg));
    default:
      return DeviceError(std::move(msg));
  }
}

}  // namespace internal

namespace {

cudaStream_t NativeStream(GpuStream* stream) {
  return stream == nullptr ? nullptr : static_cast<cudaStream_t>(stream->native());
}

cudaMemcpyKind NativeKind(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return cudaMemcpyHostToDevice;
    case CopyKind::kDeviceToHost:
      return cudaMemcpyDeviceToHost;
    case CopyKind::kDeviceToDevice:
      return cudaMemcpyDeviceToDevice;
    case CopyKind::kHostToHost:
      return cudaMemcpyHostToHost;
    case CopyKind::kDefault:
      break;
  }
  return cudaMemcpyDefault;
}

Status RequireDevice(const char* what) {
  if (GpuCount() == 0) return NotSupported(std::string(what) + ": no CUDA device");
  return OkStatus();
}

}  // namespace

bool CudaCompiledIn() { return true; }

int GpuCount() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the "no device" / "no driver" error
      return 0;
    }
    return n;
  }();
  return count;
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
  info.multiprocessors = prop.multiProcessorCount;
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

Status SetDevice(int index) {
  RETURN_IF_ERROR(RequireDevice("SetDevice"));
  if (index < 0 || index >= GpuCount())
    return InvalidArgument("SetDevice: device " + std::to_string(index) + " out of range [0, " +
                           std::to_string(GpuCount()) + ")");
  RETURN_IF_CUDA_ERROR(cudaSetDevice(index));
  return OkStatus();
}

Status DeviceSynchronize() {
  RETURN_IF_ERROR(RequireDevice("DeviceSynchronize"));
  RETURN_IF_CUDA_ERROR(cudaDeviceSynchronize());
  return OkStatus();
}

// ---- DeviceBuffer ----

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return InvalidArgument("DeviceBuffer::Allocate: bytes must be > 0");
  RETURN_IF_ERROR(RequireDevice("DeviceBuffer::Allocate"));
  DeviceBuffer b;
  RETURN_IF_CUDA_ERROR(cudaMalloc(&b.ptr_, bytes));
  b.size_ = bytes;
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

Result<IpcMemHandle> DeviceBuffer::ExportIpc() const {
  if (ptr_ == nullptr) return InvalidArgument("DeviceBuffer::ExportIpc: empty buffer");
  cudaIpcMemHandle_t h;
  RETURN_IF_CUDA_ERROR(cudaIpcGetMemHandle(&h, ptr_));
  IpcMemHandle out;
  std::memcpy(out.bytes.data(), &h, sizeof(h));
  return out;
}

// ---- PinnedHostBuffer ----

Result<PinnedHostBuffer> PinnedHostBuffer::Allocate(size_t bytes) {
  if (bytes == 0) return InvalidArgument("PinnedHostBuffer::Allocate: bytes must be > 0");
  RETURN_IF_ERROR(RequireDevice("PinnedHostBuffer::Allocate"));
  PinnedHostBuffer b;
  RETURN_IF_CUDA_ERROR(cudaHostAlloc(&b.host_, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
  b.size_ = bytes;  // from here on the destructor frees host_
  RETURN_IF_CUDA_ERROR(cudaHostGetDevicePointer(&b.device_, b.host_, 0));
  return b;
}

PinnedHostBuffer::~PinnedHostBuffer() {
  if (host_ != nullptr) cudaFreeHost(host_);
}

// ---- HostRegistration ----

Result<HostRegistration> HostRegistration::Register(void* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0) return InvalidArgument("HostRegistration::Register: null pointer or 0 bytes");
  RETURN_IF_ERROR(RequireDevice("HostRegistration::Register"));
  RETURN_IF_CUDA_ERROR(cudaHostRegister(ptr, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable));
  HostRegistration r;
  r.host_ = ptr;  // from here on the destructor unregisters
  r.size_ = bytes;
  RETURN_IF_CUDA_ERROR(cudaHostGetDevicePointer(&r.device_, ptr, 0));
  return r;
}

HostRegistration::~HostRegistration() {
  if (host_ != nullptr) cudaHostUnregister(host_);
}

// ---- IpcMemMapping ----

Result<IpcMemMapping> IpcMemMapping::Open(const IpcMemHandle& handle) {
  RETURN_IF_ERROR(RequireDevice("IpcMemMapping::Open"));
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle.bytes.data(), sizeof(h));
  IpcMemMapping m;
  RETURN_IF_CUDA_ERROR(cudaIpcOpenMemHandle(&m.ptr_, h, cudaIpcMemLazyEnablePeerAccess));
  return m;
}

IpcMemMapping::~IpcMemMapping() {
  if (ptr_ != nullptr) cudaIpcCloseMemHandle(ptr_);
}

// ---- GpuStream ----

Result<GpuStream> GpuStream::Create() {
  RETURN_IF_ERROR(RequireDevice("GpuStream::Create"));
  cudaStream_t s = nullptr;
  RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  GpuStream out;
  out.handle_ = s;
  return out;
}

GpuStream::~GpuStream() {
  if (handle_ != nullptr && owned_) cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

Status GpuStream::Synchronize() {
  RETURN_IF_ERROR(RequireDevice("GpuStream::Synchronize"));
  RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
  return OkStatus();
}

Result<bool> GpuStream::Query() {
  RETURN_IF_ERROR(RequireDevice("GpuStream::Query"));
  const cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(handle_));
  if (e == cudaErrorNotReady) return false;
  RETURN_IF_CUDA_ERROR(e);
  return true;
}

Status GpuStream::Wait(const GpuEvent& event) {
  RETURN_IF_ERROR(RequireDevice("GpuStream::Wait"));
  if (event.native() == nullptr) return InvalidArgument("GpuStream::Wait: empty event");
  RETURN_IF_CUDA_ERROR(
      cudaStreamWaitEvent(static_cast<cudaStream_t>(handle_), static_cast<cudaEvent_t>(event.native()), 0));
  return OkStatus();
}

// ---- GpuEvent ----

Result<GpuEvent> GpuEvent::Create(Kind kind) {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::Create"));
  unsigned flags = cudaEventDisableTiming;
  if (kind == Kind::kTiming) flags = cudaEventDefault;
  if (kind == Kind::kInterprocess) flags = cudaEventInterprocess | cudaEventDisableTiming;
  cudaEvent_t e = nullptr;
  RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&e, flags));
  GpuEvent out;
  out.handle_ = e;
  out.kind_ = kind;
  return out;
}

Result<GpuEvent> GpuEvent::OpenIpc(const IpcEventHandle& handle) {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::OpenIpc"));
  cudaIpcEventHandle_t h;
  std::memcpy(&h, handle.bytes.data(), sizeof(h));
  cudaEvent_t e = nullptr;
  RETURN_IF_CUDA_ERROR(cudaIpcOpenEventHandle(&e, h));
  GpuEvent out;
  out.handle_ = e;
  out.kind_ = Kind::kSync;
  return out;
}

GpuEvent::~GpuEvent() {
  if (handle_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(handle_));
}

Status GpuEvent::Record(GpuStream* stream) {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::Record"));
  if (handle_ == nullptr) return InvalidArgument("GpuEvent::Record: empty event");
  RETURN_IF_CUDA_ERROR(cudaEventRecord(static_cast<cudaEvent_t>(handle_), NativeStream(stream)));
  return OkStatus();
}

Status GpuEvent::Synchronize() {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::Synchronize"));
  if (handle_ == nullptr) return InvalidArgument("GpuEvent::Synchronize: empty event");
  RETURN_IF_CUDA_ERROR(cudaEventSynchronize(static_cast<cudaEvent_t>(handle_)));
  return OkStatus();
}

Result<bool> GpuEvent::Query() {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::Query"));
  if (handle_ == nullptr) return InvalidArgument("GpuEvent::Query: empty event");
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(handle_));
  if (e == cudaErrorNotReady) return false;
  RETURN_IF_CUDA_ERROR(e);
  return true;
}

Result<IpcEventHandle> GpuEvent::ExportIpc() const {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::ExportIpc"));
  if (handle_ == nullptr || kind_ != Kind::kInterprocess)
    return InvalidArgument("GpuEvent::ExportIpc: the event was not created with Kind::kInterprocess");
  cudaIpcEventHandle_t h;
  RETURN_IF_CUDA_ERROR(cudaIpcGetEventHandle(&h, static_cast<cudaEvent_t>(handle_)));
  IpcEventHandle out;
  std::memcpy(out.bytes.data(), &h, sizeof(h));
  return out;
}

Result<float> GpuEvent::ElapsedMs(const GpuEvent& start, const GpuEvent& end) {
  RETURN_IF_ERROR(RequireDevice("GpuEvent::ElapsedMs"));
  if (start.handle_ == nullptr || end.handle_ == nullptr || start.kind_ != Kind::kTiming ||
      end.kind_ != Kind::kTiming)
    return InvalidArgument("GpuEvent::ElapsedMs: both events must be Kind::kTiming");
  float ms = 0;
  RETURN_IF_CUDA_ERROR(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.handle_), static_cast<cudaEvent_t>(end.handle_)));
  return ms;
}

// ---- copies ----

Status CopyAsync(void* dst, const void* src, size_t bytes, CopyKind kind, GpuStream* stream) {
  if (bytes == 0) return OkStatus();
  if (dst == nullptr || src == nullptr) return InvalidArgument("CopyAsync: null pointer");
  RETURN_IF_ERROR(RequireDevice("CopyAsync"));
  RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(dst, src, bytes, NativeKind(kind), NativeStream(stream)));
  return OkStatus();
}

Status Copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0) return OkStatus();
  if (dst == nullptr || src == nullptr) return InvalidArgument("Copy: null pointer");
  RETURN_IF_ERROR(RequireDevice("Copy"));
  // On this thread's default stream, not the legacy one: copies of different threads
  // (the daemon's channel workers) overlap instead of queueing behind each other.
  // Still ordered after work on the legacy default stream, and complete on return.
  RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(dst, src, bytes, NativeKind(kind), cudaStreamPerThread));
  RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(cudaStreamPerThread));
  return OkStatus();
}

Status MemsetAsync(void* dst, int value, size_t bytes, GpuStream* stream) {
  if (bytes == 0) return OkStatus();
  if (dst == nullptr) return InvalidArgument("MemsetAsync: null pointer");
  RETURN_IF_ERROR(RequireDevice("MemsetAsync"));
  RETURN_IF_CUDA_ERROR(cudaMemsetAsync(dst, value, bytes, NativeStream(stream)));
  return OkStatus();
}

}  // namespace tierkv::kernels
