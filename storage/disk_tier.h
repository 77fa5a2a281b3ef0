// D tier: slots in slab files on NVMe, O_DIRECT, through an IoEngine (io_uring with
// registered buffers and batched submissions, or pread/pwrite), DESIGN §3.
//
// Each slot is a 4 KiB header block (slot_format.h: magic, version, key, generation,
// length, encoding, payload and header checksums) followed by the payload rounded
// up to 4 KiB. A write puts header and payload in one I/O: from a registered bounce
// buffer, or vectored (header from a bounce buffer, payload from the caller's
// memory) when the payload is 4 KiB-aligned in address and length (zero_copy).
// Reads likewise land in a bounce buffer or, zero-copy, in the caller's aligned
// buffer. Every read verifies the header, the key/generation and the payload
// checksum; damaged bytes are reported as kCorruption and never returned as data
// (a failed zero-copy read zeroes what it wrote into the caller's buffer). A short
// transfer is kIOError.
//
// Durability: a Write is durable once Sync() returns OK afterwards (group commit:
// write a batch, Sync, then flip the manifest). Slots are freed without I/O; a
// recovery scan (Scan) may list freed slots, the manifest decides.
//
// Concurrency: up to io_contexts batches run at once, each on its own engine
// (ring + 2 x queue_depth registered bounce buffers of one slot each); more
// callers wait.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/io_engine.h"
#include "storage/slab_scan.h"
#include "storage/tier.h"

namespace tierkv::storage {

using IoEngineFactory = std::function<Result<std::unique_ptr<IoEngine>>(const IoEngineOptions&)>;

struct DiskTierOptions {
  std::string dir;                 // slab files live here (created if missing). REQUIRES: non-empty
  std::string name = "D";          // tier name in logs and metrics
  uint32_t num_slots = 0;          // REQUIRES: > 0
  uint32_t slot_capacity = 0;      // payload bytes per slot; REQUIRES: (0, 1 GiB]
  uint64_t max_slab_bytes = 1ull << 30;  // slab file size cap (>= one slot). Default: 1 GiB
  IoEngineKind engine = IoEngineKind::kAuto;  // Default: kAuto (io_uring when available)
  uint32_t queue_depth = 32;       // I/Os in flight per batch. Default: 32
  uint32_t io_contexts = 2;        // batches served concurrently. Default: 2
  bool direct_io = true;           // O_DIRECT; false only for file systems without it. Default: true
  // Transfer payloads straight from/to the caller's memory when it allows (address
  // 4 KiB-aligned; writes: length a multiple of 4 KiB; reads: buffer at least the
  // read length rounded up to 4 KiB), as H slots do; else copy through the bounce
  // buffers. Default: true
  bool zero_copy = true;
  // Existing slab files are opened and must match the geometry; missing ones are
  // created when true, else kNotFound. Default: true
  bool create_if_missing = true;
  // Makes the engines; tests wrap CreateIoEngine to inject faults. Default: CreateIoEngine
  IoEngineFactory engine_factory;
};

class DiskTier final : public Tier {
 public:
  // Opens or creates the tier's slab files (slab-00000.tkv, ...) in options.dir.
  // kInvalidArgument on bad options, kCorruption/kInvalidArgument when existing
  // slabs do not match, kNotSupported when O_DIRECT is refused, kResourceExhausted
  // when the disk is too small to preallocate them.
  static Result<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options);
  ~DiskTier() override;

  bool persistent() const override { return true; }
  uint64_t slot_stride() const { return stride_; }
  uint32_t slots_per_slab() const { return slots_per_slab_; }
  const std::vector<std::string>& slab_paths() const { return paths_; }
  uint64_t tier_id() const { return tier_id_; }
  // Name of the engine in use ("io_uring", "psync", or a wrapper's).
  const std::string& engine_name() const { return engine_name_; }

  // Transfers (reads and writes issued) whose payload went straight from/to the
  // caller's memory, and those copied through bounce buffers.
  uint64_t zero_copy_transfers() const { return zero_copy_.load(std::memory_order_relaxed); }
  uint64_t bounce_transfers() const { return bounced_.load(std::memory_order_relaxed); }

  // Makes every completed write durable (fdatasync of every slab file).
  Status Sync();
  // Makes completed writes to `slots` durable: one fdatasync per slab file holding
  // any of them. kInvalidArgument for a slot out of range.
  Status SyncSlots(std::span<const SlotId> slots);
  // Recovery scan of every slab file (see slab_scan.h); slot ids are global.
  Result<SlabScan> Scan(const SlabScanOptions& options = {}) const;

  // One slot's header, read by ReadHeaders.
  struct HeaderRead {
    SlotId slot = kInvalidSlot;
    SlotInfo info;   // set when status is OK
    Status status;   // OK; kNotFound (never written); kCorruption (bad header); kIOError
  };
  // Reads and verifies the header blocks of the given slots (4 KiB each, queue_depth
  // in flight), whatever their allocation state: recovery reads the slots its
  // manifest names before adopting them. Payloads are not read (every Read verifies
  // them). Returns the first failure that is not about one slot (an engine error);
  // per-slot outcomes are in each HeaderRead. kInvalidArgument for a slot out of range.
  Status ReadHeaders(std::span<HeaderRead> reads);

 protected:
  Status WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                   PayloadEncoding encoding) override;
  Status ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out, SlotInfo* info) override;
  void WriteBatchImpl(std::span<WriteOp* const> ops) override;
  void ReadBatchImpl(std::span<ReadOp* const> ops) override;

 private:
  struct Pending;  // one op of a batch (disk_tier.cc)

  DiskTier(const DiskTierOptions& options, uint64_t stride, uint32_t slots_per_slab);
  Status OpenSlabs();
  Status CreateSlab(uint32_t index, const std::string& path);
  Status OpenSlab(uint32_t index, const std::string& path);

  Result<std::unique_ptr<IoEngine>> AcquireEngine();
  void ReleaseEngine(std::unique_ptr<IoEngine> engine, bool healthy);
  // Runs a batch on one engine, queue_depth I/Os in flight, and sets each op's status.
  void RunBatch(std::vector<Pending>& ops);
  Status RunOnEngine(IoEngine& engine, std::vector<Pending>& ops);
  IoRequest StartOp(IoEngine& engine, Pending& op, uint32_t buf);
  Status FinishOp(Pending& op, int32_t result, const std::byte* buf);
  Status FinishRead(Pending& op, const std::byte* buf);

  const DiskTierOptions options_;
  const uint64_t stride_;
  const uint32_t slots_per_slab_;
  uint64_t tier_id_ = 0;
  std::vector<std::string> paths_;
  std::vector<int> fds_;
  std::string engine_name_;

  std::atomic<uint64_t> zero_copy_{0}, bounced_{0};

  std::mutex engines_mu_;
  std::condition_variable engines_cv_;
  std::vector<std::unique_ptr<IoEngine>> idle_engines_;  // GUARDED_BY(engines_mu_)
  uint32_t engines_out_ = 0;   // engines existing outside idle_engines_; GUARDED_BY(engines_mu_)
};

}  // namespace tierkv::storage
