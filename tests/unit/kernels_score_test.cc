// CPU reference of ScoreBlocks against naive double-precision formulas, plus the
// Quest bound property on real keys and argument checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/score.h"
#include "kernels/summary.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::RandomFloats;
using testing::RandomTyped;
using testing::TypedArray;

struct Shape {
  uint32_t q_heads, kv_heads, head_dim, num_blocks;
};

// Naive per-head scores in double.
std::vector<double> NaiveSummaryScores(const ScoreArgs& a, const std::vector<float>& q, const TypedArray& lo,
                                       const TypedArray& hi) {
  const uint32_t G = a.num_q_heads / a.num_kv_heads;
  std::vector<double> s(size_t{a.num_q_heads} * a.num_blocks);
  for (uint32_t h = 0; h < a.num_q_heads; ++h) {
    for (uint32_t b = 0; b < a.num_blocks; ++b) {
      double acc = 0;
      for (uint32_t d = 0; d < a.head_dim; ++d) {
        const size_t i = (size_t{b} * a.num_kv_heads + h / G) * a.head_dim + d;
        const double qd = q[size_t{h} * a.head_dim + d];
        acc += a.mode == ScoreMode::kMinMax ? std::max(qd * lo.at(i), qd * hi.at(i)) : qd * lo.at(i);
      }
      s[size_t{h} * a.num_blocks + b] = acc;
    }
  }
  return s;
}

std::vector<double> NaiveCombine(const ScoreArgs& a, const std::vector<double>& s, double scale) {
  const size_t B = a.num_blocks;
  std::vector<double> out(B, a.combine == HeadCombine::kMax ? -INFINITY : 0.0);
  for (size_t h = 0; h < a.num_q_heads; ++h) {
    double mx = -INFINITY, z = 0;
    for (size_t b = 0; b < B; ++b) mx = std::max(mx, s[h * B + b]);
    for (size_t b = 0; b < B; ++b) z += std::exp(scale * (s[h * B + b] - mx));
    for (size_t b = 0; b < B; ++b) {
      if (a.combine == HeadCombine::kMax) {
        out[b] = std::max(out[b], s[h * B + b]);
      } else {
        out[b] += std::exp(scale * (s[h * B + b] - mx)) / z;
      }
    }
  }
  return out;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double rel, double abs,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], abs + rel * std::fabs(want[i])) << what << " at " << i;
}

TEST(KernelsScoreCpuTest, SummaryModesMatchNaive) {
  std::mt19937_64 rng(5);
  const Shape shapes[] = {{1, 1, 1, 1}, {4, 2, 7, 5}, {32, 8, 128, 64}, {8, 8, 100, 9}, {6, 2, 33, 17}, {4, 1, 16, 130}};
  for (const Shape& sh : shapes) {
    for (DType sd : testing::kAllDTypes) {
      for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean}) {
        for (HeadCombine comb : {HeadCombine::kSum, HeadCombine::kMax}) {
          SCOPED_TRACE(::testing::Message() << "H=" << sh.q_heads << " KVH=" << sh.kv_heads << " D=" << sh.head_dim
                                            << " B=" << sh.num_blocks << " sd=" << DTypeName(sd)
                                            << " mode=" << int(mode) << " comb=" << int(comb));
          const size_t n = size_t{sh.num_blocks} * sh.kv_heads * sh.head_dim;
          std::vector<float> q = RandomFloats(rng, size_t{sh.q_heads} * sh.head_dim, -2.f, 2.f);
          std::vector<float> lo_f = RandomFloats(rng, n, -1.f, 1.f), hi_f(n);
          for (size_t i = 0; i < n; ++i) hi_f[i] = lo_f[i] + static_cast<float>(rng() % 1000) / 500.f;
          TypedArray lo = testing::ToTyped(lo_f, sd), hi = testing::ToTyped(hi_f, sd);
          std::vector<float> scores(sh.num_blocks), head(size_t{sh.q_heads} * sh.num_blocks);
          ScoreArgs a;
          a.mode = mode;
          a.combine = comb;
          a.num_q_heads = sh.q_heads;
          a.num_kv_heads = sh.kv_heads;
          a.head_dim = sh.head_dim;
          a.num_blocks = sh.num_blocks;
          a.query = q.data();
          a.summary_dtype = sd;
          a.min_keys = lo.data();
          a.max_keys = hi.data();
          a.mean_keys = lo.data();
          a.scores = scores.data();
          a.head_scores = head.data();
          ASSERT_TRUE(ScoreBlocks(Backend::kCpu, a).ok());
          const std::vector<double> s = NaiveSummaryScores(a, q, lo, hi);
          ExpectClose(head, s, 1e-5, 1e-5, "head_scores");
          ExpectClose(scores, NaiveCombine(a, s, 1.0 / std::sqrt(double(sh.head_dim))), 1e-4, 1e-6, "scores");
        }
      }
    }
  }
}

