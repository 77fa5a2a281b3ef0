// Non-owning views of one layer's keys/values and of one decode step's queries:
// what retrievers index and what the exact oracle scores. Layouts (the same as a
// trace file's, docs/trace-format.md):
// keys/values [num_kv_heads][num_tokens][head_dim], queries [num_q_heads][head_dim],
// query head h reads KV head h / (num_q_heads / num_kv_heads).
//
// Blocks: block b holds tokens [b * block_tokens, (b + 1) * block_tokens). A step
// at position p sees tokens [0, p], hence blocks [0, VisibleBlocks(p, bt)); the
// last one may be partial.
#pragma once

#include <cstdint>
#include <span>

#include "common/status.h"
#include "index/rope.h"

namespace tierkv::index {

struct LayerKeys {
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint64_t num_tokens = 0;
  const float* keys = nullptr;      // post-RoPE, size num_kv_heads * num_tokens * head_dim
  const float* keys_pre = nullptr;  // pre-RoPE, same size; may be null
  const float* values = nullptr;    // same size; may be null (the oracle's output metrics need it)
  std::span<const uint64_t> sentence_starts;  // may be empty
  RopeStyle rope_style = RopeStyle::kUnknown;
  double rope_theta = 0.0;

  // kInvalidArgument when a size is zero or keys is null.
  Status Validate() const;
  // REQUIRES: kv_head < num_kv_heads, t < num_tokens.
  const float* Key(uint32_t kv_head, uint64_t t) const { return keys + (uint64_t{kv_head} * num_tokens + t) * head_dim; }
  const float* Value(uint32_t kv_head, uint64_t t) const {
    return values + (uint64_t{kv_head} * num_tokens + t) * head_dim;
  }
};

struct QueryView {
  uint32_t num_q_heads = 0;
  uint32_t head_dim = 0;
  const float* q = nullptr;      // post-RoPE, size num_q_heads * head_dim
  const float* q_pre = nullptr;  // pre-RoPE, same size; may be null
  uint64_t position = 0;         // the step attends to tokens [0, position]
};

// kInvalidArgument unless the query fits the layer: same head_dim, num_q_heads a
// positive multiple of num_kv_heads, position < num_tokens, q non-null.
Status CheckQueryFitsLayer(const LayerKeys& layer, const QueryView& query);

// kInvalidArgument unless `blocks` is strictly increasing and below num_blocks;
// `what` names the list in the message ("selected", "always-kept").
Status CheckBlockList(const char* what, std::span<const uint32_t> blocks, uint64_t num_blocks);

// Blocks a step at `position` sees. REQUIRES: block_tokens > 0.
inline uint64_t VisibleBlocks(uint64_t position, uint32_t block_tokens) { return position / block_tokens + 1; }

}  // namespace tierkv::index
