// D tier: slots in slab files on NVMe, O_DIRECT, through IoEngines (io_uring with
// registered buffers and batched submissions, or pread/pwrite), DESIGN §3.
//
// Each slot is a header sector (slot_format.h: magic, version, key, generation,
// length, encoding, payload and header checksums; 512 bytes in format version 2,
// 4 KiB in version 1) followed by the payload rounded up to the sector. A write puts
// header and payload in one I/O: from a registered bounce buffer, or vectored
// (header from a bounce buffer, payload from the caller's memory) when the payload
// is sector-aligned in address and length (zero_copy). Reads likewise land in a
// bounce buffer or, zero-copy, in the caller's aligned buffer. Every read verifies
// the header, the key/generation and the payload checksum; damaged bytes are
// reported as kCorruption and never returned as data (a failed zero-copy read zeroes
// what it wrote into the caller's buffer). A short transfer is kIOError.
//
// Payload-only reads (decision 0031): the tier remembers, per slot, what its last
// write (or a header read since the tier opened) put there — length, encoding, a
// hash of the tag and the payload checksum, 24 bytes a slot. With verify_payload
// on, a read whose expected tag matches moves the payload alone (one transfer, a
// fixed one into registered memory) and verifies it against the remembered
// checksum, which catches what the header would: another slot's or an older
// generation's bytes, a torn or lost write. A slot not remembered (after a restart,
// a failed write) is read with its header, and is remembered from then on. A damaged
// header sector under an intact payload is then seen at the next recovery scan, not
// by reads.
//
// Several devices: `dirs` lists one directory per device; slot s lives on device
// s % dirs.size() (consecutive slots alternate devices, so a batch spreads over
// all), each device with its own slab files, engines and queue, and a worker thread
// that runs its part of a batch while the caller runs another's. A device whose
// engine fails, or whose I/Os fail device_fail_after times in a row, is marked
// failed: its slots answer kIOError without touching it (its blocks are lost as
// blocks), its free slots are taken out of allocation (they count as used), the
// other devices keep serving; Sync skips it.
//
// Durability: a Write is durable once Sync() returns OK afterwards (group commit:
// write a batch, Sync, then flip the manifest). Slots are freed without I/O; a
// recovery scan (Scan) may list freed slots, the manifest decides.
//
// Concurrency: per device, up to io_contexts batches run at once, each on its own
// engine (ring + 2 x queue_depth registered bounce buffers of one slot each); more
// callers wait.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "io/io_engine.h"
#include "storage/slab_scan.h"
#include "storage/disk_tier_verify.h"
#include "storage/slot_format.h"
#include "storage/tier.h"

namespace tierkv::storage {

struct DiskTierOptions {
  std::string dir;                 // slab files live here (created if missing). REQUIRES: non-empty unless dirs is set
  // One directory per device; when non-empty it replaces `dir` and slots are striped
  // over the devices (slot s on device s % dirs.size()). Default: empty
  std::vector<std::string> dirs;
  std::string name = "D";          // tier name in logs and metrics
  uint32_t num_slots = 0;          // REQUIRES: > 0
  uint32_t slot_capacity = 0;      // payload bytes per slot; REQUIRES: (0, 1 GiB]
  uint64_t max_slab_bytes = 1ull << 30;  // slab file size cap (>= one slot). Default: 1 GiB
  io::IoEngineKind engine = io::IoEngineKind::kAuto;  // Default: kAuto (io_uring when available)
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
  // Makes the engines (IoEngineOptions::device says for which device); tests wrap
  // CreateIoEngine to inject faults. Default: CreateIoEngine
  io::IoEngineFactory engine_factory;
  // Format of slabs created now (existing slabs keep theirs, slot_format.h):
  // version 2 (default) or 1 (4 KiB headers, what older builds read).
  uint16_t format_version = kSlabFormatVersion;
  // Header sector of new version-2 slabs: 0 probes the directory (512 when the file
  // system takes 512-byte O_DIRECT I/O, else 4096); or 512, 1024, 2048, 4096. Default: 0
  uint32_t header_bytes = 0;
  // Consecutive failed I/Os (errno, short transfer) on one device that mark it
  // failed. Default: 8
  uint32_t device_fail_after = 8;
  // Reads verify the payload checksum (the header, key and generation are always
  // verified). false trusts the device for the payload bytes (NVMe end-to-end
  // protection, benchmarks that isolate the I/O path); torn writes then go
  // unnoticed until a payload-verifying recovery scan. Default: true
  bool verify_payload = true;
  // Threads that verify read payloads of VerifyPool::kMinBytes and more while the
  // batch's thread keeps the device queue full (storage/disk_tier_verify.h); the
  // batch's thread helps at its end. 0: no pool, every payload is verified on the
  // batch's thread (the behaviour before the pool). No pool when verify_payload is
  // false. Default: VerifyPool::DefaultThreads (a quarter of the CPUs, 1 to 2 per device)
  std::optional<uint32_t> verify_threads;
  // Memory that zero-copy payloads go to and come from (the H arena), registered
  // with each io_uring engine so those transfers use fixed buffers: the kernel
  // pins nothing per transfer (docs/decisions/0030-registered-h-arena.md). Every
  // page is pinned at engine creation: pass memory that is resident anyway (a
  // pinned or prefaulted H). Must outlive the tier. Default: none
  std::vector<std::span<std::byte>> registered_memory;
  // Payloads of at least this many bytes use the registered memory; a fixed
  // transfer costs a second submission entry (header and payload are separate
  // fixed buffers), which smaller payloads do not win back. Default: 64 KiB
  uint32_t fixed_min_bytes = 64 * 1024;
  // Reads of a slot this tier wrote (or read with its header) move the payload
  // alone, verified against the checksum remembered from the write (24 bytes of
  // memory per slot); needs verify_payload. false reads every header (benchmarks'
  // A/B). Default: true
  bool payload_only_reads = true;
};

class DiskTier final : public Tier {
 public:
  // Opens or creates the tier's slab files (slab-00000.tkv, ...) in options.dir.
  // kInvalidArgument on bad options, kCorruption/kInvalidArgument when existing
  // slabs do not match, kNotSupported when O_DIRECT is refused, kResourceExhausted
  // when the disk is too small to preallocate them.
  static Result<std::unique_ptr<DiskTier>> Open(const DiskTierOptions& options);
  // The layout of the slabs already in options' (first) dir, or nullopt when there
  // are none: callers that size num_slots from a byte budget size an existing tier
  // with its own stride (a v1 tier keeps its slot count after an upgrade).
  static Result<std::optional<SlotLayout>> ExistingLayout(const DiskTierOptions& options);
  ~DiskTier() override;

