// Memory tiers: fixed-size slots carved out of one arena (DESIGN §3).
//
//   H tier: a memfd (memfd_create + ftruncate + mmap MAP_SHARED), sealed against
//           shrinking/growing so a client holding the fd cannot SIGBUS the daemon;
//           the fd is passed to clients with SCM_RIGHTS and they map the same pages.
//           Pinned for the GPU (cudaHostRegister) when a device is present.
//   G tier: emulated in a memfd (shared with clients like H) when there is no GPU. The real G tier
//           (cudaMalloc) is an ArenaMemory implemented over kernels/gpu_runtime.h:
//           only the allocation and the copies differ, ArenaTier is the same.
//
// Slot s occupies [s * slot_stride(), s * slot_stride() + slot_capacity()) of the
// arena; slot_stride() is slot_capacity() rounded up to 4 KiB, so every slot is
// page-aligned (O_DIRECT reads can land in H slots, GPU copies are aligned).
// Slots smaller than a page (tiny test and benchmark blocks only: real KV blocks
// are tens of KiB) are packed at a 64-byte stride instead.
// Slot metadata lives in daemon memory, not in the arena, so clients cannot forge
// it: 16 bytes per slot (a 64-bit fingerprint of the tag, length, encoding). A read
// checks the fingerprint of the tag it expects; a stale placement passes only on a
// 64-bit hash collision.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/tier.h"

namespace tierkv::storage {

// The memory under an ArenaTier. Not thread-safe to create; Copy* are thread-safe
// for disjoint ranges.
class ArenaMemory {
 public:
  virtual ~ArenaMemory() = default;
  // Start of the arena: a host address, or a device address when !host_accessible().
  virtual std::byte* base() const = 0;
  virtual size_t bytes() const = 0;
  // A file descriptor that maps the same memory (memfd), or -1. Owned by the arena.
  virtual int fd() const { return -1; }
  // True when fd() is sealed so that no descriptor of it can write or map it
  // writable (F_SEAL_FUTURE_WRITE): only then may it be handed to clients.
  virtual bool sealed_for_readers() const { return false; }
  // True when base() can be dereferenced on the host.
  virtual bool host_accessible() const { return true; }
  // Copies n bytes between the host and [offset, offset + n) of the arena.
  // REQUIRES: offset + n <= bytes(). The defaults are memcpy (host arenas).
  virtual Status CopyIn(size_t offset, const std::byte* src, size_t n);
  virtual Status CopyOut(size_t offset, std::byte* dst, size_t n) const;
};

// A memfd of `bytes` bytes (rounded up to 4 KiB), mapped MAP_SHARED read-write by
// the daemon, then sealed for readers (common/shm.h SealForReaders): size fixed, no
// new write or writable mapping through any descriptor, mode 0400.
// `debug_name` shows in /proc/<pid>/fd. kResourceExhausted when memory is short.
Result<std::unique_ptr<ArenaMemory>> CreateMemfdArena(const std::string& debug_name, size_t bytes);
// Anonymous private memory of `bytes` bytes (rounded up to 4 KiB).
Result<std::unique_ptr<ArenaMemory>> CreateAnonymousArena(size_t bytes);

// A tier of fixed-size slots in an ArenaMemory.
class ArenaTier final : public Tier {
 public:
  // REQUIRES: memory->bytes() >= num_slots * SlotStride(slot_capacity).
  ArenaTier(TierKind kind, std::string name, std::unique_ptr<ArenaMemory> memory, uint32_t num_slots,
            uint32_t slot_capacity);
  ~ArenaTier() override;

  // slot_capacity rounded up to 4 KiB (to 64 bytes below 4 KiB).
  static size_t SlotStride(uint32_t slot_capacity);
  // Daemon memory held per slot: Tier's bookkeeping and the slot records.
  size_t MetadataBytes() const override;
  size_t slot_stride() const { return stride_; }
  // Byte offset of a slot in the arena (what a client adds to its own mapping).
  // REQUIRES: slot < num_slots().
  size_t SlotOffset(SlotId slot) const { return size_t{slot} * stride_; }
  // Address of a slot's first byte (host or device, see ArenaMemory), for zero-copy
  // users (gather kernels, O_DIRECT reads into H). REQUIRES: slot < num_slots().
  std::byte* SlotAddress(SlotId slot) const { return memory_->base() + SlotOffset(slot); }
  const ArenaMemory& memory() const { return *memory_; }
  // For raw copies into slots (BlockMover); commit them with Commit.
  ArenaMemory& mutable_memory() { return *memory_; }
  // The arena's memfd (H tier), or -1. Owned by the tier; dup() it to pass it on.
  int fd() const { return memory_->fd(); }

