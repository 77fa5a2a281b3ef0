#include "storage/block_store.h"

#include <algorithm>

#include "common/log.h"
#include "storage/block_records.h"

namespace tierkv::storage {

Result<std::unique_ptr<BlockStore>> BlockStore::Open(const BlockStoreOptions& options, ArenaTier* g, ArenaTier* h,
                                                     Tier* d, Manifest* manifest) {
  RETURN_IF_ERROR(options.model.Validate());
  RETURN_IF_ERROR(options.policy.Validate());
  if (!g || !h || !manifest) return InvalidArgument("BlockStore needs a G tier, an H tier and a manifest");
  const size_t bytes = options.model.BlockBytes();
  for (const Tier* t : {static_cast<const Tier*>(g), static_cast<const Tier*>(h), static_cast<const Tier*>(d)}) {
    if (t && t->slot_capacity() < bytes) {
      return InvalidArgument("tier " + t->name() + " slots hold " + std::to_string(t->slot_capacity()) +
                             " bytes, a block needs " + std::to_string(bytes));
    }
  }
  std::unique_ptr<BlockStore> store(new BlockStore(options, g, h, d, manifest));
  RETURN_IF_ERROR(store->Recover());
  if (options.migrator_thread) store->migrator_ = std::thread([s = store.get()] { s->MigratorLoop(); });
  return store;
}

BlockStore::BlockStore(const BlockStoreOptions& options, ArenaTier* g, ArenaTier* h, Tier* d, Manifest* manifest)
    : options_(options),
      g_(g),
      h_(h),
      d_(d),
      disk_(dynamic_cast<DiskTier*>(d)),
      manifest_(manifest),
      block_bytes_(options.model.BlockBytes()),
      copy_unlocked_(block_bytes_ >= options.unlocked_copy_bytes),
      policy_(options.policy),
      index_(options.model.num_layers, g->num_slots(), h->num_slots()),
      mover_(*g, *h),
      commit_queue_([this](std::span<std::vector<WriteJob*>* const> group) { CommitGroup(group); }, 64,
                    options_.group_commit_window) {}

BlockStore::~BlockStore() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  migrate_cv_.NotifyAll();
  room_cv_.NotifyAll();
  io_cv_.NotifyAll();
  if (migrator_.joinable()) migrator_.join();
}

SlotTag BlockStore::TagOf(BlockRef ref) const {
  const BlockMeta& m = index_.meta(ref);
  return SlotTag{BlockKey{options_.ns, m.layer, m.seq, m.index, 0}, m.generation};
}

std::string BlockStore::RecordKeyOf(BlockRef ref) const {
  const BlockMeta& m = index_.meta(ref);
  return EncodeRecordKey({(m.flags & kPrefix) ? 'P' : 'B', options_.ns, m.seq, m.layer, m.index});
}

void BlockStore::Unpin(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  TIERKV_CHECK(m.leases > 0);
  if (--m.leases == 0) m.flags &= ~kPublished;
}

void BlockStore::Touch(BlockRef ref) {
  BlockMeta& m = index_.meta(ref);
  m.last_access = index_.Tick();
  if (m.hits < UINT16_MAX) ++m.hits;
}

Status BlockStore::CheckPutArgs(uint32_t layer, uint32_t index, size_t bytes) const {
  if (layer >= options_.model.num_layers) {
    return InvalidArgument("layer " + std::to_string(layer) + " >= num_layers " +
                           std::to_string(options_.model.num_layers));
  }
  if (index >= options_.max_blocks_per_sequence) {
    return InvalidArgument("block index " + std::to_string(index) + " >= " +
                           std::to_string(options_.max_blocks_per_sequence));
  }
  if (bytes != block_bytes_) {
    return InvalidArgument("block payload of " + std::to_string(bytes) + " bytes, expected " +
                           std::to_string(block_bytes_));
  }
  return OkStatus();
}

Status BlockStore::Put(SequenceId seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload,
                       uint64_t prefix_hash, bool* deduplicated, bool* durable) {
  PutOutcome out;
  Status st = PutBlocks(seq, layer, index, 1, payload, prefix_hash, &out);
  if (deduplicated) *deduplicated = out.deduplicated == 1;
  if (durable) *durable = out.durable == 1;
  return st;
}

