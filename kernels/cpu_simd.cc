// Portable variant and run-time dispatch of cpu_simd.h.
#include "kernels/cpu_simd.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/backend.h"

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

void PortableRows(const SummaryRowsArgs& a) {
  const size_t D = a.head_dim, KV = a.num_kv_heads, G = a.num_q_heads / KV;
  for (size_t b = 0; b < a.num_blocks; ++b) {
    for (size_t g = 0; g < KV; ++g) {
      const size_t row = (b * KV + g) * D;
      for (size_t h = g * G; h < (g + 1) * G; ++h) {
        const float* q = a.query + h * D;
        a.s[h * a.s_stride + b] = a.hi != nullptr ? BoundF32(q, a.lo + row, a.hi + row, D) : DotF32(q, a.lo + row, D);
      }
    }
  }
}

float PortableExpSum(const float* x, size_t n, float scale, float shift, float* p) {
  float sum = 0.f;
  for (size_t i = 0; i < n; ++i) sum += (p[i] = std::exp(scale * (x[i] - shift)));
  return sum;
}

const CpuSimdOps kPortable = {"portable", &PortableRows, &PortableExpSum, &AxpyF32};

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

const CpuSimdOps& PortableOps() { return kPortable; }

const CpuSimdOps* Avx512Ops() {
#if TIERKV_CPU_SIMD
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (ok) return &avx512::kOps;
#endif
  return nullptr;
}

const CpuSimdOps* Avx2Ops() {
#if TIERKV_CPU_SIMD
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (ok) return &avx2::kOps;
#endif
  return nullptr;
}

void SummaryRowScores(const SummaryRowsArgs& a) { Chosen().summary_rows(a); }
float ExpShiftedSum(const float* x, size_t n, float scale, float shift, float* p) {
  return Chosen().exp_shifted_sum(x, n, scale, shift, p);
}
void ScaledAdd(float c, const float* x, float* out, size_t n) { Chosen().scaled_add(c, x, out, n); }
const char* CpuSimdName() { return Chosen().name; }

}  // namespace tierkv::kernels::internal

namespace tierkv::kernels {
std::string_view CpuVectorUnit() { return internal::CpuSimdName(); }
}  // namespace tierkv::kernels
