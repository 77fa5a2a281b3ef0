// BlockStore: the one place that decides where a namespace's KV blocks live
// (DESIGN §3). Tiers only store bytes; the BlockStore owns placement, leases,
// budgets and watermarks, the policy, and migration between tiers.
//
//   Put      -> G when the block is a sink or in the recent window, or G is below its
//               high watermark; else H; D too when the policy is write-through.
//   Get      -> copies from wherever the block is (D reads are verified).
//   Acquire  -> pins the blocks a retrieval selected and brings them to G (miss mode
//               wait) or returns the resident ones and schedules the rest (defer).
//               D reads of one call go to the disk as one batch, with the
//               policy's prefetch_depth blocks after each D miss loaded into H too.
//   Prefetch -> loads D-only blocks into H (one batch), no pin.
//   Release  -> unpins.
//   migrator -> a background thread demotes the coldest unpinned blocks G->H->D when
//               a tier passes its high watermark, down to its low watermark; H->D
//               demotions go in batches (one D write batch, one fdatasync, one
//               manifest batch).
//
// Durability: a block's D copy is never overwritten in place. Writing a block to D
// takes a fresh slot, writes it, fdatasyncs, then flips the block's manifest record
// to the new slot in one synced write, and only then frees the old slot: a crash at
// any moment leaves the last recorded copy intact. Under write-through a put is
// acknowledged as durable (*durable = true) only after that sequence. At Open,
// records are adopted back into D and checked against their slots' headers (one
// 4 KiB read per stored block); every other D slot is free.
//
// D faults: an I/O error or a full disk stops D admission (disk_admission()) for
// BlockStoreOptions::disk_retry_after; meanwhile G and H keep serving puts and gets
// (write-through puts are stored with *durable = false), and the first write after
// the pause probes the disk again. A D copy that fails verification is re-read
// once, then dropped (stats.corrupt_blocks) and never served.
//
// Compression (Policy::compression): blocks are encoded when written to D
// (storage/block_codec.h) and decoded when read back; G and H hold raw blocks.
//
// Thread-safety: all methods are thread-safe. Metadata is guarded by one mutex per
// namespace. Disk I/O (and compression) runs outside it with the blocks pinned and
// marked kIoPending, so their memory copy neither moves nor changes until the
// transfer is done. The copies of Put and Get into and out of G/H run outside it
// too: a put copies into a slot it holds (kPlacing: readers wait), a get out of a
// pinned, published block (it cannot move; a put of it waits). Moves between G and
// H (promotion, demotion) copy under the mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/model_spec.h"
#include "common/mutex.h"
#include "common/status.h"
#include "storage/arena_tier.h"
#include "storage/block_index.h"
#include "storage/block_mover.h"
#include "storage/block_records.h"
#include "storage/commit_queue.h"
#include "storage/disk_tier.h"
#include "storage/manifest.h"
#include "storage/policy.h"
#include "storage/side_thread.h"

