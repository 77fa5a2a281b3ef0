// Tier: a fixed number of fixed-size slots that store opaque block payloads
// (DESIGN §3). Tiers only store bytes; the BlockStore decides placement, owns the
// block -> (tier, slot) map, leases and policies.
//
// Model: CacheLib's device base class. Tier's public methods are non-virtual: they
// check arguments (slot in range, slot allocated, payload within the slot's
// capacity), keep the allocation state and count stats; implementations override
// only the *Impl hooks, which receive validated arguments.
//
// Slot lifecycle: free -> Allocate -> allocated (empty) -> Write -> written
// -> Write (overwrite) ... -> Free -> free. A failed Write leaves the slot
// allocated but empty. Persistent tiers (D) also have Adopt: after a restart the
// BlockStore re-marks the slots its manifest says are live.
//
// Thread-safety: all methods are thread-safe. Reads and writes of DISTINCT slots run
// concurrently; a Write racing a Read, Write or Free of the SAME slot is a caller bug
// (the BlockStore's leases prevent it) and gives unspecified bytes, never a crash.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/mutex.h"
#include "common/status.h"

namespace tierkv::storage {

// Index of a slot within one tier, in [0, num_slots()).
using SlotId = uint32_t;
inline constexpr SlotId kInvalidSlot = UINT32_MAX;

enum class TierKind : uint8_t { kGpu = 0, kHost = 1, kDisk = 2 };
// "G", "H", "D" (metric labels).
std::string_view TierKindName(TierKind kind);

// How the payload bytes of a slot are encoded. Tiers store payloads opaquely; the
// encoding is recorded next to them (in the D tier's slot header). The compressed
// encodings are written and read by the BlockStore (storage/block_codec.h).
enum class PayloadEncoding : uint8_t {
  kRaw = 0,    // the block's bytes as stored
  kInt8 = 1,   // int8 asymmetric: K per channel, V per token (block_codec.h)
  kKivi2 = 2,  // 2-bit KIVI: K per channel, V per token (block_codec.h)
};

// What a slot holds: the block and the generation of its contents (bumped by the
// BlockStore on every rewrite of a block), checked on every read.
struct SlotTag {
  BlockKey key;
  uint64_t generation = 0;
  bool operator==(const SlotTag&) const = default;
};

// "ns 7 seq 100 layer 3 block 12 gen 5", for logs and error messages.
std::string TagToString(const SlotTag& tag);

// Description of a written slot.
struct SlotInfo {
  SlotTag tag;
  uint32_t length = 0;  // payload bytes
  PayloadEncoding encoding = PayloadEncoding::kRaw;
};

// One write of a batch. `status` is set by WriteBatch.
struct WriteOp {
  WriteOp() = default;
  WriteOp(SlotId s, const SlotTag& t, std::span<const std::byte> p,
          PayloadEncoding e = PayloadEncoding::kRaw)
      : slot(s), tag(t), payload(p), encoding(e) {}

  SlotId slot = kInvalidSlot;
  SlotTag tag;
  std::span<const std::byte> payload;  // size <= slot_capacity()
  PayloadEncoding encoding = PayloadEncoding::kRaw;
  Status status;
};

// One read of a batch. `info` and `status` are set by ReadBatch.
struct ReadOp {
  ReadOp() = default;
  ReadOp(SlotId s, const SlotTag& e, std::span<std::byte> o) : slot(s), expect(e), out(o) {}

  SlotId slot = kInvalidSlot;
  SlotTag expect;               // must match the slot's tag, else kCorruption
  std::span<std::byte> out;     // receives the payload; must hold it
  SlotInfo info;
  Status status;
};

// Plain copy of TierStats.
struct TierStatsSnapshot {
  uint64_t reads = 0, read_bytes = 0, writes = 0, write_bytes = 0;
  uint64_t read_errors = 0, write_errors = 0;
  uint64_t io_errors = 0, no_space = 0, checksum_failures = 0, tag_mismatches = 0;
  uint64_t rejected = 0;
  uint64_t allocations = 0, frees = 0, allocation_failures = 0;
};

// Counters exported by the daemon (DESIGN §8). Monotonic; relaxed atomics.
struct TierStats {
  std::atomic<uint64_t> reads{0};          // successful reads
  std::atomic<uint64_t> read_bytes{0};     // payload bytes of successful reads
  std::atomic<uint64_t> writes{0};         // successful writes
  std::atomic<uint64_t> write_bytes{0};    // payload bytes of successful writes
  std::atomic<uint64_t> read_errors{0};    // reads that failed after validation (any reason)
  std::atomic<uint64_t> write_errors{0};   // writes that failed after validation (any reason)
  std::atomic<uint64_t> io_errors{0};      // kIOError results (EIO, short transfers, ...)
  std::atomic<uint64_t> no_space{0};       // kResourceExhausted results of writes (ENOSPC)
  std::atomic<uint64_t> checksum_failures{0};  // kCorruption results of reads (bad header,
                                               // checksum, or tag mismatch)
  std::atomic<uint64_t> tag_mismatches{0};     // subset of checksum_failures: wrong key/generation
  std::atomic<uint64_t> rejected{0};       // calls refused by argument checks (out of range,
                                           // oversized, slot not allocated/written, small buffer)
  std::atomic<uint64_t> allocations{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<uint64_t> allocation_failures{0};  // Allocate with no free slot

  TierStatsSnapshot Snapshot() const;
};

class Tier {
 public:
  virtual ~Tier();
  Tier(const Tier&) = delete;
  Tier& operator=(const Tier&) = delete;

