// Lossy compression of KV tensors for the D tier (DESIGN §3 policies): int8 per
// group (symmetric or asymmetric) and 2-bit KIVI-style (keys per channel, values
// per token). Lossless remains the default; these run only when a namespace asks.
//
// A tensor is viewed as [rows][tokens][channels] (a block's K or V:
// [kv_heads][block_tokens][head_dim]). Groups of `group_size` consecutive
// elements share one scale (and one minimum when asymmetric):
//   kPerToken   groups run along channels:  group (r, t, c / G)   (KIVI values)
//   kPerChannel groups run along tokens:    group (r, t / G, c)   (KIVI keys)
// The last group of a row/column may be shorter. Group numbering:
//   kPerToken   g = (r * tokens + t) * ceil(channels / G) + c / G
//   kPerChannel g = (r * ceil(tokens / G) + t / G) * channels + c
//
// Codes (f32 arithmetic, round half to even; the same on kCpu and kCuda):
//   symmetric int8   scale = max|x| / 127,          q = clamp(rint(x / scale), -127, 127),  x' = q * scale
//   asymmetric       scale = (max - min) / L,       q = clamp(rint((x - min) / scale), 0, L), x' = min + q * scale
//                    with L = 255 (int8) or 3 (2-bit)
// ("/ scale" is computed as "* (1 / scale)"; a group whose scale is 0 encodes all
// zeros and decodes to its minimum exactly.)
// Error bound for finite inputs, scale of the element's group, f32 arithmetic:
//   |x - x'| <= scale * (1/2 + 2^-14) + 2^-22 * max(|min|, |x|)
// plus the output dtype's rounding of x' (half an ulp of f16/bf16).
//
// Packed format (one contiguous buffer, QuantLayout gives the offsets):
//   [0, code_bytes)       codes in element order (r, t, c). int8: one byte each
//                         (two's complement when symmetric, unsigned when
//                         asymmetric). 2-bit: element e at bits 2*(e%4)..2*(e%4)+1
//                         of byte e/4; unused bits of the last byte are 0.
//   [scales_offset, +4*G) f32 scale per group (scales_offset = code_bytes rounded up to 4)
//   [mins_offset, +4*G)   f32 minimum per group (asymmetric only)
// The buffer must be 4-byte aligned. Bytes: int8 asymmetric with G = 64 on bf16
// costs 1 + 8/64 bytes per element (1.78x smaller); 2-bit with G = 32 costs
// 0.25 + 8/32 (4x smaller).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {

enum class QuantBits : uint8_t { kInt2 = 2, kInt8 = 8 };
enum class QuantAxis : uint8_t { kPerToken = 0, kPerChannel = 1 };

struct QuantSpec {
  QuantBits bits = QuantBits::kInt8;
  bool symmetric = false;  // int8 only; 2-bit is always asymmetric
  QuantAxis axis = QuantAxis::kPerToken;
  uint32_t group_size = 64;  // in [1, 4096]
};

// KIVI (Liu et al. 2024): keys per channel, values per token, 2 bits, asymmetric.
inline QuantSpec KiviKeySpec(uint32_t group_size = 32) {
  return {QuantBits::kInt2, false, QuantAxis::kPerChannel, group_size};
}
inline QuantSpec KiviValueSpec(uint32_t group_size = 32) {
  return {QuantBits::kInt2, false, QuantAxis::kPerToken, group_size};
}

struct QuantShape {
  uint32_t rows = 0;      // in [1, 2^20]
  uint32_t tokens = 0;    // in [1, 2^20]
  uint32_t channels = 0;  // in [1, 2^20]; rows * tokens * channels <= 2^34
};

struct QuantLayout {
  size_t elements = 0;
  size_t num_groups = 0;
  size_t code_bytes = 0;
  size_t scales_offset = 0;
  size_t mins_offset = 0;  // == total_bytes when symmetric (no minimums)
  size_t total_bytes = 0;
};

// kInvalidArgument for a spec or shape out of range.
Result<QuantLayout> GetQuantLayout(const QuantSpec& spec, const QuantShape& shape);

struct QuantizeArgs {
  QuantSpec spec;
  QuantShape shape;
  DType dtype = DType::kBF16;  // element type of input
  const void* input = nullptr;  // [rows][tokens][channels]
  void* packed = nullptr;       // GetQuantLayout(...).total_bytes, 4-byte aligned
};

struct DequantizeArgs {
  QuantSpec spec;
  QuantShape shape;
  DType dtype = DType::kBF16;   // element type of output (rounded to nearest)
  const void* packed = nullptr;  // as written by Quantize with the same spec and shape
  void* output = nullptr;        // [rows][tokens][channels]
};

// kInvalidArgument for a bad spec/shape, null or misaligned buffers.
// kCuda is asynchronous on `stream`.
Status Quantize(Backend backend, const QuantizeArgs& args, GpuStream* stream = nullptr);
Status Dequantize(Backend backend, const DequantizeArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
