// What tierkvd relies on to run index/'s code (docs/decisions/0019):
// - block-at-a-time indexing (Retriever::StartBlocks/PutBlock) gives the same
//   selections as Build over the same keys, in any put order and after rewrites;
// - PutBlock from keys as a put stores them (f16, bf16) equals PutBlock from the
//   same keys converted to f32 (the daemon's put path converts nothing);
// - a SummaryScorer serves the summary retrievers' selections, errors go to the CPU;
// - Select returns every visible block without scoring when the budget covers them;
// - TriggerBank::SelectAll advances a stream as Select does, WouldRetrieve
//   predicts Select, and drift:rope=post compares post-RoPE queries.
#include <gtest/gtest.h>

#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "index/block_scoring.h"
#include "index/retriever_factory.h"
#include "index/trigger.h"
#include "kernels/half.h"

namespace tierkv::index {
namespace {

constexpr uint32_t kKv = 2, kQ = 8, kD = 16, kBt = 8, kBlocks = 40;

// Keys [kv][tokens][d] with a per-block direction, so blocks score apart.
std::vector<float> RandomKeys(uint32_t blocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  const size_t tokens = size_t{blocks} * kBt;
  std::vector<float> k(kKv * tokens * kD);
  for (uint32_t g = 0; g < kKv; ++g) {
    for (uint32_t b = 0; b < blocks; ++b) {
      std::vector<float> dir(kD);
      for (float& x : dir) x = 2.f * n(rng);
      for (uint32_t t = 0; t < kBt; ++t) {
        for (uint32_t i = 0; i < kD; ++i) k[(g * tokens + b * kBt + t) * kD + i] = dir[i] + n(rng);
      }
    }
  }
  return k;
}

// Block b's keys [kv][bt][d] out of a [kv][tokens][d] layer.
std::vector<float> BlockOf(const std::vector<float>& keys, uint32_t blocks, uint32_t b) {
  const size_t tokens = size_t{blocks} * kBt;
  std::vector<float> out(size_t{kKv} * kBt * kD);
  for (uint32_t g = 0; g < kKv; ++g) {
    std::copy_n(keys.data() + (g * tokens + size_t{b} * kBt) * kD, kBt * kD, out.data() + size_t{g} * kBt * kD);
  }
  return out;
}

LayerKeys View(const std::vector<float>& keys, uint32_t blocks) {
  LayerKeys v;
  v.num_kv_heads = kKv;
  v.head_dim = kD;
  v.num_tokens = uint64_t{blocks} * kBt;
  v.keys = keys.data();
  return v;
}

RetrieverParams Params(HeadCombine combine = HeadCombine::kSum) {
  RetrieverParams p;
  p.block_tokens = kBt;
  p.num_q_heads = kQ;
  p.head_combine = combine;
  return p;
}

std::vector<float> RandomQuery(std::mt19937& rng) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> q(size_t{kQ} * kD);
  for (float& x : q) x = n(rng);
  return q;
}

QueryView At(const std::vector<float>& q, uint32_t blocks) {
  QueryView v;
  v.num_q_heads = kQ;
  v.head_dim = kD;
  v.q = q.data();
  v.position = uint64_t{blocks} * kBt - 1;
  return v;
}

class BlockAppendTest : public ::testing::TestWithParam<std::tuple<const char*, HeadCombine>> {};

TEST_P(BlockAppendTest, PutBlockSelectsWhatBuildSelects) {
  const auto [spec, combine] = GetParam();
  auto built = MakeRetriever(spec);
  auto appended = MakeRetriever(spec);
  ASSERT_TRUE(built.ok() && appended.ok());
  ASSERT_TRUE((*appended)->block_appendable());
  ASSERT_TRUE((*appended)->StartBlocks(kKv, kD, Params(combine)).ok());
  std::vector<float> keys = RandomKeys(kBlocks, 1);
  // Out of order (the holes in between score from zeros until put), then rewrites.
  std::vector<uint32_t> order(kBlocks);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  for (uint32_t b : order) ASSERT_TRUE((*appended)->PutBlock(b, BlockOf(keys, kBlocks, b)).ok());
  const std::vector<float> other = RandomKeys(kBlocks, 2);
  for (uint32_t b : {3u, 17u, 39u}) {
    const std::vector<float> block = BlockOf(other, kBlocks, b);
    ASSERT_TRUE((*appended)->PutBlock(b, block).ok());
    for (uint32_t g = 0; g < kKv; ++g) {
      std::copy_n(block.data() + g * kBt * kD, kBt * kD, keys.data() + (g * kBlocks * kBt + b * kBt) * kD);
    }
  }
  EXPECT_EQ((*appended)->indexed_blocks(), kBlocks);
  ASSERT_TRUE((*built)->Build(View(keys, kBlocks), Params(combine)).ok());
  EXPECT_EQ((*appended)->IndexBytes(), (*built)->IndexBytes());
  std::mt19937 rng(5);
  const std::vector<uint32_t> always = {0, kBlocks - 2, kBlocks - 1};
  for (uint32_t budget : {4u, 8u, 20u}) {
    for (int i = 0; i < 5; ++i) {
      const std::vector<float> q = RandomQuery(rng);
      std::vector<uint32_t> a, b;
      ASSERT_TRUE((*built)->Select(At(q, kBlocks), budget, always, &a).ok());
      ASSERT_TRUE((*appended)->Select(At(q, kBlocks), budget, always, &b).ok());
      EXPECT_EQ(a, b) << spec << " budget " << budget;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SummaryMethods, BlockAppendTest,
                         ::testing::Combine(::testing::Values("minmax", "mean", "mean:r=3", "mean:r=2,pick=norm"),
                                            ::testing::Values(HeadCombine::kSum, HeadCombine::kMax)));

// Keys rounded to `dtype` as stored bytes, and the same values as f32.
struct StoredKeys {
  std::vector<std::byte> bytes;
  std::vector<float> floats;
};
StoredKeys Store(const std::vector<float>& keys, DType dtype) {
  StoredKeys k;
  k.bytes.resize(keys.size() * DTypeBytes(dtype));
  k.floats.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    kernels::StoreFromFloat(k.bytes.data(), dtype, i, 40.f * keys[i]);  // spread over f16's exponents
    k.floats[i] = kernels::LoadAsFloat(k.bytes.data(), dtype, i);
  }
  return k;
}

class TypedPutBlockTest : public ::testing::TestWithParam<std::tuple<const char*, DType>> {};

TEST_P(TypedPutBlockTest, EqualsPutBlockOfTheConvertedKeys) {
  const auto [spec, dtype] = GetParam();
  auto from_floats = MakeRetriever(spec);
  auto from_bytes = MakeRetriever(spec);
  ASSERT_TRUE(from_floats.ok() && from_bytes.ok());
  ASSERT_TRUE((*from_floats)->StartBlocks(kKv, kD, Params()).ok());
  ASSERT_TRUE((*from_bytes)->StartBlocks(kKv, kD, Params()).ok());
  const std::vector<float> keys = RandomKeys(kBlocks, 7);
  for (uint32_t b = 0; b < kBlocks; ++b) {
    const StoredKeys k = Store(BlockOf(keys, kBlocks, b), dtype);
    ASSERT_TRUE((*from_floats)->PutBlock(b, k.floats).ok());
    ASSERT_TRUE((*from_bytes)->PutBlock(b, k.bytes, dtype).ok());
  }
  EXPECT_EQ((*from_bytes)->indexed_blocks(), kBlocks);
  EXPECT_EQ((*from_bytes)->IndexBytes(), (*from_floats)->IndexBytes());
  std::mt19937 rng(9);
  for (uint32_t budget : {3u, 8u, 20u}) {
    for (int i = 0; i < 8; ++i) {
      const std::vector<float> q = RandomQuery(rng);
      std::vector<uint32_t> a, b;
      ASSERT_TRUE((*from_floats)->Select(At(q, kBlocks), budget, {}, &a).ok());
      ASSERT_TRUE((*from_bytes)->Select(At(q, kBlocks), budget, {}, &b).ok());
      EXPECT_EQ(a, b) << spec << " budget " << budget;
    }
  }
  // The byte count is checked against the dtype.
  const StoredKeys k = Store(BlockOf(keys, kBlocks, 0), dtype);
  EXPECT_EQ((*from_bytes)->PutBlock(0, std::span(k.bytes).first(k.bytes.size() - 2), dtype).code(),
            StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(SummaryMethods, TypedPutBlockTest,
                         ::testing::Combine(::testing::Values("minmax", "mean", "mean:r=3"),
                                            ::testing::Values(DType::kF16, DType::kBF16, DType::kF32)));

TEST(BlockAppendTest, RefusedWhereItDoesNotApply) {
  for (const char* spec : {"exact", "sentence", "vq", "cluster"}) {
    auto r = MakeRetriever(spec);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE((*r)->block_appendable()) << spec;
    EXPECT_EQ((*r)->StartBlocks(kKv, kD, Params()).code(), StatusCode::kNotSupported) << spec;
  }
  auto r = MakeRetriever("minmax");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->PutBlock(0, std::vector<float>(kKv * kBt * kD)).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE((*r)->StartBlocks(kKv, kD, Params()).ok());
  std::vector<float> q(size_t{kQ} * kD, 1.f);
  std::vector<uint32_t> sel;
  EXPECT_EQ((*r)->Select(At(q, 1), 1, {}, &sel).code(), StatusCode::kInvalidArgument);  // nothing put yet
  EXPECT_EQ((*r)->PutBlock(0, std::vector<float>(7)).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE((*r)->PutBlock(1, std::vector<float>(kKv * kBt * kD, 1.f)).ok());
  EXPECT_EQ((*r)->Select(At(q, 3), 1, {}, &sel).code(), StatusCode::kInvalidArgument);  // past the blocks
  EXPECT_EQ((*r)->Extend(View(RandomKeys(2, 1), 2)).code(), StatusCode::kInvalidArgument);
}

// A scorer that selects the lowest blocks (so its use shows), or fails.
class FixedScorer : public SummaryScorer {
 public:
  Status Select(const kernels::ScoreArgs& args, std::span<const uint32_t> always_kept, uint64_t num_blocks,
                std::vector<uint32_t>* selected) override {
    ++calls;
    blocks_seen = args.num_blocks;
    if (fail) return DeviceError("no device");
    selected->resize(num_blocks);
    std::iota(selected->begin(), selected->end(), 0u);
    return OkStatus();
  }
  bool fail = false;
  int calls = 0;
  uint32_t blocks_seen = 0;
};

TEST(BlockAppendTest, SummaryScorerServesTheSelectionAndFailsOverToTheCpu) {
  const std::vector<float> keys = RandomKeys(kBlocks, 1);
  std::mt19937 rng(9);
  const std::vector<float> q = RandomQuery(rng);
  for (const char* spec : {"minmax", "mean"}) {
    auto r = MakeRetriever(spec);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Build(View(keys, kBlocks), Params()).ok());
    std::vector<uint32_t> cpu, got;
    ASSERT_TRUE((*r)->Select(At(q, kBlocks), 6, {}, &cpu).ok());
    FixedScorer scorer;
    ASSERT_TRUE((*r)->SetScorer(&scorer));
    ASSERT_TRUE((*r)->Select(At(q, kBlocks), 6, {}, &got).ok());
    EXPECT_EQ(got, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5})) << spec;
    EXPECT_EQ(scorer.blocks_seen, kBlocks);
    scorer.fail = true;
    ASSERT_TRUE((*r)->Select(At(q, kBlocks), 6, {}, &got).ok());
    EXPECT_EQ(got, cpu) << spec;
    EXPECT_EQ(scorer.calls, 2);
  }
  auto r = MakeRetriever("mean:r=2");  // no kernel path to hand over
  ASSERT_TRUE(r.ok());
  FixedScorer scorer;
  ASSERT_TRUE((*r)->SetScorer(&scorer));
  ASSERT_TRUE((*r)->Build(View(keys, kBlocks), Params()).ok());
  std::vector<uint32_t> got;
  ASSERT_TRUE((*r)->Select(At(q, kBlocks), 6, {}, &got).ok());
  EXPECT_EQ(scorer.calls, 0);
  EXPECT_FALSE((*MakeRetriever("exact"))->SetScorer(&scorer));
}

TEST(BlockAppendTest, ABudgetCoveringEveryBlockSelectsAllWithoutScoring) {
  const std::vector<float> keys = RandomKeys(kBlocks, 1);
  std::mt19937 rng(9);
  const std::vector<float> q = RandomQuery(rng);
  auto r = MakeRetriever("minmax");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Build(View(keys, kBlocks), Params()).ok());
  FixedScorer scorer;
  scorer.fail = true;
  ASSERT_TRUE((*r)->SetScorer(&scorer));
  std::vector<uint32_t> got;
  const std::vector<uint32_t> sink = {0};
  ASSERT_TRUE((*r)->Select(At(q, 10), 10, sink, &got).ok());
  EXPECT_EQ(got.size(), 10u);
  EXPECT_EQ(got.back(), 9u);
  EXPECT_EQ(scorer.calls, 0);
}

// One stream driven by Select (budget = every block) and one by SelectAll: the
// same selections and decisions at every step, then the same reuse afterwards.
TEST(TriggerBankTest, SelectAllAdvancesAStreamAsSelectDoes) {
  for (const char* t : {"every", "every:n=3", "drift:tau=0.95"}) {
    auto config = TriggerConfig::Parse(t);
    ASSERT_TRUE(config.ok());
    TriggerBank with_select(*config), with_all(*config);
    const std::vector<float> keys = RandomKeys(kBlocks, 1);
    auto r = MakeRetriever("mean");
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Build(View(keys, kBlocks), Params()).ok());
    std::mt19937 rng(11);
    std::normal_distribution<float> n(0.f, 1.f);
    std::vector<float> q = RandomQuery(rng);
    for (uint32_t step = 0; step < 30; ++step) {
      for (float& x : q) x += 0.2f * n(rng);
      const uint32_t blocks = step < 10 ? 12 + step : 21 + (step - 10) / 3;  // then k < blocks
      const std::vector<uint32_t> always = {0, blocks - 1};
      const QueryView qv = At(q, blocks);
      std::vector<uint32_t> a, b;
      bool ra = false, rb = false;
      ASSERT_TRUE(with_select.Select(1, 0, r->get(), qv, step < 10 ? 40 : 6, always, &a, &ra).ok());
      EXPECT_EQ(with_all.WouldRetrieve(1, 0, qv), ra || step == 0) << t << " step " << step;
      if (step < 10) {
        ASSERT_TRUE(with_all.SelectAll(1, 0, qv, kBt, always, &b, &rb).ok());
      } else {
        ASSERT_TRUE(with_all.Select(1, 0, r->get(), qv, 6, always, &b, &rb).ok());
      }
      EXPECT_EQ(a, b) << t << " step " << step;
      EXPECT_EQ(ra, rb) << t << " step " << step;
    }
    EXPECT_EQ(with_select.stats().taken, with_all.stats().taken) << t;
    EXPECT_GT(with_select.stats().taken, 1u) << t;
  }
}

