// Manifest records of a namespace's blocks (column families "blocks" and
// "sequences"). Fixed-width big-endian keys sort by namespace, sequence, layer,
// block; values are small fixed binary structs.
//
//   blocks:    'B' ns seq layer index   -> BlockRecord   (a block of a sequence on D)
//              'P' ns hash layer index  -> BlockRecord   (a shared prefix block on D)
//   sequences: 'L' ns seq layer index   -> hash          (block `index` of seq is prefix block hash)
//   meta:      'C' ns                   -> PendingWrites (the D writes of the last commit group, whose
//                                                          data may not be whole yet: decision 0016)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "storage/tier.h"

namespace tierkv::storage {

struct BlockRecord {
  SlotId disk_slot = kInvalidSlot;
  uint32_t generation = 0;
  uint32_t length = 0;
  uint8_t encoding = 0;
};

struct RecordKey {
  char kind = 'B';  // 'B', 'P' or 'L'
  NamespaceId ns = 0;
  uint64_t seq = 0;  // sequence id, or content hash for 'P'
  uint32_t layer = 0;
  uint32_t index = 0;
};

std::string EncodeRecordKey(const RecordKey& k);
// kCorruption on a malformed key.
Result<RecordKey> DecodeRecordKey(std::string_view key);
// Prefix of every key of one kind in one namespace.
std::string RecordKeyPrefix(char kind, NamespaceId ns);

std::string EncodeBlockRecord(const BlockRecord& r);
Result<BlockRecord> DecodeBlockRecord(std::string_view value);

// One D write of a commit group whose records are written beside its data sync:
// until that sync is known to have finished, the record of `key` names `slot` and
// `generation`, and the block's previous acknowledged copy (if any) is still in
// `previous` (its slot is freed only after the commit). Recovery checks the new
// copy and, when it is not whole, restores the record of the previous one.
struct PendingWrite {
  std::string key;  // the block's record key ('B' or 'P')
  SlotId slot = kInvalidSlot;
  uint32_t generation = 0;
  SlotId previous = kInvalidSlot;  // the previous D copy's slot, kInvalidSlot when none
};

// The key of a namespace's pending-writes record (column family meta).
std::string PendingWritesKey(NamespaceId ns);
std::string EncodePendingWrites(std::span<const PendingWrite> writes);
// kCorruption on a malformed value.
Result<std::vector<PendingWrite>> DecodePendingWrites(std::string_view value);

}  // namespace tierkv::storage
