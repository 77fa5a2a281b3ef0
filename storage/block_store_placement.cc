// BlockStore: placement in memory, moves between tiers, victims, the migrator.
#include <algorithm>

#include "common/log.h"
#include "storage/block_records.h"
#include "storage/block_store.h"
#include "storage/disk_tier.h"

namespace tierkv::storage {
namespace {
constexpr int kVictimSamples = 64;
constexpr auto kDiskRetryAfter = std::chrono::seconds(5);
}  // namespace

bool BlockStore::Protected(BlockRef ref) const {
  const BlockMeta& m = index_.meta(ref);
  if (m.index < policy_.sink_blocks) return true;
  if (m.flags & kPrefix) return false;  // shared prefix blocks follow the eviction policy
  const uint32_t n = index_.SequenceBlocks(m.seq, m.layer);
  return m.index + policy_.recent_window >= n;
}

bool BlockStore::OverHigh(TierKind t) const {
  const Tier* tier = t == TierKind::kGpu ? static_cast<const Tier*>(g_) : h_;
  const Watermarks& w = t == TierKind::kGpu ? policy_.gpu : policy_.host;
  return tier->used_slots() > w.high * tier->num_slots();
}

bool BlockStore::OverLow(TierKind t) const {
  const Tier* tier = t == TierKind::kGpu ? static_cast<const Tier*>(g_) : h_;
  const Watermarks& w = t == TierKind::kGpu ? policy_.gpu : policy_.host;
  return tier->used_slots() > w.low * tier->num_slots();
}

Result<SlotId> BlockStore::AllocMemory(Where where) {
  ArenaTier* tier = where == Where::kGpu ? g_ : h_;
  return tier->Allocate();
}

void BlockStore::ReleaseMemory(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (!m.in_memory()) return;
  const TierKind kind = m.where == Where::kGpu ? TierKind::kGpu : TierKind::kHost;
  (m.where == Where::kGpu ? g_ : h_)->Free(m.mem_slot).IgnoreError();
  index_.SetOwner(kind, m.mem_slot, kNoBlock);
  m.where = Where::kNone;
  m.mem_slot = kInvalidSlot;
  room_cv_.notify_all();
}

void BlockStore::ForgetDiskCopy(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (!m.on_disk()) return;
  const char kind = (m.flags & kPrefix) ? 'P' : 'B';
  Status st = manifest_->Delete(Cf::kBlocks, EncodeRecordKey({kind, options_.ns, m.seq, m.layer, m.index}));
  if (!st.ok()) LOG(WARNING) << "manifest delete: " << st.ToString();
  d_->Free(m.disk_slot).IgnoreError();
  index_.SetOwner(TierKind::kDisk, m.disk_slot, kNoBlock);
  m.disk_slot = kInvalidSlot;
  m.flags &= ~kDiskCurrent;
}

void BlockStore::MaybeFree(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.owners > 0 || m.leases > 0) return;
  // Prefix blocks stay cached without owners while they have a copy somewhere.
  if ((m.flags & kPrefix) && !(m.flags & kDropped) && (m.in_memory() || m.on_disk())) return;
  ReleaseMemory(ref);
  ForgetDiskCopy(ref);
  index_.FreeBlock(ref);
}

