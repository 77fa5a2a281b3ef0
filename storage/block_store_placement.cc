// BlockStore: placement in memory, moves between G and H, freeing, victims, the
// migrator. D transfers are in block_store_disk.cc.
#include <algorithm>
#include <cmath>

#include "common/log.h"
#include "storage/block_records.h"
#include "storage/block_store.h"

namespace tierkv::storage {
namespace {
constexpr int kVictimSamples = 64;
// Most slots a victim search sweeps when sampling found too few candidates.
constexpr uint32_t kVictimSweep = 1u << 16;
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

void BlockStore::ReleaseMemory(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (!m.in_memory()) return;
  const TierKind kind = m.where == Where::kGpu ? TierKind::kGpu : TierKind::kHost;
  (m.where == Where::kGpu ? g_ : h_)->Free(m.mem_slot).IgnoreError();
  index_.SetOwner(kind, m.mem_slot, kNoBlock);
  m.where = Where::kNone;
  m.mem_slot = kInvalidSlot;
  room_cv_.NotifyAll();
}

// A block dropped while pinned is freed when its last lease goes; by then its key
// (sequence, layer, index, or prefix hash and layer) may name a successor: the
// sequence was closed and the block put again. Its record is the successor's when
// the successor has a D copy or a D write in flight (the write's record lands after
// this delete otherwise, both are made under mu_). Deleting it then lost an
// acknowledged block (found by the daemon soak, issue 16).
bool BlockStore::SuccessorOwnsRecord(BlockRef ref) const {
  const BlockMeta& m = index_.meta(ref);
  const bool prefix = m.flags & kPrefix;
  const BlockRef other = prefix ? index_.FindPrefix(m.seq, m.layer) : index_.Find(m.seq, m.layer, m.index);
  if (other == kNoBlock || other == ref) return false;
  const BlockMeta& o = index_.meta(other);
  if (static_cast<bool>(o.flags & kPrefix) != prefix) return false;  // another kind of record
  // Only a D write brings a record; a put placing the successor in memory (kIoPending
  // without kDiskWrite) does not, and keeping the record then leaked it.
  return o.on_disk() || (o.flags & kDiskWrite);
}

void BlockStore::ForgetDiskCopy(BlockRef ref, Manifest::Batch* batch, std::vector<SlotId>* slots) {
  BlockMeta& m = index_.meta(ref);
  if (!m.on_disk()) return;
  if (!SuccessorOwnsRecord(ref)) batch->Delete(Cf::kBlocks, RecordKeyOf(ref));
  slots->push_back(m.disk_slot);
  m.disk_slot = kInvalidSlot;
  m.flags &= ~kDiskCurrent;
}

void BlockStore::ForgetDiskCopyNow(BlockRef ref) {
  Manifest::Batch batch;
  std::vector<SlotId> slots;
  ForgetDiskCopy(ref, &batch, &slots);
  CommitRecordDeletes(batch, slots);
}

// The record deletes are durable before the slots can be reused. Were the write to
// fail, the slots are reused all the same: a stale record then names a slot whose
// header holds another key or generation, and Open drops it.
void BlockStore::CommitRecordDeletes(const Manifest::Batch& batch, const std::vector<SlotId>& slots) {
  if (batch.Count() > 0) {
    Status st = manifest_->Write(batch);
    if (!st.ok()) LOG(WARNING) << "manifest: deleting " << batch.Count() << " block record(s): " << st.ToString();
  }
  for (SlotId s : slots) d_->Free(s).IgnoreError();
}

void BlockStore::MaybeFree(std::span<const BlockRef> refs) {
  Manifest::Batch batch;
  std::vector<SlotId> slots;
  for (BlockRef ref : refs) {
    BlockMeta& m = index_.meta(ref);
    if (!(m.flags & kLive) || m.owners > 0 || m.leases > 0) continue;
    // Prefix blocks stay cached without owners while they have a copy somewhere.
    if ((m.flags & kPrefix) && !(m.flags & kDropped) && (m.in_memory() || m.on_disk())) continue;
    ReleaseMemory(ref);
    ForgetDiskCopy(ref, &batch, &slots);
    index_.FreeBlock(ref);
  }
  CommitRecordDeletes(batch, slots);
}

// A put's copy into G/H, with the lock dropped. Nothing else touches the slot
// meanwhile: a fresh slot is allocated and not yet in the placement map; a rewrite
// in place is of a block that the put pins and marks kIoPending (no move, no D
// write, no other put) with no Get copying it out (PlaceBlock waited), and kPlacing
// keeps new Gets and Acquires away until the caller clears it.
Status BlockStore::CopyIn(MutexLock& /*lock*/, BlockRef ref, ArenaTier* tier, SlotId slot,
                          std::span<const std::byte> payload) {
  BlockMeta& m = index_.meta(ref);
  TIERKV_CHECK(m.leases > 0 && (m.flags & kIoPending));
  if (!copy_unlocked_) return tier->Write(slot, TagOf(ref), payload);
  m.flags |= kPlacing;
  const SlotTag tag = TagOf(ref);
  mu_.Unlock();
  Status st = tier->Write(slot, tag, payload);
  mu_.Lock();
  return st;
}

// Finds memory for a block and copies payload in. Protected blocks prefer G and
// push a cold G block down to H to get in.
Status BlockStore::PlaceInMemory(MutexLock& lock, BlockRef ref, std::span<const std::byte> payload,
                                 bool prefer_gpu) {
  if (index_.meta(ref).in_memory()) {  // rewrite in place
    const BlockMeta& m = index_.meta(ref);
    return CopyIn(lock, ref, m.where == Where::kGpu ? g_ : h_, m.mem_slot, payload);
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.put_wait;
  for (;;) {
    Where where = Where::kNone;
    if ((prefer_gpu || !OverHigh(TierKind::kGpu)) && g_->free_slots() > 0) {
      where = Where::kGpu;
    } else if (prefer_gpu && h_->free_slots() > 0) {
      BlockRef victim = PickVictim(TierKind::kGpu);
      if (victim != kNoBlock && DemoteToHost(victim).ok() && g_->free_slots() > 0) where = Where::kGpu;
    }
    if (where == Where::kNone && h_->free_slots() > 0) where = Where::kHost;
    if (where == Where::kNone && g_->free_slots() > 0) where = Where::kGpu;
    if (where != Where::kNone) {
      ArenaTier* tier = where == Where::kGpu ? g_ : h_;
      auto slot = tier->Allocate();
      if (slot.ok()) {
        Status st = CopyIn(lock, ref, tier, *slot, payload);
        if (!st.ok()) {
          tier->Free(*slot).IgnoreError();
          return st;
        }
        BlockMeta& m = index_.meta(ref);
        m.where = where;
        m.mem_slot = *slot;
        index_.SetOwner(where == Where::kGpu ? TierKind::kGpu : TierKind::kHost, *slot, ref);
        if (OverHigh(TierKind::kGpu) || OverHigh(TierKind::kHost)) RequestMigration();
        return OkStatus();
      }
    }
    RequestMigration();
    if (stop_ || !room_cv_.WaitUntil(&mu_, deadline)) {
      return ResourceExhausted("no free slot in G or H within " + std::to_string(options_.put_wait.count()) +
                               " ms (the disk tier is full or failing, or every block is pinned)");
    }
  }
}

size_t BlockStore::MoveToGpu(std::span<const BlockRef> refs) {
  // Only blocks on H whose H copy nobody reads; the common all-on-G step stops here.
  std::vector<BlockRef> candidates;
  for (BlockRef ref : refs) {
    const BlockMeta& m = index_.meta(ref);
    if (m.where == Where::kHost && !(m.flags & (kIoPending | kPublished))) candidates.push_back(ref);
  }
  if (candidates.empty()) return 0;
  std::sort(candidates.begin(), candidates.end());  // a block asked twice moves once
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  PromotionBatch batch;
  size_t moved = 0;
  for (BlockRef ref : candidates) {
    if (g_->free_slots() == 0) {
      // The victim goes to H: when H is full, the batch so far frees its H slots first.
      if (h_->free_slots() == 0) moved += CopyPromotions(&batch);
      const BlockRef victim = PickVictim(TierKind::kGpu);
      if (victim == kNoBlock || !DemoteToHost(victim).ok()) break;
    }
    Result<SlotId> gslot = g_->Allocate();
    if (!gslot.ok()) break;
    batch.refs.push_back(ref);
    batch.from.push_back(index_.meta(ref).mem_slot);
    batch.to.push_back(*gslot);
  }
  return moved + CopyPromotions(&batch);
}

size_t BlockStore::CopyPromotions(PromotionBatch* batch) {
  if (batch->refs.empty()) return 0;
  const Status copied = mover_.Gather(batch->from, batch->to, block_bytes_);
  ++stats_.promotion_batches;
  size_t moved = 0;
  for (size_t i = 0; i < batch->refs.size(); ++i) {
    const BlockRef ref = batch->refs[i];
    const SlotId gslot = batch->to[i];
    const Status st = copied.ok() ? g_->Commit(gslot, TagOf(ref), static_cast<uint32_t>(block_bytes_)) : copied;
    if (!st.ok()) {
      g_->Free(gslot).IgnoreError();
      continue;
    }
    BlockMeta& b = index_.meta(ref);
    h_->Free(b.mem_slot).IgnoreError();
    index_.SetOwner(TierKind::kHost, b.mem_slot, kNoBlock);
    index_.SetOwner(TierKind::kGpu, gslot, ref);
    b.where = Where::kGpu;
    b.mem_slot = gslot;
    ++moved;
  }
  if (!copied.ok()) LOG(WARNING) << "H->G copy of " << batch->refs.size() << " blocks failed: " << copied.ToString();
  stats_.promotions_h_to_g += moved;
  stats_.bytes_h_to_g += moved * block_bytes_;
  if (moved > 0) room_cv_.NotifyAll();
  *batch = PromotionBatch{};
  return moved;
}

Status BlockStore::DemoteToHost(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  if (m.leases > 0) return Busy("pinned");
  if (m.where != Where::kGpu) return NotFound("block is not on G");
  if (h_->free_slots() == 0) return ResourceExhausted("H is full");
  ASSIGN_OR_RETURN(SlotId hslot, h_->Allocate());
  const SlotTag tag = TagOf(ref);
  auto info = g_->Read(m.mem_slot, tag, std::span<std::byte>(h_->SlotAddress(hslot), block_bytes_));
  Status st = info.ok() ? h_->Commit(hslot, tag, info->length) : info.status();
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
  room_cv_.NotifyAll();
  return OkStatus();
}

// Clean victims (current on D) just leave H. Dirty ones are marked kIoPending while
// they are picked, so PickVictim does not return one twice, then written as one
// batch; WriteToDisk pins the ones it writes for the whole transfer, so only those
// are looked at afterwards (the others may have changed or been freed meanwhile).
size_t BlockStore::DemoteHostBatch(MutexLock& lock, size_t n) {
  if (!d_ || n == 0) return 0;
  size_t freed = 0;
  std::vector<BlockRef> dirty;
  for (size_t i = 0; i < n; ++i) {
    const BlockRef v = PickVictim(TierKind::kHost);
    if (v == kNoBlock) break;
    BlockMeta& m = index_.meta(v);
    if (m.flags & kDiskCurrent) {
      ReleaseMemory(v);
      ++stats_.demotions_h_to_d;
      ++freed;
      continue;
    }
    m.flags |= kIoPending;
    dirty.push_back(v);
  }
  if (dirty.empty()) return freed;
  for (BlockRef v : dirty) index_.meta(v).flags &= ~kIoPending;
  std::vector<Status> written;
  WriteToDisk(lock, dirty, &written);
  for (size_t i = 0; i < dirty.size(); ++i) {
    if (!written[i].ok()) continue;
    const BlockRef v = dirty[i];
    const BlockMeta& m = index_.meta(v);
    if (m.leases == 0 && m.where == Where::kHost && (m.flags & kDiskCurrent)) {
      ReleaseMemory(v);
      ++stats_.demotions_h_to_d;
      stats_.bytes_h_to_d += block_bytes_;
      ++freed;
    }
  }
  MaybeFree(dirty);  // dropped while they were written (a freed ref is skipped)
  return freed;
}

// The coldest unpinned block (unprotected, on G) among a sample of the tier's slots.
BlockRef BlockStore::PickVictim(TierKind tier) const {
  const uint32_t n = index_.num_slots(tier);
  if (n == 0) return kNoBlock;
  const Where where = tier == TierKind::kGpu ? Where::kGpu : Where::kHost;
  // The lambdas run here, under the lock.
  auto colder = [&](const BlockMeta& a, const BlockMeta& b) {
    mu_.AssertHeld();
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
    mu_.AssertHeld();
    BlockRef ref = index_.Owner(tier, slot);
    if (ref == kNoBlock) return;
    const BlockMeta& m = index_.meta(ref);
    // Sinks and the recent window are kept on G; anywhere else they move like the rest.
    if (m.where != where || m.mem_slot != slot || m.leases > 0 || (m.flags & kIoPending) ||
        (tier == TierKind::kGpu && Protected(ref))) {
      return;
    }
    ++candidates;
    if (best == kNoBlock || colder(m, index_.meta(best))) best = ref;
  };
  for (int i = 0; i < kVictimSamples; ++i) {
    sample_state_ = sample_state_ * 6364136223846793005ull + 1442695040888963407ull;
    consider(static_cast<uint32_t>((sample_state_ >> 33) % n));
  }
  // Sparse or mostly pinned tiers: sweep (a bounded window from a random start) so
  // that a victim is found when one exists nearby.
  const uint32_t start = static_cast<uint32_t>((sample_state_ >> 33) % n);
  for (uint32_t k = 0; candidates < 8 && k < n && k < kVictimSweep; ++k) consider((start + k) % n);
  return best;
}

void BlockStore::MigrateOnce() {
  MutexLock pass(&migrate_mu_);
  MutexLock lock(&mu_);
  // Demote G -> H while G is above its low watermark (once past the high one).
  if (OverHigh(TierKind::kGpu)) {
    while (OverLow(TierKind::kGpu) && !stop_) {
      BlockRef v = PickVictim(TierKind::kGpu);
      if (v == kNoBlock) break;
      if (h_->free_slots() == 0) {  // room in H for what G still has to give up
        const double excess = g_->used_slots() - policy_.gpu.low * g_->num_slots();
        const size_t want = std::clamp<size_t>(static_cast<size_t>(std::ceil(excess)), 1, options_.demote_batch);
        if (DemoteHostBatch(lock, want) == 0) break;
        continue;
      }
      if (!DemoteToHost(v).ok()) break;
    }
  }
  if (d_ && OverHigh(TierKind::kHost)) {
    while (OverLow(TierKind::kHost) && !stop_) {
      const double low = policy_.host.low * h_->num_slots();
      const size_t excess = static_cast<size_t>(std::max(1.0, h_->used_slots() - low));
      if (DemoteHostBatch(lock, std::min<size_t>(excess, options_.demote_batch)) == 0) break;
    }
  }
  // Defer-mode misses: bring them up for the next step.
  std::vector<BlockRef> todo;
  todo.swap(deferred_);
  // Only blocks still pinned by their lease are surely the same block (a released
  // one may have been freed and its meta reused); released ones need no promotion.
  std::erase_if(todo, [&](BlockRef ref) {
    mu_.AssertHeld();  // erase_if calls back on this thread, under the lock
    const BlockMeta& m = index_.meta(ref);
    return !(m.flags & kLive) || m.leases == 0 || m.where == Where::kGpu;
  });
  if (todo.empty()) return;
  std::sort(todo.begin(), todo.end());
  todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
  for (BlockRef ref : todo) ++index_.meta(ref).leases;
  std::vector<Status> loaded;
  LoadFromDisk(lock, todo, &loaded, /*wait=*/false);
  MoveToGpu(todo);  // only blocks whose H location no lease was handed move
  for (BlockRef ref : todo) Unpin(ref);
  MaybeFree(todo);
}

void BlockStore::RequestMigration() {
  migrate_requested_ = true;
  migrate_cv_.NotifyOne();
}

void BlockStore::MigratorLoop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      // Predicate checked under the lock: neither a request nor the stop is lost.
      const auto until = std::chrono::steady_clock::now() + options_.migrate_interval;
      while (!stop_ && !migrate_requested_ && migrate_cv_.WaitUntil(&mu_, until)) {
      }
      if (stop_) return;
      migrate_requested_ = false;
    }
    MigrateOnce();
  }
}

}  // namespace tierkv::storage
