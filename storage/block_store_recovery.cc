// BlockStore::Recover: rebuilds the D tier's part of the placement map from the
// manifest at Open, cross-checked against the headers of the recorded slots.
#include <algorithm>
#include <string>
#include <vector>

#include "common/log.h"
#include "storage/block_records.h"
#include "storage/block_store.h"

namespace tierkv::storage {

struct BlockStore::Recorded {
  std::string key;
  RecordKey k;
  BlockRecord rec;
};

Status BlockStore::Recover() {
  if (!d_) return OkStatus();
  MutexLock lock(&mu_);
  RETURN_IF_ERROR(ResolvePendingWrites());
  std::vector<Recorded> records;
  Manifest::Batch stale;
  uint64_t dropped = 0;
  for (char kind : {'B', 'P'}) {
    RETURN_IF_ERROR(manifest_->Scan(Cf::kBlocks, RecordKeyPrefix(kind, options_.ns),
                                    [&](std::string_view k, std::string_view v) {
                                      auto key = DecodeRecordKey(k);
                                      auto rec = DecodeBlockRecord(v);
                                      if (key.ok() && rec.ok() && key->layer < options_.model.num_layers &&
                                          rec->disk_slot < d_->num_slots()) {
                                        records.push_back({std::string(k), *key, *rec});
                                      } else {
                                        stale.Delete(Cf::kBlocks, k);
                                        ++dropped;
                                      }
                                      return true;
                                    }));
  }
  RETURN_IF_ERROR(AdoptRecords(records, &stale, &dropped));
  RETURN_IF_ERROR(RecoverLinks());
  if (stale.Count()) RETURN_IF_ERROR(manifest_->Write(stale));
  stats_.stale_records += dropped;
  if (stats_.recovered_blocks.load() || dropped) {
    LOG(INFO) << "namespace " << options_.ns << ": recovered " << stats_.recovered_blocks.load()
              << " block(s) from D, dropped " << dropped << " stale record(s)";
  }
  return OkStatus();
}

// The last commit group wrote its records while its data synced (CommitOverlapped):
// its new copies are read whole and checked against their payload checksums; a
// record naming a copy that is not whole (torn, never written, another block's)
// gets its previous copy's record back, which the group's commit had not yet freed
// — or is deleted when there was none (that version was never acknowledged). An
// unreadable copy (kIOError) keeps its record, as AdoptRecords does.
Status BlockStore::ResolvePendingWrites() {
  if (!disk_) return OkStatus();
  const std::string pending_key = PendingWritesKey(options_.ns);
  auto value = manifest_->Get(Cf::kMeta, pending_key);
  if (value.status().code() == StatusCode::kNotFound) return OkStatus();
  RETURN_IF_ERROR(value.status());
  Manifest::Batch batch;
  batch.Delete(Cf::kMeta, pending_key);
  auto writes = DecodePendingWrites(*value);
  if (!writes.ok()) {
    LOG(WARNING) << "namespace " << options_.ns << ": pending-writes record dropped: " << writes.status().ToString();
    return manifest_->Write(batch);
  }
  std::vector<PendingWrite> torn;
  constexpr size_t kChunk = 64;  // whole slots read at once
  for (size_t first = 0; first < writes->size(); first += kChunk) {
    const auto chunk = std::span(*writes).subspan(first, std::min(kChunk, writes->size() - first));
    std::vector<DiskTier::HeaderRead> reads;
    std::vector<const PendingWrite*> read_of;
    for (const PendingWrite& w : chunk) {
      if (w.slot >= d_->num_slots()) continue;  // AdoptRecords drops its record
      ASSIGN_OR_RETURN(const bool names, RecordNames(w));
      if (!names) continue;  // replaced or deleted since: not this commit's to repair
      reads.push_back({w.slot, /*verify_payload=*/true});
      read_of.push_back(&w);
    }
    RETURN_IF_ERROR(disk_->ReadHeaders(reads));
    for (size_t i = 0; i < reads.size(); ++i) {
      const RecordKey key = DecodeRecordKey(read_of[i]->key).value();
      const SlotTag want{BlockKey{options_.ns, key.layer, key.seq, key.index, 0}, read_of[i]->generation};
      if (reads[i].status.code() == StatusCode::kIOError) continue;
      if (reads[i].status.ok() && reads[i].info.tag == want) continue;
      torn.push_back(*read_of[i]);
    }
  }
  const uint64_t restored_before = stats_.restored_records.load();
  uint64_t deleted = 0;
  RETURN_IF_ERROR(RestorePrevious(torn, &batch, &deleted));
  if (!torn.empty()) {
    LOG(WARNING) << "namespace " << options_.ns << ": " << torn.size() << " D copy(ies) of the last commit were not "
                 << "whole at start: " << stats_.restored_records.load() - restored_before
                 << " record(s) put back to the previous copy, " << deleted << " dropped (no whole previous copy)";
  }
  stats_.unfinished_writes += torn.size();
  return manifest_->Write(batch);
}

Status BlockStore::AdoptRecords(const std::vector<Recorded>& records, Manifest::Batch* stale, uint64_t* dropped) {
  // The headers of the recorded slots only (one batch, queue_depth in flight): Open
  // costs one 4 KiB read per stored block, not a scan of the whole tier. Slots
  // written but never recorded (a crash between data and record) are simply free.
  std::vector<DiskTier::HeaderRead> headers(disk_ ? records.size() : 0);
  for (size_t i = 0; i < headers.size(); ++i) headers[i].slot = records[i].rec.disk_slot;
  if (disk_) RETURN_IF_ERROR(disk_->ReadHeaders(headers));
  uint64_t recovered = 0, max_generation = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const RecordKey& key = records[i].k;
    const BlockRecord& rec = records[i].rec;
    const SlotTag want{BlockKey{options_.ns, key.layer, key.seq, key.index, 0}, rec.generation};
    // A header that disagrees (another block or generation, never written, damaged)
    // drops the record. An unreadable one does not: every read verifies the slot.
    bool header_ok = true;
    if (disk_ && headers[i].status.code() != StatusCode::kIOError) {
      header_ok = headers[i].status.ok() && headers[i].info.tag == want;
    }
    // A slot claimed by two records fails the second Adopt (kAlreadyExists).
    if (!header_ok || !d_->Adopt(rec.disk_slot).ok()) {
      if (*dropped < 8) {
        LOG(WARNING) << "namespace " << options_.ns << ": manifest record of " << TagToString(want) << " in D slot "
                     << rec.disk_slot << " dropped: "
                     << (header_ok ? std::string("slot claimed twice") : headers[i].status.ok()
                                                                             ? "the slot holds " + TagToString(headers[i].info.tag)
                                                                             : headers[i].status.ToString());
      }
      stale->Delete(Cf::kBlocks, records[i].key);
      ++*dropped;
      continue;
    }
    const bool prefix = key.kind == 'P';
    BlockRef ref = index_.NewBlock(key.seq, key.layer, key.index, prefix);
    BlockMeta& m = index_.meta(ref);
    m.disk_slot = rec.disk_slot;
    m.generation = rec.generation;
    m.flags |= kDiskCurrent;
    max_generation = std::max<uint64_t>(max_generation, rec.generation);
    if (prefix) index_.RegisterPrefix(key.seq, key.layer, ref);
    else index_.Link(key.seq, key.layer, key.index, ref);
    ++recovered;
  }
  // New versions get generations above every recorded one (a slot written but never
  // recorded may hold a higher one; no record names it, so it cannot be confused).
  generation_clock_ = static_cast<uint32_t>(std::min<uint64_t>(max_generation, UINT32_MAX - 1));
  stats_.recovered_blocks += recovered;
  return OkStatus();
}

// Prefix links of sequences (write-through namespaces).
Status BlockStore::RecoverLinks() {
  return manifest_->Scan(Cf::kSequences, RecordKeyPrefix('L', options_.ns), [&](std::string_view k,
                                                                                 std::string_view v) {
    mu_.AssertHeld();  // Scan calls back on this thread, under the caller's lock
    auto key = DecodeRecordKey(k);
    if (!key.ok() || v.size() != 8 || key->layer >= options_.model.num_layers) return true;
    BlockRef shared = index_.FindPrefix(ReadBigEndian64(v), key->layer);
    if (shared != kNoBlock && index_.Find(key->seq, key->layer, key->index) == kNoBlock) {
      index_.Link(key->seq, key->layer, key->index, shared);
    }
    return true;
  });
  return OkStatus();
}

}  // namespace tierkv::storage
