// BlockStore: transfers between memory and D (batched writes and reads, both with
// the lock dropped), compression on the way, and D admission.
#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "storage/block_codec.h"
#include "storage/block_records.h"
#include "storage/block_store.h"

namespace tierkv::storage {
namespace {

// One block's read from D while the lock is dropped.
struct ReadJob {
  size_t i = 0;
  BlockRef ref = kNoBlock;
  SlotTag tag;
  SlotId disk_slot = kInvalidSlot;
  SlotId host_slot = kInvalidSlot;
  Status status;
};

bool StopsAdmission(StatusCode c) {
  return c == StatusCode::kIOError || c == StatusCode::kResourceExhausted || c == StatusCode::kDeviceError;
}

}  // namespace

// One block's write to D while the lock is dropped.
struct BlockStore::WriteJob {
  size_t i = 0;  // position in the caller's refs
  BlockRef ref = kNoBlock;
  SlotTag tag;
  SlotId slot = kInvalidSlot;  // the fresh D slot
  SlotId previous = kInvalidSlot;  // the D copy of an older version, freed once this one is committed
  std::string key;             // manifest record key
  const ArenaTier* mem = nullptr;
  SlotId mem_slot = kInvalidSlot;
  std::vector<std::byte> raw;      // copy of a block whose memory the host cannot read (G)
  std::vector<std::byte> encoded;  // compressed payload
  PayloadEncoding encoding = PayloadEncoding::kRaw;
  std::span<const std::byte> payload;
  Status status;
};

bool BlockStore::DiskAdmits() {
  if (disk_error_.ok() || std::chrono::steady_clock::now() >= disk_retry_at_) return true;  // else probe later
  ++stats_.disk_admission_stops;
  return false;
}

void BlockStore::NoteDiskResult(const Status& st) {
  if (st.ok()) {
    if (!disk_error_.ok()) {
      LOG(INFO) << "namespace " << options_.ns << ": D admits writes again";
      disk_error_ = OkStatus();
    }
    return;
  }
  if (!StopsAdmission(st.code())) return;
  if (disk_error_.ok()) {
    LOG(WARNING) << "namespace " << options_.ns << ": D stops admitting writes for "
                 << options_.disk_retry_after.count() << " ms, G and H keep serving: " << st.ToString();
  }
  disk_error_ = st;
  disk_retry_at_ = std::chrono::steady_clock::now() + options_.disk_retry_after;
}

void BlockStore::WriteToDisk(MutexLock& lock, std::span<const BlockRef> refs,
                             std::vector<Status>* results) {
  results->assign(refs.size(), OkStatus());
  if (!d_) {
    for (Status& s : *results) s = NotSupported("no disk tier");
    return;
  }
  std::vector<WriteJob> jobs = StartWrites(refs, results);
  if (jobs.empty()) return;
  const Compression compression = policy_.compression;
  const uint32_t group = policy_.compression_group;
  mu_.Unlock();
  PrepareWrites(jobs, compression, group);
  CommitJobs(jobs);
  mu_.Lock();
  FinishWrites(jobs, results);
}

// Lock held: admission, a fresh D slot per block, the blocks pinned and marked.
std::vector<BlockStore::WriteJob> BlockStore::StartWrites(std::span<const BlockRef> refs,
                                                          std::vector<Status>* results) {
  std::vector<WriteJob> jobs;
  for (size_t i = 0; i < refs.size(); ++i) {
    BlockMeta& m = index_.meta(refs[i]);
    if (m.flags & kDiskCurrent) continue;
    Status& r = (*results)[i];
    if (!m.in_memory()) {
      r = NotFound("block is not in memory");
    } else if (m.flags & kIoPending) {
      r = Busy("a D transfer of the block is in flight");
    } else if (!DiskAdmits()) {
      r = ResourceExhausted("D is not admitting writes: " + disk_error_.ToString());
    }
    if (!r.ok()) continue;
    auto slot = d_->Allocate();
    if (!slot.ok()) {
      ++stats_.disk_admission_stops;  // D is full
      if (!disk_full_logged_) {  // once per full spell, not per block
        LOG(WARNING) << "namespace " << options_.ns << ": D is full (" << d_->num_slots()
                     << " slots), it stops admitting writes until blocks leave it; G and H keep serving";
        disk_full_logged_ = true;
      }
      r = slot.status();
      continue;
    }
    if (disk_full_logged_) {
      LOG(INFO) << "namespace " << options_.ns << ": D has free slots again and admits writes";
      disk_full_logged_ = false;
    }
    m.flags |= kIoPending | kDiskWrite;
    ++m.leases;
    WriteJob& j = jobs.emplace_back();
    j.i = i;
    j.ref = refs[i];
    j.tag = TagOf(refs[i]);
    j.slot = *slot;
    if (m.on_disk()) j.previous = m.disk_slot;
    j.key = RecordKeyOf(refs[i]);
    j.mem = m.where == Where::kGpu ? g_ : h_;
    j.mem_slot = m.mem_slot;
  }
  return jobs;
}

// Lock dropped (the memory copies cannot move or change while kIoPending is set):
// each job's payload, encoded when the policy says so. Runs on the writer's own
// thread, so that writers compress in parallel before they join a commit group.
void BlockStore::PrepareWrites(std::vector<WriteJob>& jobs, Compression compression, uint32_t group) {
  for (WriteJob& j : jobs) {
    if (j.mem->memory().host_accessible()) {
      j.payload = std::span<const std::byte>(j.mem->SlotAddress(j.mem_slot), block_bytes_);
    } else {
      j.raw.resize(block_bytes_);
      j.status = const_cast<ArenaTier*>(j.mem)->Read(j.mem_slot, j.tag, j.raw).status();
      j.payload = j.raw;
    }
    if (j.status.ok() && compression != Compression::kNone) {
      Status st = EncodeBlock(options_.model, compression, group, j.payload, &j.encoded, &j.encoding);
      if (!st.ok()) LOG(WARNING) << "compression refused, block stored raw: " << st.ToString();
      if (st.ok() && j.encoding != PayloadEncoding::kRaw) j.payload = j.encoded;
    }
  }
}

// Lock dropped: the prepared jobs go to D through the commit queue (one group with
// other writers' jobs) or, with group commit off, as a commit of their own.
void BlockStore::CommitJobs(std::vector<WriteJob>& jobs) {
  std::vector<WriteJob*> ready;
  for (WriteJob& j : jobs) {
    if (j.status.ok()) ready.push_back(&j);
  }
  if (ready.empty()) return;
  if (options_.group_commit) {
    commit_queue_.Commit(&ready);
  } else {
    CommitWrites(ready);
  }
}

void BlockStore::CommitGroup(std::span<std::vector<WriteJob*>* const> group) {
  if (group.size() == 1) return CommitWrites(*group[0]);
  std::vector<WriteJob*> all;
  for (const auto* jobs : group) all.insert(all.end(), jobs->begin(), jobs->end());
  CommitWrites(all);
}

// One commit: one write batch and one fdatasync of the slabs written, and one
// manifest batch naming the blocks' new slots — after the data, or beside it
// (OverlapsSyncs). Sets each job's status.
void BlockStore::CommitWrites(std::span<WriteJob* const> jobs) {
  if (OverlapsSyncs()) return CommitOverlapped(jobs);
  CommitData(jobs);
  CommitRecords(jobs);
}

// Overlapping is safe only where Open can tell a whole new copy from a torn one
// (payload checksums) and where commits run one at a time (the queue's leader),
// so that only the last group's data can be missing after a crash.
bool BlockStore::OverlapsSyncs() const {
  return options_.group_commit && options_.overlap_commit_syncs && disk_ != nullptr && disk_->verifies_payload();
}

// The records and the pending-writes record go in one batch, synced while the data
// is written and synced here: a crash may leave a record naming a slot whose data
// is not whole, and the pending record lists exactly those candidates (the groups
// before this one are whole: their commits returned). A failed data write whose
// record landed gets its previous copy's record back at once.
void BlockStore::CommitOverlapped(std::span<WriteJob* const> jobs) {
  std::vector<PendingWrite> pending = unresolved_;
  for (const WriteJob* j : jobs) {
    pending.push_back({j->key, j->slot, static_cast<uint32_t>(j->tag.generation), j->previous});
  }
  Manifest::Batch batch = RecordBatch(jobs);
  batch.Put(Cf::kMeta, PendingWritesKey(options_.ns), EncodePendingWrites(pending));
  Status records;
  manifest_writer_.Run([&] { records = manifest_->Write(batch); });
  CommitData(jobs);
  manifest_writer_.Wait();
  if (!records.ok()) {  // the records did not land: the carried writes stay unresolved
    for (WriteJob* j : jobs) {
      if (j->status.ok()) j->status = records.WithContext("manifest");
    }
    return;
  }
  std::vector<PendingWrite> failed = std::move(unresolved_);
  unresolved_.clear();
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (!jobs[k]->status.ok()) failed.push_back(pending[pending.size() - jobs.size() + k]);
  }
  if (failed.empty()) return;
  Manifest::Batch repair;
  uint64_t deleted = 0;
  Status st = RestorePrevious(failed, &repair, &deleted);
  repair.Delete(Cf::kMeta, PendingWritesKey(options_.ns));
  if (st.ok()) st = manifest_->Write(repair);
  if (st.ok()) return;
  LOG(WARNING) << "namespace " << options_.ns << ": repairing the records of " << failed.size()
               << " failed D write(s): " << st.ToString() << " (retried with the next commit)";
  unresolved_ = std::move(failed);
}

