// Triggers (index/trigger.h): which steps retrieve, and that a reused selection
// honours the Select contract for the new step.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "eval/eval_metrics.h"
#include "index/summary_retrievers.h"
#include "eval/synthetic.h"
#include "index/trigger.h"

namespace tierkv::index {
namespace {

constexpr uint32_t kBlockTokens = 8;

class TriggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SyntheticParams p;
    p.num_layers = 1;
    p.num_tokens = 1200;
    p.num_steps = 12;
    p.head_dim = 32;
    p.num_q_heads = 4;
    p.num_kv_heads = 2;
    p.needles_per_layer = 0;
    auto gen = SyntheticGenerator::Create(p);
    ASSERT_TRUE(gen.ok());
    auto t = (*gen)->GenerateAll();
    ASSERT_TRUE(t.ok());
    trace_ = std::move(t).value();
    RetrieverParams rp;
    rp.block_tokens = kBlockTokens;
    rp.num_q_heads = p.num_q_heads;
    ASSERT_TRUE(retriever_.Build(LayerKeysOf(trace_.info, trace_.layers[0]), rp).ok());
  }
  QueryView Step(uint64_t s) const { return StepQuery(trace_.info, trace_.layers[0], s); }
  // Runs one step through `bank` and checks the contract of the result.
  bool Run(TriggerBank* bank, uint64_t seq, const QueryView& q, uint32_t budget) {
    const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, kBlockTokens, 4, 16);
    std::vector<uint32_t> sel;
    bool retrieved = false;
    Status s = bank->Select(seq, 0, &retriever_, q, budget, kept, &sel, &retrieved);
    EXPECT_TRUE(s.ok()) << s.ToString();
    const uint64_t visible = VisibleBlocks(q.position, kBlockTokens);
    EXPECT_TRUE(CheckBlockList("selected", sel, visible).ok());
    EXPECT_EQ(sel.size(), std::min<uint64_t>(visible, std::max<uint64_t>(budget, kept.size())));
    EXPECT_TRUE(std::includes(sel.begin(), sel.end(), kept.begin(), kept.end()));
    last_ = sel;
    return retrieved;
  }

  Trace trace_;
  MinMaxRetriever retriever_;
  std::vector<uint32_t> last_;
};

TEST_F(TriggerTest, EveryStepRetrievesEveryTime) {
  TriggerBank bank(TriggerConfig{});
  for (uint64_t s = 0; s < trace_.info.num_steps(); ++s) EXPECT_TRUE(Run(&bank, 1, Step(s), 20));
  EXPECT_EQ(bank.stats().taken, trace_.info.num_steps());
  EXPECT_EQ(bank.stats().skipped, 0u);
}

TEST_F(TriggerTest, EveryNRetrievesOnTheFirstAndEveryNthStep) {
  TriggerBank bank(*TriggerConfig::Parse("every:n=3"));
  for (uint64_t s = 0; s < 9; ++s) EXPECT_EQ(Run(&bank, 1, Step(s), 20), s % 3 == 0) << "step " << s;
  EXPECT_EQ(bank.stats().taken, 3u);
  EXPECT_EQ(bank.stats().skipped, 6u);
}

