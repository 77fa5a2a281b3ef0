// Every CPU vector variant this machine can run (cpu_simd.h: portable, AVX2,
// AVX-512) against naive double-precision formulas, on shapes whose head_dim,
// group size and block count leave tails for each vector width.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu_simd.h"
#include "kernels/half.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels::internal {
namespace {

std::vector<const CpuSimdOps*> Variants() {
  std::vector<const CpuSimdOps*> v = {&PortableOps()};
  if (Avx2Ops() != nullptr) v.push_back(Avx2Ops());
  if (Avx512Ops() != nullptr) v.push_back(Avx512Ops());
  return v;
}

TEST(KernelsCpuSimdTest, TheDispatchedVariantIsTheWidestThisCpuHas) {
  if (std::getenv("TIERKV_CPU_SIMD") != nullptr) GTEST_SKIP() << "TIERKV_CPU_SIMD chooses the variant";
  const char* want = Avx512Ops() != nullptr ? "avx512" : Avx2Ops() != nullptr ? "avx2" : "portable";
  EXPECT_STREQ(CpuSimdName(), want);
}

TEST(KernelsCpuSimdTest, SummaryRowsMatchNaive) {
  struct Shape {
    size_t q, kv, d, blocks;
  };
  const Shape shapes[] = {{1, 1, 1, 1}, {4, 2, 7, 5}, {32, 8, 128, 67}, {6, 2, 33, 9}, {12, 4, 24, 13}, {5, 1, 130, 3}};
  std::mt19937_64 rng(11);
  for (const CpuSimdOps* ops : Variants()) {
    for (const Shape& sh : shapes) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool minmax = variant & 1, f16 = variant & 2;
        SCOPED_TRACE(::testing::Message() << ops->name << " q=" << sh.q << " kv=" << sh.kv << " d=" << sh.d
                                          << " blocks=" << sh.blocks << " minmax=" << minmax << " f16=" << f16);
        const size_t n = sh.blocks * sh.kv * sh.d, stride = sh.blocks + 3;
        const std::vector<float> q = testing::RandomFloats(rng, sh.q * sh.d, -2.f, 2.f);
        std::vector<float> lo = testing::RandomFloats(rng, n, -1.f, 1.f);
        std::vector<float> hi(n);
        for (size_t i = 0; i < n; ++i) hi[i] = lo[i] + static_cast<float>(rng() % 1000) / 500.f;
        // f16 rows: the scores are those of the rows' f16 values.
        std::vector<uint16_t> lo16(n), hi16(n);
        for (size_t i = 0; f16 && i < n; ++i) {
          lo16[i] = FloatToF16(lo[i]);
          hi16[i] = FloatToF16(hi[i]);
          lo[i] = F16ToFloat(lo16[i]);
          hi[i] = F16ToFloat(hi16[i]);
        }
        const float kUnset = -12345.f;
        std::vector<float> s(sh.q * stride, kUnset);
        SummaryRowsArgs a;
        a.query = q.data();
        a.num_q_heads = sh.q;
        a.num_kv_heads = sh.kv;
        a.head_dim = sh.d;
        a.lo = f16 ? static_cast<const void*>(lo16.data()) : lo.data();
        a.hi = !minmax ? nullptr : f16 ? static_cast<const void*>(hi16.data()) : hi.data();
        a.f16 = f16;
        a.num_blocks = sh.blocks;
        a.s = s.data();
        a.s_stride = stride;
        ops->summary_rows(a);
        const size_t G = sh.q / sh.kv;
        for (size_t h = 0; h < sh.q; ++h) {
          for (size_t b = 0; b < stride; ++b) {
            if (b >= sh.blocks) {
              ASSERT_EQ(s[h * stride + b], kUnset) << "wrote past the blocks at h=" << h << " b=" << b;
              continue;
            }
            const size_t row = (b * sh.kv + h / G) * sh.d;
            double want = 0;
            for (size_t i = 0; i < sh.d; ++i) {
              const double qd = q[h * sh.d + i];
              want += minmax ? std::max(qd * lo[row + i], qd * hi[row + i]) : qd * lo[row + i];
            }
            ASSERT_NEAR(s[h * stride + b], want, 1e-5 + 1e-5 * std::fabs(want)) << "h=" << h << " b=" << b;
          }
        }
      }
    }
  }
}