Status BlockStore::PutBlocks(SequenceId seq, uint32_t layer, uint32_t first, uint32_t count,
                             std::span<const std::byte> payload, uint64_t prefix_hash, PutOutcome* out) {
  PutRange r{seq, layer, first, count, payload, prefix_hash};
  PutRanges(std::span(&r, 1));
  *out = r.out;
  return r.status;
}

Status BlockStore::CheckPutRange(const PutRange& r) const {
  if (r.count == 0) return InvalidArgument("a put of zero blocks");
  if (r.prefix_hash != 0 && r.count != 1) return InvalidArgument("a prefix block is put alone");
  const uint64_t last = uint64_t{r.first} + r.count - 1;
  if (last > UINT32_MAX) return InvalidArgument("block index " + std::to_string(last) + " out of range");
  RETURN_IF_ERROR(CheckPutArgs(r.layer, static_cast<uint32_t>(last), block_bytes_));
  if (r.payload.size() != size_t{r.count} * block_bytes_) {
    return InvalidArgument("payload of " + std::to_string(r.payload.size()) + " bytes for " +
                           std::to_string(r.count) + " blocks of " + std::to_string(block_bytes_));
  }
  return OkStatus();
}

void BlockStore::PutRanges(std::span<PutRange> ranges) {
  for (PutRange& r : ranges) {
    r.out = PutOutcome{};
    r.status = CheckPutRange(r);
  }
  MutexLock lock(&mu_);
  // Blocks placed and pinned, their D writes not made yet: under write-through they
  // go to D as one commit, a group at most a slice of G + H (they stay pinned).
  // Without group commit each block has its own commit (the behaviour before it).
  const size_t max_pending =
      options_.group_commit ? std::clamp<size_t>((g_->num_slots() + h_->num_slots()) / 8, 1, 64) : 1;
  std::vector<PlacedBlock> placed;
  for (size_t k = 0; k < ranges.size(); ++k) {
    PutRange& r = ranges[k];
    if (!r.status.ok()) continue;
    if (r.prefix_hash != 0) NotePrefixUse(r.prefix_hash);
    for (uint32_t i = 0; i < r.count; ++i) {
      bool dedup = false, dur = false;
      BlockRef ref = kNoBlock;
      const uint32_t index = r.first + i;
      r.status = PlaceBlock(lock, r.seq, r.layer, index, r.payload.subspan(size_t{i} * block_bytes_, block_bytes_),
                            r.prefix_hash, &ref, &dedup, &dur);
      if (!r.status.ok()) {  // the range stops here; the pinned blocks go now (they may be what is missing)
        FinishPlaced(lock, ranges, &placed);
        break;
      }
      ++r.out.stored;
      if (ref == kNoBlock) {  // shared with a stored prefix block
        r.out.deduplicated += dedup;
        r.out.durable += dur;
        continue;
      }
      placed.push_back({ref, k, index});
      if (placed.size() >= max_pending) FinishPlaced(lock, ranges, &placed);
    }
  }
  FinishPlaced(lock, ranges, &placed);
}

