// PRIVATE to kernels/: the CPU scoring loops on the widest vector unit this CPU
// has — AVX-512, else AVX2 with FMA, else the portable loops of cpu_math.h —
// chosen once per process (cpu_simd.cc). The vector variants are compiled in
// their own translation units with their own -m flags (cpu_simd_avx512.cc,
// cpu_simd_avx2.cc) and only run where the CPU reports those features, so the
// build stays runnable on any x86-64 and on other architectures.
//
// Results differ from the portable loops only by summation order and, for the
// exponential, by at most ~2 ulp (a Cephes-style polynomial): within the
// tolerances ScoreBlocks states (score.h: CPU and CUDA agree to ~1e-6 relative).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tierkv::kernels::internal {

// The block summary rows of blocks [0, nb) in [nb][kv][d] layout (lo: min or mean
// rows, hi: max rows or null), f32, or IEEE f16 when `f16` (converted as read). For block b, KV head g and each q head h of g's
// group (num_q_heads / num_kv_heads heads, queries [num_q_heads][d]):
//   hi != null: s[h * s_stride + b] = sum_i max(q_hi * lo_i, q_hi * hi_i)   (Quest bound)
//   hi == null: s[h * s_stride + b] = q_h . lo                            (mean key)
struct SummaryRowsArgs {
  const float* query = nullptr;
  size_t num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  const void* lo = nullptr;
  const void* hi = nullptr;
  bool f16 = false;
  size_t num_blocks = 0;
  float* s = nullptr;
  size_t s_stride = 0;
};
void SummaryRowScores(const SummaryRowsArgs& a);

// p[i] = exp(scale * (x[i] - shift)) for i in [0, n); returns the sum of the p[i].
// REQUIRES: finite inputs. Results below ~1e-38 may flush to 0.
float ExpShiftedSum(const float* x, size_t n, float scale, float shift, float* p);

// out[i] += c * x[i]
void ScaledAdd(float c, const float* x, float* out, size_t n);

// out[i] = in[i] (IEEE f16) as f32, exactly; the portable variant's conversion.
void F16RowToFloat(const uint16_t* in, size_t n, float* out);

// Which variant this process runs: "avx512", "avx2" or "portable".
const char* CpuSimdName();

// out[i] = in[i] clamped to +-65504 and rounded to f16 (rounding: 0 nearest even,
// 1 toward -inf, 2 toward +inf: kernels::Rounding's values).
void FloatsToF16(const float* in, size_t n, int rounding, uint16_t* out);

// Over tokens [0, count) of one head's keys [count][d] (elements of DType
// `dtype`: DType's values, 0 f16, 1 bf16, 2 f32), for each i in [0, d): mn[i] the
// min, mx[i] the max, sum[i] the sum in token order. Every variant gives the
// portable loop's values bit for bit (the same comparisons and adds, per element
// in the same order; +inf / -inf / 0 for count 0).
void ReduceKeyRows(const void* keys, int dtype, size_t d, size_t count, float* mn, float* mx, float* sum);

// The variants behind the dispatch (the tests compare them on this CPU).
struct CpuSimdOps {
  const char* name;
  void (*summary_rows)(const SummaryRowsArgs&);
  float (*exp_shifted_sum)(const float*, size_t, float, float, float*);
  void (*scaled_add)(float, const float*, float*, size_t);
  void (*floats_to_f16)(const float*, size_t, int, uint16_t*);
  void (*reduce_key_rows)(const void*, int, size_t, size_t, float*, float*, float*);
};
const CpuSimdOps& PortableOps();
// Null when this CPU (or this build) lacks the variant.
const CpuSimdOps* Avx2Ops();
const CpuSimdOps* Avx512Ops();

}  // namespace tierkv::kernels::internal