Result<bool> BlockStore::RecordNames(const PendingWrite& w) const {
  auto v = manifest_->Get(Cf::kBlocks, w.key);
  if (v.status().code() == StatusCode::kNotFound) return false;
  RETURN_IF_ERROR(v.status());
  auto rec = DecodeBlockRecord(*v);
  return rec.ok() && rec->disk_slot == w.slot && rec->generation == w.generation;
}

Status BlockStore::RestorePrevious(std::span<const PendingWrite> writes, Manifest::Batch* batch, uint64_t* deleted) {
  std::vector<const PendingWrite*> named;  // the writes whose record still names them
  std::vector<DiskTier::HeaderRead> previous;
  for (const PendingWrite& w : writes) {
    ASSIGN_OR_RETURN(const bool names, RecordNames(w));
    if (!names) continue;
    named.push_back(&w);
    if (w.previous < d_->num_slots()) previous.push_back({w.previous, /*verify_payload=*/true});
  }
  if (disk_) RETURN_IF_ERROR(disk_->ReadHeaders(previous));
  size_t p = 0;
  for (const PendingWrite* w : named) {
    const DiskTier::HeaderRead* h = w->previous < d_->num_slots() ? &previous[p++] : nullptr;
    const RecordKey key = DecodeRecordKey(w->key).value();
    const BlockKey want{options_.ns, key.layer, key.seq, key.index, 0};
    if (h != nullptr && h->status.ok() && h->info.tag.key == want && h->info.tag.generation != w->generation) {
      const BlockRecord rec{h->slot, static_cast<uint32_t>(h->info.tag.generation), h->info.length,
                            static_cast<uint8_t>(h->info.encoding)};
      batch->Put(Cf::kBlocks, w->key, EncodeBlockRecord(rec));
      ++stats_.restored_records;
    } else {
      batch->Delete(Cf::kBlocks, w->key);
      ++*deleted;
    }
  }
  return OkStatus();
}

