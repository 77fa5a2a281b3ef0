// CPU reference of BuildSummaries against a naive double-precision formula.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/summary.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::RandomTyped;
using testing::TypedArray;

// v stored in dtype d with the given rounding, read back.
float Rounded(float v, DType d, Rounding r) {
  uint32_t buf[1];
  StoreFromFloat(buf, d, 0, v, r);
  return LoadAsFloat(buf, d, 0);
}

// Relative spacing of the summary dtype (one ulp at 1.0).
double Ulp(DType d) { return d == DType::kF32 ? 0x1p-23 : d == DType::kF16 ? 0x1p-10 : 0x1p-7; }

struct Shape {
  uint32_t kv_heads, block_tokens, head_dim, num_blocks;
  bool with_counts;
  bool with_values;  // blocks hold K then V (stride = 2x key bytes)
};

void CheckShape(const Shape& s, DType kd, DType sd, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "kd=" << DTypeName(kd) << " sd=" << DTypeName(sd) << " heads=" << s.kv_heads
                                    << " T=" << s.block_tokens << " D=" << s.head_dim);
  const size_t per_head = size_t{s.block_tokens} * s.head_dim;
  const size_t key_elems = s.kv_heads * per_head;
  const size_t block_elems = s.with_values ? 2 * key_elems : key_elems;
  TypedArray keys = RandomTyped(rng, block_elems * s.num_blocks, kd, -3.f, 5.f);
  std::vector<uint32_t> counts(s.num_blocks, s.block_tokens);
  if (s.with_counts) {
    for (auto& c : counts) c = 1 + static_cast<uint32_t>(rng() % s.block_tokens);
  }
  const size_t out_elems = size_t{s.num_blocks} * s.kv_heads * s.head_dim;
  TypedArray mn = RandomTyped(rng, out_elems, sd), mx = RandomTyped(rng, out_elems, sd),
             mean = RandomTyped(rng, out_elems, sd);
  SummaryArgs a;
  a.key_dtype = kd;
  a.summary_dtype = sd;
  a.num_kv_heads = s.kv_heads;
  a.block_tokens = s.block_tokens;
  a.head_dim = s.head_dim;
  a.num_blocks = s.num_blocks;
  a.keys = keys.data();
  a.block_stride_bytes = s.with_values ? block_elems * DTypeBytes(kd) : 0;
  a.token_counts = s.with_counts ? counts.data() : nullptr;
  a.min_out = mn.data();
  a.max_out = mx.data();
  a.mean_out = mean.data();
  ASSERT_TRUE(BuildSummaries(Backend::kCpu, a).ok());
  for (uint32_t b = 0; b < s.num_blocks; ++b) {
    for (uint32_t h = 0; h < s.kv_heads; ++h) {
      for (uint32_t d = 0; d < s.head_dim; ++d) {
        double lo = INFINITY, hi = -INFINITY, sum = 0, maxabs = 0;
        for (uint32_t t = 0; t < counts[b]; ++t) {
          const double x = keys.at(b * block_elems + h * per_head + size_t{t} * s.head_dim + d);
          lo = std::min(lo, x);
          hi = std::max(hi, x);
          sum += x;
          maxabs = std::max(maxabs, std::fabs(x));
        }
        const size_t o = (size_t{b} * s.kv_heads + h) * s.head_dim + d;
        ASSERT_EQ(mn.at(o), Rounded(static_cast<float>(lo), sd, Rounding::kDown)) << b << " " << h << " " << d;
        ASSERT_EQ(mx.at(o), Rounded(static_cast<float>(hi), sd, Rounding::kUp));
        ASSERT_LE(mn.at(o), lo);  // the bound property survives narrow storage
        ASSERT_GE(mx.at(o), hi);
        const double want = sum / counts[b];
        const double tol = 1e-6 * counts[b] * maxabs + Ulp(sd) * std::fabs(want);
        ASSERT_NEAR(mean.at(o), want, tol);
      }
    }
  }
}

TEST(KernelsSummaryCpuTest, MatchesNaiveFormulas) {
  std::mt19937_64 rng(3);
  const Shape shapes[] = {{1, 1, 1, 1, false, false},
                          {2, 5, 7, 3, true, true},
                          {8, 32, 128, 4, true, true},
                          {3, 16, 100, 2, false, false}};
  for (const Shape& s : shapes) {
    for (DType kd : testing::kAllDTypes) {
      for (DType sd : testing::kAllDTypes) CheckShape(s, kd, sd, rng);
    }
  }
}

TEST(KernelsSummaryCpuTest, OutputsAreOptional) {
  std::mt19937_64 rng(4);
  TypedArray keys = RandomTyped(rng, 2 * 4 * 8, DType::kF32);
  std::vector<float> mean(2 * 8, -7.f);
  SummaryArgs a;
  a.key_dtype = DType::kF32;
  a.num_kv_heads = 2;
  a.block_tokens = 4;
  a.head_dim = 8;
  a.num_blocks = 1;
  a.keys = keys.data();
  a.mean_out = mean.data();
  ASSERT_TRUE(BuildSummaries(Backend::kCpu, a).ok());
  EXPECT_NE(mean[0], -7.f);
}

TEST(KernelsSummaryCpuTest, RejectsBadArguments) {
  std::vector<float> keys(64, 1.f), out(64);
  std::vector<uint32_t> counts = {0};
  SummaryArgs good;
  good.key_dtype = DType::kF32;
  good.num_kv_heads = 1;
  good.block_tokens = 4;
  good.head_dim = 8;
  good.num_blocks = 1;
  good.keys = keys.data();
  good.min_out = out.data();
  ASSERT_TRUE(BuildSummaries(Backend::kCpu, good).ok());
  auto expect_bad = [&](auto mutate) {
    SummaryArgs a = good;
    mutate(a);
    EXPECT_EQ(BuildSummaries(Backend::kCpu, a).code(), StatusCode::kInvalidArgument);
  };
  expect_bad([](SummaryArgs& a) { a.keys = nullptr; });
  expect_bad([](SummaryArgs& a) { a.min_out = nullptr; });
  expect_bad([](SummaryArgs& a) { a.num_kv_heads = 0; });
  expect_bad([](SummaryArgs& a) { a.head_dim = ModelLimits::kMaxHeadDim + 1; });
  expect_bad([](SummaryArgs& a) { a.block_tokens = 0; });
  expect_bad([](SummaryArgs& a) { a.block_stride_bytes = 16; });
  expect_bad([&](SummaryArgs& a) { a.token_counts = counts.data(); });
  counts[0] = 5;
  expect_bad([&](SummaryArgs& a) { a.token_counts = counts.data(); });
}

}  // namespace
}  // namespace tierkv::kernels
