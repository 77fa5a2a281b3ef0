// CPU reference of TopK against a naive full sort, with ties, NaN, signed zeros,
// always-kept blocks (including more than k of them) and argument checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/topk.h"

namespace tierkv::kernels {
namespace {

// Sort by (always desc, score desc with NaN lowest and -0 == +0, index asc), take k, sort.
std::vector<uint32_t> NaiveTopK(const std::vector<float>& s, const std::vector<uint8_t>& always, uint32_t k) {
  std::vector<uint32_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0u);
  auto val = [&](uint32_t i) { return std::isnan(s[i]) ? -INFINITY : s[i]; };
  std::stable_sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) {
    const bool fa = !always.empty() && always[a], fb = !always.empty() && always[b];
    if (fa != fb) return fa;
    return val(a) > val(b);  // equal values keep index order (stable)
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<float> MakeScores(std::mt19937_64& rng, uint32_t n, int kind) {
  std::vector<float> s(n);
  std::uniform_real_distribution<float> u(-5.f, 5.f);
  for (auto& x : s) {
    switch (kind) {
      case 0:
        x = u(rng);
        break;
      case 1:  // heavy ties
        x = static_cast<float>(rng() % 4);
        break;
      case 2:  // all equal
        x = 1.5f;
        break;
      default: {  // specials
        const float specials[] = {NAN, -0.f, 0.f, INFINITY, -INFINITY, 1.f, -1.f};
        x = rng() % 2 ? specials[rng() % 7] : u(rng);
      }
    }
  }
  return s;
}

TEST(KernelsTopKCpuTest, MatchesNaiveSort) {
  std::mt19937_64 rng(8);
  for (uint32_t n : {1u, 2u, 7u, 100u, 1025u, 5000u}) {
    for (int kind = 0; kind < 4; ++kind) {
      for (int mask_kind = 0; mask_kind < 3; ++mask_kind) {
        const std::vector<float> s = MakeScores(rng, n, kind);
        std::vector<uint8_t> always;
        if (mask_kind == 1) {  // sinks + recent window
          always.assign(n, 0);
          for (uint32_t i = 0; i < n; ++i) always[i] = i < 2 || i + 4 >= n;
        } else if (mask_kind == 2) {  // random, often more than k
          always.resize(n);
          for (auto& a : always) a = rng() % 3 == 0 ? static_cast<uint8_t>(1 + rng() % 255) : 0;
        }
        for (uint32_t k : {1u, std::max(1u, n / 10), n / 2 + 1, n}) {
          if (k > n) continue;
          SCOPED_TRACE(::testing::Message() << "n=" << n << " kind=" << kind << " mask=" << mask_kind << " k=" << k);
          std::vector<uint32_t> idx(k, 0xdeadbeef);
          std::vector<float> sc(k, -7.f);
          TopKArgs a;
          a.scores = s.data();
          a.num_blocks = n;
          a.k = k;
          a.always = always.empty() ? nullptr : always.data();
          a.out_indices = idx.data();
          a.out_scores = sc.data();
          ASSERT_TRUE(TopK(Backend::kCpu, a).ok());
          ASSERT_EQ(idx, NaiveTopK(s, always, k));
          for (uint32_t i = 0; i < k; ++i) {
            if (std::isnan(s[idx[i]])) {
              ASSERT_TRUE(std::isnan(sc[i]));
            } else {
              ASSERT_EQ(sc[i], s[idx[i]]);
            }
          }
        }
      }
    }
  }
}

TEST(KernelsTopKCpuTest, AlwaysKeptBlocksCountInK) {
  // 10 blocks, sinks 0 and 1 and the recent window 9 always kept, k = 5: two more
  // by score. Scores put the best non-forced blocks at 4 and 6.
  std::vector<float> s = {0, 0, 1, 2, 9, 3, 8, 4, 5, -1};
  std::vector<uint8_t> always = {1, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  std::vector<uint32_t> idx(5);
  TopKArgs a;
  a.scores = s.data();
  a.num_blocks = 10;
  a.k = 5;
  a.always = always.data();
  a.out_indices = idx.data();
  ASSERT_TRUE(TopK(Backend::kCpu, a).ok());
  EXPECT_EQ(idx, (std::vector<uint32_t>{0, 1, 4, 6, 9}));
  // Ties broken by the lower index.
  std::vector<float> tied = {1, 3, 3, 3, 2};
  std::vector<uint32_t> two(2);
  a.scores = tied.data();
  a.num_blocks = 5;
  a.k = 2;
  a.always = nullptr;
  a.out_indices = two.data();
  ASSERT_TRUE(TopK(Backend::kCpu, a).ok());
  EXPECT_EQ(two, (std::vector<uint32_t>{1, 2}));
}

TEST(KernelsTopKCpuTest, RejectsBadArguments) {
  std::vector<float> s(4, 1.f);
  std::vector<uint32_t> idx(4);
  TopKArgs good;
  good.scores = s.data();
  good.num_blocks = 4;
  good.k = 2;
  good.out_indices = idx.data();
  ASSERT_TRUE(TopK(Backend::kCpu, good).ok());
  auto expect_bad = [&](auto mutate) {
    TopKArgs a = good;
    mutate(a);
    EXPECT_EQ(TopK(Backend::kCpu, a).code(), StatusCode::kInvalidArgument);
  };
  expect_bad([](TopKArgs& a) { a.k = 5; });
  expect_bad([](TopKArgs& a) { a.num_blocks = 0, a.k = 0; });
  expect_bad([](TopKArgs& a) { a.scores = nullptr; });
  expect_bad([](TopKArgs& a) { a.out_indices = nullptr; });
  TopKArgs zero = good;
  zero.k = 0;
  zero.out_indices = nullptr;
  EXPECT_TRUE(TopK(Backend::kCpu, zero).ok());
}

}  // namespace
}  // namespace tierkv::kernels
