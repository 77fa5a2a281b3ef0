// Identifiers shared by every module (DESIGN §1).
#pragma once

#include <cstdint>
#include <functional>

#include "tierkv/types.h"

namespace tierkv {

// NamespaceId (stable across restarts; stored in the manifest) and SequenceId are
// public API: tierkv/types.h.

// One block: K and V of block_tokens consecutive tokens of one layer, all KV heads.
struct BlockKey {
  NamespaceId ns = 0;
  uint32_t layer = 0;
  SequenceId seq = 0;
  uint32_t index = 0;  // block index within the sequence
  uint32_t pad = 0;

  bool operator==(const BlockKey&) const = default;
  auto operator<=>(const BlockKey&) const = default;
};
static_assert(sizeof(BlockKey) == 24);

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const noexcept {
    uint64_t h = k.seq * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t{k.ns} << 40) ^ (uint64_t{k.layer} << 24) ^ k.index;
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<size_t>(h ^ (h >> 31));
  }
};

}  // namespace tierkv
