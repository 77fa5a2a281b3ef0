// BlockStore: the one place that decides where a namespace's KV blocks live
// (DESIGN §3). Tiers only store bytes; the BlockStore owns placement, leases,
// budgets and watermarks, the policy, and migration between tiers.
//
//   Put      -> G when the block is a sink or in the recent window, or G is below its
//               high watermark; else H; D too when the policy is write-through.
//   Get      -> copies from wherever the block is (D reads are verified).
//   Acquire  -> pins the blocks a retrieval selected and brings them to G (miss mode
//               wait) or returns the resident ones and schedules the rest (defer).
//   Release  -> unpins.
//   migrator -> a background thread demotes the coldest unpinned blocks G->H->D when
//               a tier passes its high watermark, down to its low watermark.
//
// Durability: a block on D has a manifest record written after its data is durable
// (data first, then one metadata write). At Open, records are adopted back into D
// and checked against the slot headers; anything else on D is reclaimed.
//
// Thread-safety: all methods are thread-safe. Metadata is guarded by one mutex per
// namespace; memory copies run under it, disk I/O runs outside it with the block
// pinned.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "storage/arena_tier.h"
#include "storage/block_index.h"
#include "storage/manifest.h"
#include "storage/policy.h"

namespace tierkv::storage {

struct BlockStoreOptions {
  NamespaceId ns = 0;
  ModelSpec model;
  Policy policy;
  uint32_t max_blocks_per_sequence = 1 << 20;  // per layer; bounds client-supplied indices
  std::chrono::milliseconds put_wait{5000};     // how long a put waits for room when every tier is full
  std::chrono::milliseconds migrate_interval{20};
};

// Counters exported by the daemon (DESIGN §8). Relaxed atomics.
struct BlockStoreStats {
  std::atomic<uint64_t> puts{0}, put_bytes{0}, puts_deduplicated{0}, puts_rejected{0};
  std::atomic<uint64_t> gets{0}, get_misses{0};
  std::atomic<uint64_t> hits_gpu{0}, hits_host{0}, hits_disk{0};  // where acquired/get blocks were found
  std::atomic<uint64_t> promotions_h_to_g{0}, promotions_d_to_h{0};
  std::atomic<uint64_t> demotions_g_to_h{0}, demotions_h_to_d{0};
  std::atomic<uint64_t> bytes_h_to_g{0}, bytes_d_to_h{0}, bytes_g_to_h{0}, bytes_h_to_d{0};
  std::atomic<uint64_t> disk_admission_stops{0};  // D writes refused (disk full or I/O errors)
  std::atomic<uint64_t> corrupt_blocks{0};        // reads that failed verification (block dropped)
  std::atomic<uint64_t> recovered_blocks{0}, orphan_slots{0};
};

// One pinned block of a lease: where the client finds its bytes now.
struct LeasedBlock {
  uint32_t index = 0;   // block index in the sequence
  Where where = Where::kNone;
  uint64_t offset = 0;  // byte offset in that tier's arena
};

struct Lease {
  uint64_t id = 0;
  std::vector<LeasedBlock> blocks;  // resident blocks, in the order asked
  std::vector<uint32_t> missing;    // defer mode: asked but not on G yet (scheduled)
};

class BlockStore {
 public:
  // Tiers: g and h required, d may be null (no disk tier). The store does not own
  // them; they and the manifest must outlive it. Recovers the namespace's D blocks
  // from the manifest.
  static Result<std::unique_ptr<BlockStore>> Open(const BlockStoreOptions& options, ArenaTier* g, ArenaTier* h,
                                                  Tier* d, Manifest* manifest);
  ~BlockStore();  // stops the migrator

