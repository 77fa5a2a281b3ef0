// DataChannel: a client's data plane to tierkvd — request/completion rings and a
// staging area in shared memory (common/data_plane.h). Opened with
// Client::OpenChannel after Attach.
//
// Not thread-safe: one channel per thread. Requests complete in order.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "common/data_plane.h"
#include "common/shm.h"
#include "common/status.h"

namespace tierkv {

class DataChannel {
 public:
  // The namespace's arenas as the daemon described them in open_channel.
  struct Arenas {
    int host_fd = -1;          // read-only memfd of the H arena, or -1
    uint64_t host_bytes = 0;
    int gpu_fd = -1;           // read-only memfd of an emulated G arena, or -1
    uint64_t gpu_bytes = 0;
    uint64_t block_bytes = 0;  // bytes of one block
  };
  // Maps the channel memfd and the arenas (takes ownership of every fd, also on
  // failure) and checks the channel header.
  static Result<std::unique_ptr<DataChannel>> Map(int fd, uint64_t total_bytes, const Arenas& arenas);

  // Posts a request (version is filled in). kBusy when the request ring is full.
  Status Submit(dp::RingRequest req);
  // Waits for the next completion, spinning `spin` before sleeping; kBusy on timeout.
  Result<dp::RingCompletion> WaitCompletion(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Submit + WaitCompletion; a non-OK completion becomes a Status naming its detail.
  Result<dp::RingCompletion> Call(const dp::RingRequest& req);
  Status Noop();

  // The staging area: write inputs here before Submit, read outputs after completion.
  std::span<uint8_t> staging() const { return {region_.data() + header_.staging_offset, header_.staging_bytes}; }
  const dp::ChannelHeader& header() const { return header_; }
  // Read-only views of the namespace's arenas (empty when not shared): a block table
  // entry {tier, offset} points into one of them (tier 0 = G, 1 = H).
  std::span<const std::byte> host_arena() const { return {reinterpret_cast<const std::byte*>(host_.data()), host_.size()}; }
  std::span<const std::byte> gpu_arena() const { return {reinterpret_cast<const std::byte*>(gpu_.data()), gpu_.size()}; }
  uint64_t block_bytes() const { return block_bytes_; }
  void set_spin(std::chrono::nanoseconds spin) { spin_ = spin; }

 private:
  DataChannel(ShmRegion region, dp::ChannelHeader header) : region_(std::move(region)), header_(header) {}

  ShmRegion region_;
  dp::ChannelHeader header_;
  ShmRegion host_, gpu_;
  uint64_t block_bytes_ = 0;
  SpscRing<dp::RingRequest> requests_;
  SpscRing<dp::RingCompletion> completions_;
  std::chrono::nanoseconds spin_{std::chrono::microseconds(50)};
  uint64_t next_tag_ = 1;
};

// The Status a completion carries ("InvalidArgument: put: offset/length outside the staging area").
Status CompletionStatus(const dp::RingCompletion& c, const char* op);

}  // namespace tierkv
