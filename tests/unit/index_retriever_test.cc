// The Retriever base (argument and contract checks), the selection helpers, and
// the ExactRetriever oracle on small cases.
#include "index/retriever.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "index/exact_retriever.h"
#include "index/rng.h"

namespace tierkv::index {
namespace {

using Blocks = std::vector<uint32_t>;

TEST(AlwaysKeptBlocksTest, SinksAndRecentWindow) {
  // Position 100, 16-token blocks: visible blocks 0..6 (token 100 is in block 6).
  EXPECT_EQ(AlwaysKeptBlocks(100, 16, 4, 32), (Blocks{0, 4, 5, 6}));  // window (68, 100]
  EXPECT_EQ(AlwaysKeptBlocks(100, 16, 4, 33), (Blocks{0, 4, 5, 6}));  // window [68, 100]: block 4
  EXPECT_EQ(AlwaysKeptBlocks(100, 16, 0, 1), (Blocks{6}));
  EXPECT_EQ(AlwaysKeptBlocks(100, 16, 17, 0), (Blocks{0, 1}));
  EXPECT_EQ(AlwaysKeptBlocks(100, 16, 0, 0), (Blocks{}));
  EXPECT_EQ(AlwaysKeptBlocks(10, 16, 4, 64), (Blocks{0}));  // all overlaps collapse
  EXPECT_EQ(AlwaysKeptBlocks(40, 16, 40, 64), (Blocks{0, 1, 2}));
  EXPECT_EQ(AlwaysKeptBlocks(1000, 1, 2, 3), (Blocks{0, 1, 998, 999, 1000}));
}

TEST(SelectTopBlocksTest, KeepsAlwaysKeptTakesBestOthersBreaksTiesLow) {
  const std::vector<double> scores = {0.1, 0.5, 0.3, 0.5, 0.9, 0.0};
  Blocks sel;
  SelectTopBlocks(std::span<const double>(scores), 3, Blocks{5}, &sel);
  EXPECT_EQ(sel, (Blocks{1, 4, 5}));  // 4 (0.9), then 1 and 3 tie at 0.5: 1 wins
  SelectTopBlocks(std::span<const double>(scores), 4, Blocks{5}, &sel);
  EXPECT_EQ(sel, (Blocks{1, 3, 4, 5}));
  SelectTopBlocks(std::span<const double>(scores), 2, Blocks{0, 5}, &sel);
  EXPECT_EQ(sel, (Blocks{0, 5}));
  SelectTopBlocks(std::span<const double>(scores), 6, Blocks{}, &sel);
  EXPECT_EQ(sel, (Blocks{0, 1, 2, 3, 4, 5}));
  const std::vector<float> fscores = {3.f, 1.f, 2.f};
  SelectTopBlocks(std::span<const float>(fscores), 1, Blocks{}, &sel);
  EXPECT_EQ(sel, (Blocks{0}));
}

// Random keys/values: 2 KV heads, 4 query heads, head_dim 8, 200 tokens.
class RetrieverFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    Rng rng(5);
    keys_.resize(2 * 200 * 8);
    values_.resize(keys_.size());
    q_.resize(4 * 8);
    for (float& x : keys_) x = static_cast<float>(rng.Normal());
    for (float& x : values_) x = static_cast<float>(rng.Normal());
    for (float& x : q_) x = static_cast<float>(rng.Normal() * 3);
    layer_.num_kv_heads = 2;
    layer_.head_dim = 8;
    layer_.num_tokens = 200;
    layer_.keys = keys_.data();
    layer_.values = values_.data();
    query_.num_q_heads = 4;
    query_.head_dim = 8;
    query_.q = q_.data();
    query_.position = 150;  // visible blocks of 10 tokens: 0..15
    params_.block_tokens = 10;
    params_.num_q_heads = 4;
  }
  std::vector<float> keys_, values_, q_;
  LayerKeys layer_;
  QueryView query_;
  RetrieverParams params_;
};

TEST_F(RetrieverFixture, ExactSelectsTheBlocksOfLargestSummedMass) {
  ExactRetriever r;
  EXPECT_EQ(r.IndexBytes(), 0u);
  ASSERT_TRUE(r.Build(layer_, params_).ok());
  EXPECT_EQ(r.IndexBytes(), 2u * 200 * 8 * 4);
  ExactAttention exact;
  ASSERT_TRUE(ComputeExactAttention(layer_, query_, &exact).ok());
  const std::vector<double> mass = SummedBlockMass(exact, 10);
  ASSERT_EQ(mass.size(), 16u);
  const Blocks kept = {0, 15};
  Blocks order;
  for (uint32_t b = 1; b < 15; ++b) order.push_back(b);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return mass[a] > mass[b]; });
  for (uint32_t budget : {2u, 3u, 5u, 9u, 16u}) {
    Blocks sel;
    ASSERT_TRUE(r.Select(query_, budget, kept, &sel).ok());
    Blocks want = kept;
    want.insert(want.end(), order.begin(), order.begin() + (budget - 2));
    std::sort(want.begin(), want.end());
    EXPECT_EQ(sel, want) << "budget " << budget;
  }
}