TEST(TriggerBankTest, DriftComparesPostRopeQueriesWhenAskedTo) {
  // The pre-RoPE query stays, the post-RoPE one turns: only rope=post retrieves.
  const std::vector<float> keys = RandomKeys(kBlocks, 1);
  auto r = MakeRetriever("mean");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Build(View(keys, kBlocks), Params()).ok());
  std::mt19937 rng(13);
  const std::vector<float> pre = RandomQuery(rng), post1 = RandomQuery(rng), post2 = RandomQuery(rng);
  for (const char* t : {"drift:tau=0.9", "drift:tau=0.9,rope=post"}) {
    auto config = TriggerConfig::Parse(t);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->ToString(), t);
    TriggerBank bank(*config);
    std::vector<uint32_t> sel;
    bool retrieved = false;
    QueryView qv = At(post1, kBlocks);
    qv.q_pre = pre.data();
    ASSERT_TRUE(bank.Select(1, 0, r->get(), qv, 6, {}, &sel, &retrieved).ok());
    EXPECT_TRUE(retrieved);
    qv.q = post2.data();
    EXPECT_EQ(bank.WouldRetrieve(1, 0, qv), config->post_rope) << t;
    ASSERT_TRUE(bank.Select(1, 0, r->get(), qv, 6, {}, &sel, &retrieved).ok());
    EXPECT_EQ(retrieved, config->post_rope) << t;
  }
  EXPECT_EQ(TriggerConfig::Parse("drift:rope=sideways").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::index