void BlockStore::CommitData(std::span<WriteJob* const> jobs) {
  std::vector<WriteOp> ops;
  ops.reserve(jobs.size());
  for (WriteJob* j : jobs) ops.emplace_back(j->slot, j->tag, j->payload, j->encoding);
  d_->WriteBatch(ops).IgnoreError();  // each op has its own status
  std::vector<SlotId> written;
  for (size_t k = 0; k < ops.size(); ++k) {
    jobs[k]->status = ops[k].status;
    if (ops[k].status.ok()) written.push_back(ops[k].slot);
  }
  ++stats_.disk_commits;
  const Status st = written.empty() || !disk_ ? OkStatus() : disk_->SyncSlots(written);
  if (st.ok()) return;
  for (WriteJob* j : jobs) {
    if (j->status.ok()) j->status = st;
  }
}

Manifest::Batch BlockStore::RecordBatch(std::span<WriteJob* const> jobs) const {
  Manifest::Batch batch;
  for (const WriteJob* j : jobs) {
    if (!j->status.ok()) continue;
    const BlockRecord rec{j->slot, static_cast<uint32_t>(j->tag.generation),
                          static_cast<uint32_t>(j->payload.size()), static_cast<uint8_t>(j->encoding)};
    batch.Put(Cf::kBlocks, j->key, EncodeBlockRecord(rec));
  }
  return batch;
}

// The records of the jobs whose data is synced (their status OK), in one batch.
void BlockStore::CommitRecords(std::span<WriteJob* const> jobs) {
  const Manifest::Batch batch = RecordBatch(jobs);
  if (batch.Count() == 0) return;
  const Status st = manifest_->Write(batch);
  for (WriteJob* j : jobs) {
    if (j->status.ok() && !st.ok()) j->status = st.WithContext("manifest");
  }
}