namespace tierkv::storage {

struct BlockStoreOptions {
  NamespaceId ns = 0;
  ModelSpec model;
  Policy policy;
  uint32_t max_blocks_per_sequence = 1 << 20;  // per layer; bounds client-supplied indices
  std::chrono::milliseconds put_wait{5000};     // how long a put waits for room when every tier is full
  std::chrono::milliseconds migrate_interval{20};
  // Run the migrator thread. Default: true (tests that drive MigrateOnce alone and
  // need its decisions to be theirs turn it off; puts waiting for room then wait
  // for put_wait).
  bool migrator_thread = true;
  // How long D admission stays stopped after an I/O error or a full disk. Default: 5 s
  std::chrono::milliseconds disk_retry_after{5000};
  // Most blocks written to D in one demotion batch (one fdatasync, one manifest batch).
  // Default: 32
  uint32_t demote_batch = 32;
  // Group commit (docs/decisions/0016-group-commit.md): concurrent D writes (puts of
  // several channels, demotions, a drain) share one fdatasync and one manifest batch.
  // false: each caller syncs its own writes (the old behaviour, for benchmarks).
  bool group_commit = true;
  // The longest a group's leader waits for the writers active in the last two groups
  // to queue (at most half the last group's run time; one writer never waits); 0: no
  // wait. Default: 1000 us
  std::chrono::microseconds group_commit_window{1000};
  // A group's synced manifest batch is written while its D data syncs (one sync's
  // wait per commit instead of two in a row); the batch also names the group's new
  // slots, whose payloads Open verifies, restoring the previous copy's record when a
  // crash left a new copy torn (decision 0016, "one sync per commit"). Only with
  // group_commit and a D tier that verifies payloads. false: data, then records.
  // Default: true
  bool overlap_commit_syncs = true;
  // Blocks of this many bytes and more are copied into and out of G/H by Put and Get
  // with the store's mutex dropped (clients copy in parallel); smaller ones under it,
  // where dropping and retaking it costs more than the copy (64-byte test blocks).
  // Default: 4096
  size_t unlocked_copy_bytes = 4096;
};

// Counters exported by the daemon (DESIGN §8). Relaxed atomics.
struct BlockStoreStats {
  std::atomic<uint64_t> puts{0}, put_bytes{0}, puts_deduplicated{0}, puts_rejected{0};
  std::atomic<uint64_t> puts_not_durable{0};  // write-through puts stored in G/H only (D refused)
  std::atomic<uint64_t> gets{0}, get_misses{0};
  std::atomic<uint64_t> hits_gpu{0}, hits_host{0}, hits_disk{0};  // where acquired/get blocks were found
  std::atomic<uint64_t> promotions_h_to_g{0}, promotions_d_to_h{0};
  std::atomic<uint64_t> promotion_batches{0};  // H->G copies issued together (BlockMover::Gather calls)
  std::atomic<uint64_t> demotions_g_to_h{0}, demotions_h_to_d{0};
  std::atomic<uint64_t> bytes_h_to_g{0}, bytes_d_to_h{0}, bytes_g_to_h{0}, bytes_h_to_d{0};
  std::atomic<uint64_t> disk_writes{0}, disk_write_batches{0};  // blocks written to D, and their batches
  std::atomic<uint64_t> disk_commits{0};  // D commits (one fdatasync + one manifest batch each), groups included
  std::atomic<uint64_t> disk_encoded_bytes{0};    // payload bytes written to D (after compression)
  std::atomic<uint64_t> disk_write_failures{0};   // blocks whose D write, sync or record failed
  std::atomic<uint64_t> disk_read_failures{0};    // D reads that failed (I/O error or verification)
  std::atomic<uint64_t> disk_admission_stops{0};  // D writes refused (disk full or I/O errors)
  std::atomic<uint64_t> corrupt_blocks{0};        // D copies that failed verification twice (dropped)
  std::atomic<uint64_t> recovered_blocks{0};
  std::atomic<uint64_t> stale_records{0};         // manifest records dropped at Open (slot header disagrees)
  // Copies of the last commit group found not whole at Open (a crash inside an
  // overlapped commit: their versions were never acknowledged), and records put back
  // to the block's previous D copy (at Open, or after a failed data write).
  std::atomic<uint64_t> unfinished_writes{0};
  std::atomic<uint64_t> restored_records{0};
};

// One pinned block of a lease: where the client finds its bytes now.
struct LeasedBlock {
  uint32_t index = 0;   // block index in the sequence
  Where where = Where::kNone;
  uint64_t offset = 0;  // byte offset in that tier's arena
};

// What BlockStore::Drain did. Blocks are counted once, however many sequences share them.
struct DrainResult {
  uint64_t pending = 0;   // blocks whose current version was not on D when the drain began
  uint64_t written = 0;   // of those, now current on D and recorded in the manifest
  uint64_t failed = 0;    // tried and refused (D full, I/O error, ...): first_error says why
  uint64_t left = 0;      // pending - written: lost at exit (not tried when the time ran out)
  uint64_t bytes = 0;     // block bytes written (before compression)
  uint64_t links = 0;     // prefix links recorded (sequence block -> shared prefix block on D)
  bool timed_out = false; // the deadline came before every pending block was tried
  Status first_error;     // OK when nothing failed
};

// What BlockStore::PutBlocks stored: blocks, of which durable (under write-through:
// on D, synced and recorded) and deduplicated (shared with a stored prefix block).
struct PutOutcome {
  uint32_t stored = 0, durable = 0, deduplicated = 0;
};

// One range of BlockStore::PutRanges: PutBlocks' arguments, and its outcome.
struct PutRange {
  SequenceId seq = 0;
  uint32_t layer = 0, first = 0, count = 0;
  std::span<const std::byte> payload;  // count blocks back to back
  uint64_t prefix_hash = 0;
  PutOutcome out;  // set by PutRanges
  Status status;   // set by PutRanges: PutBlocks' result for this range
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
  // nothing is copied (*deduplicated = true). Returns once the bytes are in G or H;
  // under write-through also written to D, synced and recorded in the manifest, then
  // *durable = true. When D refuses (disk_admission() not OK, D full, I/O error) a
  // write-through put still succeeds with *durable = false.
  // kInvalidArgument: layer/index out of range, wrong size. kBusy: the block is
  // leased. kResourceExhausted: no room in G or H within put_wait.
  Status Put(SequenceId seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload,
             uint64_t prefix_hash = 0, bool* deduplicated = nullptr, bool* durable = nullptr);
  // Blocks [first, first + count) of (seq, layer), payload holding count blocks back
  // to back, each stored as Put stores it, except that under write-through their D
  // writes share one commit (one fdatasync, one manifest batch, with other writers'
  // too under group commit); none is counted durable before that commit. A prefix
  // block (prefix_hash != 0) is put alone (count 1). Stops at the first block that
  // fails and returns why; out->stored says how many blocks before it were stored.
  Status PutBlocks(SequenceId seq, uint32_t layer, uint32_t first, uint32_t count,
                   std::span<const std::byte> payload, uint64_t prefix_hash, PutOutcome* out);
  // Several PutBlocks in one call: each range is stored as PutBlocks stores it (its
  // own status and outcome; a failing range does not stop the others), and under
  // write-through the D writes of all of them share commits — a batch of sequences,
  // or the KV heads of a per-head put, costs one sync instead of one per range.
  void PutRanges(std::span<PutRange> ranges);
  // Copies one block into out (model.BlockBytes() bytes). A block only on D is
  // brought into H (or, when H has no room, read straight into out). kNotFound when
  // absent. kCorruption when its D copy fails verification twice (the D copy is
  // dropped; later gets say kNotFound). kIOError when D cannot read it (the copy stays).
  Status Get(SequenceId seq, uint32_t layer, uint32_t index, std::span<std::byte> out);
  // Pins blocks of (seq, layer) for one step and brings them to G (see MissMode;
  // kInPlace leaves them where they are, D blocks read into H).
  // Unknown blocks are skipped (listed in nothing). Each is counted as selected (the
  // score-aware eviction). A pinned block stays where the lease says until Release.
  Result<Lease> Acquire(SequenceId seq, uint32_t layer, std::span<const uint32_t> blocks, MissMode mode);
  // Brings the D-only blocks among `blocks` of (seq, layer) into H as one read batch,
  // without pinning them or moving them to G (a retrieval expects to need them
  // soon). Unknown blocks and blocks already in memory are skipped. Returns how many
  // were loaded; D errors are counted in stats, not returned.
  Result<uint32_t> Prefetch(SequenceId seq, uint32_t layer, std::span<const uint32_t> blocks);
  // Unpins a lease. kNotFound for an unknown id.
  Status Release(uint64_t lease_id);
  // Drops every block of the sequence (shared prefix blocks stay while others use them).
  Status DropSequence(SequenceId seq);
  // Makes blocks [0, n) of `seq` the shared prefix blocks `hashes[0..n)` for every
  // layer that has them all; returns how many leading blocks are present in every layer.
  uint32_t MatchPrefix(std::span<const uint64_t> hashes) const;
  Status LinkPrefix(SequenceId seq, std::span<const uint64_t> hashes);