// Relative error in units of the float spacing at the exact value.
double Ulps(float got, double want) {
  if (want == 0) return got == 0 ? 0 : std::numeric_limits<double>::infinity();
  const double spacing = std::nextafter(static_cast<float>(want), std::numeric_limits<float>::infinity()) -
                         static_cast<float>(want);
  return std::fabs(got - want) / spacing;
}

TEST(KernelsCpuSimdTest, ExpShiftedSumIsWithinTwoUlpsAndSumsWhatItWrites) {
  std::mt19937_64 rng(12);
  for (const CpuSimdOps* ops : Variants()) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{16}, size_t{37}, size_t{1000}}) {
      SCOPED_TRACE(::testing::Message() << ops->name << " n=" << n);
      std::vector<float> x = testing::RandomFloats(rng, n, -30.f, 5.f), p(n + 1, -1.f);
      const float scale = 0.37f, shift = 5.f;
      x[0] = shift;  // exp(0) = 1
      const float sum = ops->exp_shifted_sum(x.data(), n, scale, shift, p.data());
      double want_sum = 0, got_sum = 0;
      for (size_t i = 0; i < n; ++i) {
        const double want = std::exp(static_cast<double>(scale * (x[i] - shift)));
        EXPECT_LE(Ulps(p[i], want), 2.0) << "x=" << x[i] << " got " << p[i] << " want " << want;
        want_sum += want;
        got_sum += p[i];
      }
      EXPECT_EQ(p[n], -1.f) << "wrote past n";
      EXPECT_NEAR(sum, got_sum, 1e-5 * got_sum);
      EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum);
    }
    // Far below the shift: 0 or a tiny value, never garbage; never above 1.
    const float far[] = {-1e4f, -200.f, -100.f, -87.f, -80.f, 0.f};
    float out[6];
    ops->exp_shifted_sum(far, 6, 1.f, 0.f, out);
    for (int i = 0; i < 5; ++i) {
      EXPECT_GE(out[i], 0.f);
      EXPECT_LE(out[i], std::exp(far[i]) * 1.001 + 1e-38) << far[i];
    }
    EXPECT_EQ(out[5], 1.f);
  }
}

TEST(KernelsCpuSimdTest, F16RowToFloatIsExactForEveryBitPattern) {
  std::vector<uint16_t> in(65536);
  for (uint32_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint16_t>(i);
  std::vector<float> out(in.size());
  F16RowToFloat(in.data(), in.size(), out.data());
  for (uint32_t i = 0; i < in.size(); ++i) {
    const float want = F16ToFloat(in[i]);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(out[i])) << std::hex << i;
    } else {
      ASSERT_EQ(FloatBits(out[i]), FloatBits(want)) << std::hex << i;
    }
  }
}