TEST_F(RetrieverFixture, SelectionSizeFollowsTheContract) {
  ExactRetriever r;
  ASSERT_TRUE(r.Build(layer_, params_).ok());
  Blocks sel;
  ASSERT_TRUE(r.Select(query_, 1, Blocks{0, 14, 15}, &sel).ok());  // budget below always-kept
  EXPECT_EQ(sel, (Blocks{0, 14, 15}));
  ASSERT_TRUE(r.Select(query_, 1000, Blocks{0}, &sel).ok());  // budget beyond visible
  EXPECT_EQ(sel.size(), 16u);
  ASSERT_TRUE(r.Select(query_, 0, Blocks{}, &sel).ok());
  EXPECT_TRUE(sel.empty());
  query_.position = 0;
  ASSERT_TRUE(r.Select(query_, 4, Blocks{}, &sel).ok());
  EXPECT_EQ(sel, (Blocks{0}));
}

TEST_F(RetrieverFixture, MaxCombinationFollowsTheStrongestHead) {
  // Head 0 puts nearly all its mass on token 60 (block 6); the other heads spread.
  for (int i = 0; i < 8; ++i) keys_[60 * 8 + i] = q_[i] * 10.f;
  ExactAttention exact;
  ASSERT_TRUE(ComputeExactAttention(layer_, query_, &exact).ok());
  ASSERT_GT(exact.probs[60], 0.99f);
  ExactRetriever r;
  params_.head_combine = HeadCombine::kMax;
  ASSERT_TRUE(r.Build(layer_, params_).ok());
  Blocks sel;
  ASSERT_TRUE(r.Select(query_, 1, Blocks{}, &sel).ok());
  EXPECT_EQ(sel, (Blocks{6}));
}

TEST_F(RetrieverFixture, BadArgumentsAreRefused) {
  ExactRetriever r;
  Blocks sel;
  EXPECT_EQ(r.Select(query_, 4, Blocks{}, &sel).code(), StatusCode::kInvalidArgument);  // before Build
  RetrieverParams bad = params_;
  bad.block_tokens = 0;
  EXPECT_EQ(r.Build(layer_, bad).code(), StatusCode::kInvalidArgument);
  bad = params_;
  bad.num_q_heads = 3;
  EXPECT_EQ(r.Build(layer_, bad).code(), StatusCode::kInvalidArgument);
  LayerKeys empty;
  EXPECT_EQ(r.Build(empty, params_).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(r.Build(layer_, params_).ok());
  EXPECT_EQ(r.Select(query_, 4, Blocks{3, 2}, &sel).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Select(query_, 4, Blocks{16}, &sel).code(), StatusCode::kInvalidArgument);  // not visible
  QueryView q = query_;
  q.position = 200;
  EXPECT_EQ(r.Select(q, 4, Blocks{}, &sel).code(), StatusCode::kInvalidArgument);
  q = query_;
  q.num_q_heads = 2;
  EXPECT_EQ(r.Select(q, 4, Blocks{}, &sel).code(), StatusCode::kInvalidArgument);
}

// A retriever that breaks the contract in a chosen way.
class BrokenRetriever final : public Retriever {
 public:
  enum class Fault { kUnsorted, kDropsKept, kTooMany, kNotVisible };
  explicit BrokenRetriever(Fault f) : fault_(f) {}
  std::string Name() const override { return "broken"; }
  size_t IndexBytes() const override { return 0; }

 protected:
  Status BuildImpl(const LayerKeys&, const RetrieverParams&) override { return OkStatus(); }
  Status SelectImpl(const QueryView& q, uint64_t n, std::span<const uint32_t> kept, Blocks* sel) override {
    for (uint32_t b = 0; b < n; ++b) sel->push_back(b);
    switch (fault_) {
      case Fault::kUnsorted: std::reverse(sel->begin(), sel->end()); break;
      case Fault::kDropsKept: break;  // ignores `kept`
      case Fault::kTooMany: sel->push_back(static_cast<uint32_t>(n)); break;
      case Fault::kNotVisible: sel->back() = 1000; break;
    }
    return OkStatus();
  }

 private:
  Fault fault_;
};

TEST_F(RetrieverFixture, ContractViolationsAreCaughtForEveryImplementation) {
  using F = BrokenRetriever::Fault;
  for (F f : {F::kUnsorted, F::kDropsKept, F::kTooMany, F::kNotVisible}) {
    BrokenRetriever r(f);
    ASSERT_TRUE(r.Build(layer_, params_).ok());
    Blocks sel;
    Status s = r.Select(query_, 4, Blocks{15}, &sel);
    EXPECT_EQ(s.code(), StatusCode::kInternal) << static_cast<int>(f);
    EXPECT_NE(s.message().find("broken"), std::string::npos);
  }
}

}  // namespace
}  // namespace tierkv::index