  // Stores one block (payload: model.BlockBytes() bytes). prefix_hash != 0 marks a
  // full prefix block: if (hash, layer) is stored already the sequence shares it and
  // nothing is copied (*deduplicated = true). Returns once the bytes are in G or H,
  // and on D too under write-through (then *durable = true).
  // kInvalidArgument: layer/index out of range, wrong size. kBusy: the block is
  // leased. kResourceExhausted: no room in any tier within put_wait.
  Status Put(SequenceId seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload,
             uint64_t prefix_hash = 0, bool* deduplicated = nullptr, bool* durable = nullptr);
  // Copies one block into out (model.BlockBytes() bytes). kNotFound when absent.
  // kCorruption when its D copy fails verification (the block is dropped).
  Status Get(SequenceId seq, uint32_t layer, uint32_t index, std::span<std::byte> out);
  // Pins blocks of (seq, layer) for one step and brings them to G (see MissMode).
  // Unknown blocks are skipped (listed in nothing). `selected` counts toward the
  // score-aware eviction.
  Result<Lease> Acquire(SequenceId seq, uint32_t layer, std::span<const uint32_t> blocks, MissMode mode);
  // Unpins a lease. kNotFound for an unknown id.
  Status Release(uint64_t lease_id);
  // Drops every block of the sequence (shared prefix blocks stay while others use them).
  Status DropSequence(SequenceId seq);
  // Makes blocks [0, n) of `seq` the shared prefix blocks `hashes[0..n)` for every
  // layer that has them all; returns how many leading blocks are present in every layer.
  uint32_t MatchPrefix(std::span<const uint64_t> hashes) const;
  Status LinkPrefix(SequenceId seq, std::span<const uint64_t> hashes);

  Policy policy() const;
  // Validated by the caller (ApplyPolicyChanges); takes effect at once.
  void SetPolicy(const Policy& p);

  uint32_t SequenceBlocks(SequenceId seq, uint32_t layer) const;
  size_t num_blocks() const;
  size_t num_sequences() const;
  size_t MetadataBytes() const;
  const BlockStoreStats& stats() const { return stats_; }
  const ModelSpec& model() const { return options_.model; }
  ArenaTier* gpu_tier() const { return g_; }
  ArenaTier* host_tier() const { return h_; }
  Tier* disk_tier() const { return d_; }
  // Runs one migration pass now (tests); the migrator thread does this periodically.
  void MigrateOnce();

 private:
  BlockStore(const BlockStoreOptions& options, ArenaTier* g, ArenaTier* h, Tier* d, Manifest* manifest);

  // All REQUIRES mu_ held (lock passed when the function may drop it for I/O).
  SlotTag TagOf(BlockRef ref) const;
  bool Protected(BlockRef ref) const;
  void Touch(BlockRef ref);
  Result<SlotId> AllocMemory(Where where);
  Status PlaceInMemory(std::unique_lock<std::mutex>& lock, BlockRef ref, std::span<const std::byte> payload,
                       bool prefer_gpu);
  Status MoveToGpu(std::unique_lock<std::mutex>& lock, BlockRef ref);
  Status LoadFromDisk(std::unique_lock<std::mutex>& lock, BlockRef ref);
  Status WriteToDisk(std::unique_lock<std::mutex>& lock, BlockRef ref);
  Status DemoteOne(std::unique_lock<std::mutex>& lock, BlockRef ref);
  void ReleaseMemory(BlockRef ref);
  void ForgetDiskCopy(BlockRef ref);
  void MaybeFree(BlockRef ref);
  Status PersistLink(SequenceId seq, uint32_t layer, uint32_t index, uint64_t hash);
  BlockRef PickVictim(TierKind tier) const;
  bool OverHigh(TierKind tier) const;
  bool OverLow(TierKind tier) const;
  void MigratorLoop();
  void RequestMigration();  // REQUIRES: mu_ held
  Status Recover();

  const BlockStoreOptions options_;
  ArenaTier* const g_;
  ArenaTier* const h_;
  Tier* const d_;
  Manifest* const manifest_;
  const size_t block_bytes_;

  mutable std::mutex mu_;
  std::condition_variable room_cv_;  // signalled when slots are freed
  std::condition_variable migrate_cv_;
  Policy policy_;                       // GUARDED_BY(mu_)
  BlockIndex index_;                    // GUARDED_BY(mu_)
  std::unordered_map<uint64_t, std::vector<BlockRef>> leases_;  // GUARDED_BY(mu_)
  uint64_t next_lease_ = 1;             // GUARDED_BY(mu_)
  std::vector<BlockRef> deferred_;      // defer-mode misses to promote; GUARDED_BY(mu_)
  bool disk_ok_ = true;                 // D admits writes; GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point disk_retry_at_;  // GUARDED_BY(mu_)
  bool stop_ = false;                   // GUARDED_BY(mu_)
  bool migrate_requested_ = false;      // GUARDED_BY(mu_)
  mutable uint64_t sample_state_ = 0x2545F4914F6CDD1Dull;
  BlockStoreStats stats_;
  std::thread migrator_;
};

}  // namespace tierkv::storage