// Lock held again: each written block now lives in its new slot (the record names
// it) and its old slot is freed; a failed one keeps its old copy, the new slot goes.
void BlockStore::FinishWrites(std::vector<WriteJob>& jobs, std::vector<Status>* results) {
  Status first_failure;
  for (WriteJob& j : jobs) {
    BlockMeta& m = index_.meta(j.ref);
    m.flags &= ~(kIoPending | kDiskWrite);
    Unpin(j.ref);
    if (j.status.ok() && m.generation == j.tag.generation) {
      if (m.on_disk()) d_->Free(m.disk_slot).IgnoreError();  // the record names the new slot now
      m.disk_slot = j.slot;
      m.flags |= kDiskCurrent;
      ++stats_.disk_writes;
      stats_.disk_encoded_bytes += j.payload.size();
      continue;
    }
    d_->Free(j.slot).IgnoreError();
    if (j.status.ok()) j.status = Busy("block changed while it was written to D");
    ++stats_.disk_write_failures;
    if (first_failure.ok()) first_failure = j.status;
    (*results)[j.i] = j.status;
  }
  ++stats_.disk_write_batches;
  NoteDiskResult(first_failure);
  io_cv_.NotifyAll();
}

void BlockStore::LoadFromDisk(MutexLock& lock, std::span<const BlockRef> refs,
                              std::vector<Status>* results, bool wait) {
  results->assign(refs.size(), OkStatus());
  std::vector<bool> done(refs.size(), false);
  for (;;) {
    std::vector<BlockRef> todo;
    std::vector<size_t> todo_at;
    bool waiting = false;
    for (size_t i = 0; i < refs.size(); ++i) {
      if (done[i]) continue;
      BlockMeta& m = index_.meta(refs[i]);
      if (m.in_memory() || !m.on_disk()) {
        (*results)[i] = m.in_memory() ? OkStatus() : NotFound("block has no copy in any tier");
        done[i] = true;
      } else if (m.flags & kIoPending) {
        waiting = true;  // being loaded by another call (or a duplicate of this one)
      } else {
        m.flags |= kIoPending;
        todo.push_back(refs[i]);
        todo_at.push_back(i);
      }
    }
    if (!todo.empty()) {
      std::vector<Status> st(todo.size());
      LoadBatch(lock, todo, st);
      for (size_t k = 0; k < todo.size(); ++k) {
        if (st[k].ok()) continue;
        (*results)[todo_at[k]] = st[k];
        done[todo_at[k]] = true;
      }
      continue;
    }
    if (!waiting) return;
    if (stop_ || !wait) break;
    io_cv_.Wait(&mu_);
  }
  for (size_t i = 0; i < refs.size(); ++i) {
    if (!done[i]) (*results)[i] = stop_ ? ShutdownStatus("block store is closing") : Busy("a transfer is in flight");
  }
}

Status BlockStore::ReadVerified(SlotId slot, const SlotTag& tag, std::span<std::byte> out) {
  Result<SlotInfo> info = d_->Read(slot, tag, out);
  if (info.status().code() == StatusCode::kCorruption) info = d_->Read(slot, tag, out);
  if (!info.ok()) return info.status();
  return DecodeInPlace(*info, out);
}

Status BlockStore::DecodeInPlace(const SlotInfo& info, std::span<std::byte> out) {
  if (info.encoding == PayloadEncoding::kRaw) {
    if (info.length == block_bytes_) return OkStatus();
    return Corruption("raw D payload of " + std::to_string(info.length) + " bytes, a block has " +
                      std::to_string(block_bytes_));
  }
  const std::vector<std::byte> packed(out.begin(), out.begin() + std::min<size_t>(info.length, out.size()));
  Status st = DecodeBlock(options_.model, info.encoding, packed, out.first(block_bytes_));
  if (!st.ok()) std::memset(out.data(), 0, block_bytes_);  // never leave half-decoded bytes
  return st;
}

void BlockStore::NoteReadFailure(BlockRef ref, SlotId slot, const SlotTag& tag, const Status& st) {
  ++stats_.disk_read_failures;
  const BlockMeta& m = index_.meta(ref);
  if (st.code() != StatusCode::kCorruption || m.disk_slot != slot || m.generation != tag.generation) return;
  ++stats_.corrupt_blocks;
  LOG(ERROR) << "namespace " << options_.ns << ": " << TagToString(tag)
             << " failed verification on D twice and is dropped: " << st.ToString();
  ForgetDiskCopyNow(ref);
}

