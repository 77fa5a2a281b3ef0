// CPU reference of Quantize/Dequantize: group statistics and codes against a
// naive double-precision formula, the documented error bound, the packed layout,
// KIVI's per-channel grouping of outlier key channels, and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/quant.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::RandomFloats;
using testing::TypedArray;

double HalfUlp(DType d, double x) {
  const double rel = d == DType::kF32 ? 0x1p-24 : d == DType::kF16 ? 0x1p-11 : 0x1p-8;
  return rel * std::fabs(x) + (d == DType::kF16 ? 0x1p-25 : 0.0);
}

struct Case {
  QuantSpec spec;
  QuantShape shape;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  const QuantShape shapes[] = {{1, 1, 1}, {2, 37, 100}, {8, 32, 128}, {3, 5, 7}};
  for (const QuantShape& sh : shapes) {
    for (uint32_t g : {1u, 4u, 32u, 64u}) {
      for (QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
        cases.push_back({{QuantBits::kInt8, true, axis, g}, sh});
        cases.push_back({{QuantBits::kInt8, false, axis, g}, sh});
        cases.push_back({{QuantBits::kInt2, false, axis, g}, sh});
      }
    }
  }
  return cases;
}

// members[g] = elements of group g, from the group formula written out naively.
std::vector<std::vector<size_t>> Members(const Case& c, size_t num_groups) {
  std::vector<std::vector<size_t>> out(num_groups);
  const uint32_t T = c.shape.tokens, C = c.shape.channels, G = c.spec.group_size;
  for (uint32_t r = 0; r < c.shape.rows; ++r)
    for (uint32_t t = 0; t < T; ++t)
      for (uint32_t ch = 0; ch < C; ++ch) {
        const uint64_t grp = c.spec.axis == QuantAxis::kPerToken
                                 ? (uint64_t{r} * T + t) * ((C + G - 1) / G) + ch / G
                                 : (uint64_t{r} * ((T + G - 1) / G) + t / G) * C + ch;
        out.at(grp).push_back((size_t{r} * T + t) * C + ch);
      }
  return out;
}

TEST(KernelsQuantCpuTest, MatchesNaiveFormulaAndErrorBound) {
  std::mt19937_64 rng(9);
  for (const Case& c : Cases()) {
    for (DType dt : testing::kAllDTypes) {
      SCOPED_TRACE(::testing::Message() << "bits=" << int(c.spec.bits) << " sym=" << c.spec.symmetric
                                        << " axis=" << int(c.spec.axis) << " G=" << c.spec.group_size << " shape="
                                        << c.shape.rows << "x" << c.shape.tokens << "x" << c.shape.channels
                                        << " dtype=" << DTypeName(dt));
      auto layout = GetQuantLayout(c.spec, c.shape);
      ASSERT_TRUE(layout.ok());
      const QuantLayout l = *layout;
      TypedArray x = testing::RandomTyped(rng, l.elements, dt, -3.f, 2.f);
      std::vector<uint32_t> packed_words((l.total_bytes + 3) / 4, 0xdeadbeef);
      auto* packed = reinterpret_cast<uint8_t*>(packed_words.data());
      ASSERT_TRUE(Quantize(Backend::kCpu, {c.spec, c.shape, dt, x.data(), packed}).ok());
      TypedArray y = testing::RandomTyped(rng, l.elements, dt);
      ASSERT_TRUE(Dequantize(Backend::kCpu, {c.spec, c.shape, dt, packed, y.data()}).ok());
      const auto* scales = reinterpret_cast<const float*>(packed + l.scales_offset);
      const auto* mins = reinterpret_cast<const float*>(packed + l.mins_offset);
      const double levels = c.spec.bits == QuantBits::kInt2 ? 3 : (c.spec.symmetric ? 127 : 255);
      const std::vector<std::vector<size_t>> members = Members(c, l.num_groups);
      for (uint64_t g = 0; g < l.num_groups; ++g) {
        const std::vector<size_t>& m = members[g];
        ASSERT_FALSE(m.empty());
        double lo = INFINITY, hi = -INFINITY, amax = 0;
        for (size_t e : m) {
          lo = std::min(lo, double(x.at(e)));
          hi = std::max(hi, double(x.at(e)));
          amax = std::max(amax, std::fabs(double(x.at(e))));
        }
        const double scale = c.spec.symmetric ? amax / levels : (hi - lo) / levels;
        const double mn = c.spec.symmetric ? 0.0 : lo;
        ASSERT_NEAR(scales[g], scale, 1e-6 * scale) << "group " << g;
        if (!c.spec.symmetric) {
          ASSERT_EQ(mins[g], float(lo));
        }
        for (size_t e : m) {
          const double xv = x.at(e);
          // Code: naive rounding, except within 1e-3 of a tie where f32 may differ.
          const double v = scale > 0 ? (xv - mn) / scale : 0.0;
          const double frac = v - std::floor(v);
          int code;
          if (c.spec.bits == QuantBits::kInt8) {
            code = c.spec.symmetric ? int(int8_t(packed[e])) : int(packed[e]);
          } else {
            code = (packed[e / 4] >> (2 * (e % 4))) & 3;
          }
          if (std::fabs(frac - 0.5) > 1e-3) {
            ASSERT_EQ(code, int(std::lround(v))) << "element " << e;
          }
          // Error bound of quant.h.
          const double bound = scale * (0.5 + 0x1p-14) + 0x1p-22 * std::max(std::fabs(mn), std::fabs(xv)) +
                               HalfUlp(dt, xv) + 1e-30;
          ASSERT_LE(std::fabs(xv - y.at(e)), bound) << "element " << e << " x=" << xv << " y=" << y.at(e);
        }
      }
      // Unused bits of the last 2-bit byte are zero.
      if (c.spec.bits == QuantBits::kInt2 && l.elements % 4 != 0) {
        ASSERT_EQ(packed[l.elements / 4] >> (2 * (l.elements % 4)), 0);
      }
    }
  }
}

