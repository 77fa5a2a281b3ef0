#include "storage/arena_tier.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "common/checksum.h"
#include "common/shm.h"
#include "storage/host_pinning.h"

namespace tierkv::storage {
namespace {
constexpr size_t kPage = 4096;

size_t RoundUpPage(size_t n) { return (n + kPage - 1) / kPage * kPage; }

Status MapError(int err, const std::string& what) {
  if (err == ENOMEM) return ResourceExhausted(what + ": " + std::strerror(err));
  return FromErrno(err, what);
}

class MappedArena final : public ArenaMemory {
 public:
  MappedArena(std::byte* base, size_t bytes, int fd, bool sealed = false)
      : base_(base), bytes_(bytes), fd_(fd), sealed_(sealed) {}
  ~MappedArena() override {
    munmap(base_, bytes_);
    if (fd_ >= 0) close(fd_);
  }
  std::byte* base() const override { return base_; }
  size_t bytes() const override { return bytes_; }
  int fd() const override { return fd_; }
  bool sealed_for_readers() const override { return sealed_; }

 private:
  std::byte* const base_;
  const size_t bytes_;
  const int fd_;
  const bool sealed_;
};

// num_slots * SlotStride(capacity), or 0 on overflow.
size_t ArenaBytes(uint32_t num_slots, uint32_t slot_capacity) {
  const size_t stride = ArenaTier::SlotStride(slot_capacity);
  if (num_slots != 0 && stride > std::numeric_limits<size_t>::max() / num_slots) return 0;
  return stride * num_slots;
}

Status CheckSizes(const std::string& name, uint32_t num_slots, uint32_t slot_capacity) {
  if (num_slots == 0 || num_slots == kInvalidSlot) {
    return InvalidArgument(name + ": num_slots must be in [1, 2^32 - 2], got " + std::to_string(num_slots));
  }
  if (slot_capacity == 0) return InvalidArgument(name + ": slot_capacity must be > 0");
  if (slot_capacity >= (1u << 28)) return InvalidArgument(name + ": slot_capacity must be below 256 MiB");
  if (ArenaBytes(num_slots, slot_capacity) == 0) return InvalidArgument(name + ": arena size overflows");
  return OkStatus();
}
}  // namespace

Status ArenaMemory::CopyIn(size_t offset, const std::byte* src, size_t n) {
  if (n > 0) std::memcpy(base() + offset, src, n);
  return OkStatus();
}

Status ArenaMemory::CopyOut(size_t offset, std::byte* dst, size_t n) const {
  if (n > 0) std::memcpy(dst, base() + offset, n);
  return OkStatus();
}

Result<std::unique_ptr<ArenaMemory>> CreateMemfdArena(const std::string& debug_name, size_t bytes) {
  if (bytes == 0) return InvalidArgument("memfd arena of 0 bytes");
  bytes = RoundUpPage(bytes);
  const int fd = memfd_create(debug_name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return MapError(errno, "memfd_create " + debug_name);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    close(fd);
    return MapError(err, "ftruncate memfd " + debug_name + " to " + std::to_string(bytes));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return MapError(err, "mmap memfd " + debug_name);
  }
  // Clients get this fd. Once the daemon's own mapping exists, the file is sealed
  // against any new write or writable mapping (F_SEAL_FUTURE_WRITE) and against
  // resizing (a client that shrank it would make the daemon's accesses fault), and
  // its mode becomes 0400. Without F_SEAL_FUTURE_WRITE only the size is sealed and
  // the arena says so (sealed_for_readers() false): the daemon then refuses to share it.
  bool sealed = true;
  Status st = SealForReaders(fd);
  if (st.code() == StatusCode::kNotSupported) {
    sealed = false;
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) st = FromErrno(errno, "seal size");
    else st = OkStatus();
  }
  if (!st.ok()) {
    munmap(p, bytes);
    close(fd);
    return st.WithContext("memfd " + debug_name);
  }
  return std::unique_ptr<ArenaMemory>(new MappedArena(static_cast<std::byte*>(p), bytes, fd, sealed));
}

Result<std::unique_ptr<ArenaMemory>> CreateAnonymousArena(size_t bytes) {
  if (bytes == 0) return InvalidArgument("anonymous arena of 0 bytes");
  bytes = RoundUpPage(bytes);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return MapError(errno, "mmap anonymous arena of " + std::to_string(bytes) + " bytes");
  return std::unique_ptr<ArenaMemory>(new MappedArena(static_cast<std::byte*>(p), bytes, -1));
}

size_t ArenaTier::SlotStride(uint32_t slot_capacity) {
  constexpr size_t kLine = 64;
  return slot_capacity >= kPage ? RoundUpPage(slot_capacity) : (size_t{slot_capacity} + kLine - 1) / kLine * kLine;
}

