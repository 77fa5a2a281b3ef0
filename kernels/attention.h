// Decode attention over a block table (DESIGN §6): one query token, all q heads,
// GQA, the selected blocks given by address or by slot index. Used by evaluation
// to measure the output error of attention on a selection, and usable by engines.
//
// For q head h (KV head g = h / (num_q_heads / num_kv_heads)), over the valid
// tokens t of every table entry, in table order:
//   s_t = scale * q_h . K_g[t],  p_t = softmax(s)_t,  out_h = sum_t p_t V_g[t]
//   lse_h = log sum_t exp(s_t)                     (natural log, scaled scores)
// scale is softmax_scale, or 1/sqrt(head_dim) when 0. K/V are f16/bf16 (f32 for
// tests); accumulation is f32. A block is laid out as in DESIGN §1:
// K[num_kv_heads][block_tokens][head_dim] then V[...] of the same shape.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

inline constexpr uint32_t kMaxAttentionBlocks = 1u << 24;

struct AttentionArgs {
  DType kv_dtype = DType::kBF16;
  uint32_t num_q_heads = 0;   // in [1, kMaxHeads], a multiple of num_kv_heads
  uint32_t num_kv_heads = 0;  // in [1, kMaxHeads]
  uint32_t head_dim = 0;      // in [1, kMaxHeadDim]
  uint32_t block_tokens = 0;  // in [1, kMaxBlockTokens]
  float softmax_scale = 0.f;  // Default (0): 1/sqrt(head_dim).
  const float* query = nullptr;  // [num_q_heads][head_dim]
  uint32_t num_blocks = 0;       // table entries, in [1, kMaxAttentionBlocks]

  // The table: either block_ptrs, or slot_base + slot_indices[i] * slot_bytes.
  const void* const* block_ptrs = nullptr;  // [num_blocks], element-aligned
  const void* slot_base = nullptr;          // num_slots slots of slot_bytes
  size_t slot_bytes = 0;                    // >= 2 * kv_heads * block_tokens * head_dim * elt
  uint32_t num_slots = 0;
  const uint32_t* slot_indices = nullptr;   // [num_blocks], each < num_slots

  // Optional [num_blocks]: valid tokens of each entry (a prefix) in [1, block_tokens];
  // nullptr: all full. kCpu refuses out-of-range counts and slot indices; kCuda,
  // where those arrays are not host-readable, clamps counts to block_tokens and
  // skips entries with count 0, a slot index >= num_slots or a null address.
  const uint32_t* token_counts = nullptr;

  float* out = nullptr;  // out [num_q_heads][head_dim]
  float* lse = nullptr;  // optional out [num_q_heads]; -inf (and out = 0) when no token was attended

  // kCuda scratch of at least AttentionWorkspaceBytes(args) bytes of device memory;
  // when null or smaller, the call allocates stream-ordered memory.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

size_t AttentionWorkspaceBytes(const AttentionArgs& args);

// kInvalidArgument for shapes out of range, null query/out, no table or both
// kinds of table, slot_bytes too small. kCuda is asynchronous on `stream` and
// returns kNotSupported when (num_q_heads / num_kv_heads) * head_dim exceeds what
// its shared memory holds (> ~20K on H100).
Status DecodeAttention(Backend backend, const AttentionArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