  // Prefix cache control (block_store_prefixes.cc). One entry per cached prefix
  // (content hash, as the store keys it), its blocks counted over layers.
  struct PrefixUsage {
    uint64_t hash = 0;
    uint32_t position = 0;    // its block index in the sequences that share it
    uint32_t blocks = 0;      // cached blocks (one per layer)
    uint32_t sequences = 0;   // open sequences linking it (the most over its layers)
    uint64_t bytes = 0;       // blocks * block bytes
    uint32_t in_gpu = 0, in_host = 0, on_disk = 0;  // where its blocks are (a block may be in memory and on D)
    double idle_s = 0;        // since it was last put or linked (since the store opened when never)
  };
  std::vector<PrefixUsage> ListPrefixes() const;
  struct PrefixEviction {
    uint64_t prefixes = 0, blocks = 0, bytes = 0;
    uint64_t kept_in_use = 0;  // prefixes kept: linked by an open sequence or leased
    uint64_t kept_young = 0;   // prefixes kept: used less than `older_than` ago
  };
  // Drops the cached prefixes that no open sequence links and no lease pins, idle
  // for at least `older_than` (memory copies and D copies, manifest records included).
  PrefixEviction EvictPrefixes(std::chrono::seconds older_than);

  // Shutdown drain: writes every block whose current version is not on D (write-back
  // blocks only in G or H, write-through puts D refused, rewrites of a block already
  // on D) to D with WriteToDisk's discipline — data, fdatasync, then the manifest
  // record, then the old slot freed — in batches, until `deadline`. Shared prefix
  // blocks go first, then sequences by (sequence, block, layer), so that what is
  // left when time runs out are whole trailing positions. Then records the prefix
  // links of every sequence whose shared block is on D (what write-through records
  // at each put), so that Open relinks them. Stops early when a whole batch fails
  // (D full or refusing writes). `on_batch(blocks, bytes)` runs after each batch with
  // the lock dropped. Call once clients are gone (no puts): pinned blocks are written
  // like the others (their bytes do not change while pinned); a migration pass does
  // not run meanwhile.
  DrainResult Drain(std::chrono::steady_clock::time_point deadline,
                    const std::function<void(uint64_t blocks, uint64_t bytes)>& on_batch = {});
  // Blocks whose current version is not on D (what Drain would write).
  size_t BlocksNotOnDisk() const;