TEST_F(TriggerTest, DriftReusesWhileTheQueryStaysAndRetrievesWhenItMoves) {
  TriggerBank bank(*TriggerConfig::Parse("drift:tau=0.99"));
  QueryView q = Step(0);
  EXPECT_TRUE(Run(&bank, 1, q, 20));
  const std::vector<uint32_t> first = last_;
  // The same query one and two tokens later: no drift, the selection is reused.
  q.position += 1;
  EXPECT_FALSE(Run(&bank, 1, q, 20));
  q.position += 1;
  EXPECT_FALSE(Run(&bank, 1, q, 20));
  // The retrieved blocks of the first step are kept, but for the one or two the
  // moved window may push out of the budget.
  const std::vector<uint32_t> kept0 = AlwaysKeptBlocks(Step(0).position, kBlockTokens, 4, 16);
  int missing = 0;
  for (uint32_t b : first) {
    if (!std::binary_search(kept0.begin(), kept0.end(), b) && !std::binary_search(last_.begin(), last_.end(), b)) {
      ++missing;
    }
  }
  EXPECT_LE(missing, 2);
  // A query of another head pattern: every head turned, so it retrieves.
  std::vector<float> moved(q.q_pre, q.q_pre + size_t{q.num_q_heads} * q.head_dim);
  std::rotate(moved.begin(), moved.begin() + q.head_dim / 2, moved.end());
  QueryView q2 = Step(5);
  q2.q_pre = moved.data();
  EXPECT_LT(TriggerBank::MinHeadCosine(q.q_pre, moved.data(), q.num_q_heads, q.head_dim), 0.99);
  EXPECT_TRUE(Run(&bank, 1, q2, 20));
  EXPECT_EQ(bank.stats().taken, 2u);
  EXPECT_EQ(bank.stats().skipped, 2u);
}

TEST_F(TriggerTest, ReuseKeepsTheContractWhenTheBudgetAndWindowChange) {
  TriggerBank bank(*TriggerConfig::Parse("every:n=100"));
  EXPECT_TRUE(Run(&bank, 1, Step(0), 30));
  uint64_t step = 1;
  for (uint32_t budget : {0u, 5u, 31u, 60u, 1000u}) EXPECT_FALSE(Run(&bank, 1, Step(step++), budget)) << budget;
}

TEST_F(TriggerTest, StreamsAreIndependentAndForgetRestarts) {
  TriggerBank bank(*TriggerConfig::Parse("every:n=100"));
  EXPECT_TRUE(Run(&bank, 1, Step(0), 20));
  EXPECT_TRUE(Run(&bank, 2, Step(0), 20));   // another sequence
  EXPECT_FALSE(Run(&bank, 1, Step(1), 20));
  bank.Forget(1);
  EXPECT_TRUE(Run(&bank, 1, Step(2), 20));
  EXPECT_FALSE(Run(&bank, 2, Step(2), 20));
}

TEST_F(TriggerTest, RefusesBadInput) {
  TriggerBank bank(TriggerConfig{});
  std::vector<uint32_t> sel;
  bool retrieved = false;
  const QueryView q = Step(4);
  const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, kBlockTokens, 4, 16);
  ASSERT_TRUE(bank.Select(1, 0, &retriever_, q, 20, kept, &sel, &retrieved).ok());
  // A step before the stream's last one.
  EXPECT_EQ(bank.Select(1, 0, &retriever_, Step(1), 20, kept, &sel, &retrieved).code(),
            StatusCode::kInvalidArgument);
  // Always-kept blocks out of order or beyond the visible range.
  const std::vector<uint32_t> bad = {3, 2};
  EXPECT_EQ(bank.Select(2, 0, &retriever_, q, 20, bad, &sel, &retrieved).code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> beyond = {100000};
  EXPECT_EQ(bank.Select(2, 0, &retriever_, q, 20, beyond, &sel, &retrieved).code(), StatusCode::kInvalidArgument);
}

TEST(TriggerCosineTest, MinOverHeads) {
  const float a[] = {1, 0, 0, 1};
  const float b[] = {1, 0, 1, 0};
  EXPECT_NEAR(TriggerBank::MinHeadCosine(a, b, 2, 2), 0.0, 1e-12);
  EXPECT_NEAR(TriggerBank::MinHeadCosine(a, a, 2, 2), 1.0, 1e-12);
  const float zero[] = {0, 0, 1, 0};
  EXPECT_NEAR(TriggerBank::MinHeadCosine(zero, b, 2, 2), 1.0, 1e-12);  // zero head: no evidence
}

}  // namespace
}  // namespace tierkv::index
