// Per-KV-head namespaces (docs/decisions/0023-per-head-namespaces.md): engines move
// whole layer blocks — K then V, [kv_heads][tokens][head_dim] each — while the store
// holds one KV head's K and V per block ([tokens][head_dim] each) under the stored
// layer layer * kv_heads + head. These convert between the two layouts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/model_spec.h"

namespace tierkv::daemon {

struct HeadLayout {
  uint32_t kv = 1;       // KV heads of a layer
  size_t row_bytes = 0;  // one head's K (or V) over the block's tokens: tokens * head_dim * dtype

  static HeadLayout Of(const ModelSpec& m, uint32_t tokens) {
    return {m.num_kv_heads, size_t{tokens} * m.head_dim * DTypeBytes(m.dtype)};
  }
  size_t layer_bytes() const { return 2 * kv * row_bytes; }  // one layer block
  size_t head_bytes() const { return 2 * row_bytes; }        // one head block
};

inline uint32_t StoredLayer(uint32_t layer, uint32_t kv_heads, uint32_t head) { return layer * kv_heads + head; }

// n layer blocks back to back (n * layer_bytes) -> kv runs of n head blocks: head h
// of block i lands at out[(h * n + i) * head_bytes].
void SplitHeads(const HeadLayout& l, uint32_t n, std::span<const std::byte> in, std::span<std::byte> out);
// Head h's block (head_bytes) -> its K and V rows inside one layer block.
void JoinHead(const HeadLayout& l, uint32_t h, std::span<const std::byte> head_block, std::span<std::byte> layer_block);

}  // namespace tierkv::daemon