  // Zero-copy put: the payload was already placed at SlotAddress(slot) (by a client
  // or a DMA); records it as the slot's contents. Same checks and stats as Write.
  Status Commit(SlotId slot, const SlotTag& tag, uint32_t length,
                PayloadEncoding encoding = PayloadEncoding::kRaw);
  // Zero-copy get: checks that the slot holds `expect` and returns its info; the
  // payload is at SlotAddress(slot). Same errors and stats as Read.
  Result<SlotInfo> Lookup(SlotId slot, const SlotTag& expect);

  // Keeps `handle` alive until the tier is destroyed, before the memory is released
  // (a pinning registration, see host_pinning.h); `device_base` is where kernels see
  // the pinned arena (the registration's mapped address).
  void HoldUntilDestroyed(std::shared_ptr<void> handle, std::byte* device_base) {
    pin_ = std::move(handle);
    pinned_device_base_ = device_base;
  }
  bool pinned() const { return pin_ != nullptr; }
  // The arena's first byte as GPU kernels address it: base() for device memory (a
  // real G tier), the mapped address of a pinned host arena, else nullptr.
  std::byte* device_base() const { return memory_->host_accessible() ? pinned_device_base_ : memory_->base(); }

 protected:
  Status WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                   PayloadEncoding encoding) override;
  Status ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out,
                  SlotInfo* info) override;

 private:
  Status CheckTag(SlotId slot, const SlotTag& expect, SlotInfo* info);

  // What a slot holds, 8 bytes (SlotInfo is 40): RAM per resident block (issue 16).
  // The fingerprint is 32 bits of the tag's 64-bit checksum: a stale read (a slot
  // handed to another block or generation) passes unnoticed with odds 2^-32; the
  // BlockStore's placement map is what keeps them apart, this is its safety net.
  struct SlotRecord {
    uint32_t fingerprint = 0;  // TagFingerprint of the tag written
    uint32_t length : 28 = 0;  // <= ModelSpec::kMaxBlockBytes (64 MiB) < 2^28
    uint32_t encoding : 4 = 0; // PayloadEncoding
  };
  static_assert(sizeof(SlotRecord) == 8);
  static uint32_t TagFingerprint(const SlotTag& tag);
  static SlotRecord MakeRecord(const SlotTag& tag, uint32_t length, PayloadEncoding encoding) {
    SlotRecord r;
    r.fingerprint = TagFingerprint(tag);
    r.length = length;
    r.encoding = static_cast<uint32_t>(encoding);
    return r;
  }

  std::unique_ptr<ArenaMemory> memory_;
  const size_t stride_;
  std::vector<SlotRecord> meta_;  // per slot; written only by the slot's writer
  std::shared_ptr<void> pin_;   // destroyed before memory_ (declared after it)
  std::byte* pinned_device_base_ = nullptr;
};

// How the H tier is pinned for the GPU.
enum class PinMode : uint8_t {
  kAuto = 0,   // pin when a GPU is present; on failure log a warning and go on unpinned
  kOff,        // never pin
  kRequired,   // fail creation when the arena cannot be pinned
};

struct HostTierOptions {
  std::string name = "H";          // tier name in logs and metrics
  uint32_t num_slots = 0;          // REQUIRES: > 0
  uint32_t slot_capacity = 0;      // payload bytes per slot; REQUIRES: > 0
  PinMode pin = PinMode::kAuto;    // Default: kAuto
};

struct GpuTierOptions {
  std::string name = "G";
  uint32_t num_slots = 0;          // REQUIRES: > 0
  uint32_t slot_capacity = 0;      // REQUIRES: > 0
  int device = 0;                  // CUDA device of a real G tier
};

// H tier over a memfd arena. kInvalidArgument on zero sizes or an arena larger
// than the address space allows.
Result<std::unique_ptr<ArenaTier>> CreateHostTier(const HostTierOptions& options);
// G tier emulated in a memfd arena (no GPU, or TIERKV_WITH_CUDA=OFF).
Result<std::unique_ptr<ArenaTier>> CreateEmulatedGpuTier(const GpuTierOptions& options);
// G tier in device memory (cudaMalloc, one allocation exportable with CUDA IPC)
// when a GPU is present, else emulated (CreateEmulatedGpuTier). `*emulated` says which.
Result<std::unique_ptr<ArenaTier>> CreateGpuTier(const GpuTierOptions& options, bool* emulated);

}  // namespace tierkv::storage
