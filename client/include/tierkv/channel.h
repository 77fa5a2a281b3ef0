// DataChannel: a client's data plane to tierkvd — request/completion rings and a
// staging area in shared memory. Opened with Client::OpenChannel after Attach.
//
// Not thread-safe: one channel per thread. Requests complete in order.
// Self-contained: needs only the C++ standard library.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tierkv/export.h"
#include "tierkv/status.h"
#include "tierkv/types.h"

namespace tierkv {

namespace internal {
struct ChannelAccess;  // client/client_internal.h: tests and tools only
}

class TIERKV_EXPORT DataChannel {
 public:
  ~DataChannel();
  DataChannel(const DataChannel&) = delete;
  DataChannel& operator=(const DataChannel&) = delete;

  // One round trip through the rings (no data moved).
  Status Noop();

  // --- Block operations (synchronous; each copies through the staging area) ---

  // Stores blocks [first, first + n) of (seq, layer); data holds n * block_bytes()
  // bytes (K then V of each block). prefix_hash != 0 (n must be 1) marks a full
  // prefix block shared by content. *durable: the namespace's write policy wrote it
  // to disk before acknowledging.
  Status Put(uint64_t seq, uint32_t layer, uint32_t first, std::span<const std::byte> data,
             uint64_t prefix_hash = 0, bool* durable = nullptr);
  // Appends `tokens` tokens of (seq, layer) at token position `first_token` (K then
  // V of the new tokens, [kv_heads][tokens][head_dim] each, in the namespace's
  // dtype) to the open last block: the block is stored as it fills (zero-padded,
  // readable at once) and summarized for retrieval when full. An append must start
  // where the layer ends (after the last whole block put, or the last appended
  // token): anything else is refused with kInvalidArgument naming the token
  // expected. A whole-block Put of the layer ends the open block. Returns the token
  // the next append starts at.
  Result<uint64_t> Append(uint64_t seq, uint32_t layer, uint64_t first_token, uint32_t tokens,
                          std::span<const std::byte> kv);
  // Copies blocks [first, first + n) into out (n * block_bytes() bytes).
  Status Get(uint64_t seq, uint32_t layer, uint32_t first, std::span<std::byte> out);

  struct BlockRef {
    uint32_t block;    // block index in the sequence (token position block * block_tokens)
    uint8_t tier;      // 0 = G, 1 = H
    uint64_t offset;   // in that tier's arena
    uint16_t head = 0; // the KV head it serves (granularity head; 0 per layer)
  };
  struct Retrieval {
    uint64_t lease = 0;           // pass to Release after the step
    std::vector<BlockRef> blocks;  // selected and resident: per head (head 0 first), ascending within a head
    uint32_t missing = 0;          // defer mode: selected but still on disk
  };
  // Selects up to `budget` blocks of (seq, layer) for `query` (f32 [q_heads][head_dim]),
  // sinks and the recent window included, and pins them until Release. A budget
  // below the policy's sink_blocks + recent_window (when the layer holds that many
  // blocks) is refused with kInvalidArgument saying so. In a namespace of
  // granularity head every KV head gets its own `budget` blocks (table_heads() runs;
  // each block is one head's K then V, entry_bytes() bytes).
  Result<Retrieval> Retrieve(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t budget);
  // A zero-copy Get: pins blocks [first, first + count) of (seq, layer) where they
  // are (nothing moves to G; a block only on D is read into H first) and
  // returns their refs under one lease, for reading in place (BlockBytes, the G
  // arena, CopyBlock) until Release. Per KV head namespace: a run of count entries
  // per head. kNotFound when one of the blocks does not exist (nothing stays pinned).
  // release != 0: that lease (the reader's previous one) is released in the same
  // round trip, before the new pins, and stays released if they then fail (an
  // unknown lease fails the call, kNotFound, before anything is pinned).
  Result<Retrieval> Acquire(uint64_t seq, uint32_t layer, uint32_t first, uint32_t count, uint64_t release = 0);
  Status Release(uint64_t lease);