TEST(KernelsScoreCpuTest, GqaUsesKvHeadOfTheGroup) {
  // 4 q heads over 2 KV heads: q heads 0,1 read KV head 0 and 2,3 read KV head 1.
  const uint32_t D = 2;
  std::vector<float> q = {1, 0, 0, 1, 1, 0, 0, 1};  // heads pick component 0, 1, 0, 1
  std::vector<float> mean = {10, 20, 30, 40};        // block 0: KV0 = (10,20), KV1 = (30,40)
  std::vector<float> scores(1), head(4);
  ScoreArgs a;
  a.mode = ScoreMode::kMean;
  a.combine = HeadCombine::kMax;
  a.num_q_heads = 4;
  a.num_kv_heads = 2;
  a.head_dim = D;
  a.num_blocks = 1;
  a.query = q.data();
  a.mean_keys = mean.data();
  a.scores = scores.data();
  a.head_scores = head.data();
  ASSERT_TRUE(ScoreBlocks(Backend::kCpu, a).ok());
  EXPECT_EQ(head, (std::vector<float>{10, 20, 30, 40}));
  EXPECT_EQ(scores[0], 40);
}

TEST(KernelsScoreCpuTest, MinMaxBoundsEveryTrueScore) {
  // Summaries built from real keys: the Quest score of a block is >= q . k for
  // every key of the block (also with bf16 summaries, rounded outward).
  std::mt19937_64 rng(6);
  const uint32_t H = 8, KVH = 2, D = 64, T = 16, B = 12;
  for (DType sd : {DType::kF32, DType::kBF16}) {
    std::vector<float> keys = RandomFloats(rng, size_t{B} * KVH * T * D, -1.f, 1.f);
    std::vector<float> q = RandomFloats(rng, size_t{H} * D, -1.f, 1.f);
    TypedArray mn = RandomTyped(rng, size_t{B} * KVH * D, sd), mx = RandomTyped(rng, size_t{B} * KVH * D, sd);
    SummaryArgs sa;
    sa.key_dtype = DType::kF32;
    sa.summary_dtype = sd;
    sa.num_kv_heads = KVH;
    sa.block_tokens = T;
    sa.head_dim = D;
    sa.num_blocks = B;
    sa.keys = keys.data();
    sa.min_out = mn.data();
    sa.max_out = mx.data();
    ASSERT_TRUE(BuildSummaries(Backend::kCpu, sa).ok());
    std::vector<float> scores(B), head(size_t{H} * B);
    ScoreArgs a;
    a.num_q_heads = H;
    a.num_kv_heads = KVH;
    a.head_dim = D;
    a.num_blocks = B;
    a.query = q.data();
    a.summary_dtype = sd;
    a.min_keys = mn.data();
    a.max_keys = mx.data();
    a.scores = scores.data();
    a.head_scores = head.data();
    ASSERT_TRUE(ScoreBlocks(Backend::kCpu, a).ok());
    for (uint32_t h = 0; h < H; ++h) {
      for (uint32_t b = 0; b < B; ++b) {
        for (uint32_t t = 0; t < T; ++t) {
          double dot = 0;
          for (uint32_t d = 0; d < D; ++d)
            dot += double(q[h * D + d]) * keys[((size_t{b} * KVH + h / (H / KVH)) * T + t) * D + d];
          ASSERT_GE(head[h * B + b] + 1e-4, dot) << "h=" << h << " b=" << b << " t=" << t;
        }
      }
    }
    // Softmax-sum scores of all blocks add up to the number of q heads.
    double total = 0;
    for (float s : scores) total += s;
    EXPECT_NEAR(total, H, 1e-4);
  }
}