TEST(KernelsCpuSimdTest, FloatsToF16MatchHalfHForEveryRoundingBitForBit) {
  std::mt19937_64 rng(14);
  std::vector<float> in;
  // Every magnitude from f16's subnormals to beyond its range, both signs, and
  // values exactly halfway between two f16s.
  for (int e = -30; e <= 20; ++e) {
    for (int i = 0; i < 40; ++i) {
      const float m = 1.f + static_cast<float>(rng() % 1000000) / 1000000.f;
      in.push_back(std::ldexp(m, e) * ((rng() & 1) ? -1.f : 1.f));
    }
  }
  for (uint32_t h : {0x3c00u, 0x0001u, 0x7bffu, 0x0400u}) in.push_back(F16ToFloat(static_cast<uint16_t>(h)) * 1.000244140625f);
  in.insert(in.end(), {0.f, -0.f, 65504.f, -65504.f, 65520.f, 1e30f, -1e30f, 5.9604645e-8f, -2.9802322e-8f});
  for (const CpuSimdOps* ops : Variants()) {
    for (int rounding = 0; rounding < 3; ++rounding) {
      std::vector<uint16_t> got(in.size() + 1, 0xabcd);
      ops->floats_to_f16(in.data(), in.size(), rounding, got.data());
      for (size_t i = 0; i < in.size(); ++i) {
        uint16_t want = 0;
        StoreFromFloat(&want, DType::kF16, 0, std::clamp(in[i], -65504.f, 65504.f), static_cast<Rounding>(rounding));
        ASSERT_EQ(got[i], want) << ops->name << " rounding " << rounding << " x=" << in[i];
      }
      EXPECT_EQ(got[in.size()], 0xabcd) << "wrote past n";
    }
  }
}

TEST(KernelsCpuSimdTest, ScaledAddMatchesScalar) {
  std::mt19937_64 rng(13);
  for (const CpuSimdOps* ops : Variants()) {
    for (size_t n : {size_t{1}, size_t{15}, size_t{64}, size_t{101}}) {
      const std::vector<float> x = testing::RandomFloats(rng, n, -3.f, 3.f);
      std::vector<float> out = testing::RandomFloats(rng, n, -3.f, 3.f), want = out;
      ops->scaled_add(0.75f, x.data(), out.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], want[i] + 0.75f * x[i], 1e-6f) << ops->name << " " << i;
    }
  }
}

TEST(KernelsCpuSimdTest, ReduceKeyRowsEqualsPortableBitForBit) {
  std::mt19937_64 rng(15);
  for (const DType dtype : {DType::kF16, DType::kBF16, DType::kF32}) {
    for (size_t d : {size_t{1}, size_t{15}, size_t{16}, size_t{100}, size_t{128}, size_t{130}, size_t{256}}) {
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{32}}) {
        std::vector<float> values = testing::RandomFloats(rng, d * count, -300.f, 300.f);
        // Zeros of both signs and infinities where they fit.
        for (size_t i = 0; i + 3 < values.size(); i += 37) {
          values[i] = 0.f, values[i + 1] = -0.f, values[i + 2] = std::numeric_limits<float>::infinity();
        }
        std::vector<std::byte> keys(values.size() * DTypeBytes(dtype) + 64);
        for (size_t i = 0; i < values.size(); ++i) StoreFromFloat(keys.data(), dtype, i, values[i]);
        std::vector<float> want(3 * d);
        PortableOps().reduce_key_rows(keys.data(), static_cast<int>(dtype), d, count, want.data(), want.data() + d,
                                      want.data() + 2 * d);
        for (size_t i = 0; i < d && count > 0; ++i) {  // the portable loop against the definition
          float lo = std::numeric_limits<float>::infinity(), sum = 0.f;
          for (size_t t = 0; t < count; ++t) lo = std::min(lo, LoadAsFloat(keys.data(), dtype, t * d + i)), sum += LoadAsFloat(keys.data(), dtype, t * d + i);
          ASSERT_EQ(want[i], lo);
          ASSERT_EQ(want[2 * d + i], sum);
        }
        for (const CpuSimdOps* ops : Variants()) {
          std::vector<float> got(3 * d + 1, 12345.f);
          ops->reduce_key_rows(keys.data(), static_cast<int>(dtype), d, count, got.data(), got.data() + d,
                               got.data() + 2 * d);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
              << ops->name << " dtype " << static_cast<int>(dtype) << " d " << d << " count " << count;
          EXPECT_EQ(got[3 * d], 12345.f) << "wrote past the sums";
        }
      }
    }
  }
}

}  // namespace
}  // namespace tierkv::kernels::internal