size_t ArenaTier::MetadataBytes() const { return Tier::MetadataBytes() + meta_.capacity() * sizeof(SlotRecord); }

uint32_t ArenaTier::TagFingerprint(const SlotTag& tag) {
  struct {
    BlockKey key;
    uint64_t generation;
  } bytes{tag.key, tag.generation};
  static_assert(sizeof(bytes) == 32);
  const uint64_t h = Checksum64(&bytes, sizeof(bytes));
  return static_cast<uint32_t>(h ^ (h >> 32));
}

ArenaTier::ArenaTier(TierKind kind, std::string name, std::unique_ptr<ArenaMemory> memory,
                     uint32_t num_slots, uint32_t slot_capacity)
    : Tier(kind, std::move(name), num_slots, slot_capacity),
      memory_(std::move(memory)),
      stride_(SlotStride(slot_capacity)),
      meta_(num_slots) {
  TIERKV_CHECK(memory_ != nullptr && memory_->bytes() >= ArenaBytes(num_slots, slot_capacity));
}

ArenaTier::~ArenaTier() = default;

Status ArenaTier::WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                            PayloadEncoding encoding) {
  RETURN_IF_ERROR(memory_->CopyIn(SlotOffset(slot), payload.data(), payload.size()));
  meta_[slot] = MakeRecord(tag, static_cast<uint32_t>(payload.size()), encoding);
  return OkStatus();
}

Status ArenaTier::CheckTag(SlotId slot, const SlotTag& expect, SlotInfo* info) {
  const SlotRecord& meta = meta_[slot];
  if (meta.fingerprint != TagFingerprint(expect)) {
    mutable_stats().tag_mismatches.fetch_add(1, std::memory_order_relaxed);
    return Corruption(name() + " slot " + std::to_string(slot) + " holds another block or generation, not (" +
                      TagToString(expect) + ")");
  }
  *info = SlotInfo{expect, meta.length, static_cast<PayloadEncoding>(meta.encoding)};
  return OkStatus();
}

Status ArenaTier::ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out, SlotInfo* info) {
  SlotInfo meta;
  RETURN_IF_ERROR(CheckTag(slot, expect, &meta));
  if (meta.length > out.size()) {
    return InvalidArgument(name() + " slot " + std::to_string(slot) + ": buffer of " +
                           std::to_string(out.size()) + " bytes is smaller than the payload of " +
                           std::to_string(meta.length));
  }
  RETURN_IF_ERROR(memory_->CopyOut(SlotOffset(slot), out.data(), meta.length));
  *info = meta;
  return OkStatus();
}

Status ArenaTier::Commit(SlotId slot, const SlotTag& tag, uint32_t length, PayloadEncoding encoding) {
  RETURN_IF_ERROR(BeginWrite(slot, length));
  meta_[slot] = MakeRecord(tag, length, encoding);
  FinishWrite(OkStatus(), slot, length);
  return OkStatus();
}

Result<SlotInfo> ArenaTier::Lookup(SlotId slot, const SlotTag& expect) {
  RETURN_IF_ERROR(BeginRead(slot));
  SlotInfo info;
  Status st = CheckTag(slot, expect, &info);
  FinishRead(st, info.length);
  if (!st.ok()) return st;
  return info;
}

Result<std::unique_ptr<ArenaTier>> CreateHostTier(const HostTierOptions& options) {
  RETURN_IF_ERROR(CheckSizes(options.name, options.num_slots, options.slot_capacity));
  ASSIGN_OR_RETURN(std::unique_ptr<ArenaMemory> memory,
                   CreateMemfdArena("tierkv-" + options.name,
                                    ArenaBytes(options.num_slots, options.slot_capacity)));
  auto tier = std::make_unique<ArenaTier>(TierKind::kHost, options.name, std::move(memory),
                                          options.num_slots, options.slot_capacity);
  RETURN_IF_ERROR(PinHostTier(options.pin, tier.get()));
  return tier;
}

Result<std::unique_ptr<ArenaTier>> CreateEmulatedGpuTier(const GpuTierOptions& options) {
  RETURN_IF_ERROR(CheckSizes(options.name, options.num_slots, options.slot_capacity));
  // A memfd, like H: clients of the namespace map it read-only to read their blocks
  // where a real G tier would be mapped with CUDA IPC.
  ASSIGN_OR_RETURN(std::unique_ptr<ArenaMemory> memory,
                   CreateMemfdArena("tierkv-" + options.name, ArenaBytes(options.num_slots, options.slot_capacity)));
  return std::make_unique<ArenaTier>(TierKind::kGpu, options.name, std::move(memory), options.num_slots,
                                     options.slot_capacity);
}

}  // namespace tierkv::storage
