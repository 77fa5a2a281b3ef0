// CPU reference of DecodeAttention against a naive double-precision softmax
// attention, over pointer and slot tables, partial blocks, GQA, every dtype.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/attention.h"
#include "kernels/launch.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::RandomFloats;
using testing::TypedArray;

struct Shape {
  uint32_t q_heads, kv_heads, head_dim, block_tokens, slots, entries;
};

// Naive attention in double over the table.
void Naive(const AttentionArgs& a, const TypedArray& arena, const std::vector<uint32_t>& slots,
           const std::vector<uint32_t>& counts, const std::vector<float>& q, std::vector<double>* out,
           std::vector<double>* lse) {
  const size_t D = a.head_dim, T = a.block_tokens, G = a.num_q_heads / a.num_kv_heads;
  const size_t slot_elems = 2 * size_t{a.num_kv_heads} * T * D;
  const double scale = 1.0 / std::sqrt(double(D));
  out->assign(size_t{a.num_q_heads} * D, 0.0);
  lse->assign(a.num_q_heads, 0.0);
  for (size_t h = 0; h < a.num_q_heads; ++h) {
    const size_t g = h / G;
    std::vector<double> s;
    std::vector<size_t> vrow;
    for (size_t i = 0; i < slots.size(); ++i) {
      for (size_t t = 0; t < counts[i]; ++t) {
        const size_t k0 = slots[i] * slot_elems + (g * T + t) * D;
        double dot = 0;
        for (size_t d = 0; d < D; ++d) dot += double(q[h * D + d]) * arena.at(k0 + d);
        s.push_back(scale * dot);
        vrow.push_back(slots[i] * slot_elems + ((a.num_kv_heads + g) * T + t) * D);
      }
    }
    const double m = *std::max_element(s.begin(), s.end());
    double l = 0;
    for (double& x : s) l += (x = std::exp(x - m));
    for (size_t i = 0; i < s.size(); ++i)
      for (size_t d = 0; d < D; ++d) (*out)[h * D + d] += s[i] / l * arena.at(vrow[i] + d);
    (*lse)[h] = m + std::log(l);
  }
}

TEST(KernelsAttentionCpuTest, MatchesNaiveAttention) {
  std::mt19937_64 rng(11);
  const Shape shapes[] = {{1, 1, 1, 1, 1, 1}, {4, 2, 7, 5, 6, 4}, {32, 8, 128, 32, 24, 20}, {8, 8, 100, 16, 9, 9},
                          {6, 1, 64, 70, 3, 3}};
  for (const Shape& s : shapes) {
    for (DType dt : testing::kAllDTypes) {
      for (bool by_slot : {false, true}) {
        for (bool partial : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "H=" << s.q_heads << " KVH=" << s.kv_heads << " D=" << s.head_dim
                                            << " T=" << s.block_tokens << " dtype=" << DTypeName(dt)
                                            << " by_slot=" << by_slot << " partial=" << partial);
          const size_t slot_elems = 2 * size_t{s.kv_heads} * s.block_tokens * s.head_dim;
          TypedArray arena = testing::RandomTyped(rng, slot_elems * s.slots, dt, -1.f, 1.f);
          std::vector<float> q = RandomFloats(rng, size_t{s.q_heads} * s.head_dim, -2.f, 2.f);
          std::vector<uint32_t> slots(s.slots);
          std::iota(slots.begin(), slots.end(), 0u);
          std::shuffle(slots.begin(), slots.end(), rng);
          slots.resize(s.entries);
          std::vector<uint32_t> counts(s.entries, s.block_tokens);
          if (partial) {
            for (auto& c : counts) c = 1 + static_cast<uint32_t>(rng() % s.block_tokens);
          }
          std::vector<const void*> ptrs;
          const size_t slot_bytes = slot_elems * DTypeBytes(dt);
          for (uint32_t sl : slots) ptrs.push_back(static_cast<const char*>(arena.data()) + sl * slot_bytes);
          std::vector<float> out(size_t{s.q_heads} * s.head_dim, -9.f), lse(s.q_heads, -9.f);
          AttentionArgs a;
          a.kv_dtype = dt;
          a.num_q_heads = s.q_heads;
          a.num_kv_heads = s.kv_heads;
          a.head_dim = s.head_dim;
          a.block_tokens = s.block_tokens;
          a.query = q.data();
          a.num_blocks = s.entries;
          if (by_slot) {
            a.slot_base = arena.data();
            a.slot_bytes = slot_bytes;
            a.num_slots = s.slots;
            a.slot_indices = slots.data();
          } else {
            a.block_ptrs = ptrs.data();
          }
          a.token_counts = partial ? counts.data() : nullptr;
          a.out = out.data();
          a.lse = lse.data();
          ASSERT_TRUE(DecodeAttention(Backend::kCpu, a).ok());
          std::vector<double> want, want_lse;
          Naive(a, arena, slots, counts, q, &want, &want_lse);
          for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 5e-5) << "out " << i;
          for (size_t h = 0; h < lse.size(); ++h) ASSERT_NEAR(lse[h], want_lse[h], 1e-5 + 1e-6 * std::fabs(want_lse[h]));
        }
      }
    }
  }
}