// Lock held: the in-memory half of a put. On success *ref is the block, placed and
// pinned (FinishPlaced unpins it), or kNoBlock when the put shared a stored prefix
// block (then *deduplicated and *durable are final).
Status BlockStore::PlaceBlock(MutexLock& lock, SequenceId seq, uint32_t layer, uint32_t index,
                              std::span<const std::byte> payload, uint64_t prefix_hash, BlockRef* placed,
                              bool* deduplicated, bool* durable) {
  // A block with a transfer in flight (the migrator writing it to D, a load, another
  // put placing it) or a Get copying it out is pinned for the length of one transfer
  // or copy: wait for it (a put is refused only for a retrieval's pin).
  BlockRef existing = index_.Find(seq, layer, index);
  auto copying = [&](BlockRef ref) {
    mu_.AssertHeld();
    return std::find(copying_out_.begin(), copying_out_.end(), ref) != copying_out_.end();
  };
  while (existing != kNoBlock && ((index_.meta(existing).flags & kIoPending) || copying(existing)) && !stop_) {
    io_cv_.Wait(&mu_);
    existing = index_.Find(seq, layer, index);
  }
  if (existing != kNoBlock && index_.meta(existing).leases > 0) {
    ++stats_.puts_rejected;
    return Busy("block is pinned by a retrieve");
  }
  if (prefix_hash != 0) {
    const BlockRef shared = index_.FindPrefix(prefix_hash, layer);
    if (shared != kNoBlock) return ShareBlock(seq, layer, index, existing, shared, prefix_hash, deduplicated, durable);
  }
  BlockRef ref = existing;
  if (ref != kNoBlock && ((index_.meta(ref).flags & kPrefix) || index_.meta(ref).owners > 1 || prefix_hash != 0)) {
    index_.Unlink(seq, layer, index);  // stop sharing: this sequence gets its own block
    MaybeFree(ref);
    ref = kNoBlock;
  }
  const bool fresh = ref == kNoBlock;
  if (fresh) {
    ref = index_.NewBlock(prefix_hash ? prefix_hash : seq, layer, index, prefix_hash != 0);
    index_.Link(seq, layer, index, ref);
    if (prefix_hash) index_.RegisterPrefix(prefix_hash, layer, ref);
  }
  // Every version of every block gets its own generation, so a stale placement or a
  // stale manifest record never matches a slot written later. While the new version
  // is placed the block is marked kIoPending: readers wait instead of reading the D
  // copy of the old version under the new generation.
  BlockMeta& m = index_.meta(ref);
  const uint32_t old_generation = m.generation;
  const uint8_t old_disk_current = m.flags & kDiskCurrent;
  m.generation = NextGeneration();
  m.flags = (m.flags & ~kDiskCurrent) | kIoPending;
  ++m.leases;
  Status st = PlaceInMemory(lock, ref, payload, Protected(ref));
  index_.meta(ref).flags &= ~(kIoPending | kPlacing);
  io_cv_.NotifyAll();
  if (st.ok()) {
    *placed = ref;
    return OkStatus();
  }
  Unpin(ref);
  ++stats_.puts_rejected;
  BlockMeta& b = index_.meta(ref);
  if (!fresh && !b.in_memory()) {  // the old version stays as it was
    b.generation = old_generation;
    b.flags |= old_disk_current;
  }
  if (fresh || (!b.in_memory() && !b.on_disk())) {
    if (index_.Find(seq, layer, index) == ref) index_.Unlink(seq, layer, index);
  }
  MaybeFree(ref);
  return st;
}

// Lock held: the rest of the puts of *placed. Under write-through their D writes go
// as one commit (shared with other writers' under group commit); each block is
// durable once that commit (and its prefix link) is. Empties *placed.
void BlockStore::FinishPlaced(MutexLock& lock, std::span<PutRange> ranges, std::vector<PlacedBlock>* placed) {
  if (placed->empty()) return;
  std::vector<bool> on_disk;  // stays empty under write-back (no D write, nothing durable)
  if (policy_.write == WritePolicy::kWriteThrough) {
    std::vector<BlockRef> refs;
    refs.reserve(placed->size());
    for (const PlacedBlock& p : *placed) refs.push_back(p.ref);
    on_disk.assign(refs.size(), false);
    WriteThrough(lock, refs, &on_disk);
  }
  for (size_t k = 0; k < placed->size(); ++k) {
    const PlacedBlock& p = (*placed)[k];
    PutRange& r = ranges[p.range];
    Unpin(p.ref);
    Touch(p.ref);
    const bool linked = r.prefix_hash == 0 || PersistLink(r.seq, r.layer, p.index, r.prefix_hash).ok();
    ++stats_.puts;
    stats_.put_bytes += block_bytes_;
    r.out.durable += !on_disk.empty() && on_disk[k] && linked;
    MaybeFree(p.ref);  // the sequence may have been dropped while the block was written to D
  }
  placed->clear();
}

// The sequence's block becomes the cached prefix block `shared`: nothing is copied.
Status BlockStore::ShareBlock(SequenceId seq, uint32_t layer, uint32_t index, BlockRef existing, BlockRef shared,
                              uint64_t hash, bool* deduplicated, bool* durable) {
  if (existing != shared) {
    if (existing != kNoBlock) {
      index_.Unlink(seq, layer, index);
      MaybeFree(existing);
    }
    index_.Link(seq, layer, index, shared);
  }
  Touch(shared);
  RETURN_IF_ERROR(PersistLink(seq, layer, index, hash));
  ++stats_.puts;
  ++stats_.puts_deduplicated;
  if (deduplicated) *deduplicated = true;
  if (durable) *durable = index_.meta(shared).flags & kDiskCurrent;
  return OkStatus();
}

