// The GPU runtime as the rest of tierkv sees it: no CUDA types cross this header.
// Only kernels/ includes CUDA headers (DESIGN §9). With TIERKV_WITH_CUDA=OFF every
// call below that needs a device returns kNotSupported and GpuCount() is 0; with
// CUDA compiled in but no device (CI, laptops) the same calls return kNotSupported
// too, so callers fall back to the emulated (host-memory) paths and the CPU
// references.
//
// Error mapping at the CUDA boundary: out of device/pinned memory is
// kResourceExhausted, "no device / no driver" is kNotSupported, every other
// cudaError is kDeviceError with the failing call, file and line in the message.
//
// Thread-safety: the free functions are thread-safe. The RAII objects are not
// internally synchronized (one owner at a time); they act on the device that was
// current (SetDevice) on the calling thread when they were created.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "common/status.h"

namespace tierkv::kernels {

struct GpuInfo {
  int index = -1;
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int sm_major = 0, sm_minor = 0;
  size_t total_bytes = 0;
  int multiprocessors = 0;
};

// True when the build has CUDA compiled in.
bool CudaCompiledIn();
// Devices visible to this process; 0 without CUDA or without a driver/device.
// Cached after the first call (devices do not come and go within a process).
int GpuCount();
// Info of device `index`; index -1 when the device does not exist.
GpuInfo QueryGpu(int index);
// "cuda 13.0, 1 device(s): NVIDIA H100 ..." or "no GPU (CUDA compiled in, no device)".
std::string DescribeGpus();

// Makes `index` the calling thread's current device. kInvalidArgument when out of range.
Status SetDevice(int index);
// Blocks until all work queued on the current device has finished.
Status DeviceSynchronize();

// CUDA IPC handles as 64 opaque bytes (CUDA_IPC_HANDLE_SIZE), trivially copyable so
// they can travel inside wire messages.
struct IpcMemHandle {
  std::array<uint8_t, 64> bytes{};
};
struct IpcEventHandle {
  std::array<uint8_t, 64> bytes{};
};
static_assert(sizeof(IpcMemHandle) == 64 && std::is_trivially_copyable_v<IpcMemHandle>);
static_assert(sizeof(IpcEventHandle) == 64 && std::is_trivially_copyable_v<IpcEventHandle>);

// Device memory (cudaMalloc). Move-only; frees on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // REQUIRES: bytes > 0 (kInvalidArgument otherwise).
  static Result<DeviceBuffer> Allocate(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  size_t size() const { return size_; }
  // Exports the whole allocation for another process (cudaIpcGetMemHandle).
  Result<IpcMemHandle> ExportIpc() const;

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

// Page-locked host memory, mapped into the device address space and usable from
// every device (cudaHostAlloc Mapped|Portable). Kernels read it over PCIe
// ("zero-copy") through device(). Move-only; frees on destruction.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  // REQUIRES: bytes > 0.
  static Result<PinnedHostBuffer> Allocate(size_t bytes);
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& o) noexcept
      : host_(std::exchange(o.host_, nullptr)), device_(std::exchange(o.device_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  PinnedHostBuffer& operator=(PinnedHostBuffer&& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(size_, o.size_);
    return *this;
  }
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* host() const { return host_; }
  void* device() const { return device_; }
  size_t size() const { return size_; }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t size_ = 0;
};

// Pins and maps existing host memory (e.g. a memfd mapping shared with clients)
// with cudaHostRegister(Mapped|Portable). The memory stays owned by the caller and
// must outlive the registration. Move-only; unregisters on destruction.
class HostRegistration {
 public:
  HostRegistration() = default;
  // REQUIRES: ptr != nullptr, bytes > 0; [ptr, ptr+bytes) mapped and not registered yet.
  static Result<HostRegistration> Register(void* ptr, size_t bytes);
  ~HostRegistration();
  HostRegistration(HostRegistration&& o) noexcept
      : host_(std::exchange(o.host_, nullptr)), device_(std::exchange(o.device_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  HostRegistration& operator=(HostRegistration&& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(size_, o.size_);
    return *this;
  }
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;

  void* host() const { return host_; }
  // The address kernels use for host(); may differ from host() on some systems.
  void* device() const { return device_; }
  size_t size() const { return size_; }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t size_ = 0;
};

// Device memory exported by another process, opened with cudaIpcOpenMemHandle.
// Move-only; closes on destruction. The exporter must keep the allocation alive.
class IpcMemMapping {
 public:
  IpcMemMapping() = default;
  static Result<IpcMemMapping> Open(const IpcMemHandle& handle);
  ~IpcMemMapping();
  IpcMemMapping(IpcMemMapping&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
  IpcMemMapping& operator=(IpcMemMapping&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    return *this;
  }
  IpcMemMapping(const IpcMemMapping&) = delete;
  IpcMemMapping& operator=(const IpcMemMapping&) = delete;

  void* data() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

class GpuEvent;

// A CUDA stream (non-blocking with respect to the legacy default stream).
// Functions taking a `GpuStream*` accept nullptr for the legacy default stream.
class GpuStream {
 public:
  GpuStream() = default;
  static Result<GpuStream> Create();
  // A view of a stream somebody else owns (an engine's cudaStream_t, as void*;
  // nullptr: the legacy default stream). Not destroyed with the view.
  static GpuStream Borrow(void* native) {
    GpuStream s;
    s.handle_ = native;
    s.owned_ = false;
    return s;
  }
  ~GpuStream();
  GpuStream(GpuStream&& o) noexcept
      : handle_(std::exchange(o.handle_, nullptr)), owned_(std::exchange(o.owned_, true)) {}
  GpuStream& operator=(GpuStream&& o) noexcept {
    std::swap(handle_, o.handle_);
    std::swap(owned_, o.owned_);
    return *this;
  }
  GpuStream(const GpuStream&) = delete;
  GpuStream& operator=(const GpuStream&) = delete;

  // The cudaStream_t, as an opaque pointer (nullptr: the legacy default stream).
  void* native() const { return handle_; }
  // Blocks until all work queued on the stream has finished.
  Status Synchronize();
  // True when all queued work has finished.
  Result<bool> Query();
  // Future work on this stream waits for `event`'s last record (host does not block).
  Status Wait(const GpuEvent& event);

 private:
  void* handle_ = nullptr;
  bool owned_ = true;
};

// A CUDA event. kSync events are cheapest (no timing); kTiming events support
// ElapsedMs; kInterprocess events (cudaEventInterprocess|DisableTiming) can be
// exported to another process with ExportIpc and opened there with OpenIpc.
class GpuEvent {
 public:
  enum class Kind : uint8_t { kSync, kTiming, kInterprocess };

  GpuEvent() = default;
  static Result<GpuEvent> Create(Kind kind = Kind::kSync);
  // Opens an event exported by another process; behaves like a kSync event. The
  // exporter must keep its event alive while this one is used.
  static Result<GpuEvent> OpenIpc(const IpcEventHandle& handle);
  ~GpuEvent();
  GpuEvent(GpuEvent&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)), kind_(o.kind_) {}
  GpuEvent& operator=(GpuEvent&& o) noexcept {
    std::swap(handle_, o.handle_);
    std::swap(kind_, o.kind_);
    return *this;
  }
  GpuEvent(const GpuEvent&) = delete;
  GpuEvent& operator=(const GpuEvent&) = delete;

  // The cudaEvent_t, as an opaque pointer.
  void* native() const { return handle_; }
  Kind kind() const { return kind_; }
  // Captures the work queued so far on `stream` (nullptr: legacy default stream).
  Status Record(GpuStream* stream);
  Status Synchronize();
  // True when the captured work has finished.
  Result<bool> Query();
  // REQUIRES: kind() == kInterprocess.
  Result<IpcEventHandle> ExportIpc() const;
  // Milliseconds between two completed kTiming events.
  static Result<float> ElapsedMs(const GpuEvent& start, const GpuEvent& end);

 private:
  void* handle_ = nullptr;
  Kind kind_ = Kind::kSync;
};

enum class CopyKind : uint8_t { kHostToDevice, kDeviceToHost, kDeviceToDevice, kHostToHost, kDefault };

// Queues a copy of `bytes` on `stream` (nullptr: legacy default stream). Host
// memory must be pinned for the copy to be asynchronous. bytes == 0 is a no-op.
// REQUIRES: dst, src != nullptr when bytes > 0; the ranges do not overlap.
Status CopyAsync(void* dst, const void* src, size_t bytes, CopyKind kind, GpuStream* stream);
// Synchronous copy (returns when the data has arrived).
Status Copy(void* dst, const void* src, size_t bytes, CopyKind kind);
// Queues a byte fill of device memory on `stream`.
Status MemsetAsync(void* dst, int value, size_t bytes, GpuStream* stream);

}  // namespace tierkv::kernels
