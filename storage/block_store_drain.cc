// BlockStore::Drain: at shutdown, writes back to D what is not there yet (the
// blocks a write-back namespace holds only in G and H), through WriteToDisk.
#include <algorithm>
#include <thread>
#include <tuple>

#include "common/log.h"
#include "storage/block_records.h"
#include "storage/block_store.h"

namespace tierkv::storage {
namespace {
// Blocks per drain batch: about this many bytes (one fdatasync, one manifest batch
// each), at least the demotion batch.
constexpr size_t kDrainBatchBytes = 32 << 20;
}  // namespace

std::vector<BlockRef> BlockStore::DirtyBlocks() const {
  std::vector<BlockRef> refs;
  for (TierKind kind : {TierKind::kGpu, TierKind::kHost}) {
    const Where where = kind == TierKind::kGpu ? Where::kGpu : Where::kHost;
    for (uint32_t slot = 0; slot < index_.num_slots(kind); ++slot) {
      const BlockRef ref = index_.Owner(kind, slot);
      if (ref == kNoBlock) continue;
      const BlockMeta& m = index_.meta(ref);
      if (m.where != where || m.mem_slot != slot || !(m.flags & kLive)) continue;
      if (m.flags & (kDiskCurrent | kDropped)) continue;
      refs.push_back(ref);
    }
  }
  // Shared prefix blocks first (every sequence that starts with them uses them),
  // then each sequence position by position, all layers of a position together.
  auto order = [this](BlockRef r) {
    mu_.AssertHeld();  // called by std::sort below, under the lock
    const BlockMeta& m = index_.meta(r);
    return std::make_tuple(!(m.flags & kPrefix), m.seq, m.index, m.layer);
  };
  std::sort(refs.begin(), refs.end(), [&](BlockRef a, BlockRef b) { return order(a) < order(b); });
  return refs;
}

size_t BlockStore::BlocksNotOnDisk() const {
  MutexLock lock(&mu_);
  return DirtyBlocks().size();
}

DrainResult BlockStore::Drain(std::chrono::steady_clock::time_point deadline,
                              const std::function<void(uint64_t, uint64_t)>& on_batch) {
  MutexLock pass(&migrate_mu_);  // no migration pass runs meanwhile
  MutexLock lock(&mu_);
  DrainResult r;
  const std::vector<BlockRef> todo = DirtyBlocks();
  r.pending = todo.size();
  if (!d_) {
    r.left = r.pending;
    if (r.pending) r.first_error = NotSupported("the namespace has no disk tier");
    return r;
  }
  const size_t batch = std::max<size_t>({1, options_.demote_batch, kDrainBatchBytes / block_bytes_});
  size_t next = 0;
  while (next < todo.size()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      break;
    }
    // D stopped admitting writes shortly before (an I/O error, a full disk): wait for
    // its retry time when it comes before the deadline; the first write probes it.
    if (!disk_error_.ok() && disk_retry_at_ > std::chrono::steady_clock::now() && disk_retry_at_ < deadline) {
      const auto until = disk_retry_at_;
      lock.Unlock();
      std::this_thread::sleep_until(until);
      lock.Lock();
    }
    const size_t n = std::min(batch, todo.size() - next);
    const std::span<const BlockRef> refs(todo.data() + next, n);
    next += n;
    // Pinned while written: nothing frees them meanwhile (nothing should run, but a
    // pin costs nothing).
    for (BlockRef ref : refs) ++index_.meta(ref).leases;
    std::vector<Status> results;
    WriteToDisk(lock, refs, &results);
    uint64_t written = 0;
    for (size_t i = 0; i < n; ++i) {
      if (results[i].ok() && (index_.meta(refs[i]).flags & kDiskCurrent)) {
        ++written;
        continue;
      }
      ++r.failed;
      if (r.first_error.ok()) r.first_error = results[i].ok() ? Busy("block changed while it was written") : results[i];
    }
    for (BlockRef ref : refs) Unpin(ref);
    r.written += written;
    r.bytes += written * block_bytes_;
    if (on_batch) {
      lock.Unlock();
      on_batch(written, written * block_bytes_);
      lock.Lock();
    }
    if (written == 0) break;  // D full or refusing writes: the rest would fail the same way
  }
  r.left = r.pending - r.written;
  Status link_error;
  r.links = RecordPrefixLinks(&link_error);
  if (r.first_error.ok() && !link_error.ok()) r.first_error = link_error;
  return r;
}

// One manifest batch with the link of every sequence block that is a shared prefix
// block now current on D (a link to a block D does not hold would be dropped at Open).
uint64_t BlockStore::RecordPrefixLinks(Status* error) {
  Manifest::Batch batch;
  index_.ForEachPlace([&](SequenceId seq, uint32_t layer, uint32_t index, BlockRef ref) {
    mu_.AssertHeld();  // ForEachPlace calls back on this thread, under the lock
    const BlockMeta& m = index_.meta(ref);
    if (!(m.flags & kPrefix) || !(m.flags & kDiskCurrent)) return;
    std::string hash_bytes;
    AppendBigEndian64(&hash_bytes, m.seq);
    batch.Put(Cf::kSequences, EncodeRecordKey({'L', options_.ns, seq, layer, index}), hash_bytes);
  });
  if (batch.Count() == 0) return 0;
  *error = manifest_->Write(batch).WithContext("manifest (prefix links)");
  return error->ok() ? batch.Count() : 0;
}

Status BlockStore::DeleteLinkRecords(SequenceId seq) {
  std::vector<std::string> keys;
  RETURN_IF_ERROR(manifest_->Scan(Cf::kSequences, EncodeRecordKey({'L', options_.ns, seq, 0, 0}).substr(0, 13),
                                  [&](std::string_view k, std::string_view) {
                                    keys.emplace_back(k);
                                    return true;
                                  }));
  if (keys.empty()) return OkStatus();
  Manifest::Batch batch;
  for (const auto& k : keys) batch.Delete(Cf::kSequences, k);
  return manifest_->Write(batch);
}

}  // namespace tierkv::storage
