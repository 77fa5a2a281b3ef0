// What each retrieval method is for, on small hand-made layers whose answer is
// known: representative keys catch an outlier the mean key dilutes, sentence
// units select every block their sentence touches, clusters and generated
// segments find their tokens, PQ codes with one dimension per subspace are as
// good as exact scores; and the methods refuse input they cannot use.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "index/cluster_retriever.h"
#include "eval/eval_metrics.h"
#include "index/exact_retriever.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "index/rng.h"
#include "index/sentence_retriever.h"
#include "eval/synthetic.h"
#include "index/vq_retriever.h"

namespace tierkv::index {
namespace {

constexpr uint32_t kDim = 8;

// One KV head, one query head, keys N(0, 0.1^2) per channel plus what a test adds.
struct HandLayer {
  explicit HandLayer(uint64_t tokens) : keys(tokens * kDim) {
    Rng rng(42);
    for (float& k : keys) k = static_cast<float>(0.1 * rng.Normal());
    view.num_kv_heads = 1;
    view.head_dim = kDim;
    view.num_tokens = tokens;
    view.keys = keys.data();
  }
  void Add(uint64_t t, uint32_t channel, float v) { keys[t * kDim + channel] += v; }
  QueryView Query(uint32_t channel, float v, uint64_t position) {
    q.assign(kDim, 0.f);
    q[channel] = v;
    QueryView qv;
    qv.num_q_heads = 1;
    qv.head_dim = kDim;
    qv.q = q.data();
    qv.position = position;
    return qv;
  }
  std::vector<float> keys, q;
  LayerKeys view;
};

std::vector<uint32_t> SelectWith(const std::string& spec, const LayerKeys& view, const QueryView& q, uint32_t budget,
                                 uint32_t block_tokens = 16, uint64_t prompt_tokens = 0) {
  auto r = MakeRetriever(spec);
  EXPECT_TRUE(r.ok()) << spec;
  RetrieverParams rp;
  rp.block_tokens = block_tokens;
  rp.num_q_heads = 1;
  rp.prompt_tokens = prompt_tokens;
  Status s = (*r)->Build(view, rp);
  EXPECT_TRUE(s.ok()) << spec << ": " << s.ToString();
  std::vector<uint32_t> sel;
  s = (*r)->Select(q, budget, {}, &sel);
  EXPECT_TRUE(s.ok()) << spec << ": " << s.ToString();
  return sel;
}

TEST(RetrieverMethodsTest, RepresentativesCatchAnOutlierTheMeanKeyDilutes) {
  SetFaissThreads(1);
  HandLayer l(64);
  l.Add(20, 0, 5.f);                                    // one strong key in block 1
  for (uint64_t t = 32; t < 48; ++t) l.Add(t, 0, 1.f);  // a block of moderate keys (block 2)
  const QueryView q = l.Query(0, 10.f, 63);
  for (const char* spec : {"exact", "minmax", "mean:r=2", "mean:r=2,pick=norm", "spann:r=2,size=1"}) {
    EXPECT_EQ(SelectWith(spec, l.view, q, 1), std::vector<uint32_t>{1}) << spec;
  }
  // By design the mean key divides the outlier by the block's 16 tokens.
  EXPECT_EQ(SelectWith("mean", l.view, q, 1), std::vector<uint32_t>{2});
}

TEST(RetrieverMethodsTest, SentenceUnitsSelectEveryBlockTheyTouch) {
  HandLayer l(64);
  for (uint64_t t = 10; t < 30; ++t) l.Add(t, 1, 2.f);
  const std::vector<uint64_t> starts = {0, 10, 30, 45};
  l.view.sentence_starts = starts;
  const QueryView q = l.Query(1, 10.f, 63);
  EXPECT_EQ(SelectWith("sentence", l.view, q, 2), (std::vector<uint32_t>{0, 1}));
  // Without boundaries it cuts fixed spans and says so.
  l.view.sentence_starts = {};
  SentenceRetriever fixed(8);
  RetrieverParams rp;
  rp.block_tokens = 16;
  rp.num_q_heads = 1;
  ASSERT_TRUE(fixed.Build(l.view, rp).ok());
  EXPECT_EQ(fixed.Name(), "sentence:len=8(fixed)");
  EXPECT_EQ(fixed.num_units(), 8u);
}

TEST(RetrieverMethodsTest, ClustersFindPromptTokensAndSegmentsFindGeneratedOnes) {
  SetFaissThreads(1);
  HandLayer l(96);
  for (uint64_t t = 0; t < 16; ++t) l.Add(t, 2, 3.f);   // prompt block 0 ...
  for (uint64_t t = 48; t < 64; ++t) l.Add(t, 2, 3.f);  // ... and block 3 share a direction
  for (uint64_t t = 80; t < 96; ++t) l.Add(t, 3, 3.f);  // generated block 5
  EXPECT_EQ(SelectWith("cluster:k=4,seg=16", l.view, l.Query(2, 10.f, 95), 2, 16, 64),
            (std::vector<uint32_t>{0, 3}));
  EXPECT_EQ(SelectWith("cluster:k=4,seg=16", l.view, l.Query(3, 10.f, 95), 1, 16, 64), std::vector<uint32_t>{5});
  EXPECT_EQ(SelectWith("cluster:k=4,seg=16,map=max", l.view, l.Query(3, 10.f, 95), 1, 16, 64),
            std::vector<uint32_t>{5});
  ClusterRetriever c(ClusterOptions{.size = 8});
  RetrieverParams rp;
  rp.block_tokens = 16;
  rp.num_q_heads = 1;
  rp.prompt_tokens = 64;
  ASSERT_TRUE(c.Build(l.view, rp).ok());
  EXPECT_EQ(c.clusters_per_head(), 8u);  // 64 prompt tokens / 8
}

class VqTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetFaissThreads(1);
    SyntheticParams p;
    p.num_layers = 1;
    p.num_tokens = 2048;
    p.num_steps = 6;
    p.head_dim = 32;
    p.num_q_heads = 4;
    p.num_kv_heads = 2;
    trace_ = new Trace(std::move(SyntheticGenerator::Create(p).value()->GenerateAll()).value());
  }
  static void TearDownTestSuite() {
    delete trace_;
    trace_ = nullptr;
  }
  RetrieverParams Params(bool sample) const {
    RetrieverParams rp;
    rp.block_tokens = 16;
    rp.num_q_heads = 4;
    if (sample) {
      rp.query_sample.count = 2;
      rp.query_sample.q = trace_->layers[0].queries.data();
      rp.query_sample.q_pre = trace_->layers[0].queries_pre.data();
      rp.query_sample.positions = trace_->info.step_positions.data();
    }
    return rp;
  }
  static Trace* trace_;
};
Trace* VqTest::trace_ = nullptr;

