#include "storage/tier.h"

#include <string>

namespace tierkv::storage {
namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;

std::string SlotName(const std::string& tier, SlotId slot) {
  return tier + " slot " + std::to_string(slot);
}
}  // namespace

std::string_view TierKindName(TierKind kind) {
  switch (kind) {
    case TierKind::kGpu: return "G";
    case TierKind::kHost: return "H";
    case TierKind::kDisk: return "D";
  }
  return "?";
}

std::string TagToString(const SlotTag& tag) {
  return "ns " + std::to_string(tag.key.ns) + " seq " + std::to_string(tag.key.seq) + " layer " +
         std::to_string(tag.key.layer) + " block " + std::to_string(tag.key.index) + " gen " +
         std::to_string(tag.generation);
}

TierStatsSnapshot TierStats::Snapshot() const {
  TierStatsSnapshot s;
  s.reads = reads.load(kRelaxed);
  s.read_bytes = read_bytes.load(kRelaxed);
  s.writes = writes.load(kRelaxed);
  s.write_bytes = write_bytes.load(kRelaxed);
  s.read_errors = read_errors.load(kRelaxed);
  s.write_errors = write_errors.load(kRelaxed);
  s.io_errors = io_errors.load(kRelaxed);
  s.no_space = no_space.load(kRelaxed);
  s.checksum_failures = checksum_failures.load(kRelaxed);
  s.tag_mismatches = tag_mismatches.load(kRelaxed);
  s.rejected = rejected.load(kRelaxed);
  s.allocations = allocations.load(kRelaxed);
  s.frees = frees.load(kRelaxed);
  s.allocation_failures = allocation_failures.load(kRelaxed);
  return s;
}

Tier::Tier(TierKind kind, std::string name, uint32_t num_slots, uint32_t slot_capacity)
    : kind_(kind),
      name_(std::move(name)),
      num_slots_(num_slots),
      slot_capacity_(slot_capacity),
      state_(new std::atomic<uint8_t>[num_slots]),
      free_(num_slots) {
  TIERKV_CHECK(num_slots > 0 && num_slots != kInvalidSlot && slot_capacity > 0);
  // Descending on the stack so that Allocate hands out 0, 1, 2, ... (sequential
  // placement on disk for a fresh tier).
  for (uint32_t i = 0; i < num_slots; ++i) {
    state_[i].store(kFree, kRelaxed);
    free_[i] = num_slots - 1 - i;
  }
}

Tier::~Tier() = default;

size_t Tier::MetadataBytes() const {
  MutexLock lock(&mu_);
  return size_t{num_slots_} * sizeof(std::atomic<uint8_t>) + free_.capacity() * sizeof(SlotId);
}

SlotId Tier::PopFreeLocked() {
  for (;;) {
    TIERKV_CHECK(!free_.empty());
    const SlotId slot = free_.back();
    free_.pop_back();
    if (state_[slot].load(kRelaxed) != kFree) continue;  // adopted since it was pushed
    used_.fetch_add(1, kRelaxed);
    return slot;
  }
}

Result<SlotId> Tier::Allocate() {
  MutexLock lock(&mu_);
  if (used_.load(kRelaxed) >= num_slots_) {
    stats_.allocation_failures.fetch_add(1, kRelaxed);
    return ResourceExhausted(name_ + ": all " + std::to_string(num_slots_) + " slots are in use");
  }
  const SlotId slot = PopFreeLocked();
  state_[slot].store(kEmpty, std::memory_order_release);
  stats_.allocations.fetch_add(1, kRelaxed);
  return slot;
}

Status Tier::AllocateMany(size_t n, std::vector<SlotId>* out) {
  MutexLock lock(&mu_);
  const size_t free = num_slots_ - used_.load(kRelaxed);
  if (n > free) {
    stats_.allocation_failures.fetch_add(1, kRelaxed);
    return ResourceExhausted(name_ + ": " + std::to_string(n) + " slots requested, " + std::to_string(free) +
                             " free");
  }
  out->reserve(out->size() + n);
  for (size_t i = 0; i < n; ++i) {
    const SlotId slot = PopFreeLocked();
    state_[slot].store(kEmpty, std::memory_order_release);
    out->push_back(slot);
  }
  stats_.allocations.fetch_add(n, kRelaxed);
  return OkStatus();
}

Status Tier::Free(SlotId slot) {
  if (slot >= num_slots_) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return InvalidArgument(SlotName(name_, slot) + " is out of range (" + std::to_string(num_slots_) +
                           " slots)");
  }
  MutexLock lock(&mu_);
  if (state_[slot].load(kRelaxed) == kFree) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return InvalidArgument(SlotName(name_, slot) + " is already free");
  }
  state_[slot].store(kFree, std::memory_order_release);
  if (free_.size() >= 2 * size_t{num_slots_}) {  // stale entries of adopted slots: rebuild
    free_.clear();
    for (uint32_t s = num_slots_; s-- > 0;) {
      if (state_[s].load(kRelaxed) == kFree && s != slot) free_.push_back(s);
    }
  }
  free_.push_back(slot);
  used_.fetch_sub(1, kRelaxed);
  stats_.frees.fetch_add(1, kRelaxed);
  return OkStatus();
}

Status Tier::Adopt(SlotId slot) {
  if (!persistent()) return NotSupported(name_ + ": Adopt on a volatile tier");
  if (slot >= num_slots_) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return InvalidArgument(SlotName(name_, slot) + " is out of range");
  }
  MutexLock lock(&mu_);
  if (state_[slot].load(kRelaxed) != kFree) return AlreadyExists(SlotName(name_, slot) + " is not free");
  state_[slot].store(kWritten, std::memory_order_release);  // its stack entry is skipped when popped
  used_.fetch_add(1, kRelaxed);
  stats_.allocations.fetch_add(1, kRelaxed);
  return OkStatus();
}