  bool persistent() const override { return true; }
  uint64_t slot_stride() const { return stride_; }
  uint32_t slots_per_slab() const { return slots_per_slab_; }
  // Format of the slabs (all devices share one; an existing tier keeps its own).
  const SlotLayout& layout() const { return layout_; }
  // Every device's slab files, device after device.
  const std::vector<std::string>& slab_paths() const { return paths_; }
  uint32_t num_devices() const { return static_cast<uint32_t>(devices_.size()); }
  uint32_t DeviceOf(SlotId slot) const { return slot % num_devices(); }
  // Where a slot's bytes live: the slab file and the offset of its header sector.
  std::pair<std::string, uint64_t> SlotLocation(SlotId slot) const;

  // Per-device counters (the daemon's metrics label them with the device's dir).
  struct DeviceStats {
    std::string dir;
    bool failed = false;
    std::string failure;  // why, when failed
    uint64_t reads = 0, writes = 0, read_bytes = 0, write_bytes = 0, errors = 0;
  };
  std::vector<DeviceStats> device_stats() const;
  // Marks device d failed (an operator's or a health check's decision).
  void FailDevice(uint32_t d, const std::string& why);
  uint64_t tier_id() const { return tier_id_; }
  // Name of the engine in use ("io_uring", "psync", or a wrapper's).
  const std::string& engine_name() const { return engine_name_; }
  // Whether reads verify payload checksums (DiskTierOptions::verify_payload).
  bool verifies_payload() const { return options_.verify_payload; }

  // Transfers (reads and writes issued) whose payload went straight from/to the
  // caller's memory, and those copied through bounce buffers.
  uint64_t zero_copy_transfers() const { return zero_copy_.load(std::memory_order_relaxed); }
  uint64_t bounce_transfers() const { return bounced_.load(std::memory_order_relaxed); }
  // Of the zero-copy transfers, those whose payload was in registered memory
  // (DiskTierOptions::registered_memory): no page pinning per transfer.
  uint64_t fixed_transfers() const { return fixed_.load(std::memory_order_relaxed); }
  // Reads that moved the payload only (the slot's header remembered; see above).
  uint64_t payload_only_reads() const { return payload_only_.load(std::memory_order_relaxed); }

  // Wall time spent by batches in each stage, summed over engines (benchmarks):
  // prepare = header encoding, write checksums, bounce copies and queueing;
  // reap = submitting and waiting in the kernel; finish = read verification
  // (header; payload checksums below VerifyPool::kMinBytes, and those the batch's
  // thread runs itself at its end) and bounce copies out. Payload checksums run on
  // the verify pool are not in it (their CPU is in the process's).
  struct StageNanos {
    uint64_t prepare = 0, reap = 0, finish = 0;
  };
  StageNanos stage_nanos() const {
    return {prepare_ns_.load(std::memory_order_relaxed), reap_ns_.load(std::memory_order_relaxed),
            finish_ns_.load(std::memory_order_relaxed)};
  }