void BlockStore::WriteThrough(MutexLock& lock, std::span<const BlockRef> refs,
                              std::vector<bool>* on_disk) {
  if (d_) {
    std::vector<Status> written;
    WriteToDisk(lock, refs, &written);
    for (size_t k = 0; k < refs.size(); ++k) {
      (*on_disk)[k] = written[k].ok();
      if (!written[k].ok()) LOG(DEBUG) << "write-through put stored without D: " << written[k].ToString();
    }
  }
  for (size_t k = 0; k < refs.size(); ++k) stats_.puts_not_durable += !(*on_disk)[k];
}

Status BlockStore::PersistLink(SequenceId seq, uint32_t layer, uint32_t index, uint64_t hash) {
  if (policy_.write != WritePolicy::kWriteThrough) return OkStatus();
  std::string hash_bytes;
  AppendBigEndian64(&hash_bytes, hash);
  return manifest_->Put(Cf::kSequences, EncodeRecordKey({'L', options_.ns, seq, layer, index}), hash_bytes);
}

Status BlockStore::Get(SequenceId seq, uint32_t layer, uint32_t index, std::span<std::byte> out) {
  if (out.size() < block_bytes_) return InvalidArgument("output buffer smaller than a block");
  MutexLock lock(&mu_);
  ++stats_.gets;
  const BlockRef ref = FindReadable(lock, seq, layer, index);
  if (ref == kNoBlock) {
    ++stats_.get_misses;
    return NotFound("no block " + std::to_string(index) + " of sequence " + std::to_string(seq) + " layer " +
                    std::to_string(layer));
  }
  ++index_.meta(ref).leases;
  Status st;
  bool direct = false;
  if (!index_.meta(ref).in_memory()) {
    ++stats_.hits_disk;
    std::vector<Status> loaded;
    LoadFromDisk(lock, std::span<const BlockRef>(&ref, 1), &loaded);
    st = loaded[0];
    if (st.code() == StatusCode::kResourceExhausted) {  // no room in H: serve it from D
      st = ReadDiskDirect(lock, ref, out.first(block_bytes_));
      direct = true;
    }
  } else {
    ++(index_.meta(ref).where == Where::kGpu ? stats_.hits_gpu : stats_.hits_host);
  }
  if (st.ok() && !direct) st = CopyOut(lock, ref, out.first(block_bytes_));
  Unpin(ref);
  if (st.ok()) Touch(ref);
  if (st.code() == StatusCode::kNotFound) ++stats_.get_misses;
  MaybeFree(ref);
  return st;
}

BlockRef BlockStore::FindReadable(MutexLock& /*lock*/, SequenceId seq, uint32_t layer,
                                  uint32_t index) {
  BlockRef ref = index_.Find(seq, layer, index);
  while (ref != kNoBlock && (index_.meta(ref).flags & kPlacing) && !stop_) {
    io_cv_.Wait(&mu_);
    ref = index_.Find(seq, layer, index);
  }
  return ref;
}

// The copy runs with the lock dropped (docs/decisions/0020-copies-outside-the-lock.md).
// The block is pinned by the caller and marked kPublished here, which together keep
// its memory slot fixed and its bytes unchanged until the copy is done:
//  - moves: MoveToGpu skips published blocks; DemoteToHost, victims (PickVictim) and
//    MaybeFree skip pinned ones, so the slot is neither freed nor reused;
//  - writes: a put of the same block waits in PlaceBlock while copying_out_ counts
//    it (then, if a lease still pins it, is refused as before); D writes only read.
// kPublished ends with the block's last pin (Unpin), as for a lease.
Status BlockStore::CopyOut(MutexLock& /*lock*/, BlockRef ref, std::span<std::byte> out) {
  BlockMeta& m = index_.meta(ref);
  TIERKV_CHECK(m.leases > 0 && m.in_memory() && !(m.flags & kPlacing));
  ArenaTier* tier = m.where == Where::kGpu ? g_ : h_;
  if (!copy_unlocked_) return tier->Read(m.mem_slot, TagOf(ref), out).status();
  m.flags |= kPublished;
  const SlotId slot = m.mem_slot;
  const SlotTag tag = TagOf(ref);
  copying_out_.push_back(ref);
  mu_.Unlock();
  const Status st = tier->Read(slot, tag, out).status();
  mu_.Lock();
  auto it = std::find(copying_out_.begin(), copying_out_.end(), ref);
  *it = copying_out_.back();
  copying_out_.pop_back();
  io_cv_.NotifyAll();  // a put of the block may be waiting
  return st;
}

