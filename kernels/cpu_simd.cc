// Portable variant and run-time dispatch of cpu_simd.h.
#include "kernels/cpu_simd.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include <vector>

#if TIERKV_CPU_SIMD
#include <cpuid.h>
#endif

#include "kernels/backend.h"
#include "kernels/f16_rows.h"
#include "kernels/half.h"

#include "kernels/cpu_math.h"

namespace tierkv::kernels::internal {
#if TIERKV_CPU_SIMD
namespace avx512 {
extern const CpuSimdOps kOps;
}
namespace avx2 {
extern const CpuSimdOps kOps;
}
#endif

namespace {

// f32 rows in place, f16 rows converted one at a time.
const float* RowF32(const void* rows, bool f16, size_t offset, size_t n, std::vector<float>* buf) {
  if (!f16) return static_cast<const float*>(rows) + offset;
  F16RowToFloat(static_cast<const uint16_t*>(rows) + offset, n, buf->data());
  return buf->data();
}

void PortableRows(const SummaryRowsArgs& a) {
  const size_t D = a.head_dim, KV = a.num_kv_heads, G = a.num_q_heads / KV;
  std::vector<float> lo_buf(D), hi_buf(D);
  for (size_t b = 0; b < a.num_blocks; ++b) {
    for (size_t g = 0; g < KV; ++g) {
      const size_t row = (b * KV + g) * D;
      const float* lo = RowF32(a.lo, a.f16, row, D, &lo_buf);
      const float* hi = a.hi != nullptr ? RowF32(a.hi, a.f16, row, D, &hi_buf) : nullptr;
      for (size_t h = g * G; h < (g + 1) * G; ++h) {
        const float* q = a.query + h * D;
        a.s[h * a.s_stride + b] = hi != nullptr ? BoundF32(q, lo, hi, D) : DotF32(q, lo, D);
      }
    }
  }
}

float PortableExpSum(const float* x, size_t n, float scale, float shift, float* p) {
  float sum = 0.f;
  for (size_t i = 0; i < n; ++i) sum += (p[i] = std::exp(scale * (x[i] - shift)));
  return sum;
}

void PortableToF16(const float* in, size_t n, int rounding, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) {
    StoreFromFloat(out, DType::kF16, i, std::clamp(in[i], -65504.f, 65504.f), static_cast<Rounding>(rounding));
  }
}

// Min, max and sum over `count` tokens of one head's keys [count][D], element
// type known at compile time so the inner loop vectorizes where the compiler can.
template <typename Load>
void ReduceHead(const void* keys, size_t D, size_t count, Load load, float* __restrict mn, float* __restrict mx,
                float* __restrict sum) {
  for (size_t d = 0; d < D; ++d) {
    mn[d] = std::numeric_limits<float>::infinity();
    mx[d] = -std::numeric_limits<float>::infinity();
    sum[d] = 0.f;
  }
  for (size_t t = 0; t < count; ++t) {
    for (size_t d = 0; d < D; ++d) {
      const float v = load(keys, t * D + d);
      mn[d] = v < mn[d] ? v : mn[d];
      mx[d] = v > mx[d] ? v : mx[d];
      sum[d] += v;
    }
  }
}

void PortableReduce(const void* keys, int dtype, size_t D, size_t count, float* mn, float* mx, float* sum) {
  switch (static_cast<DType>(dtype)) {
    case DType::kBF16:
      return ReduceHead(keys, D, count, [](const void* p, size_t i) {
        return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
      }, mn, mx, sum);
    case DType::kF16:
      return ReduceHead(keys, D, count, [](const void* p, size_t i) {
        return F16ToFloat(static_cast<const uint16_t*>(p)[i]);
      }, mn, mx, sum);
    case DType::kF32:
      return ReduceHead(keys, D, count, [](const void* p, size_t i) { return static_cast<const float*>(p)[i]; }, mn,
                        mx, sum);
  }
}

const CpuSimdOps kPortable = {"portable", &PortableRows, &PortableExpSum, &AxpyF32, &PortableToF16, &PortableReduce};

const CpuSimdOps& Widest() {
  if (const CpuSimdOps* o = Avx512Ops()) return *o;
  if (const CpuSimdOps* o = Avx2Ops()) return *o;
  return kPortable;
}

// The widest variant, or the one $TIERKV_CPU_SIMD names (for A/B runs and to rule
// the vector code out when debugging).
const CpuSimdOps& Chosen() {
  static const CpuSimdOps& ops = []() -> const CpuSimdOps& {
    const char* want = std::getenv("TIERKV_CPU_SIMD");
    if (want == nullptr || *want == '\0') return Widest();
    for (const CpuSimdOps* o : {&kPortable, Avx2Ops(), Avx512Ops()}) {
      if (o != nullptr && std::strcmp(o->name, want) == 0) return *o;
    }
    std::fprintf(stderr, "TIERKV_CPU_SIMD=%s: not one of portable, avx2, avx512 this CPU runs; using %s\n", want,
                 Widest().name);
    return Widest();
  }();
  return ops;
}

}  // namespace

