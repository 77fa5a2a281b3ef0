// Validation, dispatch and the CPU reference of attention.h.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu_math.h"
#include "kernels/half.h"
#include "kernels/launch.h"

namespace tierkv::kernels {
namespace {

Status Validate(const AttentionArgs& a) {
  auto bad = [](const std::string& m) { return InvalidArgument("DecodeAttention: " + m); };
  if (a.kv_dtype != DType::kF16 && a.kv_dtype != DType::kBF16 && a.kv_dtype != DType::kF32)
    return bad("unknown kv_dtype");
  if (a.num_kv_heads == 0 || a.num_kv_heads > ModelLimits::kMaxHeads) return bad("num_kv_heads out of range");
  if (a.num_q_heads == 0 || a.num_q_heads > ModelLimits::kMaxHeads || a.num_q_heads % a.num_kv_heads != 0)
    return bad("num_q_heads must be in [1, 1024] and a multiple of num_kv_heads");
  if (a.head_dim == 0 || a.head_dim > ModelLimits::kMaxHeadDim) return bad("head_dim out of range");
  if (a.block_tokens == 0 || a.block_tokens > ModelLimits::kMaxBlockTokens) return bad("block_tokens out of range");
  if (a.num_blocks == 0 || a.num_blocks > kMaxAttentionBlocks) return bad("num_blocks out of range");
  if (!(a.softmax_scale >= 0.f) || std::isinf(a.softmax_scale)) return bad("softmax_scale must be finite and >= 0");
  if (a.query == nullptr || a.out == nullptr) return bad("null query or out");
  const bool by_ptr = a.block_ptrs != nullptr, by_slot = a.slot_base != nullptr || a.slot_indices != nullptr;
  if (by_ptr == by_slot) return bad("give exactly one of block_ptrs or slot_base + slot_indices");
  if (by_slot) {
    if (a.slot_base == nullptr || a.slot_indices == nullptr) return bad("slot mode needs slot_base and slot_indices");
    const size_t need = size_t{2} * a.num_kv_heads * a.block_tokens * a.head_dim * DTypeBytes(a.kv_dtype);
    if (a.slot_bytes < need) return bad("slot_bytes " + std::to_string(a.slot_bytes) + " < block bytes " +
                                        std::to_string(need));
    if (a.slot_bytes % DTypeBytes(a.kv_dtype) != 0) return bad("slot_bytes not a multiple of the element size");
    if (a.num_slots == 0) return bad("num_slots is 0");
  }
  return OkStatus();
}

const char* EntryBase(const AttentionArgs& a, uint32_t i) {
  if (a.block_ptrs != nullptr) return static_cast<const char*>(a.block_ptrs[i]);
  return static_cast<const char*>(a.slot_base) + size_t{a.slot_indices[i]} * a.slot_bytes;
}

Status CheckTable(const AttentionArgs& a) {
  for (uint32_t i = 0; i < a.num_blocks; ++i) {
    if (a.block_ptrs != nullptr && a.block_ptrs[i] == nullptr)
      return InvalidArgument("DecodeAttention: null block_ptrs[" + std::to_string(i) + "]");
    if (a.slot_indices != nullptr && a.slot_indices[i] >= a.num_slots)
      return InvalidArgument("DecodeAttention: slot_indices[" + std::to_string(i) + "] = " +
                             std::to_string(a.slot_indices[i]) + " >= num_slots " + std::to_string(a.num_slots));
    if (a.token_counts != nullptr && (a.token_counts[i] == 0 || a.token_counts[i] > a.block_tokens))
      return InvalidArgument("DecodeAttention: token_counts[" + std::to_string(i) + "] out of [1, block_tokens]");
  }
  return OkStatus();
}

// One KV head's group of q heads, one table entry at a time with an online
// softmax (running max m, running sum l, accumulator rescaled when m grows), so
// memory stays O(G * (block_tokens + head_dim)) whatever the table size.
void AttendGroup(const AttentionArgs& a, uint32_t g, float scale) {
  const size_t D = a.head_dim, T = a.block_tokens, G = a.num_q_heads / a.num_kv_heads;
  const size_t elt = DTypeBytes(a.kv_dtype), head_bytes = T * D * elt;
  std::vector<float> row(D), s(G * T), acc(G * D, 0.f), m(G, -std::numeric_limits<float>::infinity()), l(G, 0.f);
  for (uint32_t i = 0; i < a.num_blocks; ++i) {
    const char* base = EntryBase(a, i);
    const char* k = base + g * head_bytes;
    const char* v = base + (a.num_kv_heads + g) * head_bytes;
    const uint32_t n = a.token_counts != nullptr ? a.token_counts[i] : a.block_tokens;
    for (uint32_t t = 0; t < n; ++t) {
      LoadRowAsFloat(k, a.kv_dtype, t * D, D, row.data());
      for (size_t j = 0; j < G; ++j) s[j * T + t] = scale * internal::DotF32(a.query + (g * G + j) * D, row.data(), D);
    }
    for (size_t j = 0; j < G; ++j) {
      float* sj = s.data() + j * T;
      const float m_new = std::max(m[j], *std::max_element(sj, sj + n));
      const float c = std::exp(m[j] - m_new);  // 0 for the first entry (m = -inf)
      float sum = 0.f;
      for (uint32_t t = 0; t < n; ++t) {
        sj[t] = std::exp(sj[t] - m_new);
        sum += sj[t];
      }
      l[j] = l[j] * c + sum;
      m[j] = m_new;
      for (size_t d = 0; d < D; ++d) acc[j * D + d] *= c;
    }
    for (uint32_t t = 0; t < n; ++t) {
      LoadRowAsFloat(v, a.kv_dtype, t * D, D, row.data());
      for (size_t j = 0; j < G; ++j) internal::AxpyF32(s[j * T + t], row.data(), acc.data() + j * D, D);
    }
  }
  for (size_t j = 0; j < G; ++j) {
    const size_t h = g * G + j;
    for (size_t d = 0; d < D; ++d) a.out[h * D + d] = acc[j * D + d] / l[j];
    if (a.lse != nullptr) a.lse[h] = m[j] + std::log(l[j]);
  }
}

Status AttentionCpu(const AttentionArgs& a) {
  RETURN_IF_ERROR(CheckTable(a));
  const float scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / std::sqrt(static_cast<float>(a.head_dim));
  for (uint32_t g = 0; g < a.num_kv_heads; ++g) AttendGroup(a, g, scale);
  return OkStatus();
}

}  // namespace

namespace internal {

AttentionSplit SplitAttention(uint32_t num_blocks, uint32_t num_kv_heads) {
  constexpr uint32_t kTargetCtas = 512;
  const uint32_t want = std::clamp<uint32_t>((kTargetCtas + num_kv_heads - 1) / num_kv_heads, 1, num_blocks);
  AttentionSplit s;
  s.blocks_per_split = (num_blocks + want - 1) / want;
  s.splits = (num_blocks + s.blocks_per_split - 1) / s.blocks_per_split;
  return s;
}

}  // namespace internal

size_t AttentionWorkspaceBytes(const AttentionArgs& a) {
  if (a.num_blocks == 0 || a.num_kv_heads == 0) return 0;
  const internal::AttentionSplit s = internal::SplitAttention(a.num_blocks, a.num_kv_heads);
  return size_t{s.splits} * a.num_q_heads * (size_t{a.head_dim} + 2) * sizeof(float);
}

Status DecodeAttention(Backend backend, const AttentionArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "DecodeAttention"));
  RETURN_IF_ERROR(Validate(args));
  if (backend == Backend::kCuda) return internal::AttentionCuda(args, stream);
  return AttentionCpu(args);
}

}  // namespace tierkv::kernels
