// NamespaceOps: the data-plane operations of one channel over its namespace's
// runtime (common/data_plane.h lists the ops). Every field of a descriptor is
// checked here before use; a bad one gets an error completion naming the field.
// Leases taken by Retrieve belong to the channel and are released when it closes.
#pragma once

#include <memory>
#include <map>
#include <set>

namespace prometheus {
class Histogram;
}

#include "daemon/channel.h"
#include "daemon/gpu_exchange.h"
#include "daemon/namespace_runtime.h"
#include "daemon/worker_pool.h"

namespace tierkv::daemon {

// A prefix block's key in the store: the client's content hash mixed with the uid
// that published it, so one member's puts never answer another member's lookups
// unless the namespace lists the publisher in prefix_publishers. Never 0.
uint64_t ScopedPrefixHash(uint64_t content_hash, uint32_t publisher);

// The largest budget or recent window (blocks) one Retrieve, or one sequence of a
// batch, may ask for.
inline constexpr uint32_t kMaxRetrieveBudget = 1u << 20;
// The most blocks one Put or Get moves, tokens one Append adds, and token ids one
// prefix lookup or load names. Block indices are bounded by the store's own
// BlockStore::max_blocks_per_sequence().
inline constexpr uint32_t kMaxBlocksPerRequest = 1u << 16;
inline constexpr uint32_t kMaxAppendTokens = 1u << 20;
inline constexpr uint32_t kMaxPrefixTokens = 1u << 24;

// Batched Retrieve (dp::Op::kRetrieveBatch): the pool its selections run on (null:
// on the channel's thread) and the most sequences one request may name.
struct RetrieveBatchConfig {
  WorkerPool* pool = nullptr;
  uint32_t max_sequences = 256;  // limits.max_retrieve_batch
};

class NamespaceOps : public OpHandler {
 public:
  // Latency histograms (select, acquire, total) may be null.
  struct Latency {
    prometheus::Histogram *select = nullptr, *acquire = nullptr, *total = nullptr;
  };
  // `gpu`: the channel's GPU exchange (dp::kFlagGpu retrieves), or null.
  // `caller`: the channel's peer; its uid owns the sequences it opens and scopes
  // the prefix blocks it puts (docs/decisions/0007-owners-and-prefix-scope.md).
  NamespaceOps(NamespaceRuntime* runtime, Latency latency, std::unique_ptr<GpuExchange> gpu = nullptr,
               Caller caller = {}, RetrieveBatchConfig batch = {})
      : rt_(runtime),
        stats_(&runtime->retrieval_stats()),
        latency_(latency),
        gpu_(std::move(gpu)),
        caller_(caller),
        batch_(batch) {}
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t> staging) override;
  void OnClose() override;