  Policy policy() const;
  // Validated by the caller (ApplyPolicyChanges); takes effect at once.
  void SetPolicy(const Policy& p);

  uint32_t SequenceBlocks(SequenceId seq, uint32_t layer) const;
  size_t num_blocks() const;
  size_t num_sequences() const;
  size_t num_leases() const;  // leases not released yet
  // Daemon memory of the placement map (metas, block arrays, owner maps of G and H,
  // prefix map, leases); the tiers' own slot bookkeeping is Tier::MetadataBytes().
  size_t MetadataBytes() const;
  // OK while D admits writes; else the error that stopped it (kIOError,
  // kResourceExhausted, ...) until a write succeeds again.
  Status disk_admission() const;
  const BlockStoreStats& stats() const { return stats_; }
  const ModelSpec& model() const { return options_.model; }
  uint32_t max_blocks_per_sequence() const { return options_.max_blocks_per_sequence; }  // per layer
  // How H->G batches are copied: "device-gather", "host-gather" or "per-block-copy".
  // No lock: the mover's path is const from construction (the analysis sees only
  // that mover_ is guarded).
  std::string_view promotion_path() const NO_THREAD_SAFETY_ANALYSIS { return BlockMover::PathName(mover_.path()); }
  ArenaTier* gpu_tier() const { return g_; }
  ArenaTier* host_tier() const { return h_; }
  Tier* disk_tier() const { return d_; }
  // Runs one migration pass now (tests); the migrator thread does this periodically.
  // Passes do not overlap: a call waits for a running one to end, then runs its own.
  void MigrateOnce();

 private:
  BlockStore(const BlockStoreOptions& options, ArenaTier* g, ArenaTier* h, Tier* d, Manifest* manifest);