  // --- Batched Retrieve (docs/decisions/0011-batched-retrieve.md) ---
  struct BatchItem {
    uint64_t seq = 0;
    std::span<const float> query;  // f32 [q_heads][head_dim]
    uint32_t budget = 0;           // blocks, sinks and the recent window included
    uint32_t window = 0;           // recent-window blocks; 0 = the namespace policy's
  };
  struct BatchResult {
    Status status;                 // this sequence's outcome; a failed one does not fail the others
    std::vector<BlockRef> blocks;  // selected and resident, ascending (empty when status failed)
    uint32_t missing = 0;          // defer mode: selected but still on disk
    bool triggered = true;         // false: the trigger reused the last selection
  };
  struct BatchRetrieval {
    uint64_t lease = 0;                // one Release frees every sequence's pins; 0 when none was served
    uint32_t served = 0;               // results with an OK status
    std::vector<BatchResult> results;  // one per item, in order
  };
  // Retrieves for every item (sequences of one layer) in one round trip: the daemon
  // scores them in parallel and returns one table. The error Status is for the whole
  // request (a bad layer, too many items, entries + queries + tables that do not fit
  // the staging area: 64 * n + n * query bytes + 16 * sum(budget) bytes); a bad item
  // (unknown sequence, zero budget, wrong query size) only fails its own result.
  Result<BatchRetrieval> RetrieveBatch(uint32_t layer, std::span<const BatchItem> items);
  // The staging bytes RetrieveBatch needs for n items of query_floats floats whose
  // tables hold total_budget entries (the budgets' sum times table_heads()).
  static uint64_t BatchStagingBytes(size_t n, size_t query_floats, uint64_t total_budget);

  // --- Batched Acquire and Put (docs/decisions/0028-batched-acquire-and-put.md) ---
  struct AcquireItem {
    uint64_t seq = 0;
    uint32_t first = 0;  // blocks [first, first + count) of (seq, layer)
    uint32_t count = 0;
  };
  // Acquire for every item (sequences of one layer) in one round trip: each item's
  // blocks pinned where they are under one lease for the batch (one Release frees
  // them all; 0 when none was served), results[i] in item order (a run per KV head
  // per head namespace; `triggered` is meaningless here). The error Status is for the
  // whole request (no items, a bad layer, more items than the daemon's
  // limits.max_retrieve_batch, a table that does not fit the staging area: 64 * n +
  // 16 * sum(count) * table_heads() bytes, an unknown `release`); a bad item (count 0,
  // a block that does not exist: kNotFound) fails only its own result and pins
  // nothing of it. release != 0: as Acquire's, released first in the same round trip.
  Result<BatchRetrieval> AcquireBatch(uint32_t layer, std::span<const AcquireItem> items, uint64_t release = 0);
  struct PutItem {
    uint64_t seq = 0;
    uint32_t first = 0;               // blocks [first, first + n) of (seq, layer)
    std::span<const std::byte> data;  // n * block_bytes() bytes, as Put's
  };
  struct PutResult {
    Status status;        // this item's outcome; a failed one does not fail the others
    uint32_t stored = 0;  // its blocks stored (all of them when status is OK; before the failure otherwise)
    bool durable = false; // the write policy made them durable on disk before the answer
  };
  struct BatchPut {
    uint32_t stored_items = 0;       // results with an OK status
    bool durable = false;            // every item stored and durable
    std::vector<PutResult> results;  // one per item, in order
  };
  // Puts every item's blocks (sequences of one layer) with as few round trips as the
  // staging area allows (one when 64 * n + the data fit; consecutive items otherwise
  // go in several requests). Each item is one Put on the daemon (one D commit under
  // write-through). The error Status is for the whole call (no items, data that is
  // not whole blocks, an item larger than the staging area, a bad layer).
  Result<BatchPut> PutBatch(uint32_t layer, std::span<const PutItem> items);

  // The bytes of a retrieved block in the shared arenas (CPU path; empty for a
  // block on a real G, which is device memory: see CopyBlock).
  std::span<const std::byte> BlockBytes(const BlockRef& ref) const;
  // Copies the entry_bytes() a retrieved ref points at into `out` (host memory),
  // wherever the block lies: a host arena, or a real G (a device-to-host copy).
  Status CopyBlock(const BlockRef& ref, std::span<std::byte> out) const;
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
    const BlockTableEntry* table = nullptr;
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
  bool gpu_path() const;
  bool gpu_path_emulated() const;

  // Read-only views of the namespace's arenas (empty when not shared): a block table
  // entry {tier, offset} points into one of them (tier 0 = G, 1 = H).
  std::span<const std::byte> host_arena() const;
  std::span<const std::byte> gpu_arena() const;
  uint64_t block_bytes() const;
  // Table entries per budgeted block: 1 (granularity layer) or num_kv_heads
  // (granularity head: one run per KV head), and the bytes one entry points at
  // (block_bytes() / table_heads(): one head's K then V, [block_tokens][head_dim] each).
  uint32_t table_heads() const;
  uint64_t entry_bytes() const;
  // Device address of the namespace's real G arena in this process (CUDA IPC), or
  // nullptr (no GPU: the G arena is emulated and gpu_arena() maps it).
  void* gpu_arena_device() const;
  // Bytes of that device arena (0 when gpu_arena_device() is nullptr).
  uint64_t gpu_arena_device_bytes() const;
  // How long a waiting call spins before it sleeps (default 200 us).
  void set_spin(std::chrono::nanoseconds spin);

 private:
  friend struct internal::ChannelAccess;
  struct Impl;  // client/client_internal.h
  explicit DataChannel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tierkv
