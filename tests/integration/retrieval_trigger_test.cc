// Integration: the retrieval triggers of the namespace policy (every, every_n, drift)
// through a real tierkvd, and the budget of a step that reuses the last selection.
//
// Sequence 1, layer 0: kBlocks blocks of small random keys, one "needle" block whose
// keys all point along +1 (or -1). A query of all +1 (-1) scores the needle first.
// Policy: 1 sink, a recent window of 2, budget 4: one block is chosen by score.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <random>

#include "tests/util/daemon_process.h"
#include "tests/util/namespace_client.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kQHeads = 4, kKvHeads = 2, kHeadDim = 16, kBlockTokens = 16, kBlocks = 20, kBudget = 4;
const ModelSpec kModel{1, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};

std::vector<std::byte> Block(uint32_t block, float needle) {
  std::mt19937 rng(block);
  std::normal_distribution<float> n(0.f, 0.1f);
  std::vector<float> f(kModel.BlockBytes() / 4);
  for (auto& x : f) x = n(rng);
  if (needle != 0.f) std::fill_n(f.begin(), size_t{kKvHeads} * kBlockTokens * kHeadDim, needle);
  std::vector<std::byte> b(kModel.BlockBytes());
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

std::vector<float> Query(float v) { return std::vector<float>(size_t{kQHeads} * kHeadDim, v); }

class RetrievalTriggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    spec.budgets = {64 * 8192, 64 * 8192, 256 * 8192};
    auto c = testing::ConnectWithNamespace(daemon_.socket_path(), spec);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    auto ch = client_->OpenChannel("ns", {.staging_bytes = 1 << 20});
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = std::move(ch).value();
    for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE(ch_->Put(1, 0, b, Block(b, b == 7 ? 1.f : 0.f)).ok());
  }

  void SetPolicy(const wire::Json& policy, const char* retriever = "mean") {
    wire::Json p = policy;
    p["retriever"] = retriever;
    p["sink_blocks"] = 1;
    p["recent_window"] = 2;
    auto r = internal::Call(*client_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", p}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // One step: the selected block indices (the lease is released).
  std::vector<uint32_t> Step(float q) {
    auto r = ch_->Retrieve(1, 0, Query(q), kBudget);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    std::vector<uint32_t> got;
    for (const auto& b : r->blocks) got.push_back(b.block);
    EXPECT_TRUE(ch_->Release(r->lease).ok());
    return got;
  }

  // Rewrites block b (the migrator may pin it for a moment while it moves it).
  void Rewrite(uint32_t b, float needle) {
    Status st;
    for (int i = 0; i < 100 && !(st = ch_->Put(1, 0, b, Block(b, needle))).ok(); ++i) usleep(10000);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // The needle moves from block 7 to block 12 (keys along `sign`).
  void MoveNeedle(float sign) {
    Rewrite(7, 0.f);
    Rewrite(12, sign);
  }

  void CheckReuseKeepsTheBudgetAndTheNewWindow(const char* retriever);

  testing::TempDir dir_{"trigger"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
};

using V = std::vector<uint32_t>;

TEST_F(RetrievalTriggerTest, EveryStepFollowsTheQueryAtOnce) {
  SetPolicy({{"trigger", "every"}});
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  MoveNeedle(1.f);
  EXPECT_EQ(Step(1.f), (V{0, 12, 18, 19}));
}

TEST_F(RetrievalTriggerTest, EveryNReusesBetweenTriggers) {
  SetPolicy({{"trigger", "every_n"}, {"trigger_every", 3}});
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));  // step 1: triggers
  MoveNeedle(1.f);
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));  // steps 2, 3: reuse the last selection
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  EXPECT_EQ(Step(1.f), (V{0, 12, 18, 19}));  // step 4: triggers again
}

TEST_F(RetrievalTriggerTest, DriftRetrievesWhenTheQueryTurns) {
  SetPolicy({{"trigger", "drift"}, {"drift_tau", 0.9}});
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  MoveNeedle(-1.f);
  EXPECT_EQ(Step(1.1f), (V{0, 7, 18, 19}));   // cosine 1 >= 0.9: reused
  EXPECT_EQ(Step(-1.f), (V{0, 12, 18, 19}));  // cosine -1 < 0.9: retrieved again
  auto policy = internal::Call(*client_, {{"op", "get_policy"}, {"namespace", "ns"}});
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ((*policy)["policy"]["trigger"], "drift");
  EXPECT_FLOAT_EQ((*policy)["policy"]["drift_tau"].get<float>(), 0.9f);
}

// A reused step serves the current recent window within the budget: blocks put since
// the last trigger are in the table, the old window is not, and nothing outside the
// table stays pinned (before the fix: 6 blocks pinned, the table cut to the 4 oldest,
// blocks 20 and 21 missing from it). Each way the daemon keeps an index: blocks
// summarized at put time (mean), the exact oracle over the key copy, and a method
// built over the keys that lags the newest blocks (sentence; its selection among
// the indexed blocks plus the newer ones is capped by CapSelection).
void RetrievalTriggerTest::CheckReuseKeepsTheBudgetAndTheNewWindow(const char* retriever) {
  SetPolicy({{"trigger", "every_n"}, {"trigger_every", 4}}, retriever);
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  ASSERT_TRUE(ch_->Put(1, 0, 20, Block(20, 0.f)).ok());
  ASSERT_TRUE(ch_->Put(1, 0, 21, Block(21, 0.f)).ok());
  auto r = ch_->Retrieve(1, 0, Query(1.f), kBudget);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  V got;
  for (const auto& b : r->blocks) got.push_back(b.block);
  EXPECT_EQ(got, (V{0, 7, 20, 21})) << retriever;
  // Block 18 left the window and the selection: not pinned, so it can be rewritten.
  Status st;
  for (int i = 0; i < 100 && !(st = ch_->Put(1, 0, 18, Block(18, 0.f))).ok(); ++i) usleep(10000);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ch_->Put(1, 0, 21, Block(21, 0.f)).code(), StatusCode::kBusy);  // pinned: in the table
  ASSERT_TRUE(ch_->Release(r->lease).ok());
}

