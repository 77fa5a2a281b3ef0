// BlockStore::Recover: rebuilds the D tier's part of the placement map from the
// manifest at Open, cross-checked against the slot headers on disk.
#include <algorithm>
#include <unordered_map>

#include "common/log.h"
#include "storage/block_records.h"
#include "storage/block_store.h"

namespace tierkv::storage {

Status BlockStore::Recover() {
  if (!d_) return OkStatus();
  std::lock_guard lock(mu_);
  // What the slot headers say, when the tier can be scanned (DiskTier).
  std::unordered_map<SlotId, SlotTag> on_disk;
  uint64_t max_generation = 0;
  if (disk_) {
    // Headers only: payload checksums are verified on every read anyway.
    ASSIGN_OR_RETURN(SlabScan scan, disk_->Scan({.verify_payload = false}));
    for (const auto& s : scan.valid) {
      if (s.info.tag.key.ns != options_.ns) continue;
      on_disk[s.slot] = s.info.tag;
      max_generation = std::max(max_generation, s.info.tag.generation);
    }
  }
  Manifest::Batch stale;
  uint64_t recovered = 0, dropped = 0;
  for (char kind : {'B', 'P'}) {
    Status st = manifest_->Scan(Cf::kBlocks, RecordKeyPrefix(kind, options_.ns), [&](std::string_view k,
                                                                                      std::string_view v) {
      auto key = DecodeRecordKey(k);
      auto rec = DecodeBlockRecord(v);
      // A slot claimed by two records fails the second Adopt (kAlreadyExists).
      const bool valid = key.ok() && rec.ok() && key->layer < options_.model.num_layers &&
                         rec->disk_slot < d_->num_slots();
      SlotTag want;
      if (valid) want = SlotTag{BlockKey{options_.ns, key->layer, key->seq, key->index, 0}, rec->generation};
      auto it = valid && disk_ ? on_disk.find(rec->disk_slot) : on_disk.end();
      const bool header_ok = valid && (!disk_ || (it != on_disk.end() && it->second == want));
      if (!header_ok || !d_->Adopt(rec->disk_slot).ok()) {
        stale.Delete(Cf::kBlocks, k);
        ++dropped;
        return true;
      }
      BlockRef ref = index_.NewBlock(key->seq, key->layer, key->index, kind == 'P');
      BlockMeta& m = index_.meta(ref);
      m.disk_slot = rec->disk_slot;
      m.generation = rec->generation;
      m.flags |= kDiskCurrent;
      max_generation = std::max<uint64_t>(max_generation, rec->generation);
      if (kind == 'P') index_.RegisterPrefix(key->seq, key->layer, ref);
      else index_.Link(key->seq, key->layer, key->index, ref);
      if (disk_) on_disk.erase(rec->disk_slot);
      ++recovered;
      return true;
    });
    RETURN_IF_ERROR(st);
  }
  // Prefix links of sequences (write-through namespaces).
  RETURN_IF_ERROR(manifest_->Scan(Cf::kSequences, RecordKeyPrefix('L', options_.ns), [&](std::string_view k,
                                                                                         std::string_view v) {
    auto key = DecodeRecordKey(k);
    if (!key.ok() || v.size() != 8 || key->layer >= options_.model.num_layers) return true;
    BlockRef shared = index_.FindPrefix(ReadBigEndian64(v), key->layer);
    if (shared != kNoBlock && index_.Find(key->seq, key->layer, key->index) == kNoBlock) {
      index_.Link(key->seq, key->layer, key->index, shared);
    }
    return true;
  }));
  if (stale.Count()) RETURN_IF_ERROR(manifest_->Write(stale));
  // New versions get generations above every one on disk, recorded or not.
  generation_clock_ = static_cast<uint32_t>(std::min<uint64_t>(max_generation, UINT32_MAX - 1));
  stats_.recovered_blocks += recovered;
  stats_.stale_records += dropped;
  stats_.orphan_slots += on_disk.size();  // written but never recorded: left free, reused
  if (recovered || dropped || !on_disk.empty()) {
    LOG(INFO) << "namespace " << options_.ns << ": recovered " << recovered << " block(s) from D, dropped "
              << dropped << " stale record(s), reclaimed " << on_disk.size() << " orphan slot(s)";
  }
  return OkStatus();
}

}  // namespace tierkv::storage