bool Tier::IsAllocated(SlotId slot) const {
  return slot < num_slots_ && state_[slot].load(std::memory_order_acquire) != kFree;
}

Status Tier::CheckWrite(SlotId slot, size_t payload_bytes) {
  if (slot >= num_slots_) {
    return InvalidArgument(SlotName(name_, slot) + " is out of range (" + std::to_string(num_slots_) +
                           " slots)");
  }
  if (payload_bytes > slot_capacity_) {
    return InvalidArgument(name_ + ": payload of " + std::to_string(payload_bytes) +
                           " bytes exceeds the slot capacity of " + std::to_string(slot_capacity_));
  }
  if (state_[slot].load(std::memory_order_acquire) == kFree) {
    return InvalidArgument(SlotName(name_, slot) + " is not allocated");
  }
  return OkStatus();
}

Status Tier::CheckRead(SlotId slot) {
  if (slot >= num_slots_) {
    return InvalidArgument(SlotName(name_, slot) + " is out of range (" + std::to_string(num_slots_) +
                           " slots)");
  }
  const uint8_t state = state_[slot].load(std::memory_order_acquire);
  if (state == kFree) return NotFound(SlotName(name_, slot) + " is free");
  if (state == kEmpty) return NotFound(SlotName(name_, slot) + " holds no data");
  return OkStatus();
}

void Tier::FinishWrite(const Status& st, SlotId slot, size_t bytes) {
  if (st.ok()) {
    state_[slot].store(kWritten, std::memory_order_release);
    stats_.writes.fetch_add(1, kRelaxed);
    stats_.write_bytes.fetch_add(bytes, kRelaxed);
    return;
  }
  // The slot's previous contents may be partly overwritten: it holds nothing now.
  state_[slot].store(kEmpty, std::memory_order_release);
  if (st.code() == StatusCode::kInvalidArgument) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return;
  }
  stats_.write_errors.fetch_add(1, kRelaxed);
  if (st.code() == StatusCode::kIOError) stats_.io_errors.fetch_add(1, kRelaxed);
  if (st.code() == StatusCode::kResourceExhausted) stats_.no_space.fetch_add(1, kRelaxed);
}

void Tier::FinishRead(const Status& st, size_t bytes) {
  if (st.ok()) {
    stats_.reads.fetch_add(1, kRelaxed);
    stats_.read_bytes.fetch_add(bytes, kRelaxed);
    return;
  }
  if (st.code() == StatusCode::kInvalidArgument) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return;
  }
  stats_.read_errors.fetch_add(1, kRelaxed);
  if (st.code() == StatusCode::kIOError) stats_.io_errors.fetch_add(1, kRelaxed);
  if (st.code() == StatusCode::kCorruption) stats_.checksum_failures.fetch_add(1, kRelaxed);
}

Status Tier::BeginWrite(SlotId slot, size_t payload_bytes) {
  Status st = CheckWrite(slot, payload_bytes);
  if (!st.ok()) {
    stats_.rejected.fetch_add(1, kRelaxed);
    return st;
  }
  state_[slot].store(kEmpty, std::memory_order_release);
  return OkStatus();
}

Status Tier::BeginRead(SlotId slot) {
  Status st = CheckRead(slot);
  if (!st.ok()) stats_.rejected.fetch_add(1, kRelaxed);
  return st;
}

Status Tier::Write(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                   PayloadEncoding encoding) {
  RETURN_IF_ERROR(BeginWrite(slot, payload.size()));
  Status st = WriteImpl(slot, tag, payload, encoding);
  FinishWrite(st, slot, payload.size());
  return st;
}

Result<SlotInfo> Tier::Read(SlotId slot, const SlotTag& expect, std::span<std::byte> out) {
  RETURN_IF_ERROR(BeginRead(slot));
  SlotInfo info;
  Status st = ReadImpl(slot, expect, out, &info);
  FinishRead(st, info.length);
  if (!st.ok()) return st;
  return info;
}

Status Tier::WriteBatch(std::span<WriteOp> ops) {
  std::vector<WriteOp*> valid;
  valid.reserve(ops.size());
  for (WriteOp& op : ops) {
    op.status = BeginWrite(op.slot, op.payload.size());
    if (op.status.ok()) valid.push_back(&op);
  }
  if (!valid.empty()) WriteBatchImpl(valid);
  for (WriteOp* op : valid) FinishWrite(op->status, op->slot, op->payload.size());
  for (const WriteOp& op : ops) {
    if (!op.status.ok()) return op.status;
  }
  return OkStatus();
}

Status Tier::ReadBatch(std::span<ReadOp> ops) {
  std::vector<ReadOp*> valid;
  valid.reserve(ops.size());
  for (ReadOp& op : ops) {
    op.info = SlotInfo{};
    op.status = BeginRead(op.slot);
    if (op.status.ok()) valid.push_back(&op);
  }
  if (!valid.empty()) ReadBatchImpl(valid);
  for (ReadOp* op : valid) FinishRead(op->status, op->info.length);
  for (const ReadOp& op : ops) {
    if (!op.status.ok()) return op.status;
  }
  return OkStatus();
}

void Tier::WriteBatchImpl(std::span<WriteOp* const> ops) {
  for (WriteOp* op : ops) op->status = WriteImpl(op->slot, op->tag, op->payload, op->encoding);
}

void Tier::ReadBatchImpl(std::span<ReadOp* const> ops) {
  for (ReadOp* op : ops) op->status = ReadImpl(op->slot, op->expect, op->out, &op->info);
}

}  // namespace tierkv::storage