Result<Lease> BlockStore::Acquire(SequenceId seq, uint32_t layer, std::span<const uint32_t> blocks, MissMode mode) {
  MutexLock lock(&mu_);
  Lease lease;
  lease.id = next_lease_++;
  std::vector<BlockRef> pinned;
  std::vector<uint32_t> pinned_idx;
  std::vector<BlockRef> to_load;
  pinned.reserve(blocks.size());
  for (uint32_t idx : blocks) {
    const BlockRef ref = FindReadable(lock, seq, layer, idx);  // not while a put copies it in
    if (ref == kNoBlock) continue;
    BlockMeta& m = index_.meta(ref);
    ++m.leases;
    if (m.selections < UINT16_MAX) ++m.selections;
    Touch(ref);
    pinned.push_back(ref);
    pinned_idx.push_back(idx);
    if (m.where == Where::kGpu) {
      ++stats_.hits_gpu;
    } else if (m.where == Where::kHost) {
      ++stats_.hits_host;
      if (mode == MissMode::kDefer) deferred_.push_back(ref);
    } else {
      ++stats_.hits_disk;
      (mode == MissMode::kDefer ? deferred_ : to_load).push_back(ref);
    }
  }
  leases_[lease.id] = pinned;
  if (mode != MissMode::kDefer && d_) {
    // Room in H for the loads plus one slot: moving a block to a full G demotes a G
    // block into H first, and each move then frees the H slot the next one needs.
    const size_t need = to_load.size() + 1;
    if (h_->free_slots() < need) DemoteHostBatch(lock, need - h_->free_slots());
  }
  if (!to_load.empty()) {
    // The blocks after each miss, when they are on D only, come up in the same batch
    // (pinned for the load only).
    std::vector<BlockRef> extra;
    const size_t misses = to_load.size();
    for (size_t i = 0; i < misses && policy_.prefetch_depth > 0; ++i) {
      const BlockMeta& miss = index_.meta(to_load[i]);
      for (uint32_t d = 1; d <= policy_.prefetch_depth; ++d) {
        const BlockRef next = index_.Find(seq, layer, miss.index + d);
        if (next == kNoBlock || index_.meta(next).in_memory() || (index_.meta(next).flags & kIoPending)) continue;
        ++index_.meta(next).leases;
        extra.push_back(next);
        to_load.push_back(next);
      }
    }
    std::vector<Status> loaded;  // failures show as missing blocks below
    LoadFromDisk(lock, to_load, &loaded);
    for (BlockRef ref : extra) Unpin(ref);
    MaybeFree(extra);
  }
  // What cannot move stays readable on H (G full of pinned blocks, another lease reads it there).
  if (mode == MissMode::kWait) MoveToGpu(pinned);
  for (size_t i = 0; i < pinned.size(); ++i) {
    const BlockRef ref = pinned[i];
    BlockMeta& now = index_.meta(ref);
    if (!now.in_memory()) {
      lease.missing.push_back(pinned_idx[i]);
      continue;
    }
    now.flags |= kPublished;  // the client reads it here until the lease ends
    const ArenaTier* tier = now.where == Where::kGpu ? g_ : h_;
    lease.blocks.push_back({pinned_idx[i], now.where, tier->SlotOffset(now.mem_slot)});
  }
  if (!deferred_.empty()) RequestMigration();
  return lease;
}

Result<uint32_t> BlockStore::Prefetch(SequenceId seq, uint32_t layer, std::span<const uint32_t> blocks) {
  MutexLock lock(&mu_);
  std::vector<BlockRef> refs;
  for (uint32_t idx : blocks) {
    const BlockRef ref = index_.Find(seq, layer, idx);
    if (ref == kNoBlock || index_.meta(ref).in_memory() || !index_.meta(ref).on_disk()) continue;
    ++index_.meta(ref).leases;
    refs.push_back(ref);
  }
  if (refs.empty()) return 0u;
  std::vector<Status> loaded;
  LoadFromDisk(lock, refs, &loaded);
  uint32_t n = 0;
  for (size_t i = 0; i < refs.size(); ++i) {
    n += loaded[i].ok() && index_.meta(refs[i]).in_memory();
    Unpin(refs[i]);
  }
  MaybeFree(refs);
  return n;
}