  TierKind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  uint32_t num_slots() const { return num_slots_; }
  // Largest payload a slot holds, in bytes.
  uint32_t slot_capacity() const { return slot_capacity_; }
  uint64_t capacity_bytes() const { return uint64_t{num_slots_} * slot_capacity_; }
  uint32_t used_slots() const { return used_.load(std::memory_order_relaxed); }
  uint32_t free_slots() const { return num_slots_ - used_slots(); }
  // True when contents survive a restart (D); Adopt is only allowed there.
  virtual bool persistent() const { return false; }

  // Takes a free slot. kResourceExhausted when none is free.
  Result<SlotId> Allocate();
  // Takes n free slots (appended to *out), or none: kResourceExhausted.
  Status AllocateMany(size_t n, std::vector<SlotId>* out);
  // Returns an allocated slot. kInvalidArgument when out of range or already free.
  Status Free(SlotId slot);
  // Recovery: marks a free slot as allocated and written in an earlier run (its bytes
  // are verified on read). kNotSupported on volatile tiers, kAlreadyExists when the
  // slot is not free, kInvalidArgument when out of range.
  Status Adopt(SlotId slot);
  bool IsAllocated(SlotId slot) const;

  // Stores payload in an allocated slot, replacing what it held.
  // kInvalidArgument: slot out of range or not allocated, payload > slot_capacity().
  // Device errors: kIOError, kResourceExhausted (disk full), kDeviceError.
  Status Write(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
               PayloadEncoding encoding = PayloadEncoding::kRaw);
  // Copies the slot's payload into out[0, info.length) after checking that the slot
  // holds `expect`. Never returns unverified bytes as data: on any error `out` holds
  // no payload bytes (untouched, or zeroed where a zero-copy read landed). Bytes of
  // out past info.length may be overwritten (padding).
  // kNotFound: the slot is free or holds nothing (never written, or its last write
  // failed). kInvalidArgument: slot out of range, out smaller than the payload.
  // kCorruption: tag mismatch or failed checksum. kIOError: device error.
  Result<SlotInfo> Read(SlotId slot, const SlotTag& expect, std::span<std::byte> out);

  // Batched variants: every op gets its own status; the D tier submits them together
  // (up to its queue depth in flight) and returns when all are done. Returns OK when
  // every op succeeded, else the first failed op's status.
  Status WriteBatch(std::span<WriteOp> ops);
  Status ReadBatch(std::span<ReadOp> ops);

  const TierStats& stats() const { return stats_; }
  // Daemon memory this tier holds for its slots (bookkeeping, not payload):
  // 9 bytes per slot here (state, free stack, free-stack position); subclasses add
  // their own per-slot records.
  virtual size_t MetadataBytes() const;

 protected:
  // REQUIRES: num_slots > 0, slot_capacity > 0.
  Tier(TierKind kind, std::string name, uint32_t num_slots, uint32_t slot_capacity);

  // Called with slot in range and allocated, payload.size() <= slot_capacity().
  virtual Status WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                           PayloadEncoding encoding) = 0;
  // Called with slot in range and written. Must set *info on success. Implementations
  // count stats().tag_mismatches themselves; the base counts everything else.
  virtual Status ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out,
                          SlotInfo* info) = 0;
  // Called with validated ops (non-empty); must set each op's status (and info).
  // Defaults loop over WriteImpl / ReadImpl.
  virtual void WriteBatchImpl(std::span<WriteOp* const> ops);
  virtual void ReadBatchImpl(std::span<ReadOp* const> ops);

  TierStats& mutable_stats() { return stats_; }

  // The checks and accounting of Write/Read, for subclasses' own entry points
  // (zero-copy commit/lookup). BeginX returns the argument error (counted as
  // rejected) or OK; FinishX records the outcome of the operation that followed.
  Status BeginWrite(SlotId slot, size_t payload_bytes);
  void FinishWrite(const Status& st, SlotId slot, size_t payload_bytes);
  Status BeginRead(SlotId slot);
  void FinishRead(const Status& st, size_t payload_bytes);

 private:
  enum SlotState : uint8_t { kFree = 0, kEmpty = 1, kWritten = 2 };

  Status CheckWrite(SlotId slot, size_t payload_bytes);
  Status CheckRead(SlotId slot);
  // Pops the free stack down to a slot still free (entries of adopted slots are left
  // behind and skipped). REQUIRES: a free slot.
  SlotId PopFreeLocked() REQUIRES(mu_);

  const TierKind kind_;
  const std::string name_;
  const uint32_t num_slots_;
  const uint32_t slot_capacity_;
  std::unique_ptr<std::atomic<uint8_t>[]> state_;  // SlotState per slot

  // Free slots as a stack; a slot is free exactly when its state is kFree (changed
  // only under mu_). Adopt takes a slot without searching the stack: its entry stays
  // and is skipped when popped, so the stack may hold entries of slots no longer free
  // (and a slot adopted then freed twice). 4 bytes per slot (issue 16: RAM per block).
  // Invariants: every free slot is in free_ at least once; used_ = slots not kFree;
  // free_.size() <= 2 * num_slots_ (rebuilt from state_ past that).
  mutable Mutex mu_;
  std::vector<SlotId> free_ GUARDED_BY(mu_);
  std::atomic<uint32_t> used_{0};

  TierStats stats_;
};

}  // namespace tierkv::storage
