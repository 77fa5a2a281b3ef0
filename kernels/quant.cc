// Validation, layout, dispatch and the CPU reference of quant.h.
#include "kernels/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/half.h"
#include "kernels/launch.h"
#include "kernels/quant_math.h"

namespace tierkv::kernels {
namespace {

using internal::QDecode;
using internal::QEncode;
using internal::QInverse;
using internal::QScale;

Status ValidateSpec(const QuantSpec& s, const QuantShape& sh) {
  auto bad = [](const std::string& m) { return InvalidArgument("Quantize: " + m); };
  if (s.bits != QuantBits::kInt8 && s.bits != QuantBits::kInt2) return bad("bits must be 8 or 2");
  if (s.bits == QuantBits::kInt2 && s.symmetric) return bad("2-bit quantization is asymmetric only");
  if (s.axis != QuantAxis::kPerToken && s.axis != QuantAxis::kPerChannel) return bad("unknown axis");
  if (s.group_size == 0 || s.group_size > 4096) return bad("group_size must be in [1, 4096]");
  constexpr uint32_t kMaxDim = 1u << 20;
  if (sh.rows == 0 || sh.tokens == 0 || sh.channels == 0 || sh.rows > kMaxDim || sh.tokens > kMaxDim ||
      sh.channels > kMaxDim)
    return bad("shape dimensions must be in [1, 2^20]");
  if (uint64_t{sh.rows} * sh.tokens * sh.channels > (uint64_t{1} << 34)) return bad("more than 2^34 elements");
  return OkStatus();
}

QuantLayout Layout(const QuantSpec& s, const QuantShape& sh) {
  QuantLayout l;
  const uint64_t G = s.group_size;
  l.elements = size_t{sh.rows} * sh.tokens * sh.channels;
  l.num_groups = s.axis == QuantAxis::kPerToken ? size_t{sh.rows} * sh.tokens * ((sh.channels + G - 1) / G)
                                                : size_t{sh.rows} * ((sh.tokens + G - 1) / G) * sh.channels;
  l.code_bytes = s.bits == QuantBits::kInt8 ? l.elements : (l.elements + 3) / 4;
  l.scales_offset = (l.code_bytes + 3) & ~size_t{3};
  l.mins_offset = l.scales_offset + 4 * l.num_groups;
  l.total_bytes = l.mins_offset + (s.symmetric ? 0 : 4 * l.num_groups);
  return l;
}

Status ValidateBuffers(const void* in, const void* out, const void* packed, const char* what) {
  if (in == nullptr || out == nullptr) return InvalidArgument(std::string(what) + ": null buffer");
  if (reinterpret_cast<uintptr_t>(packed) % 4 != 0)
    return InvalidArgument(std::string(what) + ": packed buffer must be 4-byte aligned");
  return OkStatus();
}

// Per-group statistics: lo = min, hi = max (asymmetric) or hi = max |x|.
void GroupStats(const QuantizeArgs& a, std::vector<float>& lo, std::vector<float>& hi) {
  const QuantSpec& s = a.spec;
  const uint32_t R = a.shape.rows, T = a.shape.tokens, C = a.shape.channels;
  lo.assign(Layout(s, a.shape).num_groups, std::numeric_limits<float>::infinity());
  hi.assign(lo.size(), s.symmetric ? 0.f : -std::numeric_limits<float>::infinity());
  std::vector<float> row(C);
  for (uint32_t r = 0; r < R; ++r) {
    for (uint32_t t = 0; t < T; ++t) {
      LoadRowAsFloat(a.input, a.dtype, (size_t{r} * T + t) * C, C, row.data());
      for (uint32_t c = 0; c < C; ++c) {
        const uint64_t g = internal::QGroup(s, T, C, r, t, c);
        const float x = row[c];
        if (s.symmetric) {
          hi[g] = std::max(hi[g], std::fabs(x));
        } else {
          lo[g] = std::min(lo[g], x);
          hi[g] = std::max(hi[g], x);
        }
      }
    }
  }
}

Status QuantizeCpu(const QuantizeArgs& a) {
  const QuantSpec& s = a.spec;
  const QuantLayout l = Layout(s, a.shape);
  const uint32_t R = a.shape.rows, T = a.shape.tokens, C = a.shape.channels;
  std::vector<float> lo, hi;
  GroupStats(a, lo, hi);
  auto* out = static_cast<uint8_t*>(a.packed);
  auto* scales = reinterpret_cast<float*>(out + l.scales_offset);
  auto* mins = reinterpret_cast<float*>(out + l.mins_offset);
  std::vector<float> inv(l.num_groups);
  for (size_t g = 0; g < l.num_groups; ++g) {
    scales[g] = QScale(s.symmetric, s.bits, lo[g], hi[g]);
    inv[g] = QInverse(scales[g]);
    if (!s.symmetric) mins[g] = lo[g];
  }
  std::memset(out, 0, l.scales_offset);
  std::vector<float> row(C);
  for (uint32_t r = 0; r < R; ++r) {
    for (uint32_t t = 0; t < T; ++t) {
      const size_t e0 = (size_t{r} * T + t) * C;
      LoadRowAsFloat(a.input, a.dtype, e0, C, row.data());
      for (uint32_t c = 0; c < C; ++c) {
        const uint64_t g = internal::QGroup(s, T, C, r, t, c);
        const int q = QEncode(row[c], s.symmetric ? 0.f : lo[g], inv[g], s.symmetric, s.bits);
        const size_t e = e0 + c;
        if (s.bits == QuantBits::kInt8) {
          out[e] = static_cast<uint8_t>(q);  // two's complement when symmetric
        } else {
          out[e / 4] |= static_cast<uint8_t>(q << (2 * (e % 4)));
        }
      }
    }
  }
  return OkStatus();
}

Status DequantizeCpu(const DequantizeArgs& a) {
  const QuantSpec& s = a.spec;
  const QuantLayout l = Layout(s, a.shape);
  const uint32_t R = a.shape.rows, T = a.shape.tokens, C = a.shape.channels;
  const auto* in = static_cast<const uint8_t*>(a.packed);
  const auto* scales = reinterpret_cast<const float*>(in + l.scales_offset);
  const auto* mins = reinterpret_cast<const float*>(in + l.mins_offset);
  for (uint32_t r = 0; r < R; ++r) {
    for (uint32_t t = 0; t < T; ++t) {
      const size_t e0 = (size_t{r} * T + t) * C;
      for (uint32_t c = 0; c < C; ++c) {
        const uint64_t g = internal::QGroup(s, T, C, r, t, c);
        const size_t e = e0 + c;
        int q;
        if (s.bits == QuantBits::kInt8) {
          q = s.symmetric ? static_cast<int>(static_cast<int8_t>(in[e])) : static_cast<int>(in[e]);
        } else {
          q = (in[e / 4] >> (2 * (e % 4))) & 3;
        }
        StoreFromFloat(a.output, a.dtype, e, QDecode(q, s.symmetric ? 0.f : mins[g], scales[g]));
      }
    }
  }
  return OkStatus();
}

}  // namespace

Result<QuantLayout> GetQuantLayout(const QuantSpec& spec, const QuantShape& shape) {
  RETURN_IF_ERROR(ValidateSpec(spec, shape));
  return Layout(spec, shape);
}

Status Quantize(Backend backend, const QuantizeArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "Quantize"));
  RETURN_IF_ERROR(ValidateSpec(args.spec, args.shape));
  RETURN_IF_ERROR(ValidateBuffers(args.input, args.packed, args.packed, "Quantize"));
  if (backend == Backend::kCuda) return internal::QuantizeCuda(args, Layout(args.spec, args.shape), stream);
  return QuantizeCpu(args);
}

Status Dequantize(Backend backend, const DequantizeArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "Dequantize"));
  RETURN_IF_ERROR(ValidateSpec(args.spec, args.shape));
  RETURN_IF_ERROR(ValidateBuffers(args.packed, args.output, args.packed, "Dequantize"));
  if (backend == Backend::kCuda) return internal::DequantizeCuda(args, Layout(args.spec, args.shape), stream);
  return DequantizeCpu(args);
}

}  // namespace tierkv::kernels
