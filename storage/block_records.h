// Manifest records of a namespace's blocks (column families "blocks" and
// "sequences"). Fixed-width big-endian keys sort by namespace, sequence, layer,
// block; values are small fixed binary structs.
//
//   blocks:    'B' ns seq layer index   -> BlockRecord   (a block of a sequence on D)
//              'P' ns hash layer index  -> BlockRecord   (a shared prefix block on D)
//   sequences: 'L' ns seq layer index   -> hash          (block `index` of seq is prefix block hash)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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

}  // namespace tierkv::storage