  // Functions taking the caller's `lock` drop mu_ for disk I/O (mu_.Unlock() ...
  // mu_.Lock(): the analysis checks the window) and hold it again on return; every
  // BlockMeta reference taken before must be looked up again.
  Status CheckPutArgs(uint32_t layer, uint32_t index, size_t bytes) const;  // no lock needed
  SlotTag TagOf(BlockRef ref) const REQUIRES(mu_);
  std::string RecordKeyOf(BlockRef ref) const REQUIRES(mu_);
  bool Protected(BlockRef ref) const REQUIRES(mu_);
  void Touch(BlockRef ref) REQUIRES(mu_);
  // Drops one pin; the last one also ends the publication of the block's location.
  void Unpin(BlockRef ref) REQUIRES(mu_);
  uint32_t NextGeneration() REQUIRES(mu_) { return ++generation_clock_; }
  // Finds memory for ref and copies payload in, the copy with the lock dropped
  // (kPlacing set meanwhile). The caller pinned ref and marked it kIoPending.
  Status PlaceInMemory(MutexLock& lock, BlockRef ref, std::span<const std::byte> payload,
                       bool prefer_gpu) REQUIRES(mu_);
  // Copies payload into `slot` of `tier` as ref's current version with the lock
  // dropped; ref is marked kPlacing meanwhile (cleared by the caller).
  Status CopyIn(MutexLock& lock, BlockRef ref, ArenaTier* tier, SlotId slot, std::span<const std::byte> payload)
      REQUIRES(mu_);
  // The block at (seq, layer, index) once no put is copying it in (kPlacing), or kNoBlock.
  BlockRef FindReadable(MutexLock& lock, SequenceId seq, uint32_t layer, uint32_t index) REQUIRES(mu_);
  // Copies ref's memory copy into out with the lock dropped. The caller pinned ref,
  // which is in memory. Marks it kPublished (cleared by its last Unpin).
  Status CopyOut(MutexLock& lock, BlockRef ref, std::span<std::byte> out) REQUIRES(mu_);
  Status ShareBlock(SequenceId seq, uint32_t layer, uint32_t index, BlockRef existing, BlockRef shared,
                    uint64_t hash, bool* deduplicated, bool* durable) REQUIRES(mu_);
  // Writes just-put blocks to D as one commit (write-through); (*on_disk)[k] is
  // true when refs[k] is durable.
  void WriteThrough(MutexLock& lock, std::span<const BlockRef> refs, std::vector<bool>* on_disk) REQUIRES(mu_);
  // The two halves of a put (PutBlocks): placed in memory and pinned, then written
  // through and unpinned.
  struct PlacedBlock {
    BlockRef ref;
    size_t range;  // in PutRanges' ranges
    uint32_t index;
  };
  Status PlaceBlock(MutexLock& lock, SequenceId seq, uint32_t layer, uint32_t index,
                    std::span<const std::byte> payload, uint64_t prefix_hash, BlockRef* placed, bool* deduplicated,
                    bool* durable) REQUIRES(mu_);
  void FinishPlaced(MutexLock& lock, std::span<PutRange> ranges, std::vector<PlacedBlock>* placed) REQUIRES(mu_);
  Status CheckPutRange(const PutRange& r) const;  // no lock needed
  // H -> G for the refs that can move, as one batched copy (BlockMover: one gather
  // launch on a GPU); returns how many moved. A block stays on H when a transfer
  // reads its H copy, a lease was handed its H location, or G is full of pinned or
  // protected blocks.
  size_t MoveToGpu(std::span<const BlockRef> refs) REQUIRES(mu_);
  // Blocks on their way H -> G: their H slots and the G slots allocated for them.
  struct PromotionBatch {
    std::vector<BlockRef> refs;
    std::vector<SlotId> from, to;
  };
  // Copies a batch (one BlockMover call), commits the G slots and frees the H
  // slots; a block whose copy failed stays on H. Returns how many moved; empties it.
  size_t CopyPromotions(PromotionBatch* batch) REQUIRES(mu_);
  // G -> H by a memory copy. REQUIRES: ref unpinned.
  Status DemoteToHost(BlockRef ref) REQUIRES(mu_);
  // Moves up to n cold unpinned blocks H -> D (clean ones just leave H). Returns
  // how many H slots it freed.
  size_t DemoteHostBatch(MutexLock& lock, size_t n) REQUIRES(mu_);
  // Writes the memory copies of refs (each pinned by the caller) to fresh D slots as
  // one batch: data, one fdatasync, one manifest batch, then frees the old D slots.
  // (*results)[i] is ref i's outcome; blocks already current on D are OK at once.
  void WriteToDisk(MutexLock& lock, std::span<const BlockRef> refs,
                   std::vector<Status>* results) REQUIRES(mu_);
  struct WriteJob;  // one block's write (block_store_disk.cc)
  std::vector<WriteJob> StartWrites(std::span<const BlockRef> refs, std::vector<Status>* results) REQUIRES(mu_);
  // Lock dropped: payloads (compressed), then the D commit (block_store_disk.cc).
  void PrepareWrites(std::vector<WriteJob>& jobs, Compression compression, uint32_t group) EXCLUDES(mu_);
  void CommitJobs(std::vector<WriteJob>& jobs) EXCLUDES(mu_);
  // The commit queue's leader: one commit for the jobs of every writer in the group.
  void CommitGroup(std::span<std::vector<WriteJob*>* const> group) EXCLUDES(mu_);
  void CommitWrites(std::span<WriteJob* const> jobs) EXCLUDES(mu_);  // both stages, no queue (group commit off)
  void CommitData(std::span<WriteJob* const> jobs) EXCLUDES(mu_);
  void CommitRecords(std::span<WriteJob* const> jobs) EXCLUDES(mu_);
  Manifest::Batch RecordBatch(std::span<WriteJob* const> jobs) const;  // the records of the jobs still OK
  // The two stages at once: the records (and the group's pending writes) on
  // manifest_writer_ while this thread writes and syncs the data. Commit queue's
  // leader only (group commit on).
  bool OverlapsSyncs() const;
  void CommitOverlapped(std::span<WriteJob* const> jobs) EXCLUDES(mu_);
  // For each write whose record still names its slot and generation: the record of
  // the previous copy when its slot still holds the block whole, else a delete, into
  // *batch. Counts the restored ones (stats) and the deleted ones (*deleted).
  Status RestorePrevious(std::span<const PendingWrite> writes, Manifest::Batch* batch, uint64_t* deleted);
  // Whether w's record still names w's slot and generation (a later version or a
  // delete has not replaced it).
  Result<bool> RecordNames(const PendingWrite& w) const;
  // Open: the pending writes of the last commit group whose new copies are not whole
  // get their previous copy's record back (before the records are adopted); those
  // without one lose their record.
  Status ResolvePendingWrites() REQUIRES(mu_);
  void FinishWrites(std::vector<WriteJob>& jobs, std::vector<Status>* results) REQUIRES(mu_);
  // Brings the D copies of refs (each pinned by the caller) into H as one read batch.
  // Blocks already in memory are OK; a block with a transfer in flight is waited for
  // when `wait` (else kBusy: the migrator never waits, a put may be waiting on it).
  void LoadFromDisk(MutexLock& lock, std::span<const BlockRef> refs,
                    std::vector<Status>* results, bool wait = true) REQUIRES(mu_);
  void LoadBatch(MutexLock& lock, std::span<const BlockRef> refs, std::span<Status> results) REQUIRES(mu_);
  // Reads the D copy of a D-only block straight into out (block_bytes_), without
  // placing it in H (H has no room). REQUIRES: ref pinned by the caller.
  Status ReadDiskDirect(MutexLock& lock, BlockRef ref, std::span<std::byte> out) REQUIRES(mu_);
  // Reads (and decodes) one D copy into out with the lock dropped; a copy that fails
  // verification is read once more.
  Status ReadVerified(SlotId slot, const SlotTag& tag, std::span<std::byte> out) EXCLUDES(mu_);
  // Turns a D payload just read into out into the raw block (kCorruption when it is
  // not a valid payload of this model; out is then zeroed).
  Status DecodeInPlace(const SlotInfo& info, std::span<std::byte> out);
  // After a failed D read of ref's copy in `slot` (lock held): counts it, and drops
  // the copy when it failed verification and is still the block's.
  void NoteReadFailure(BlockRef ref, SlotId slot, const SlotTag& tag, const Status& st) REQUIRES(mu_);
  bool DiskAdmits() REQUIRES(mu_);
  void NoteDiskResult(const Status& st) REQUIRES(mu_);
  void ReleaseMemory(BlockRef ref) REQUIRES(mu_);
  // Drops the D copy: its record delete goes into *batch, its slot into *slots (the
  // caller writes the batch, then frees the slots).
  void ForgetDiskCopy(BlockRef ref, Manifest::Batch* batch, std::vector<SlotId>* slots) REQUIRES(mu_);
  void ForgetDiskCopyNow(BlockRef ref) REQUIRES(mu_);
  // True when another live block now has ref's record key and its record (or a D
  // write that will record it): ref's record delete must not be written then.
  bool SuccessorOwnsRecord(BlockRef ref) const REQUIRES(mu_);
  // Frees the blocks that have no owner and no pin (one manifest batch).
  void MaybeFree(std::span<const BlockRef> refs) REQUIRES(mu_);
  void MaybeFree(BlockRef ref) REQUIRES(mu_) { MaybeFree(std::span<const BlockRef>(&ref, 1)); }
  void CommitRecordDeletes(const Manifest::Batch& batch, const std::vector<SlotId>& slots);
  Status PersistLink(SequenceId seq, uint32_t layer, uint32_t index, uint64_t hash) REQUIRES(mu_);
  BlockRef PickVictim(TierKind tier) const REQUIRES(mu_);
  bool OverHigh(TierKind tier) const REQUIRES(mu_);
  bool OverLow(TierKind tier) const REQUIRES(mu_);
  void MigratorLoop() EXCLUDES(mu_);
  void RequestMigration() REQUIRES(mu_);
  Status Recover() EXCLUDES(mu_);
  // Recover's steps: the records whose slot headers agree become D-only blocks (the
  // others are added to *stale); then the prefix links.
  struct Recorded;  // one manifest record (block_store_recovery.cc)
  Status AdoptRecords(const std::vector<Recorded>& records, Manifest::Batch* stale, uint64_t* dropped) REQUIRES(mu_);
  Status RecoverLinks() REQUIRES(mu_);
  // Drain's steps (block_store_drain.cc).
  std::vector<BlockRef> DirtyBlocks() const REQUIRES(mu_);  // in drain order
  uint64_t RecordPrefixLinks(Status* error) REQUIRES(mu_);
  // Deletes the prefix link records of a sequence (whatever the policy: a drain
  // records them under write-back too).
  Status DeleteLinkRecords(SequenceId seq);