// f16 -> f32 in integer and float steps without branches, so that the compiler
// vectorizes the loop (half.h's F16ToFloat is exact too but branches per
// element): normal values rebias the exponent, inf/NaN get f32's all-ones
// exponent, zeros and subnormals are their mantissa times 2^-24 (exact in f32).
// On AArch64 the hardware converts.
void F16RowToFloat(const uint16_t* in, size_t n, float* out) {
#if defined(__aarch64__)
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(reinterpret_cast<const __fp16*>(in)[i]);
#else
  for (size_t i = 0; i < n; ++i) {
    const uint32_t h = in[i], e = h & 0x7c00u;
    const uint32_t normal = ((h & 0x7fffu) << 13) + (112u << 23) + static_cast<uint32_t>(e == 0x7c00u) * (112u << 23);
    const float small = static_cast<float>(static_cast<int32_t>(h & 0x3ffu)) * 0x1p-24f;
    uint32_t small_bits;
    std::memcpy(&small_bits, &small, sizeof(small_bits));
    const uint32_t is_small = 0u - static_cast<uint32_t>(e == 0);  // all ones or zero
    const uint32_t bits = (small_bits & is_small) | (normal & ~is_small) | ((h & 0x8000u) << 16);
    std::memcpy(out + i, &bits, sizeof(bits));
  }
#endif
}

const CpuSimdOps& PortableOps() { return kPortable; }

#if TIERKV_CPU_SIMD
namespace {
// CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c";
// AVX's OS support is what the avx2 tests below check).
bool HasF16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
}
}  // namespace
#endif

const CpuSimdOps* Avx512Ops() {
#if TIERKV_CPU_SIMD
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
  if (ok) return &avx512::kOps;
#endif
  return nullptr;
}

const CpuSimdOps* Avx2Ops() {
#if TIERKV_CPU_SIMD
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
  if (ok) return &avx2::kOps;
#endif
  return nullptr;
}

void SummaryRowScores(const SummaryRowsArgs& a) { Chosen().summary_rows(a); }
float ExpShiftedSum(const float* x, size_t n, float scale, float shift, float* p) {
  return Chosen().exp_shifted_sum(x, n, scale, shift, p);
}
void ScaledAdd(float c, const float* x, float* out, size_t n) { Chosen().scaled_add(c, x, out, n); }
void FloatsToF16(const float* in, size_t n, int rounding, uint16_t* out) {
  Chosen().floats_to_f16(in, n, rounding, out);
}
void ReduceKeyRows(const void* keys, int dtype, size_t d, size_t count, float* mn, float* mx, float* sum) {
  Chosen().reduce_key_rows(keys, dtype, d, count, mn, mx, sum);
}
const char* CpuSimdName() { return Chosen().name; }

}  // namespace tierkv::kernels::internal

namespace tierkv::kernels {
std::string_view CpuVectorUnit() { return internal::CpuSimdName(); }

void FloatRowToF16(const float* in, size_t n, Rounding rounding, uint16_t* out) {
  internal::FloatsToF16(in, n, static_cast<int>(rounding), out);
}
void F16RowToFloatRow(const uint16_t* in, size_t n, float* out) { internal::F16RowToFloat(in, n, out); }
}  // namespace tierkv::kernels