Status BlockStore::Release(uint64_t lease_id) {
  MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return NotFound("no lease " + std::to_string(lease_id));
  for (BlockRef ref : it->second) Unpin(ref);
  MaybeFree(it->second);
  leases_.erase(it);
  room_cv_.NotifyAll();
  return OkStatus();
}

Status BlockStore::DropSequence(SequenceId seq) {
  MutexLock lock(&mu_);
  if (!index_.HasSequence(seq)) return NotFound("no sequence " + std::to_string(seq));
  MaybeFree(index_.RemoveSequence(seq));
  room_cv_.NotifyAll();
  // Prefix links of the sequence go with it (write-through records them at each put,
  // a shutdown drain under any policy).
  return DeleteLinkRecords(seq);
}

uint32_t BlockStore::MatchPrefix(std::span<const uint64_t> hashes) const {
  MutexLock lock(&mu_);
  uint32_t n = 0;
  for (uint64_t h : hashes) {
    for (uint32_t layer = 0; layer < options_.model.num_layers; ++layer) {
      if (index_.FindPrefix(h, layer) == kNoBlock) return n;
    }
    ++n;
  }
  return n;
}

Status BlockStore::LinkPrefix(SequenceId seq, std::span<const uint64_t> hashes) {
  MutexLock lock(&mu_);
  for (uint64_t h : hashes) NotePrefixUse(h);
  Manifest::Batch batch;
  for (uint32_t i = 0; i < hashes.size(); ++i) {
    for (uint32_t layer = 0; layer < options_.model.num_layers; ++layer) {
      BlockRef shared = index_.FindPrefix(hashes[i], layer);
      if (shared == kNoBlock) return NotFound("prefix block " + std::to_string(i) + " is not cached");
    }
  }
  for (uint32_t i = 0; i < hashes.size(); ++i) {
    for (uint32_t layer = 0; layer < options_.model.num_layers; ++layer) {
      BlockRef shared = index_.FindPrefix(hashes[i], layer);
      BlockRef existing = index_.Find(seq, layer, i);
      if (existing == shared) continue;
      if (existing != kNoBlock) {
        if (index_.meta(existing).leases > 0) return Busy("block is pinned by a retrieve");
        index_.Unlink(seq, layer, i);
        MaybeFree(existing);
      }
      index_.Link(seq, layer, i, shared);
      Touch(shared);
      std::string hash_bytes;
      AppendBigEndian64(&hash_bytes, hashes[i]);
      batch.Put(Cf::kSequences, EncodeRecordKey({'L', options_.ns, seq, layer, i}), hash_bytes);
    }
  }
  if (policy_.write == WritePolicy::kWriteThrough && batch.Count()) RETURN_IF_ERROR(manifest_->Write(batch));
  return OkStatus();
}

Policy BlockStore::policy() const {
  MutexLock lock(&mu_);
  return policy_;
}

void BlockStore::SetPolicy(const Policy& p) {
  MutexLock lock(&mu_);
  policy_ = p;
  RequestMigration();  // a smaller watermark takes effect now
}

uint32_t BlockStore::SequenceBlocks(SequenceId seq, uint32_t layer) const {
  MutexLock lock(&mu_);
  return index_.SequenceBlocks(seq, layer);
}

size_t BlockStore::num_blocks() const {
  MutexLock lock(&mu_);
  return index_.live_blocks();
}

size_t BlockStore::num_sequences() const {
  MutexLock lock(&mu_);
  return index_.num_sequences();
}

size_t BlockStore::num_leases() const {
  MutexLock lock(&mu_);
  return leases_.size();
}

Status BlockStore::disk_admission() const {
  MutexLock lock(&mu_);
  return disk_error_;
}

size_t BlockStore::MetadataBytes() const {
  MutexLock lock(&mu_);
  size_t bytes = index_.MetadataBytes();
  for (const auto& [id, refs] : leases_) bytes += refs.capacity() * sizeof(BlockRef) + 48;
  return bytes;
}

}  // namespace tierkv::storage