  // Makes every completed write durable (fdatasync of every slab file of every
  // device not failed; a device whose fdatasync fails is marked failed).
  Status Sync();
  // Makes completed writes to `slots` durable: one fdatasync per slab file holding
  // any of them. kInvalidArgument for a slot out of range.
  Status SyncSlots(std::span<const SlotId> slots);
  // Recovery scan of every slab file (see slab_scan.h); slot ids are global.
  Result<SlabScan> Scan(const SlabScanOptions& options = {}) const;

  // One slot's header, read by ReadHeaders.
  struct HeaderRead {
    SlotId slot = kInvalidSlot;
    // Also read the payload and verify its checksum (kCorruption when torn), whatever
    // verify_payload says: recovery checks the last commit's new copies so.
    bool verify_payload = false;
    SlotInfo info;   // set when status is OK
    Status status;   // OK; kNotFound (never written); kCorruption (bad header); kIOError
  };
  // Reads and verifies the header blocks of the given slots (4 KiB each, queue_depth
  // in flight), whatever their allocation state: recovery reads the slots its
  // manifest names before adopting them. Payloads are not read (every Read verifies
  // them) unless a HeaderRead asks for it. Returns the first failure that is not about one slot (an engine error);
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
  struct Device;   // one directory: slab files, engines, worker, counters (disk_tier.cc)

  DiskTier(const DiskTierOptions& options, const SlotLayout& layout, uint64_t stride, uint32_t slots_per_slab);
  Status OpenDevices();
  Status OpenSlabs(Device& dev);
  Status CreateSlab(Device& dev, uint32_t index, const std::string& path);
  Status OpenSlab(Device& dev, uint32_t index, const std::string& path);
  uint32_t DeviceSlots(uint32_t d) const;  // slots on device d

  Result<std::unique_ptr<io::IoEngine>> AcquireEngine(Device& dev);
  // fdatasync of device d's slab file i for every files[d][i] set (Sync, SyncSlots).
  Status SyncFiles(const std::vector<std::vector<bool>>& files);
  void ReleaseEngine(Device& dev, std::unique_ptr<io::IoEngine> engine, bool healthy);
  // Runs a batch: split per device, each part on one of its device's engines.
  void RunBatch(std::vector<Pending>& ops);
  void RunDeviceBatch(Device& dev, std::vector<Pending>& ops);
  Status RunOnEngine(io::IoEngine& engine, std::vector<Pending>& ops);
  io::IoRequest StartOp(io::IoEngine& engine, Pending& op, uint32_t buf);
  Status FinishOp(Pending& op, int32_t result, const std::byte* buf);
  Status FinishRead(Pending& op, const std::byte* buf);
  io::IoRequest StartPayloadRead(io::IoEngine& engine, Pending& op, io::IoRequest r);
  Status FinishPayloadRead(Pending& op, const std::byte* buf);
  void MarkFailed(Device& dev, const std::string& why);
  // What a slot holds, as its last write or a verified header read said (Remember),
  // or nothing (Forget: a write under way or failed). Recall fills *info and
  // *checksum when the slot is remembered with `expect`'s tag.
  void Remember(SlotId slot, const SlotInfo& info, uint64_t checksum);
  void Forget(SlotId slot);
  bool Recall(SlotId slot, const SlotTag& expect, SlotInfo* info, uint64_t* checksum) const;
  // Takes every free slot of a failed device (Adopt) so that the allocator never
  // hands one out: a write there would fail and stop the BlockStore's D admission.
  void RetireFreeSlots(const Device& dev);

  const DiskTierOptions options_;
  const SlotLayout layout_;
  const uint64_t stride_;
  const uint32_t slots_per_slab_;
  uint64_t tier_id_ = 0;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<Device>> devices_;
  std::string engine_name_;

  std::unique_ptr<VerifyPool> verify_pool_;  // null: payloads verified on the batch's thread
  // Per slot (only with verify_payload): state = length << 8 | encoding << 1 | 1 when
  // remembered, 0 when not; tag_hash and checksum are valid while state is nonzero.
  struct SlotMemory {
    std::atomic<uint64_t> state{0}, tag_hash{0}, checksum{0};
  };
  std::unique_ptr<SlotMemory[]> memory_;
  std::atomic<uint64_t> zero_copy_{0}, bounced_{0}, fixed_{0}, payload_only_{0};
  std::atomic<uint64_t> prepare_ns_{0}, reap_ns_{0}, finish_ns_{0};
};

}  // namespace tierkv::storage