 private:
  dp::RingCompletion Put(const dp::RingRequest& req, std::span<uint8_t> staging);
  // Put's and PutBatch's first half for blocks [block, block + count) of (seq, layer),
  // after the request's checks (count, payload size, block range): the owner claim,
  // then the store ranges (one per KV head in a per-head namespace, its payload split
  // into *split, which must outlive the store call) appended to *ranges. prefix_hash:
  // the client's content hash (0: not a prefix block). An error completion when the
  // claim fails (nothing appended).
  dp::RingCompletion AddPutRanges(uint64_t seq, uint32_t layer, uint32_t block, uint32_t count,
                                  std::span<const std::byte> payload, uint64_t prefix_hash,
                                  std::vector<storage::PutRange>* ranges, std::vector<std::byte>* split);
  // The second half, once BlockStore::PutRanges stored one put's ranges: their
  // retrieval summaries, R for a new prefix block. Completion: count stored, value
  // durable (1/0), value2 deduplicated.
  dp::RingCompletion FinishPutRanges(std::span<const storage::PutRange> ranges);
  // dp::Op::kPutBatch (data_ops_multi.cc): every entry's ranges in one PutRanges
  // (under write-through one D commit for the batch).
  dp::RingCompletion PutBatch(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Get(const dp::RingRequest& req, std::span<uint8_t> staging);
  // Get's work on stored blocks [block, block + count) of (seq, stored layer) into
  // out (count stored blocks); local misses of a namespace that keeps closed
  // sequences in R are fetched from R. Completion count: blocks read before a failure.
  dp::RingCompletion GetStored(uint64_t seq, uint32_t stored_layer, uint32_t block, uint32_t count,
                               std::span<std::byte> out);
  // GetStored's fall-through to R: fetches the blocks at `misses` (indices from
  // `block`) into out. end/error: where and why the local pass stopped (end ==
  // count: it did not).
  dp::RingCompletion GetMissesFromRemote(uint64_t seq, uint32_t stored_layer, uint32_t block, uint32_t count,
                                         std::span<std::byte> out, std::span<const uint32_t> misses, uint32_t end,
                                         const Status& error);
  dp::RingCompletion Append(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Retrieve(const dp::RingRequest& req, std::span<uint8_t> staging);
  // One sequence's step of Retrieve or RetrieveBatch.
  struct Step {
    uint64_t seq = 0;
    uint32_t layer = 0;
    uint32_t budget = 0;
    uint32_t window = 0;  // 0: the namespace policy's recent window
    std::span<const float> query;
  };
  struct StepPolicy {
    storage::Policy store;
    RetrievalPolicy retrieval;
  };
  StepPolicy CurrentPolicy() const { return {rt_->store().policy(), rt_->retrieval_policy()}; }
  // What Retrieve and RetrieveBatch get back per sequence.
  struct Pinned {
    dp::RingCompletion outcome{};   // OK, or why this sequence failed (then nothing of it stays pinned)
    std::vector<uint64_t> leases;   // store leases: one per table head
    uint32_t entries = 0;           // its table entries
    uint32_t missing = 0;           // defer mode: selected but not resident
    bool triggered = false;         // a trigger fired (for any head)
  };
  // Retrieve's and RetrieveBatch's core, the same for the host and the GPU path:
  // every step (sequences of one layer, queries of the engine's shape) is selected
  // — per KV head namespace, one selection per KV head on the stored layer, with
  // its GQA group's query heads — in parallel on the batch pool, then pinned in
  // order on the channel thread. Each sequence's entries are appended to *table
  // (head by head, ascending blocks within a head; BlockTableEntry::head says which).
  std::vector<Pinned> SelectAndPinAll(std::span<const Step> steps, std::vector<dp::BlockTableEntry>* table);
  // The selection half: catch-up of unseen blocks, trigger, scoring, top-k. Thread-safe (runs on the
  // batch's worker pool); *select_ns: its time. A failed one is an error completion.
  dp::RingCompletion SelectOnly(const Step& step, const StepPolicy& policy, Selection* out,
                                uint64_t* select_ns) const;
  // What one step cost over its heads (counted once per step by CountStep).
  struct PinCost {
    uint64_t select_ns = 0;   // the slowest head's selection (they run in parallel)
    uint64_t acquire_ns = 0;  // the pins, one head after the other
    uint64_t selected = 0, missing = 0;
  };
  // The pinning half: lease, the entries (appended to *table, marked `head`), its
  // cost added to *cost. Channel thread only (leases_).
  dp::RingCompletion Pin(const Step& step, const StepPolicy& policy, const Selection& sel, uint16_t head,
                         std::vector<dp::BlockTableEntry>* table, PinCost* cost);
  // The retrieval stats and latency histograms of one served step.
  void CountStep(const StepPolicy& policy, const Pinned& p, const PinCost& cost);
  // Takes a lease id for the client: the store lease itself when there is one, else
  // a batch lease over all of them (Release frees them together).
  uint64_t ClientLease(std::vector<uint64_t> store_leases);
  // dp::Op::kRetrieveBatch (data_ops_batch.cc).
  dp::RingCompletion RetrieveBatch(const dp::RingRequest& req, std::span<uint8_t> staging);
  // dp::Op::kAcquire: a zero-copy Get. Pins blocks [block, block + count) of (seq,
  // layer) for the client where they are (MissMode::kInPlace: D blocks read into
  // H, nothing moved to G), writes their table entries (a run per KV head per head
  // namespace) to staging; kNotFound when one does not exist (nothing stays pinned).
  // arg != 0: that lease is released first (kNotFound, nothing acquired, if not held).
  dp::RingCompletion AcquireRange(const dp::RingRequest& req, std::span<uint8_t> staging);
  // AcquireRange's and AcquireBatch's core: pins blocks [first, first + count) of
  // (seq, layer) (count >= 1, no wrap: checked by the caller), appends the store
  // leases to *leases and the entries to *table. On failure nothing of it stays
  // pinned and *leases and *table are as they were. Completion: count = entries
  // appended, value2 = missing.
  dp::RingCompletion PinRange(uint64_t seq, uint32_t layer, uint32_t first, uint32_t count,
                              std::vector<uint64_t>* leases, std::vector<dp::BlockTableEntry>* table);
  // dp::Op::kAcquireBatch (data_ops_multi.cc): PinRange per entry, one lease for all.
  dp::RingCompletion AcquireBatch(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Release(const dp::RingRequest& req);
  // Releases a client lease (a store lease, or a batch lease and all its members).
  dp::RingCompletion ReleaseLease(uint64_t lease);
  // Releases store leases this channel took (a failed multi-head pin).
  void GiveBack(std::span<const uint64_t> store_leases);
  // The table entries of the first n blocks of `lease`, marked `head`, appended.
  static void AppendEntries(const storage::Lease& lease, uint16_t head, size_t n,
                            std::vector<dp::BlockTableEntry>* table);
  dp::RingCompletion CloseSequence(const dp::RingRequest& req);
  dp::RingCompletion Prefix(const dp::RingRequest& req, std::span<uint8_t> staging);
  // The content hashes of `tokens`' full blocks as the store keys them for one
  // publisher uid (ScopedPrefixHash of each).
  // Puts prefix positions fetched from R ([p][layer], positions first...) as the
  // shared prefix blocks hashes[first + p] of seq; returns how many positions stored.
  uint32_t StoreRemotePrefix(uint64_t seq, std::span<const uint64_t> hashes, uint32_t first,
                             const std::vector<std::vector<std::string>>& blocks);
  std::vector<uint64_t> ScopedHashes(std::span<const uint64_t> hashes, uint32_t publisher) const;

  NamespaceRuntime* const rt_;
  RetrievalStats* const stats_;
  const Latency latency_;
  const std::unique_ptr<GpuExchange> gpu_;
  const Caller caller_;
  const RetrieveBatchConfig batch_;
  std::set<uint64_t> leases_;  // held by this channel
  // Batch leases (dp::kBatchLeaseBit set) -> the store leases of their sequences.
  std::map<uint64_t, std::vector<uint64_t>> batch_leases_;
  uint64_t next_batch_lease_ = 1;
  std::vector<std::byte> scratch_;
  std::vector<dp::BlockTableEntry> table_;  // Retrieve's block table, reused across steps
};

}  // namespace tierkv::daemon