// Finds memory for a block and copies payload in. Protected blocks prefer G and
// push a cold G block down to H to get in.
Status BlockStore::PlaceInMemory(std::unique_lock<std::mutex>& lock, BlockRef ref, std::span<const std::byte> payload,
                                 bool prefer_gpu) {
  BlockMeta* m = &index_.meta(ref);
  if (m->in_memory()) {  // rewrite in place
    ArenaTier* tier = m->where == Where::kGpu ? g_ : h_;
    return tier->Write(m->mem_slot, TagOf(ref), payload);
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.put_wait;
  for (;;) {
    Where where = Where::kNone;
    if ((prefer_gpu || !OverHigh(TierKind::kGpu)) && g_->free_slots() > 0) {
      where = Where::kGpu;
    } else if (prefer_gpu && h_->free_slots() > 0) {
      BlockRef victim = PickVictim(TierKind::kGpu);
      if (victim != kNoBlock && DemoteOne(lock, victim).ok() && g_->free_slots() > 0) where = Where::kGpu;
    }
    if (where == Where::kNone && h_->free_slots() > 0) where = Where::kHost;
    if (where == Where::kNone && g_->free_slots() > 0) where = Where::kGpu;
    if (where != Where::kNone) {
      auto slot = AllocMemory(where);
      if (slot.ok()) {
        ArenaTier* tier = where == Where::kGpu ? g_ : h_;
        Status st = tier->Write(*slot, TagOf(ref), payload);
        if (!st.ok()) {
          tier->Free(*slot).IgnoreError();
          return st;
        }
        m = &index_.meta(ref);
        m->where = where;
        m->mem_slot = *slot;
        index_.SetOwner(where == Where::kGpu ? TierKind::kGpu : TierKind::kHost, *slot, ref);
        if (OverHigh(TierKind::kGpu) || OverHigh(TierKind::kHost)) RequestMigration();
        return OkStatus();
      }
    }
    RequestMigration();
    if (stop_ || room_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return ResourceExhausted("no free slot in G or H within " + std::to_string(options_.put_wait.count()) +
                               " ms (the disk tier is full or failing, or every block is pinned)");
    }
    m = &index_.meta(ref);
  }
}

Status BlockStore::MoveToGpu(std::unique_lock<std::mutex>& lock, BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.where != Where::kHost) return m.where == Where::kGpu ? OkStatus() : NotFound("block is not in memory");
  if (g_->free_slots() == 0) {
    BlockRef victim = PickVictim(TierKind::kGpu);
    if (victim == kNoBlock) return ResourceExhausted("G is full of pinned or protected blocks");
    RETURN_IF_ERROR(DemoteOne(lock, victim));
  }
  ASSIGN_OR_RETURN(SlotId gslot, g_->Allocate());
  BlockMeta& b = index_.meta(ref);
  auto src = std::span<const std::byte>(h_->SlotAddress(b.mem_slot), block_bytes_);
  Status st = g_->Write(gslot, TagOf(ref), src);
  if (!st.ok()) {
    g_->Free(gslot).IgnoreError();
    return st;
  }
  h_->Free(b.mem_slot).IgnoreError();
  index_.SetOwner(TierKind::kHost, b.mem_slot, kNoBlock);
  index_.SetOwner(TierKind::kGpu, gslot, ref);
  b.where = Where::kGpu;
  b.mem_slot = gslot;
  ++stats_.promotions_h_to_g;
  stats_.bytes_h_to_g += block_bytes_;
  room_cv_.notify_all();
  return OkStatus();
}

// Reads a block that is only on D into H. The lock is dropped during the read;
// the caller holds a lease on ref.
Status BlockStore::LoadFromDisk(std::unique_lock<std::mutex>& lock, BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.in_memory()) return OkStatus();
  if (!m.on_disk()) return NotFound("block has no copy in any tier");
  if (h_->free_slots() == 0) {
    BlockRef victim = PickVictim(TierKind::kHost);
    if (victim == kNoBlock || !DemoteOne(lock, victim).ok()) return ResourceExhausted("H is full");
  }
  ASSIGN_OR_RETURN(SlotId hslot, h_->Allocate());
  const SlotTag tag = TagOf(ref);
  const SlotId dslot = index_.meta(ref).disk_slot;
  lock.unlock();
  auto info = d_->Read(dslot, tag, std::span<std::byte>(h_->SlotAddress(hslot), block_bytes_));
  lock.lock();
  if (!info.ok()) {
    h_->Free(hslot).IgnoreError();
    if (info.status().code() == StatusCode::kCorruption) {
      ++stats_.corrupt_blocks;
      LOG(ERROR) << "block " << tag.key.seq << "/" << tag.key.layer << "/" << tag.key.index
                 << " failed verification on D and is dropped: " << info.status().ToString();
      ForgetDiskCopy(ref);
    }
    return info.status();
  }
  Status st = h_->Commit(hslot, tag, info->length);
  if (!st.ok()) {
    h_->Free(hslot).IgnoreError();
    return st;
  }
  BlockMeta& b = index_.meta(ref);
  b.where = Where::kHost;
  b.mem_slot = hslot;
  index_.SetOwner(TierKind::kHost, hslot, ref);
  ++stats_.promotions_d_to_h;
  stats_.bytes_d_to_h += block_bytes_;
  return OkStatus();
}

