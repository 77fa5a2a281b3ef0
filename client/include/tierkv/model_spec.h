// ModelSpec: the shape of one model's KV cache, fixed per namespace.
// Self-contained: needs only the C++ standard library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tierkv/export.h"
#include "tierkv/status.h"

namespace tierkv {

enum class DType : uint8_t { kF16 = 0, kBF16 = 1, kF32 = 2 };

TIERKV_EXPORT std::string_view DTypeName(DType d);  // "f16", "bf16", "f32"
TIERKV_EXPORT Result<DType> ParseDType(std::string_view name);
inline size_t DTypeBytes(DType d) { return d == DType::kF32 ? 4 : 2; }

// Limits on each field; a spec outside them is refused with the field's name.
struct ModelLimits {
  static constexpr uint32_t kMaxLayers = 1024;
  static constexpr uint32_t kMaxHeads = 1024;
  static constexpr uint32_t kMaxHeadDim = 1024;
  static constexpr uint32_t kMaxBlockTokens = 4096;
  static constexpr size_t kMaxBlockBytes = size_t{64} << 20;  // 64 MiB per block
};

struct TIERKV_EXPORT ModelSpec {
  uint32_t num_layers = 0;
  uint32_t num_q_heads = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t block_tokens = 0;
  DType dtype = DType::kF16;

  // OK when every field is in range, num_q_heads is a multiple of num_kv_heads
  // and one block fits in kMaxBlockBytes; else kInvalidArgument naming the field.
  Status Validate() const;
  // Bytes of one block: K and V, [kv_heads][block_tokens][head_dim] each.
  size_t BlockBytes() const {
    return size_t{2} * num_kv_heads * block_tokens * head_dim * DTypeBytes(dtype);
  }
  // "layers=32 q_heads=32 kv_heads=8 head_dim=128 block_tokens=32 dtype=bf16"
  std::string ToString() const;
  bool operator==(const ModelSpec&) const = default;
};

}  // namespace tierkv
