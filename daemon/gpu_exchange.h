// The GPU side of one data channel (DESIGN §2 "GPU work of the two processes is
// ordered with CUDA IPC events", §5 steps 1-3).
//
// A worker that opens its channel with a GPU exports an interprocess event (the
// "worker event"). The daemon opens it and hands back, through open_channel:
//   - an exchange buffer in device memory (CUDA IPC handle) where the worker's
//     stream writes each Retrieve's query and the daemon writes the block table;
//   - its own interprocess event (the "daemon event"), recorded after each table.
// Per Retrieve with dp::kFlagGpu:
//   1. ReadQuery: the daemon's stream waits on the worker event (no host wait on
//      the worker's stream), copies the query to pinned host memory; the daemon's
//      host thread waits for its own stream only.
//   2. selection, pinning and the H->G gather of misses (BlockStore, BlockMover).
//   3. PublishTable: the table goes to the exchange buffer on the daemon's stream
//      and the daemon event is recorded after it; the worker's stream waits on that
//      event before its attention kernel reads the table.
//
// Emulated (the daemon's G tier is emulated: no GPU, DESIGN §2 "the same code runs
// with the G tier emulated in host memory"): the exchange buffer is a memfd shared
// with the client, there are no events, and the ring's completion orders the two
// sides. The protocol and the client calls are the same; pointers are host pointers.
//
// Not thread-safe: used by its channel's worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/shm.h"
#include "common/status.h"
#include "kernels/gpu_runtime.h"

namespace prometheus {
class Histogram;
}

namespace tierkv::daemon {

class GpuExchange {
 public:
  // Opens the worker's event and allocates `bytes` of exchange memory (device) and
  // its pinned host mirror on `device`. kNotSupported without a GPU; kInvalidArgument
  // for bytes == 0 or a handle that is not an exported event.
  static Result<std::unique_ptr<GpuExchange>> Open(int device, const kernels::IpcEventHandle& worker_event,
                                                   size_t bytes);
  // The emulated exchange: a memfd of `bytes` bytes (`name` shows in /proc/<pid>/fd).
  static Result<std::unique_ptr<GpuExchange>> OpenEmulated(const std::string& name, size_t bytes);

  bool emulated() const { return emulated_; }
  size_t bytes() const { return emulated_ ? region_.size() : device_.size(); }
  // Device exchange: the handles the client opens.
  const kernels::IpcMemHandle& buffer_handle() const { return buffer_handle_; }
  const kernels::IpcEventHandle& event_handle() const { return event_handle_; }
  // Emulated exchange: the memfd the client maps (owned here; dup it to pass it on).
  int fd() const { return region_.fd(); }

  // Where ReadQuery (the wait for the worker's event and the query's copy) and
  // PublishTable (the table's copy queued and the event recorded) report their time
  // (tierkv_retrieval_latency_seconds, phases gpu_query and gpu_table); null: nowhere.
  void SetLatency(prometheus::Histogram* query, prometheus::Histogram* table) {
    query_latency_ = query;
    table_latency_ = table;
  }

  // Step 1: the query at exchange[offset, offset + out.size()), once the worker's
  // event has fired. REQUIRES: the range lies inside bytes() (the caller checks).
  Status ReadQuery(uint64_t offset, std::span<std::byte> out);
  // Step 3: writes `table` to exchange[offset, ...) on the daemon's stream, then
  // records the daemon event. REQUIRES: the range lies inside bytes().
  Status PublishTable(uint64_t offset, std::span<const std::byte> table);

 private:
  GpuExchange() = default;

  bool emulated_ = false;
  ShmRegion region_;  // emulated
  int device_index_ = 0;
  kernels::GpuEvent worker_event_;
  kernels::GpuEvent daemon_event_;
  kernels::GpuStream stream_;
  kernels::DeviceBuffer device_;
  kernels::PinnedHostBuffer host_;  // staging for the copies in both directions
  kernels::IpcMemHandle buffer_handle_;
  kernels::IpcEventHandle event_handle_;
  prometheus::Histogram* query_latency_ = nullptr;
  prometheus::Histogram* table_latency_ = nullptr;
};

}  // namespace tierkv::daemon