// Writes the memory copy of a block to D (data, sync, then the manifest record).
// The lock is dropped during the I/O; the block is pinned meanwhile.
Status BlockStore::WriteToDisk(std::unique_lock<std::mutex>& lock, BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.flags & kDiskCurrent) return OkStatus();
  if (!d_) return NotSupported("no disk tier");
  if (!m.in_memory()) return NotFound("block is not in memory");
  if (!disk_ok_ && std::chrono::steady_clock::now() < disk_retry_at_) {
    return ResourceExhausted("the disk tier is not admitting writes (disk full or I/O errors)");
  }
  if (!m.on_disk()) {
    auto slot = d_->Allocate();
    if (!slot.ok()) {
      ++stats_.disk_admission_stops;
      return slot.status();
    }
    m.disk_slot = *slot;
    index_.SetOwner(TierKind::kDisk, *slot, ref);
  }
  ++m.leases;
  const SlotTag tag = TagOf(ref);
  const SlotId dslot = m.disk_slot;
  ArenaTier* mem = m.where == Where::kGpu ? g_ : h_;
  std::vector<std::byte> bounce;
  std::span<const std::byte> payload(mem->SlotAddress(m.mem_slot), block_bytes_);
  if (!mem->memory().host_accessible()) {
    bounce.resize(block_bytes_);
    auto info = mem->Read(m.mem_slot, tag, bounce);
    if (!info.ok()) {
      --m.leases;
      return info.status();
    }
    payload = bounce;
  }
  const char kind = (m.flags & kPrefix) ? 'P' : 'B';
  const std::string key = EncodeRecordKey({kind, options_.ns, m.seq, m.layer, m.index});
  lock.unlock();
  Status st = d_->Write(dslot, tag, payload);
  if (st.ok()) {
    if (auto* disk = dynamic_cast<DiskTier*>(d_)) st = disk->Sync();
  }
  if (st.ok()) {
    BlockRecord rec{dslot, static_cast<uint32_t>(tag.generation), static_cast<uint32_t>(block_bytes_), 0};
    st = manifest_->Put(Cf::kBlocks, key, EncodeBlockRecord(rec));
  }
  lock.lock();
  BlockMeta& b = index_.meta(ref);
  --b.leases;
  if (!st.ok()) {
    LOG(WARNING) << "D tier write failed, D stops admitting for " << kDiskRetryAfter.count()
                 << " s: " << st.ToString();
    ++stats_.disk_admission_stops;
    disk_ok_ = false;
    disk_retry_at_ = std::chrono::steady_clock::now() + kDiskRetryAfter;
    ForgetDiskCopy(ref);
    return st;
  }
  disk_ok_ = true;
  if (b.generation == tag.generation) b.flags |= kDiskCurrent;
  return OkStatus();
}

// Moves one unpinned block one tier down: G -> H, or H -> D (then frees H).
Status BlockStore::DemoteOne(std::unique_lock<std::mutex>& lock, BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.leases > 0) return Busy("pinned");
  if (m.where == Where::kGpu) {
    if (h_->free_slots() == 0) return ResourceExhausted("H is full");
    ASSIGN_OR_RETURN(SlotId hslot, h_->Allocate());
    auto info = g_->Read(m.mem_slot, TagOf(ref), std::span<std::byte>(h_->SlotAddress(hslot), block_bytes_));
    Status st = info.ok() ? h_->Commit(hslot, TagOf(ref), info->length) : info.status();
    if (!st.ok()) {
      h_->Free(hslot).IgnoreError();
      return st;
    }
    g_->Free(m.mem_slot).IgnoreError();
    index_.SetOwner(TierKind::kGpu, m.mem_slot, kNoBlock);
    index_.SetOwner(TierKind::kHost, hslot, ref);
    m.where = Where::kHost;
    m.mem_slot = hslot;
    ++stats_.demotions_g_to_h;
    stats_.bytes_g_to_h += block_bytes_;
    room_cv_.notify_all();
    return OkStatus();
  }
  if (m.where == Where::kHost) {
    if (!d_) return NotSupported("no disk tier");
    const bool was_current = m.flags & kDiskCurrent;
    RETURN_IF_ERROR(WriteToDisk(lock, ref));
    BlockMeta& b = index_.meta(ref);
    if (b.leases > 0 || b.where != Where::kHost || !(b.flags & kDiskCurrent)) return Busy("block changed meanwhile");
    ReleaseMemory(ref);
    ++stats_.demotions_h_to_d;
    if (!was_current) stats_.bytes_h_to_d += block_bytes_;
    return OkStatus();
  }
  return NotFound("block is not in memory");
}