TEST(KernelsAttentionCpuTest, EqualKeysAverageTheValues) {
  // All keys equal: softmax is uniform and the output is the mean of V.
  const uint32_t D = 4, T = 3;
  std::vector<float> block(2 * T * D);
  for (uint32_t t = 0; t < T; ++t)
    for (uint32_t d = 0; d < D; ++d) {
      block[t * D + d] = 0.5f;                   // K
      block[(T + t) * D + d] = float(t * 10 + d);  // V
    }
  std::vector<float> q = {1, 2, 3, 4}, out(D), lse(1);
  const void* ptrs[] = {block.data()};
  AttentionArgs a;
  a.kv_dtype = DType::kF32;
  a.num_q_heads = a.num_kv_heads = 1;
  a.head_dim = D;
  a.block_tokens = T;
  a.query = q.data();
  a.num_blocks = 1;
  a.block_ptrs = ptrs;
  a.out = out.data();
  a.lse = lse.data();
  ASSERT_TRUE(DecodeAttention(Backend::kCpu, a).ok());
  for (uint32_t d = 0; d < D; ++d) EXPECT_NEAR(out[d], 10.f + d, 1e-5);
  EXPECT_NEAR(lse[0], 0.5 * 10 / 2 + std::log(3.0), 1e-5);  // s = (0.5 * 10) / sqrt(4)
}

TEST(KernelsAttentionCpuTest, RejectsBadArguments) {
  std::vector<float> block(64, 0.f), q(4, 1.f), out(4);
  const void* ptrs[] = {block.data()};
  std::vector<uint32_t> slot = {1}, bad_count = {3};
  AttentionArgs good;
  good.kv_dtype = DType::kF32;
  good.num_q_heads = good.num_kv_heads = 1;
  good.head_dim = 4;
  good.block_tokens = 2;
  good.query = q.data();
  good.num_blocks = 1;
  good.block_ptrs = ptrs;
  good.out = out.data();
  ASSERT_TRUE(DecodeAttention(Backend::kCpu, good).ok());
  auto expect_bad = [&](auto mutate) {
    AttentionArgs a = good;
    mutate(a);
    EXPECT_EQ(DecodeAttention(Backend::kCpu, a).code(), StatusCode::kInvalidArgument);
  };
  expect_bad([](AttentionArgs& a) { a.query = nullptr; });
  expect_bad([](AttentionArgs& a) { a.out = nullptr; });
  expect_bad([](AttentionArgs& a) { a.num_blocks = 0; });
  expect_bad([](AttentionArgs& a) { a.num_q_heads = 3, a.num_kv_heads = 2; });
  expect_bad([](AttentionArgs& a) { a.block_tokens = 0; });
  expect_bad([](AttentionArgs& a) { a.block_ptrs = nullptr; });                 // no table
  expect_bad([&](AttentionArgs& a) { a.slot_base = block.data(); });          // two tables
  expect_bad([&](AttentionArgs& a) { a.token_counts = bad_count.data(); });   // count > block_tokens
  auto slots = [&](AttentionArgs& a) {
    a.block_ptrs = nullptr;
    a.slot_base = block.data();
    a.slot_bytes = 2 * 2 * 4 * 4;
    a.num_slots = 2;
    a.slot_indices = slot.data();
  };
  {
    AttentionArgs a = good;
    slots(a);
    EXPECT_TRUE(DecodeAttention(Backend::kCpu, a).ok());
  }
  expect_bad([&](AttentionArgs& a) { slots(a), a.num_slots = 1; });  // index 1 out of range
  expect_bad([&](AttentionArgs& a) { slots(a), a.slot_bytes = 8; });  // smaller than a block
  const void* null_ptrs[] = {nullptr};
  expect_bad([&](AttentionArgs& a) { a.block_ptrs = null_ptrs; });
}

TEST(KernelsAttentionCpuTest, CudaSplitCoversTheTable) {
  for (uint32_t blocks : {1u, 2u, 63u, 64u, 65u, 1000u, 3277u, 1u << 20}) {
    for (uint32_t kv : {1u, 8u, 1024u}) {
      const internal::AttentionSplit s = internal::SplitAttention(blocks, kv);
      ASSERT_GE(s.splits, 1u);
      ASSERT_GE(uint64_t{s.splits} * s.blocks_per_split, blocks);           // every entry has a split
      ASSERT_LT(uint64_t{s.splits - 1} * s.blocks_per_split, blocks);       // no empty split
      ASSERT_LE(uint64_t{s.splits} * kv, std::max<uint64_t>(512 + kv, kv));  // bounded grid
    }
  }
  AttentionArgs a;
  a.num_q_heads = 32;
  a.num_kv_heads = 8;
  a.head_dim = 128;
  a.num_blocks = 3277;
  const internal::AttentionSplit s = internal::SplitAttention(3277, 8);
  EXPECT_EQ(AttentionWorkspaceBytes(a), size_t{s.splits} * 32 * 130 * sizeof(float));
}

}  // namespace
}  // namespace tierkv::kernels