Status BlockStore::ReadDiskDirect(MutexLock& lock, BlockRef ref, std::span<std::byte> out) {
  BlockMeta& m = index_.meta(ref);
  if ((m.flags & kIoPending) || m.in_memory() || !m.on_disk()) {
    return ResourceExhausted("H is full and the block is moving");
  }
  m.flags |= kIoPending;  // its D copy stays where it is meanwhile
  const SlotTag tag = TagOf(ref);
  const SlotId slot = m.disk_slot;
  mu_.Unlock();
  Status st = ReadVerified(slot, tag, out);
  mu_.Lock();
  index_.meta(ref).flags &= ~kIoPending;
  io_cv_.NotifyAll();
  if (!st.ok()) NoteReadFailure(ref, slot, tag, st);
  return st;
}

// REQUIRES: every ref pinned, D-only and marked kIoPending by the caller; clears it.
void BlockStore::LoadBatch(MutexLock& lock, std::span<const BlockRef> refs,
                           std::span<Status> results) {
  if (h_->free_slots() < refs.size()) DemoteHostBatch(lock, refs.size() - h_->free_slots());
  std::vector<ReadJob> jobs;
  for (size_t i = 0; i < refs.size(); ++i) {
    auto slot = h_->Allocate();
    if (!slot.ok()) {
      index_.meta(refs[i]).flags &= ~kIoPending;
      results[i] = ResourceExhausted("H is full (every block pinned, or D refuses demotions)");
      continue;
    }
    ReadJob& j = jobs.emplace_back();
    j.i = i;
    j.ref = refs[i];
    j.tag = TagOf(refs[i]);
    j.disk_slot = index_.meta(refs[i]).disk_slot;
    j.host_slot = *slot;
  }
  if (jobs.empty()) {
    io_cv_.NotifyAll();
    return;
  }
  mu_.Unlock();
  auto out_of = [&](const ReadJob& j) { return std::span<std::byte>(h_->SlotAddress(j.host_slot), block_bytes_); };
  std::vector<ReadOp> ops;
  for (const ReadJob& j : jobs) ops.emplace_back(j.disk_slot, j.tag, out_of(j));
  d_->ReadBatch(ops).IgnoreError();
  // A failed verification may be a transfer error: each such copy is read once more.
  std::vector<ReadOp> again;
  std::vector<size_t> again_at;
  for (size_t k = 0; k < ops.size(); ++k) {
    if (ops[k].status.code() != StatusCode::kCorruption) continue;
    again.emplace_back(jobs[k].disk_slot, jobs[k].tag, out_of(jobs[k]));
    again_at.push_back(k);
  }
  if (!again.empty()) d_->ReadBatch(again).IgnoreError();
  for (size_t k = 0; k < again.size(); ++k) {
    ops[again_at[k]].status = again[k].status;
    ops[again_at[k]].info = again[k].info;
  }
  for (size_t k = 0; k < ops.size(); ++k) {
    jobs[k].status = ops[k].status.ok() ? DecodeInPlace(ops[k].info, out_of(jobs[k])) : ops[k].status;
  }
  mu_.Lock();
  for (ReadJob& j : jobs) {
    BlockMeta& m = index_.meta(j.ref);
    m.flags &= ~kIoPending;
    const bool same = m.disk_slot == j.disk_slot && m.generation == j.tag.generation;
    if (j.status.ok() && same && !m.in_memory()) {
      h_->Commit(j.host_slot, j.tag, static_cast<uint32_t>(block_bytes_)).IgnoreError();
      m.where = Where::kHost;
      m.mem_slot = j.host_slot;
      index_.SetOwner(TierKind::kHost, j.host_slot, j.ref);
      ++stats_.promotions_d_to_h;
      stats_.bytes_d_to_h += block_bytes_;
      continue;
    }
    h_->Free(j.host_slot).IgnoreError();
    room_cv_.NotifyAll();
    if (j.status.ok()) {
      if (!m.in_memory()) results[j.i] = Busy("block changed while it was read from D");
      continue;
    }
    results[j.i] = j.status;
    NoteReadFailure(j.ref, j.disk_slot, j.tag, j.status);
  }
  io_cv_.NotifyAll();
}

}  // namespace tierkv::storage
