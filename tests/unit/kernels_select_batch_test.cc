// SelectBatch on the CPU: every item gets what ScoreBlocks + TopK give it alone
// (own query, block count, k and always-kept mask in one batch), and bad batches
// are refused naming the item.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/select_batch.h"
#include "kernels/topk.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

constexpr uint32_t kQ = 8, kKv = 2, kD = 24;

struct Item {
  std::vector<float> query, lo, hi;
  std::vector<uint8_t> always;
  std::vector<uint32_t> out;
  uint32_t blocks, k;
};

Item MakeItem(std::mt19937_64& rng, uint32_t blocks, uint32_t k) {
  Item it;
  it.blocks = blocks;
  it.k = k;
  it.query = testing::RandomFloats(rng, kQ * kD, -2.f, 2.f);
  it.lo = testing::RandomFloats(rng, size_t{blocks} * kKv * kD, -1.f, 1.f);
  it.hi = it.lo;
  for (float& x : it.hi) x += static_cast<float>(rng() % 100) / 50.f;
  it.always.assign(blocks, 0);
  it.always[0] = 1;
  it.always[blocks - 1] = 1;
  it.out.assign(k, ~0u);
  return it;
}

std::vector<uint32_t> Alone(const Item& it, ScoreMode mode, HeadCombine combine) {
  std::vector<float> scores(it.blocks);
  ScoreArgs s;
  s.mode = mode;
  s.combine = combine;
  s.num_q_heads = kQ;
  s.num_kv_heads = kKv;
  s.head_dim = kD;
  s.num_blocks = it.blocks;
  s.query = it.query.data();
  s.min_keys = it.lo.data();
  s.max_keys = it.hi.data();
  s.mean_keys = it.lo.data();
  s.scores = scores.data();
  EXPECT_TRUE(ScoreBlocks(Backend::kCpu, s).ok());
  std::vector<uint32_t> out(it.k);
  TopKArgs t;
  t.scores = scores.data();
  t.num_blocks = it.blocks;
  t.k = it.k;
  t.always = it.always.data();
  t.out_indices = out.data();
  EXPECT_TRUE(TopK(Backend::kCpu, t).ok());
  return out;
}

SelectBatchArgs Args(ScoreMode mode, HeadCombine combine, const std::vector<SelectBatchItem>& items) {
  SelectBatchArgs a;
  a.mode = mode;
  a.combine = combine;
  a.num_q_heads = kQ;
  a.num_kv_heads = kKv;
  a.head_dim = kD;
  a.items = items.data();
  a.num_items = static_cast<uint32_t>(items.size());
  return a;
}

std::vector<SelectBatchItem> Views(std::vector<Item>& items) {
  std::vector<SelectBatchItem> v;
  for (Item& it : items) {
    SelectBatchItem s;
    s.query = it.query.data();
    s.min_keys = it.lo.data();
    s.max_keys = it.hi.data();
    s.mean_keys = it.lo.data();
    s.num_blocks = it.blocks;
    s.k = it.k;
    s.always = it.always.data();
    s.out_indices = it.out.data();
    v.push_back(s);
  }
  return v;
}

TEST(KernelsSelectBatchCpuTest, EveryItemGetsItsOwnSelection) {
  std::mt19937_64 rng(21);
  for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean}) {
    for (HeadCombine combine : {HeadCombine::kSum, HeadCombine::kMax}) {
      std::vector<Item> items;
      for (auto [blocks, k] : {std::pair{40u, 7u}, {3u, 3u}, {129u, 12u}, {1u, 1u}, {64u, 5u}})
        items.push_back(MakeItem(rng, blocks, k));
      std::vector<SelectBatchItem> views = Views(items);
      ASSERT_TRUE(SelectBatch(Backend::kCpu, Args(mode, combine, views)).ok());
      for (const Item& it : items) EXPECT_EQ(it.out, Alone(it, mode, combine)) << "blocks " << it.blocks;
    }
  }
}

TEST(KernelsSelectBatchCpuTest, BadBatchesAreRefusedNamingTheItem) {
  std::mt19937_64 rng(22);
  std::vector<Item> items;
  items.push_back(MakeItem(rng, 10, 2));
  items.push_back(MakeItem(rng, 10, 2));
  auto refused = [&](auto&& mutate, const char* what) {
    std::vector<SelectBatchItem> views = Views(items);
    SelectBatchArgs a = Args(ScoreMode::kMinMax, HeadCombine::kSum, views);
    mutate(a, views);
    const Status st = SelectBatch(Backend::kCpu, a);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << what;
    return st.message();
  };
  EXPECT_NE(refused([](SelectBatchArgs&, std::vector<SelectBatchItem>& v) { v[1].k = 11; }, "k > blocks")
                .find("item 1"),
            std::string::npos);
  refused([](SelectBatchArgs&, std::vector<SelectBatchItem>& v) { v[0].k = 0; }, "k = 0");
  refused([](SelectBatchArgs&, std::vector<SelectBatchItem>& v) { v[1].num_blocks = 0; }, "no blocks");
  refused([](SelectBatchArgs&, std::vector<SelectBatchItem>& v) { v[0].max_keys = nullptr; }, "minmax without max");
  refused([](SelectBatchArgs&, std::vector<SelectBatchItem>& v) { v[1].out_indices = nullptr; }, "no output");
  refused([](SelectBatchArgs& a, std::vector<SelectBatchItem>&) { a.num_items = 0; }, "empty batch");
  refused([](SelectBatchArgs& a, std::vector<SelectBatchItem>&) { a.num_items = kMaxSelectBatch + 1; }, "too many");
  refused([](SelectBatchArgs& a, std::vector<SelectBatchItem>&) { a.mode = ScoreMode::kVqLut; }, "vq mode");
  refused([](SelectBatchArgs& a, std::vector<SelectBatchItem>&) { a.num_q_heads = 3; }, "q not a multiple of kv");
  // kCuda wants its scratch and device items (refused before any device call).
  std::vector<SelectBatchItem> views = Views(items);
  const Status cuda = SelectBatch(Backend::kCuda, Args(ScoreMode::kMean, HeadCombine::kSum, views));
  EXPECT_TRUE(cuda.code() == StatusCode::kInvalidArgument || cuda.code() == StatusCode::kNotSupported)
      << cuda.ToString();
}

}  // namespace
}  // namespace tierkv::kernels
