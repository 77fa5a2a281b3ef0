// Channel: one client's data plane — a memfd holding a request ring, a completion
// ring and a staging area (common/data_plane.h), served by one worker thread.
//
// The worker copies each request out of shared memory, checks the fields every op
// shares (version, op, staging range), hands it to the OpHandler, and posts the
// completion. A client that corrupts the ring indices, or stops draining its
// completions, is cut off: the channel is marked broken and stops.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "common/data_plane.h"
#include "common/shm.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::daemon {

// Per-op work, implemented over the namespace's BlockStore. Called on the channel's
// worker thread only. `staging` is shared with the client: copy what you validate.
class OpHandler {
 public:
  virtual ~OpHandler() = default;
  virtual dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t> staging) = 0;
  // Called once when the channel stops (client gone): release what it holds.
  virtual void OnClose() {}
};

struct ChannelOptions {
  uint32_t request_capacity = 256;
  uint32_t completion_capacity = 256;
  uint64_t staging_bytes = 16 << 20;
  std::chrono::nanoseconds spin{std::chrono::microseconds(50)};  // busy-poll before sleeping
  // Register the channel's memory with the GPU (cudaHostRegister): set when the
  // namespace's G is a real GPU, so that puts and gets move between staging and G by
  // DMA instead of through the driver's bounce buffer. A failure only logs.
  bool pin_for_gpu = false;
};

struct ChannelStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> rejected{0};  // error completions for malformed descriptors
};

class Channel {
 public:
  // Creates the memfd and starts the worker. `on_broken` runs (on the worker) when
  // the client violated the ring protocol.
  static Result<std::unique_ptr<Channel>> Open(const std::string& name, const ChannelOptions& options,
                                               std::unique_ptr<OpHandler> handler, ChannelStats* stats,
                                               std::function<void(const Status&)> on_broken);
  ~Channel();  // Stop()s

  // Stops the worker, then calls the handler's OnClose. Idempotent.
  void Stop();
  int fd() const { return region_.fd(); }
  const dp::ChannelHeader& layout() const { return layout_; }

 private:
  Channel(ShmRegion region, dp::ChannelHeader layout, std::unique_ptr<OpHandler> handler, ChannelStats* stats,
          std::chrono::nanoseconds spin, std::function<void(const Status&)> on_broken);
  void Run();
  bool Complete(const dp::RingCompletion& c);

  ShmRegion region_;
  kernels::HostRegistration pinned_;  // unregistered before region_ is unmapped
  const dp::ChannelHeader layout_;
  std::unique_ptr<OpHandler> handler_;
  ChannelStats* const stats_;
  const std::chrono::nanoseconds spin_;
  std::function<void(const Status&)> on_broken_;
  SpscRing<dp::RingRequest> requests_;
  SpscRing<dp::RingCompletion> completions_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::thread worker_;
};

// A completion with an error status and detail.
dp::RingCompletion ErrorCompletion(uint64_t tag, StatusCode code, dp::Detail detail);

// Checks the fields every op shares (version, op, staging range), answers noop,
// and hands the rest to `handler`. What a channel's worker does with each request.
dp::RingCompletion ProcessRequest(const dp::RingRequest& req, std::span<uint8_t> staging, OpHandler* handler,
                                  ChannelStats* stats);

}  // namespace tierkv::daemon
