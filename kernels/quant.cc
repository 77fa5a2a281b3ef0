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

// Calls f(e0, gbase, per_channel_step) for every row (r, t): element c of the row
// is e0 + c and belongs to group gbase + (per-channel ? c : c / G).
template <typename F>
void ForEachRow(const QuantSpec& s, const QuantShape& sh, F&& f) {
  for (uint32_t r = 0; r < sh.rows; ++r) {
    for (uint32_t t = 0; t < sh.tokens; ++t)
      f((size_t{r} * sh.tokens + t) * sh.channels, internal::QRowGroupBase(s, sh.tokens, sh.channels, r, t));
  }
}

// Calls f(c0, c1, g0, dg) for spans of a row: channel c in [c0, c1) belongs to
// group g0 + (c - c0) * dg (per-token: one span per group, dg = 0; per-channel:
// one span for the whole row, dg = 1). Avoids a division per element.
template <typename F>
void ForEachSpan(bool per_token, uint32_t C, uint32_t G, uint64_t gbase, F&& f) {
  if (!per_token) {
    f(0u, C, gbase, uint64_t{1});
    return;
  }
  uint64_t g = gbase;
  for (uint32_t c0 = 0; c0 < C; c0 += G, ++g) f(c0, std::min(C, c0 + G), g, uint64_t{0});
}

// Per-group statistics: lo = min, hi = max (asymmetric) or hi = max |x|.
void GroupStats(const QuantizeArgs& a, size_t num_groups, std::vector<float>& lo, std::vector<float>& hi) {
  const QuantSpec& s = a.spec;
  const uint32_t C = a.shape.channels, G = s.group_size;
  const bool per_token = s.axis == QuantAxis::kPerToken;
  lo.assign(num_groups, std::numeric_limits<float>::infinity());
  hi.assign(num_groups, s.symmetric ? 0.f : -std::numeric_limits<float>::infinity());
  std::vector<float> row(C);
  ForEachRow(s, a.shape, [&](size_t e0, uint64_t gbase) {
    LoadRowAsFloat(a.input, a.dtype, e0, C, row.data());
    ForEachSpan(per_token, C, G, gbase, [&](uint32_t c0, uint32_t c1, uint64_t g0, uint64_t dg) {
      if (dg == 0) {  // one group: reduce into locals
        float l = lo[g0], h = hi[g0];
        for (uint32_t c = c0; c < c1; ++c) {
          if (s.symmetric) {
            h = std::max(h, std::fabs(row[c]));
          } else {
            l = std::min(l, row[c]);
            h = std::max(h, row[c]);
          }
        }
        lo[g0] = l;
        hi[g0] = h;
        return;
      }
      float* lg = lo.data() + g0 - c0;  // group of channel c is g0 + c - c0
      float* hg = hi.data() + g0 - c0;
      for (uint32_t c = c0; c < c1; ++c) {
        if (s.symmetric) {
          hg[c] = std::max(hg[c], std::fabs(row[c]));
        } else {
          lg[c] = std::min(lg[c], row[c]);
          hg[c] = std::max(hg[c], row[c]);
        }
      }
    });
  });
}

Status QuantizeCpu(const QuantizeArgs& a) {
  const QuantSpec& s = a.spec;
  const QuantLayout l = Layout(s, a.shape);
  const uint32_t C = a.shape.channels, G = s.group_size;
  const bool per_token = s.axis == QuantAxis::kPerToken;
  std::vector<float> lo, hi;
  GroupStats(a, l.num_groups, lo, hi);
  auto* out = static_cast<uint8_t*>(a.packed);
  auto* scales = reinterpret_cast<float*>(out + l.scales_offset);
  auto* mins = reinterpret_cast<float*>(out + l.mins_offset);
  std::vector<float> inv(l.num_groups);
  for (size_t g = 0; g < l.num_groups; ++g) {
    scales[g] = QScale(s.symmetric, s.bits, lo[g], hi[g]);
    inv[g] = QInverse(scales[g]);
    if (s.symmetric) lo[g] = 0.f;
    if (!s.symmetric) mins[g] = lo[g];
  }
  std::memset(out, 0, l.scales_offset);
  std::vector<float> row(C);
  std::vector<uint8_t> codes(C);
  ForEachRow(s, a.shape, [&](size_t e0, uint64_t gbase) {
    LoadRowAsFloat(a.input, a.dtype, e0, C, row.data());
    ForEachSpan(per_token, C, G, gbase, [&](uint32_t c0, uint32_t c1, uint64_t g0, uint64_t dg) {
      for (uint32_t c = c0; c < c1; ++c) {
        const uint64_t g = g0 + (c - c0) * dg;
        codes[c] = static_cast<uint8_t>(QEncode(row[c], lo[g], inv[g], s.symmetric, s.bits));
      }
    });
    if (s.bits == QuantBits::kInt8) {
      std::memcpy(out + e0, codes.data(), C);  // two's complement when symmetric
    } else {
      for (uint32_t c = 0; c < C; ++c) out[(e0 + c) / 4] |= static_cast<uint8_t>(codes[c] << (2 * ((e0 + c) % 4)));
    }
  });
  return OkStatus();
}

Status DequantizeCpu(const DequantizeArgs& a) {
  const QuantSpec& s = a.spec;
  const QuantLayout l = Layout(s, a.shape);
  const uint32_t C = a.shape.channels, G = s.group_size;
  const bool per_token = s.axis == QuantAxis::kPerToken;
  const auto* in = static_cast<const uint8_t*>(a.packed);
  const auto* scales = reinterpret_cast<const float*>(in + l.scales_offset);
  const auto* mins = reinterpret_cast<const float*>(in + l.mins_offset);
  std::vector<float> row(C);
  ForEachRow(s, a.shape, [&](size_t e0, uint64_t gbase) {
    ForEachSpan(per_token, C, G, gbase, [&](uint32_t c0, uint32_t c1, uint64_t g0, uint64_t dg) {
      for (uint32_t c = c0; c < c1; ++c) {
        const uint64_t g = g0 + (c - c0) * dg;
        const size_t e = e0 + c;
        int q;
        if (s.bits == QuantBits::kInt8) {
          q = s.symmetric ? static_cast<int>(static_cast<int8_t>(in[e])) : static_cast<int>(in[e]);
        } else {
          q = (in[e / 4] >> (2 * (e % 4))) & 3;
        }
        row[c] = QDecode(q, s.symmetric ? 0.f : mins[g], scales[g]);
      }
    });
    StoreRowFromFloat(a.output, a.dtype, e0, C, row.data());
  });
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