  void NotePrefixUse(uint64_t hash) REQUIRES(mu_);

  const BlockStoreOptions options_;
  ArenaTier* const g_;
  ArenaTier* const h_;
  Tier* const d_;
  DiskTier* const disk_;  // d_ when it is a DiskTier (Sync, Scan), else null
  Manifest* const manifest_;
  const size_t block_bytes_;
  const bool copy_unlocked_;  // block_bytes_ >= options_.unlocked_copy_bytes

  Mutex migrate_mu_ ACQUIRED_BEFORE(mu_);  // one migration pass at a time
  mutable Mutex mu_;
  CondVar room_cv_;  // signalled when slots are freed
  CondVar io_cv_;    // signalled when transfers complete (kIoPending cleared)
  CondVar migrate_cv_;
  Policy policy_ GUARDED_BY(mu_);
  BlockIndex index_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::vector<BlockRef>> leases_ GUARDED_BY(mu_);
  uint64_t next_lease_ GUARDED_BY(mu_) = 1;
  uint32_t generation_clock_ GUARDED_BY(mu_) = 0;  // last generation handed out
  std::vector<BlockRef> deferred_ GUARDED_BY(mu_);  // defer-mode misses to promote
  // Gets copying a block out with the lock dropped (CopyOut), one entry per Get (a
  // few at a time: one per channel worker); a put of the block waits for them.
  std::vector<BlockRef> copying_out_ GUARDED_BY(mu_);
  BlockMover mover_ GUARDED_BY(mu_);  // H -> G batches
  Status disk_error_ GUARDED_BY(mu_);  // why D stopped admitting, OK when it admits
  std::chrono::steady_clock::time_point disk_retry_at_ GUARDED_BY(mu_);
  bool disk_full_logged_ GUARDED_BY(mu_) = false;  // "D is full" logged, not yet "admits again"
  bool stop_ GUARDED_BY(mu_) = false;
  bool migrate_requested_ GUARDED_BY(mu_) = false;
  mutable uint64_t sample_state_ = 0x2545F4914F6CDD1Dull;
  BlockStoreStats stats_;
  // When each cached prefix (content hash) was last put or linked.
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> prefix_used_;
  const std::chrono::steady_clock::time_point opened_ = std::chrono::steady_clock::now();
  CommitQueue<std::vector<WriteJob*>> commit_queue_;  // group commit of D writes (lock dropped)
  // Used by the commit queue's leader only (one at a time): the manifest writes of
  // overlapped commits, and the pending writes whose records could not be repaired
  // after a failed data write (carried into the next group's pending record).
  SideThread manifest_writer_;
  std::vector<PendingWrite> unresolved_;
  std::thread migrator_;
};

}  // namespace tierkv::storage
