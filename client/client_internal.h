// libtierkv's internal interface: the JSON-level control calls, the raw rings and
// the staging area of a channel, and how a channel is put together from an
// open_channel reply. Used by libtierkv itself (client.cc, channel.cc, c_api.cc),
// tierkvctl, benchmarks and tests; never installed (engines use tierkv/client.h).
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/data_plane.h"
#include "common/ids.h"
#include "common/mutex.h"
#include "common/shm.h"
#include "common/status.h"
#include "common/wire.h"
#include "kernels/gpu_runtime.h"
#include "tierkv/channel.h"
#include "tierkv/client.h"

namespace tierkv::internal {

// --- Control plane ---

// Sends one request object and returns the reply when it is {"ok":true,...}, else
// the Status the reply carries. (Was Client::Call.)
Result<wire::Json> Call(Client& client, const wire::Json& request);
// Sends raw bytes as one frame body (tests use it to send malformed requests) and
// returns the reply whatever its "ok". (Was Client::CallRaw.)
Result<wire::Json> CallRaw(Client& client, std::string_view body);

// --- Liveness (docs/decisions/0010-daemon-liveness.md) ---

// Whether the daemon behind one control connection is still there. Shared by the
// Client and every channel opened on that connection; the verdict is sticky: once
// dead, always dead (Client::Reconnect makes a new connection with a new Liveness).
// Thread-safe: channels check it from their own threads.
class Liveness {
 public:
  // control_fd: the connection's socket (not owned; the Client calls Detach before
  // closing it). daemon_pid: the peer's pid from SO_PEERCRED, or 0: a pidfd of it is
  // polled too when the kernel offers pidfd_open.
  Liveness(int control_fd, int daemon_pid);
  ~Liveness();
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  // OK while the daemon is alive; kUnavailable once it exited, closed the connection,
  // or the connection was closed or replaced here. Polls (one syscall, no wait).
  Status Check();
  // The verdict so far without a syscall: kUnavailable when known dead, else OK.
  Status Verdict() const;
  // Records the death (first reason wins).
  void MarkDead(const std::string& why);
  // The Client is closing or replacing the connection: marks it dead with `why` and
  // stops polling its descriptor.
  void Detach(const std::string& why);
  bool dead() const { return dead_.load(std::memory_order_acquire); }

 private:
  mutable Mutex mu_;
  int control_fd_ GUARDED_BY(mu_) = -1;
  int pidfd_ GUARDED_BY(mu_) = -1;
  int daemon_pid_ = 0;
  std::string why_ GUARDED_BY(mu_);
  std::atomic<bool> dead_{false};
};

// Makes the channel's calls fail with kUnavailable once `liveness` says dead, and its
// waits poll it (every 20 ms while no completion comes). Client::OpenChannel does it.
void SetLiveness(DataChannel& ch, std::shared_ptr<Liveness> liveness);

// --- Data plane ---

// The namespace's arenas as the daemon described them in open_channel.
struct ChannelArenas {
  int host_fd = -1;          // read-only memfd of the H arena, or -1
  uint64_t host_bytes = 0;
  int gpu_fd = -1;           // read-only memfd of an emulated G arena, or -1
  uint64_t gpu_bytes = 0;    // the G arena's size (emulated or real)
  std::string gpu_ipc_handle;  // hex CUDA IPC handle of a real G arena, or ""

  uint64_t block_bytes = 0;  // bytes of one block
  uint32_t table_heads = 1;  // Retrieve table entries per budgeted block (granularity head: kv heads)
};
// Maps the channel memfd and the arenas (takes ownership of every fd, also on
// failure) and checks the channel header. (Was DataChannel::Map.)
Result<std::unique_ptr<DataChannel>> MapChannel(int fd, uint64_t total_bytes, const ChannelArenas& arenas);
// Opens the daemon's half of the GPU path (open_channel's gpu_* reply fields);
// `worker_event` is the interprocess event whose handle the request carried.
Status AttachGpu(DataChannel& ch, kernels::GpuEvent worker_event, const std::string& exchange_handle_hex,
                 uint64_t exchange_bytes, const std::string& daemon_event_hex);
// The emulated GPU path (the daemon has no GPU): the exchange is the memfd `fd`
// (owned from now on, also on failure), queries and tables are host memory, no events.
Status AttachEmulatedGpu(DataChannel& ch, int fd, uint64_t exchange_bytes);

// Posts a request (version is filled in, and a tag when 0). kBusy when the ring is full.
Status Submit(DataChannel& ch, dp::RingRequest req);
// Waits for the next completion, spinning before sleeping; kBusy on timeout.
Result<dp::RingCompletion> WaitCompletion(DataChannel& ch,
                                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Submit + WaitCompletion; a non-OK completion becomes a Status naming its detail.
Result<dp::RingCompletion> Call(DataChannel& ch, const dp::RingRequest& req);
// The staging area: write inputs here before Submit, read outputs after completion.
std::span<uint8_t> Staging(const DataChannel& ch);
const dp::ChannelHeader& Header(const DataChannel& ch);

// The Status a completion carries ("InvalidArgument: put: offset/length outside the staging area").
Status CompletionStatus(const dp::RingCompletion& c, const char* op);
// The Status of item i of a batched op ("<what>: item i").
Status BatchItemStatus(uint8_t status, uint8_t detail, const char* what, size_t i);

// After a batched op that answers with a table (RetrieveBatch, AcquireBatch) and
// completion c: the n results (staging after the entries) and their runs of the table
// (table_entries entries at staging[table_offset]) into a BatchRetrieval. Item i
// may have at most max_count(i) entries (exactly that many when exact). A result
// outside the table releases the batch's lease and is kCorruption.
Result<DataChannel::BatchRetrieval> ReadBatchTables(DataChannel& ch, const dp::RingCompletion& c, size_t n,
                                                    uint64_t table_offset, uint64_t table_entries,
                                                    const std::function<uint64_t(size_t)>& max_count, bool exact,
                                                    const char* what);

}  // namespace tierkv::internal
