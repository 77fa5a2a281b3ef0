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
#include <string>
#include <vector>

#include "common/data_plane.h"
#include "common/shm.h"
#include "common/status.h"
#include "kernels/gpu_runtime.h"

namespace tierkv {

class DataChannel {
 public:
  // The namespace's arenas as the daemon described them in open_channel.
  struct Arenas {
    int host_fd = -1;          // read-only memfd of the H arena, or -1
    uint64_t host_bytes = 0;
    int gpu_fd = -1;           // read-only memfd of an emulated G arena, or -1
    uint64_t gpu_bytes = 0;
    std::string gpu_ipc_handle;  // hex CUDA IPC handle of a real G arena, or ""

    uint64_t block_bytes = 0;  // bytes of one block
  };
  // Maps the channel memfd and the arenas (takes ownership of every fd, also on
  // failure) and checks the channel header.
  static Result<std::unique_ptr<DataChannel>> Map(int fd, uint64_t total_bytes, const Arenas& arenas);
  ~DataChannel();

  // Posts a request (version is filled in). kBusy when the request ring is full.
  Status Submit(dp::RingRequest req);
  // Waits for the next completion, spinning `spin` before sleeping; kBusy on timeout.
  Result<dp::RingCompletion> WaitCompletion(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Submit + WaitCompletion; a non-OK completion becomes a Status naming its detail.
  Result<dp::RingCompletion> Call(const dp::RingRequest& req);
  Status Noop();

  // --- Block operations (synchronous; each copies through the staging area) ---

  // Stores blocks [first, first + n) of (seq, layer); data holds n * block_bytes()
  // bytes (K then V of each block). prefix_hash != 0 (n must be 1) marks a full
  // prefix block shared by content. *durable: the namespace's write policy wrote it
  // to disk before acknowledging.
  Status Put(uint64_t seq, uint32_t layer, uint32_t first, std::span<const std::byte> data,
             uint64_t prefix_hash = 0, bool* durable = nullptr);
  // Copies blocks [first, first + n) into out (n * block_bytes() bytes).
  Status Get(uint64_t seq, uint32_t layer, uint32_t first, std::span<std::byte> out);

  struct BlockRef {
    uint32_t block;    // block index in the sequence (token position block * block_tokens)
    uint8_t tier;      // 0 = G, 1 = H
    uint64_t offset;   // in that tier's arena
  };
  struct Retrieval {
    uint64_t lease = 0;           // pass to Release after the step
    std::vector<BlockRef> blocks;  // selected and resident, ascending
    uint32_t missing = 0;          // defer mode: selected but still on disk
  };
  // Selects up to `budget` blocks of (seq, layer) for `query` (f32 [q_heads][head_dim]),
  // sinks and the recent window included, and pins them until Release.
  Result<Retrieval> Retrieve(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t budget);
  Status Release(uint64_t lease);
  // The bytes of a retrieved block in the shared arenas (CPU path).
  std::span<const std::byte> BlockBytes(const BlockRef& ref) const;
  // Drops the sequence's blocks (shared prefix blocks stay while others use them).
  Status CloseSequence(uint64_t seq);
  // How many leading tokens of `tokens` are cached as full prefix blocks.
  Result<uint32_t> LookupPrefix(std::span<const int32_t> tokens);
  // Makes the cached prefix of `tokens` the first blocks of `seq`; returns its tokens.
  Result<uint32_t> LoadPrefix(uint64_t seq, std::span<const int32_t> tokens);

  // --- GPU path (DESIGN §5), on a channel opened with Client::ChannelOptions::gpu ---
  // Streams are cudaStream_t passed as void* (nullptr: the legacy default stream).
  // When the daemon has no GPU (gpu_path_emulated()), the same calls work with host
  // memory: the query pointer and the table are host pointers, streams are ignored.
  struct GpuRetrieval {
    uint64_t lease = 0;    // pass to Release after the step
    uint32_t count = 0;    // entries in table
    uint32_t missing = 0;  // defer mode: selected but not resident yet
    // Device memory (the channel's exchange buffer): `count` entries, valid for work
    // queued on the stream given to FinishRetrieveOnGpu, until the next retrieval.
    // An entry's offset is into the G arena (gpu_arena_device()) when tier == 0,
    // into the H arena (host_arena()) when tier == 1. Emulated: host memory, and a
    // tier-0 offset is into gpu_arena().
    const dp::BlockTableEntry* table = nullptr;
  };
  // Step 1: queues a copy of the query (f32 [q_heads][head_dim], `query_floats`
  // floats, device memory) into the exchange buffer on `stream`, records this
  // process's IPC event after it and posts the request. Returns at once: the host
  // never waits for `stream`. One GPU retrieval in flight per channel
  // (kInvalidArgument otherwise, or on a channel without the GPU path).
  Status StartRetrieveOnGpu(uint64_t seq, uint32_t layer, const float* device_query, size_t query_floats,
                            uint32_t budget, void* stream);
  // Step 3: waits on the host for the daemon's completion, then makes `stream` wait
  // on the daemon's IPC event: kernels queued on `stream` afterwards see the table.
  Result<GpuRetrieval> FinishRetrieveOnGpu(void* stream);
  bool gpu_path() const { return gpu_path_ != nullptr; }
  bool gpu_path_emulated() const;
  // Opens the daemon's half of the GPU path (open_channel's gpu_* reply fields);
  // `worker_event` is the interprocess event whose handle the request carried.
  Status AttachGpu(kernels::GpuEvent worker_event, const std::string& exchange_handle_hex, uint64_t exchange_bytes,
                   const std::string& daemon_event_hex);
  // The emulated GPU path (the daemon has no GPU): the exchange is the memfd `fd`
  // (owned from now on, also on failure), queries and tables are host memory, no
  // events. The calls above behave the same with host pointers for "device" ones.
  Status AttachEmulatedGpu(int fd, uint64_t exchange_bytes);

  // The staging area: write inputs here before Submit, read outputs after completion.
  std::span<uint8_t> staging() const { return {region_.data() + header_.staging_offset, header_.staging_bytes}; }
  const dp::ChannelHeader& header() const { return header_; }
  // Read-only views of the namespace's arenas (empty when not shared): a block table
  // entry {tier, offset} points into one of them (tier 0 = G, 1 = H).
  std::span<const std::byte> host_arena() const { return {reinterpret_cast<const std::byte*>(host_.data()), host_.size()}; }
  std::span<const std::byte> gpu_arena() const { return {reinterpret_cast<const std::byte*>(gpu_.data()), gpu_.size()}; }
  uint64_t block_bytes() const { return block_bytes_; }
  // Device address of the namespace's real G arena in this process (CUDA IPC), or
  // nullptr (no GPU: the G arena is emulated and gpu_arena() maps it).
  void* gpu_arena_device() const { return gpu_ipc_.data(); }
  void set_spin(std::chrono::nanoseconds spin) { spin_ = spin; }

 private:
  DataChannel(ShmRegion region, dp::ChannelHeader header);

  ShmRegion region_;
  dp::ChannelHeader header_;
  ShmRegion host_, gpu_;
  kernels::IpcMemMapping gpu_ipc_;
  uint64_t block_bytes_ = 0;
  SpscRing<dp::RingRequest> requests_;
  SpscRing<dp::RingCompletion> completions_;
  std::chrono::nanoseconds spin_{std::chrono::microseconds(200)};  // a waiting client has nothing else to do
  uint64_t next_tag_ = 1;
  struct GpuPath;  // channel.cc
  std::unique_ptr<GpuPath> gpu_path_;
};

// The Status a completion carries ("InvalidArgument: put: offset/length outside the staging area").
Status CompletionStatus(const dp::RingCompletion& c, const char* op);

}  // namespace tierkv
