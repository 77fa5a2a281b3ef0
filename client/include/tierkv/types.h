// Identifiers and the GPU block table entry shared by the C++ API and the wire.
// Self-contained: needs only the C++ standard library.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tierkv {

// Daemon-assigned id of a namespace (stable across restarts).
using NamespaceId = uint32_t;
// Client-chosen id of a sequence inside a namespace.
using SequenceId = uint64_t;

// One entry of a block table (the GPU path of Retrieve writes `count` of them).
struct BlockTableEntry {
  uint32_t block;       // block index in the sequence (token position = block * block_tokens)
  uint8_t tier;         // 0 = G, 1 = H (where the bytes are now)
  uint8_t reserved;
  uint16_t head;        // the KV head this entry serves (granularity head), else 0

  uint64_t offset;      // byte offset of the block inside that tier's arena
};
static_assert(sizeof(BlockTableEntry) == 16 && offsetof(BlockTableEntry, head) == 6);

}  // namespace tierkv
