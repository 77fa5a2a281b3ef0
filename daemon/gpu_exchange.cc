#include "daemon/gpu_exchange.h"

#include <prometheus/histogram.h>

#include <chrono>
#include <cstring>

namespace tierkv::daemon {
namespace {
// Observes the seconds since its construction into `h` (if any) when it goes.
class PhaseTimer {
 public:
  explicit PhaseTimer(prometheus::Histogram* h) : h_(h), t0_(std::chrono::steady_clock::now()) {}
  ~PhaseTimer() {
    if (h_) h_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

 private:
  prometheus::Histogram* h_;
  std::chrono::steady_clock::time_point t0_;
};
}  // namespace

Result<std::unique_ptr<GpuExchange>> GpuExchange::Open(int device, const kernels::IpcEventHandle& worker_event,
                                                       size_t bytes) {
  if (kernels::GpuCount() == 0) {
    return NotSupported("GPU retrieval needs a GPU in the daemon (" + kernels::DescribeGpus() + ")");
  }
  if (bytes == 0) return InvalidArgument("GPU exchange buffer of 0 bytes");
  RETURN_IF_ERROR(kernels::SetDevice(device));
  std::unique_ptr<GpuExchange> x(new GpuExchange());
  x->device_index_ = device;
  Result<kernels::GpuEvent> opened = kernels::GpuEvent::OpenIpc(worker_event);
  if (!opened.ok()) {
    return InvalidArgument("gpu_worker_event is not an event this process can open: " + opened.status().message());
  }
  x->worker_event_ = std::move(*opened);
  ASSIGN_OR_RETURN(x->daemon_event_, kernels::GpuEvent::Create(kernels::GpuEvent::Kind::kInterprocess));
  ASSIGN_OR_RETURN(x->stream_, kernels::GpuStream::Create());
  ASSIGN_OR_RETURN(x->device_, kernels::DeviceBuffer::Allocate(bytes));
  ASSIGN_OR_RETURN(x->host_, kernels::PinnedHostBuffer::Allocate(bytes));
  ASSIGN_OR_RETURN(x->buffer_handle_, x->device_.ExportIpc());
  ASSIGN_OR_RETURN(x->event_handle_, x->daemon_event_.ExportIpc());
  return x;
}

Result<std::unique_ptr<GpuExchange>> GpuExchange::OpenEmulated(const std::string& name, size_t bytes) {
  if (bytes == 0) return InvalidArgument("GPU exchange buffer of 0 bytes");
  std::unique_ptr<GpuExchange> x(new GpuExchange());
  x->emulated_ = true;
  ASSIGN_OR_RETURN(x->region_, ShmRegion::Create(name, bytes));
  return x;
}

Status GpuExchange::ReadQuery(uint64_t offset, std::span<std::byte> out) {
  PhaseTimer timer(query_latency_);
  if (emulated_) {
    // The client wrote it before posting the request (the ring orders the two).
    if (!out.empty()) std::memcpy(out.data(), region_.data() + offset, out.size());
    return OkStatus();
  }
  RETURN_IF_ERROR(kernels::SetDevice(device_index_));  // the channel's worker thread
  RETURN_IF_ERROR(stream_.Wait(worker_event_));
  auto* host = static_cast<std::byte*>(host_.host()) + offset;
  const auto* dev = static_cast<const std::byte*>(device_.data()) + offset;
  RETURN_IF_ERROR(kernels::CopyAsync(host, dev, out.size(), kernels::CopyKind::kDeviceToHost, &stream_));
  // The daemon's own stream: the previous table copy out of host_ is done too.
  RETURN_IF_ERROR(stream_.Synchronize());
  std::memcpy(out.data(), host, out.size());
  return OkStatus();
}

Status GpuExchange::PublishTable(uint64_t offset, std::span<const std::byte> table) {
  PhaseTimer timer(table_latency_);
  if (emulated_) {  // read by the client after the completion
    if (!table.empty()) std::memcpy(region_.data() + offset, table.data(), table.size());
    return OkStatus();
  }
  auto* host = static_cast<std::byte*>(host_.host()) + offset;
  if (!table.empty()) std::memcpy(host, table.data(), table.size());  // an empty selection still signals
  auto* dev = static_cast<std::byte*>(device_.data()) + offset;
  RETURN_IF_ERROR(kernels::CopyAsync(dev, host, table.size(), kernels::CopyKind::kHostToDevice, &stream_));
  return daemon_event_.Record(&stream_);
}

}  // namespace tierkv::daemon