// The exact oracle reads no block back to select (before: every block at every
// step, one device-to-host copy each on a real G). Blocks put before the policy
// chose it are read once, on the first Retrieve; blocks put after go into its key
// copy with the put. A retriever change reads the blocks back once more.
TEST_F(RetrievalTriggerTest, ExactReadsNoBlockPerSelection) {
  auto gets = [&] {
    auto stats = client_->Stats();
    EXPECT_TRUE(stats.ok());
    return testing::MetricValue(testing::HttpGet(stats->metrics_url), "tierkv_gets_total", {"namespace=\"ns\""});
  };
  SetPolicy({{"trigger", "every"}}, "exact");
  EXPECT_EQ(gets(), 0);
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  EXPECT_EQ(gets(), kBlocks);  // the catch-up of the blocks put before
  for (uint32_t b = kBlocks; b < kBlocks + 3; ++b) {
    ASSERT_TRUE(ch_->Put(1, 0, b, Block(b, 0.f)).ok());
    EXPECT_EQ(Step(1.f), (V{0, 7, b - 1, b}));
    EXPECT_EQ(Step(-1.f).size(), kBudget);
  }
  EXPECT_EQ(gets(), kBlocks);
  SetPolicy({{"trigger", "every"}}, "mean");
  EXPECT_EQ(Step(1.f), (V{0, 7, kBlocks + 1, kBlocks + 2}));
  EXPECT_EQ(Step(1.f), (V{0, 7, kBlocks + 1, kBlocks + 2}));
  EXPECT_EQ(gets(), 2 * kBlocks + 3);  // once more for the new retriever, not per step
}

TEST_F(RetrievalTriggerTest, ReusedSelectionKeepsTheBudgetAndTheNewWindow) {
  CheckReuseKeepsTheBudgetAndTheNewWindow("mean");
}

TEST_F(RetrievalTriggerTest, ReusedExactSelectionKeepsTheBudgetAndTheNewWindow) {
  CheckReuseKeepsTheBudgetAndTheNewWindow("exact");
}

TEST_F(RetrievalTriggerTest, ReusedIndexSelectionKeepsTheBudgetAndTheNewWindow) {
  CheckReuseKeepsTheBudgetAndTheNewWindow("sentence:bounds=fixed,len=16");
}

}  // namespace
}  // namespace tierkv

namespace tierkv {
namespace {

// After a restart (the summaries lived in the old process's memory), a block put
// before the first Retrieve does not hide the recovered blocks from scoring: they
// are summarized from the store and the needle is still found.
TEST_F(RetrievalTriggerTest, RecoveredBlocksAreScoredAfterARestart) {
  SetPolicy({{"trigger", "every"}});
  EXPECT_EQ(Step(1.f), (V{0, 7, 18, 19}));
  ch_.reset();
  client_.reset();
  ASSERT_EQ(daemon_.Stop(), 0) << daemon_.Log();  // the shutdown drain writes every block to D
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  auto c = Client::Connect(daemon_.socket_path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  client_ = std::move(c).value();
  ASSERT_TRUE(client_->Attach("ns").ok());
  auto ch = client_->OpenChannel("ns");
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  ch_ = std::move(ch).value();
  ASSERT_TRUE(ch_->Put(1, 0, kBlocks, Block(kBlocks, 0.f)).ok());
  EXPECT_EQ(Step(1.f), (V{0, 7, 19, 20}));
}

// Retrieve's errors name the actual problem (before: a short query said "payload
// length does not match the block size", an unknown sequence "block not found").
TEST_F(RetrievalTriggerTest, RetrieveErrorsNameTheProblem) {
  auto short_query = ch_->Retrieve(1, 0, std::vector<float>(kHeadDim, 1.f), kBudget);
  EXPECT_EQ(short_query.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_query.status().message().find("num_q_heads * head_dim"), std::string::npos)
      << short_query.status().ToString();
  auto nan = Query(1.f);
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  auto bad = ch_->Retrieve(1, 0, nan, kBudget);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("finite"), std::string::npos) << bad.status().ToString();
  auto unknown = ch_->Retrieve(99, 0, Query(1.f), kBudget);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("no blocks stored for this sequence and layer"), std::string::npos)
      << unknown.status().ToString();
  // A budget below the sinks + recent window the policy always keeps (1 + 4 by
  // default) is refused, not served short.
  auto short_budget = ch_->Retrieve(1, 0, Query(1.f), kBudget);
  EXPECT_EQ(short_budget.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_budget.status().message().find("budget is below the sink and recent-window"), std::string::npos)
      << short_budget.status().ToString();
  SetPolicy({});  // 1 sink + 2 recent
  EXPECT_EQ(Step(1.f).size(), kBudget);  // the channel still serves
}

}  // namespace
}  // namespace tierkv