// The coldest unpinned block (unprotected, on G) among a sample of the tier's slots.
BlockRef BlockStore::PickVictim(TierKind tier) const {
  const uint32_t n = index_.num_slots(tier);
  if (n == 0) return kNoBlock;
  const Where where = tier == TierKind::kGpu ? Where::kGpu : Where::kHost;
  auto colder = [&](const BlockMeta& a, const BlockMeta& b) {
    switch (policy_.eviction) {
      case Eviction::kLfu:
        if (a.hits != b.hits) return a.hits < b.hits;
        break;
      case Eviction::kScore:
        if (a.selections != b.selections) return a.selections < b.selections;
        break;
      case Eviction::kLru: break;
    }
    return a.last_access < b.last_access;
  };
  BlockRef best = kNoBlock;
  int candidates = 0;
  auto consider = [&](uint32_t slot) {
    BlockRef ref = index_.Owner(tier, slot);
    if (ref == kNoBlock) return;
    const BlockMeta& m = index_.meta(ref);
    // Sinks and the recent window are kept on G; anywhere else they move like the rest.
    if (m.where != where || m.mem_slot != slot || m.leases > 0 || (tier == TierKind::kGpu && Protected(ref))) return;
    ++candidates;
    if (best == kNoBlock || colder(m, index_.meta(best))) best = ref;
  };
  for (int i = 0; i < kVictimSamples; ++i) {
    sample_state_ = sample_state_ * 6364136223846793005ull + 1442695040888963407ull;
    consider(static_cast<uint32_t>((sample_state_ >> 33) % n));
  }
  // Sparse or mostly pinned tiers: sweep once so a victim is found when one exists.
  for (uint32_t s = 0; candidates < 8 && s < n; ++s) consider(s);
  return best;
}

void BlockStore::MigrateOnce() {
  std::unique_lock lock(mu_);
  // Demote G -> H while G is above its low watermark (once past the high one).
  if (OverHigh(TierKind::kGpu)) {
    while (OverLow(TierKind::kGpu) && !stop_) {
      BlockRef v = PickVictim(TierKind::kGpu);
      if (v == kNoBlock) break;
      if (h_->free_slots() == 0) {
        BlockRef hv = PickVictim(TierKind::kHost);
        if (hv == kNoBlock || !DemoteOne(lock, hv).ok()) break;
        continue;
      }
      if (!DemoteOne(lock, v).ok()) break;
    }
  }
  if (d_ && OverHigh(TierKind::kHost)) {
    while (OverLow(TierKind::kHost) && !stop_) {
      BlockRef v = PickVictim(TierKind::kHost);
      if (v == kNoBlock || !DemoteOne(lock, v).ok()) break;
    }
  }
  // Defer-mode misses: bring them up for the next step.
  std::vector<BlockRef> todo;
  todo.swap(deferred_);
  for (BlockRef ref : todo) {
    BlockMeta& m = index_.meta(ref);
    // Only blocks still pinned by their lease are surely the same block (a released
    // one may have been freed and its meta reused); released ones need no promotion.
    if (!(m.flags & kLive) || m.leases == 0 || m.where == Where::kGpu) continue;
    ++m.leases;
    Status st = LoadFromDisk(lock, ref);
    if (st.ok()) st = MoveToGpu(lock, ref);
    --index_.meta(ref).leases;
    MaybeFree(ref);
  }
  room_cv_.notify_all();
}

void BlockStore::RequestMigration() {
  migrate_requested_ = true;
  migrate_cv_.notify_one();
}

void BlockStore::MigratorLoop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Predicate checked under the lock: neither a request nor the stop is lost.
      migrate_cv_.wait_for(lock, options_.migrate_interval, [this] { return stop_ || migrate_requested_; });
      if (stop_) return;
      migrate_requested_ = false;
    }
    MigrateOnce();
  }
}

}  // namespace tierkv::storage