TEST(KernelsScoreCpuTest, VqLutMatchesNaive) {
  std::mt19937_64 rng(7);
  struct VqShape {
    uint32_t q_heads, kv_heads, block_tokens, m, num_blocks, num_tokens;
  };
  const VqShape shapes[] = {{1, 1, 1, 1, 1, 1}, {4, 2, 8, 4, 3, 19}, {32, 8, 32, 16, 10, 320}, {8, 4, 5, 3, 7, 31}};
  for (const VqShape& v : shapes) {
    for (VqReduce red : {VqReduce::kMax, VqReduce::kLogSumExp}) {
      for (HeadCombine comb : {HeadCombine::kSum, HeadCombine::kMax}) {
        SCOPED_TRACE(::testing::Message() << "H=" << v.q_heads << " T=" << v.block_tokens << " M=" << v.m
                                          << " tokens=" << v.num_tokens << " lse=" << int(red));
        std::vector<uint8_t> codes =
            testing::RandomBytes(rng, size_t{v.num_blocks} * v.kv_heads * v.block_tokens * v.m);
        std::vector<float> lut = RandomFloats(rng, size_t{v.q_heads} * v.m * 256, -3.f, 3.f);
        std::vector<float> scores(v.num_blocks), head(size_t{v.q_heads} * v.num_blocks);
        ScoreArgs a;
        a.mode = ScoreMode::kVqLut;
        a.combine = comb;
        a.num_q_heads = v.q_heads;
        a.num_kv_heads = v.kv_heads;
        a.head_dim = 64;
        a.num_blocks = v.num_blocks;
        a.block_tokens = v.block_tokens;
        a.num_tokens = v.num_tokens;
        a.num_subspaces = v.m;
        a.codes = codes.data();
        a.lut = lut.data();
        a.vq_reduce = red;
        a.scores = scores.data();
        a.head_scores = head.data();
        ASSERT_TRUE(ScoreBlocks(Backend::kCpu, a).ok());
        const double scale = 1.0 / 8.0;
        const uint32_t G = v.q_heads / v.kv_heads;
        std::vector<double> s(head.size());
        for (uint32_t h = 0; h < v.q_heads; ++h) {
          for (uint32_t b = 0; b < v.num_blocks; ++b) {
            const uint32_t nt = std::min(v.block_tokens, v.num_tokens - b * v.block_tokens);
            std::vector<double> tok;
            for (uint32_t t = 0; t < nt; ++t) {
              double acc = 0;
              for (uint32_t m = 0; m < v.m; ++m) {
                const uint8_t c = codes[((size_t{b} * v.kv_heads + h / G) * v.block_tokens + t) * v.m + m];
                acc += lut[(size_t{h} * v.m + m) * 256 + c];
              }
              tok.push_back(acc);
            }
            double r = *std::max_element(tok.begin(), tok.end());
            if (red == VqReduce::kLogSumExp) {
              double l = 0;
              for (double x : tok) l += std::exp(scale * x);
              r = std::log(l) / scale;
            }
            s[size_t{h} * v.num_blocks + b] = r;
          }
        }
        ExpectClose(head, s, 1e-5, 1e-4, "head_scores");
        ExpectClose(scores, NaiveCombine(a, s, scale), 1e-4, 1e-6, "scores");
      }
    }
  }
}

TEST(KernelsScoreCpuTest, RejectsBadArguments) {
  std::vector<float> q(8, 1.f), mean(16, 1.f), scores(2);
  std::vector<uint8_t> codes(64);
  std::vector<float> lut(2 * 256);
  ScoreArgs good;
  good.mode = ScoreMode::kMean;
  good.num_q_heads = 2;
  good.num_kv_heads = 1;
  good.head_dim = 4;
  good.num_blocks = 2;
  good.query = q.data();
  good.mean_keys = mean.data();
  good.scores = scores.data();
  ASSERT_TRUE(ScoreBlocks(Backend::kCpu, good).ok());
  auto expect_bad = [&](auto mutate) {
    ScoreArgs a = good;
    mutate(a);
    EXPECT_EQ(ScoreBlocks(Backend::kCpu, a).code(), StatusCode::kInvalidArgument);
  };
  expect_bad([](ScoreArgs& a) { a.num_q_heads = 3, a.num_kv_heads = 2; });
  expect_bad([](ScoreArgs& a) { a.num_kv_heads = 0; });
  expect_bad([](ScoreArgs& a) { a.head_dim = 0; });
  expect_bad([](ScoreArgs& a) { a.num_blocks = 0; });
  expect_bad([](ScoreArgs& a) { a.num_blocks = kMaxScoreBlocks + 1; });
  expect_bad([](ScoreArgs& a) { a.scores = nullptr; });
  expect_bad([](ScoreArgs& a) { a.mean_keys = nullptr; });
  expect_bad([](ScoreArgs& a) { a.query = nullptr; });
  expect_bad([](ScoreArgs& a) { a.softmax_scale = -1.f; });
  expect_bad([](ScoreArgs& a) { a.softmax_scale = NAN; });
  expect_bad([](ScoreArgs& a) { a.mode = ScoreMode::kMinMax; });  // no min/max keys
  // VQ: num_tokens must match the block count.
  auto vq = [&](ScoreArgs& a) {
    a.mode = ScoreMode::kVqLut;
    a.num_q_heads = 1;
    a.codes = codes.data();
    a.lut = lut.data();
    a.block_tokens = 8;
    a.num_subspaces = 2;
    a.num_tokens = 16;
  };
  {
    ScoreArgs a = good;
    vq(a);
    EXPECT_TRUE(ScoreBlocks(Backend::kCpu, a).ok());
  }
  expect_bad([&](ScoreArgs& a) { vq(a), a.num_tokens = 8; });
  expect_bad([&](ScoreArgs& a) { vq(a), a.num_tokens = 17; });
  expect_bad([&](ScoreArgs& a) { vq(a), a.num_subspaces = 0; });
  expect_bad([&](ScoreArgs& a) { vq(a), a.block_tokens = 0; });
  expect_bad([&](ScoreArgs& a) { vq(a), a.lut = nullptr; });
}

}  // namespace
}  // namespace tierkv::kernels
