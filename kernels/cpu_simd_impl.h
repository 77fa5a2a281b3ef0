// PRIVATE to kernels/: the body of one vector variant of cpu_simd.h, included
// once by each of cpu_simd_avx512.cc and cpu_simd_avx2.cc, which are compiled
// with their ISA's -m flags and define TIERKV_SIMD_NS.
//
// Everything here has internal linkage and includes no C++ library header: an
// inline library function instantiated in this translation unit would be
// compiled with AVX instructions, and the linker could keep that copy for the
// whole program (run on CPUs without them).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu_simd.h"

#ifndef TIERKV_SIMD_NS
#error "define TIERKV_SIMD_NS before including cpu_simd_impl.h"
#endif

namespace tierkv::kernels::internal::TIERKV_SIMD_NS {
namespace {

#if defined(__AVX512F__)
using V = __m512;
constexpr size_t kW = 16;
constexpr int kRows = 4;  // rows scored together (registers: 32)
inline V Load(const float* p) { return _mm512_loadu_ps(p); }
inline V Load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline V LoadBf16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
constexpr int kReduceGroup = 8;  // vectors reduced together: 3 x 8 accumulators of 32 registers
template <int kRound>
inline void StoreF16(uint16_t* p, V v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kRound | _MM_FROUND_NO_EXC));
}
inline void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V Splat(float x) { return _mm512_set1_ps(x); }
inline V Zero() { return _mm512_setzero_ps(); }
inline V Add(V a, V b) { return _mm512_add_ps(a, b); }
inline V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V Max(V a, V b) { return _mm512_max_ps(a, b); }
inline V Min(V a, V b) { return _mm512_min_ps(a, b); }
inline V MulAdd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline float Sum(V v) {
  // The halves added through a lane shuffle, then the 256-bit tree.
  const __m256 h = _mm512_castps512_ps256(_mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline V RoundNearest(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^n for the integral floats n in [-126, 127].
inline V Pow2(V n) {
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
// r where x >= limit, else 0.
inline V ZeroBelow(V r, V x, float limit) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, Splat(limit), _CMP_GE_OQ), r);
}
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
using V = __m256;
constexpr size_t kW = 8;
constexpr int kRows = 2;  // rows scored together (registers: 16)
inline V Load(const float* p) { return _mm256_loadu_ps(p); }
inline V Load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline V LoadBf16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
constexpr int kReduceGroup = 4;  // vectors reduced together: 3 x 4 accumulators of 16 registers
template <int kRound>
inline void StoreF16(uint16_t* p, V v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, kRound | _MM_FROUND_NO_EXC));
}
inline void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V Splat(float x) { return _mm256_set1_ps(x); }
inline V Zero() { return _mm256_setzero_ps(); }
inline V Add(V a, V b) { return _mm256_add_ps(a, b); }
inline V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V Max(V a, V b) { return _mm256_max_ps(a, b); }
inline V Min(V a, V b) { return _mm256_min_ps(a, b); }
inline V MulAdd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline float Sum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline V RoundNearest(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline V Pow2(V n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
inline V ZeroBelow(V r, V x, float limit) { return _mm256_and_ps(r, _mm256_cmp_ps(x, Splat(limit), _CMP_GE_OQ)); }
#else
#error "cpu_simd_impl.h needs AVX-512F, or AVX2, FMA and F16C"
#endif

inline float MaxF(float a, float b) { return a < b ? b : a; }
inline float Scalar(float x) { return x; }
inline float Scalar(uint16_t h) { return _cvtsh_ss(h); }
inline size_t MinZ(size_t a, size_t b) { return a < b ? a : b; }

// exp(x), Cephes' single-precision polynomial (~1-2 ulp); x below -87.3 (where
// 2^n would leave the normal range) gives 0, x above 88 is clamped.
inline V Exp(V x) {
  constexpr float kLow = -87.3f;
  const V xs = Min(Max(x, Splat(kLow)), Splat(88.f));
  const V n = RoundNearest(Mul(xs, Splat(1.44269504088896341f)));
  V r = MulAdd(n, Splat(-0.693359375f), xs);
  r = MulAdd(n, Splat(2.12194440e-4f), r);
  V p = Splat(1.9875691500e-4f);
  p = MulAdd(p, r, Splat(1.3981999507e-3f));
  p = MulAdd(p, r, Splat(8.3334519073e-3f));
  p = MulAdd(p, r, Splat(4.1665795894e-2f));
  p = MulAdd(p, r, Splat(1.6666665459e-1f));
  p = MulAdd(p, r, Splat(5.0000001201e-1f));
  p = MulAdd(p, Mul(r, r), Add(r, Splat(1.f)));
  return ZeroBelow(Mul(p, Pow2(n)), x, kLow);
}

// Scores of R rows (row r at lo + r * row_stride) for N q heads (queries
// q + j * D) into s[j * stride + r]: each query chunk loaded once serves R rows.
template <int R, int N, bool kMinMax, typename T>
inline void RowScores(const float* q, size_t D, const T* lo, const T* hi, size_t row_stride, float* s,
                      size_t stride) {
  V acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < N; ++j) acc[r][j] = Zero();
  const size_t Dv = D - D % kW;
  for (size_t d = 0; d < Dv; d += kW) {
    V l[R], u[R];
    for (int r = 0; r < R; ++r) {
      l[r] = Load(lo + r * row_stride + d);
      if constexpr (kMinMax) u[r] = Load(hi + r * row_stride + d);
    }
    for (int j = 0; j < N; ++j) {
      const V qv = Load(q + j * D + d);
      for (int r = 0; r < R; ++r) {
        if constexpr (kMinMax) {
          acc[r][j] = Add(acc[r][j], Max(Mul(qv, l[r]), Mul(qv, u[r])));
        } else {
          acc[r][j] = MulAdd(qv, l[r], acc[r][j]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const T* lr = lo + r * row_stride;
    const T* hr = kMinMax ? hi + r * row_stride : nullptr;
    for (int j = 0; j < N; ++j) {
      float t = Sum(acc[r][j]);
      for (size_t d = Dv; d < D; ++d) {
        const float qd = q[j * D + d];
        t += kMinMax ? MaxF(qd * Scalar(lr[d]), qd * Scalar(hr[d])) : qd * Scalar(lr[d]);
      }
      s[j * stride + r] = t;
    }
  }
}

// Blocks [b, b + R) of KV head g, q heads in groups of up to 4; `prefetch`: the
// next R blocks exist.
template <int R, bool kMinMax, typename T>
inline void BlockRows(const SummaryRowsArgs& a, size_t b, size_t g, bool prefetch) {
  const size_t D = a.head_dim, KV = a.num_kv_heads, G = a.num_q_heads / KV;
  const size_t row = (b * KV + g) * D;
  const T* lo = static_cast<const T*>(a.lo) + row;
  const T* hi = kMinMax ? static_cast<const T*>(a.hi) + row : nullptr;
  // The same rows of the next R blocks: read from DRAM when the summaries exceed
  // the caches (the hardware prefetcher does not follow R streams 4 KiB apart).
  for (int r = 0; prefetch && r < R; ++r) {
    for (size_t d = 0; d < D; d += 64 / sizeof(T)) {
      _mm_prefetch(reinterpret_cast<const char*>(lo + (R + r) * KV * D + d), _MM_HINT_T0);
      if constexpr (kMinMax) _mm_prefetch(reinterpret_cast<const char*>(hi + (R + r) * KV * D + d), _MM_HINT_T0);
    }
  }
  for (size_t h = g * G; h < (g + 1) * G; h += 4) {
    const float* q = a.query + h * D;
    float* s = a.s + h * a.s_stride + b;
    switch (MinZ(4, (g + 1) * G - h)) {
      case 4: RowScores<R, 4, kMinMax, T>(q, D, lo, hi, KV * D, s, a.s_stride); break;
      case 3: RowScores<R, 3, kMinMax, T>(q, D, lo, hi, KV * D, s, a.s_stride); break;
      case 2: RowScores<R, 2, kMinMax, T>(q, D, lo, hi, KV * D, s, a.s_stride); break;
      default: RowScores<R, 1, kMinMax, T>(q, D, lo, hi, KV * D, s, a.s_stride); break;
    }
  }
}

template <bool kMinMax, typename T>
void Rows(const SummaryRowsArgs& a) {
  size_t b = 0;
  for (; b + kRows <= a.num_blocks; b += kRows) {
    const bool prefetch = b + 2 * kRows <= a.num_blocks;
    for (size_t g = 0; g < a.num_kv_heads; ++g) BlockRows<kRows, kMinMax, T>(a, b, g, prefetch);
  }
  for (; b < a.num_blocks; ++b)
    for (size_t g = 0; g < a.num_kv_heads; ++g) BlockRows<1, kMinMax, T>(a, b, g, false);
}

void SummaryRows(const SummaryRowsArgs& a) {
  if (a.hi != nullptr) {
    a.f16 ? Rows<true, uint16_t>(a) : Rows<true, float>(a);
  } else {
    a.f16 ? Rows<false, uint16_t>(a) : Rows<false, float>(a);
  }
}

float ExpSum(const float* x, size_t n, float scale, float shift, float* p) {
  const V vs = Splat(scale);
  V acc = Zero();
  size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const V e = Exp(Mul(vs, Add(Load(x + i), Splat(-shift))));
    Store(p + i, e);
    acc = Add(acc, e);
  }
  float sum = Sum(acc);
  if (i < n) {  // the tail through one padded vector
    float in[kW], out[kW];
    for (size_t j = 0; j < kW; ++j) in[j] = i + j < n ? x[i + j] : shift;
    Store(out, Exp(Mul(vs, Add(Load(in), Splat(-shift)))));
    for (size_t j = 0; i + j < n; ++j) {
      p[i + j] = out[j];
      sum += out[j];
    }
  }
  return sum;
}

template <int kRound>
void ToF16(const float* in, size_t n, uint16_t* out) {
  const V lo = Splat(-65504.f), hi = Splat(65504.f);
  size_t i = 0;
  for (; i + kW <= n; i += kW) StoreF16<kRound>(out + i, Min(Max(Load(in + i), lo), hi));
  if (i < n) {  // the tail through one padded vector
    float tail[kW] = {};
    uint16_t half[kW];
    for (size_t j = 0; i + j < n; ++j) tail[j] = in[i + j];
    StoreF16<kRound>(half, Min(Max(Load(tail), lo), hi));
    for (size_t j = 0; i + j < n; ++j) out[i + j] = half[j];
  }
}

void FloatsToF16(const float* in, size_t n, int rounding, uint16_t* out) {
  switch (rounding) {
    case 1: ToF16<_MM_FROUND_TO_NEG_INF>(in, n, out); break;
    case 2: ToF16<_MM_FROUND_TO_POS_INF>(in, n, out); break;
    default: ToF16<_MM_FROUND_TO_NEAREST_INT>(in, n, out); break;
  }
}

void Axpy(float c, const float* x, float* out, size_t n) {
  const V vc = Splat(c);
  size_t i = 0;
  for (; i + kW <= n; i += kW) Store(out + i, MulAdd(vc, Load(x + i), Load(out + i)));
  for (; i < n; ++i) out[i] += c * x[i];
}

// Key element i of an array of DType kType (0 f16, 1 bf16, 2 f32), as a vector and as a scalar.
template <int kType>
inline V LoadKey(const void* p, size_t i) {
  if constexpr (kType == 2) {
    return Load(static_cast<const float*>(p) + i);
  } else if constexpr (kType == 0) {
    return Load(static_cast<const uint16_t*>(p) + i);
  } else {
    return LoadBf16(static_cast<const uint16_t*>(p) + i);
  }
}
template <int kType>
inline float ScalarKey(const void* p, size_t i) {
  if constexpr (kType == 2) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (kType == 0) {
    return _cvtsh_ss(static_cast<const uint16_t*>(p)[i]);
  } else {
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(uint32_t{static_cast<const uint16_t*>(p)[i]} << 16))));
  }
}

// Columns [c, c + N * kW) of keys [count][D]: Min(v, m) is v < m ? v : m and
// Max(v, m) is v > m ? v : m, the portable loop's comparisons.
template <int N, int kType>
inline void ReduceColumns(const void* keys, size_t D, size_t c, size_t count, float* mn, float* mx, float* sum) {
  V lo[N], hi[N], acc[N];
  for (int j = 0; j < N; ++j) {
    lo[j] = Splat(__builtin_inff());
    hi[j] = Splat(-__builtin_inff());
    acc[j] = Zero();
  }
  for (size_t t = 0; t < count; ++t) {
    for (int j = 0; j < N; ++j) {
      const V v = LoadKey<kType>(keys, t * D + c + j * kW);
      lo[j] = Min(v, lo[j]);
      hi[j] = Max(v, hi[j]);
      acc[j] = Add(acc[j], v);
    }
  }
  for (int j = 0; j < N; ++j) {
    Store(mn + c + j * kW, lo[j]);
    Store(mx + c + j * kW, hi[j]);
    Store(sum + c + j * kW, acc[j]);
  }
}

template <int kType>
void ReduceKeys(const void* keys, size_t D, size_t count, float* mn, float* mx, float* sum) {
  const size_t Dv = D - D % kW;
  size_t c = 0;
  for (; c + kReduceGroup * kW <= Dv; c += kReduceGroup * kW) ReduceColumns<kReduceGroup, kType>(keys, D, c, count, mn, mx, sum);
  for (; c < Dv; c += kW) ReduceColumns<1, kType>(keys, D, c, count, mn, mx, sum);
  for (; c < D; ++c) {
    float lo = __builtin_inff(), hi = -__builtin_inff(), acc = 0.f;
    for (size_t t = 0; t < count; ++t) {
      const float v = ScalarKey<kType>(keys, t * D + c);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      acc += v;
    }
    mn[c] = lo;
    mx[c] = hi;
    sum[c] = acc;
  }
}

void ReduceKeyRows(const void* keys, int dtype, size_t D, size_t count, float* mn, float* mx, float* sum) {
  switch (dtype) {
    case 0: return ReduceKeys<0>(keys, D, count, mn, mx, sum);
    case 1: return ReduceKeys<1>(keys, D, count, mn, mx, sum);
    default: return ReduceKeys<2>(keys, D, count, mn, mx, sum);
  }
}

}  // namespace

extern const CpuSimdOps kOps;
const CpuSimdOps kOps = {TIERKV_SIMD_NAME, &SummaryRows, &ExpSum, &Axpy, &FloatsToF16, &ReduceKeyRows};

}  // namespace tierkv::kernels::internal::TIERKV_SIMD_NS
