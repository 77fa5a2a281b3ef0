#include "common/model_spec.h"

namespace tierkv {
namespace {
Status CheckRange(const char* field, uint64_t v, uint64_t hi) {
  if (v < 1 || v > hi) {
    return InvalidArgument("model." + std::string(field) + " must be in [1, " + std::to_string(hi) +
                           "], got " + std::to_string(v));
  }
  return OkStatus();
}
}  // namespace

std::string_view DTypeName(DType d) {
  switch (d) {
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF32: return "f32";
  }
  return "?";
}

Result<DType> ParseDType(std::string_view name) {
  if (name == "f16") return DType::kF16;
  if (name == "bf16") return DType::kBF16;
  if (name == "f32") return DType::kF32;
  return InvalidArgument("model.dtype must be one of f16, bf16, f32, got '" + std::string(name) + "'");
}

Status ModelSpec::Validate() const {
  RETURN_IF_ERROR(CheckRange("num_layers", num_layers, ModelLimits::kMaxLayers));
  RETURN_IF_ERROR(CheckRange("num_q_heads", num_q_heads, ModelLimits::kMaxHeads));
  RETURN_IF_ERROR(CheckRange("num_kv_heads", num_kv_heads, num_q_heads));
  RETURN_IF_ERROR(CheckRange("head_dim", head_dim, ModelLimits::kMaxHeadDim));
  RETURN_IF_ERROR(CheckRange("block_tokens", block_tokens, ModelLimits::kMaxBlockTokens));
  if (num_q_heads % num_kv_heads != 0) {
    return InvalidArgument("model.num_q_heads (" + std::to_string(num_q_heads) +
                           ") must be a multiple of model.num_kv_heads (" + std::to_string(num_kv_heads) + ")");
  }
  if (dtype != DType::kF16 && dtype != DType::kBF16 && dtype != DType::kF32) {
    return InvalidArgument("model.dtype is not a known dtype");
  }
  if (BlockBytes() > ModelLimits::kMaxBlockBytes) {
    return InvalidArgument("model block of " + std::to_string(BlockBytes()) + " bytes exceeds the limit of " +
                           std::to_string(ModelLimits::kMaxBlockBytes) + " bytes");
  }
  return OkStatus();
}

std::string ModelSpec::ToString() const {
  return "layers=" + std::to_string(num_layers) + " q_heads=" + std::to_string(num_q_heads) +
         " kv_heads=" + std::to_string(num_kv_heads) + " head_dim=" + std::to_string(head_dim) +
         " block_tokens=" + std::to_string(block_tokens) + " dtype=" + std::string(DTypeName(dtype));
}

}  // namespace tierkv