TEST_F(VqTest, OneDimensionPerSubspaceScoresLikeTheOracle) {
  const LayerKeys view = LayerKeysOf(trace_->info, trace_->layers[0]);
  VqRetriever vq(VqOptions{.m = 32, .window = false, .train = 2048, .iters = 6});
  ExactRetriever exact;
  ASSERT_TRUE(vq.Build(view, Params(true)).ok());
  ASSERT_TRUE(exact.Build(view, Params(true)).ok());
  EXPECT_TRUE(vq.query_aware_built());
  for (uint64_t s = 2; s < trace_->info.num_steps(); ++s) {
    const QueryView q = StepQuery(trace_->info, trace_->layers[0], s);
    const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, 16, 4, 64);
    std::vector<uint32_t> mine, best;
    ASSERT_TRUE(vq.Select(q, 12, kept, &mine).ok());
    ASSERT_TRUE(exact.Select(q, 12, kept, &best).ok());
    ExactAttention ex;
    ASSERT_TRUE(ComputeExactAttention(view, q, &ex).ok());
    SelectionMetrics a, b;
    ASSERT_TRUE(EvaluateSelection(view, q, ex, 16, mine, kept, 1, &a).ok());
    ASSERT_TRUE(EvaluateSelection(view, q, ex, 16, best, kept, 1, &b).ok());
    EXPECT_GE(a.mass_recall, 0.98 * b.mass_recall) << "step " << s;
  }
}