TEST(KernelsQuantCpuTest, LayoutSizes) {
  // One bf16 KV head-block of 8 heads x 32 tokens x 128 dims.
  const QuantShape sh{8, 32, 128};
  auto kivi_k = GetQuantLayout(KiviKeySpec(32), sh);
  ASSERT_TRUE(kivi_k.ok());
  EXPECT_EQ(kivi_k->code_bytes, 8u * 32 * 128 / 4);
  EXPECT_EQ(kivi_k->num_groups, 8u * 1 * 128);
  EXPECT_EQ(kivi_k->total_bytes, kivi_k->code_bytes + 2 * 4 * kivi_k->num_groups);
  auto kivi_v = GetQuantLayout(KiviValueSpec(32), sh);
  ASSERT_TRUE(kivi_v.ok());
  EXPECT_EQ(kivi_v->num_groups, 8u * 32 * 4);
  auto int8s = GetQuantLayout({QuantBits::kInt8, true, QuantAxis::kPerToken, 64}, {1, 1, 5});
  ASSERT_TRUE(int8s.ok());
  EXPECT_EQ(int8s->code_bytes, 5u);
  EXPECT_EQ(int8s->scales_offset, 8u);
  EXPECT_EQ(int8s->total_bytes, 12u);  // no minimums when symmetric
}

TEST(KernelsQuantCpuTest, PerChannelKeysIsolateOutlierChannels) {
  // Keys with a few large channels (as real keys have): per-channel grouping keeps
  // the error of the other channels small, per-token grouping does not.
  std::mt19937_64 rng(10);
  const QuantShape sh{1, 64, 64};
  std::vector<float> k = RandomFloats(rng, 64 * 64, -1.f, 1.f);
  for (uint32_t t = 0; t < 64; ++t) k[t * 64 + 5] = 40.f + k[t * 64 + 5];
  TypedArray x = testing::ToTyped(k, DType::kF32);
  auto err_on_normal_channels = [&](const QuantSpec& spec) {
    auto l = GetQuantLayout(spec, sh);
    std::vector<uint32_t> packed((l->total_bytes + 3) / 4);
    std::vector<float> y(k.size());
    EXPECT_TRUE(Quantize(Backend::kCpu, {spec, sh, DType::kF32, x.data(), packed.data()}).ok());
    EXPECT_TRUE(Dequantize(Backend::kCpu, {spec, sh, DType::kF32, packed.data(), y.data()}).ok());
    double worst = 0;
    for (size_t i = 0; i < k.size(); ++i)
      if (i % 64 != 5) worst = std::max(worst, std::fabs(double(k[i]) - y[i]));
    return worst;
  };
  const double per_channel = err_on_normal_channels(KiviKeySpec(32));
  const double per_token = err_on_normal_channels(KiviValueSpec(32));
  EXPECT_LE(per_channel, 2.0 / 3 / 2 * 1.001);  // scale <= 2/3 within a channel group
  EXPECT_GT(per_token, 3 * per_channel);
}

TEST(KernelsQuantCpuTest, RejectsBadArguments) {
  std::vector<float> in(64, 1.f), out(64);
  std::vector<uint32_t> packed(64);
  const QuantShape sh{1, 8, 8};
  QuantizeArgs good{{QuantBits::kInt8, false, QuantAxis::kPerToken, 8}, sh, DType::kF32, in.data(), packed.data()};
  ASSERT_TRUE(Quantize(Backend::kCpu, good).ok());
  auto expect_bad = [&](auto mutate) {
    QuantizeArgs a = good;
    mutate(a);
    EXPECT_EQ(Quantize(Backend::kCpu, a).code(), StatusCode::kInvalidArgument);
  };
  expect_bad([](QuantizeArgs& a) { a.spec.bits = QuantBits::kInt2, a.spec.symmetric = true; });
  expect_bad([](QuantizeArgs& a) { a.spec.bits = static_cast<QuantBits>(4); });
  expect_bad([](QuantizeArgs& a) { a.spec.group_size = 0; });
  expect_bad([](QuantizeArgs& a) { a.spec.group_size = 5000; });
  expect_bad([](QuantizeArgs& a) { a.shape.tokens = 0; });
  expect_bad([](QuantizeArgs& a) { a.shape = {1u << 20, 1u << 20, 1u << 20}; });
  expect_bad([](QuantizeArgs& a) { a.input = nullptr; });
  expect_bad([](QuantizeArgs& a) { a.packed = nullptr; });
  expect_bad([](QuantizeArgs& a) { a.packed = reinterpret_cast<char*>(a.packed) + 1; });
  EXPECT_EQ(Dequantize(Backend::kCpu, {good.spec, sh, DType::kF32, packed.data(), nullptr}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::kernels