TEST_F(VqTest, QueryAwareOnlyWithASampleAndWindowNeedsPreRopeData) {
  LayerKeys view = LayerKeysOf(trace_->info, trace_->layers[0]);
  VqRetriever plain(VqOptions{.m = 4, .train = 512, .iters = 2});
  ASSERT_TRUE(plain.Build(view, Params(false)).ok());
  EXPECT_FALSE(plain.query_aware_built());
  QueryView q = StepQuery(trace_->info, trace_->layers[0], 3);
  q.q_pre = nullptr;
  std::vector<uint32_t> sel;
  EXPECT_EQ(plain.Select(q, 10, {}, &sel).code(), StatusCode::kInvalidArgument);
  VqRetriever odd(VqOptions{.m = 5});
  EXPECT_EQ(odd.Build(view, Params(false)).code(), StatusCode::kInvalidArgument);
  view.keys_pre = nullptr;
  EXPECT_EQ(plain.Build(view, Params(false)).code(), StatusCode::kInvalidArgument);
  VqRetriever post(VqOptions{.m = 4, .window = false, .train = 512, .iters = 2});
  EXPECT_TRUE(post.Build(view, Params(false)).ok());
}

// out=1 (issue 12): a needle token whose block mean is ordinary. Block 5's
// tokens all score 0.9, the needle (token 200, block 12) scores 10 but its
// block mean only 10/16; with one block to pick, the sentence and cluster
// means choose block 5 and out=1 chooses the needle's block, as the oracle does.
TEST(OutlierKeysTest, NeedleHiddenByTheMeanIsFoundWithOutliers) {
  SetFaissThreads(1);
  const uint32_t d = 8, T = 256;
  std::vector<float> keys(size_t{T} * d, 0.f);
  Rng rng(5);
  for (float& k : keys) k = static_cast<float>(0.02 * rng.Normal());
  for (uint32_t t = 80; t < 96; ++t) keys[size_t{t} * d] += 3.f;
  keys[size_t{200} * d + 1] += 10.f;
  LayerKeys layer;
  layer.num_kv_heads = 1;
  layer.head_dim = d;
  layer.num_tokens = T;
  layer.keys = keys.data();
  std::vector<float> q(d, 0.f);
  q[0] = 0.3f, q[1] = 1.f;
  QueryView query;
  query.num_q_heads = 1;
  query.head_dim = d;
  query.q = q.data();
  query.position = T - 1;
  RetrieverParams rp;
  rp.block_tokens = 16;
  rp.num_q_heads = 1;
  auto pick = [&](const char* spec) {
    auto r = MakeRetriever(spec);
    EXPECT_TRUE(r.ok()) << spec;
    EXPECT_TRUE((*r)->Build(layer, rp).ok()) << spec;
    std::vector<uint32_t> sel;
    EXPECT_TRUE((*r)->Select(query, 1, {}, &sel).ok()) << spec;
    return sel.size() == 1 ? sel[0] : 999u;
  };
  EXPECT_EQ(pick("exact"), 12u);
  EXPECT_EQ(pick("sentence:bounds=fixed,len=16"), 5u);
  EXPECT_EQ(pick("sentence:bounds=fixed,len=16,out=1"), 12u);
  EXPECT_EQ(pick("cluster:k=4,seg=16"), 5u);
  EXPECT_EQ(pick("cluster:k=4,seg=16,out=1"), 12u);
  EXPECT_EQ(pick("mean"), 5u);
  EXPECT_EQ(pick("mean:r=2"), 12u);  // the kcenter representative is the outlier key
  // vq keeps the tokens its codes err most on exact: the needle is one.
  EXPECT_EQ(pick("vq:m=2,bits=2,rope=post,train=256,iters=4,exact=0.01"), 12u);
}

}  // namespace
}  // namespace tierkv::index
