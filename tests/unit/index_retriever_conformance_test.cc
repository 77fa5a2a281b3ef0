// One conformance suite for every Retriever (STYLE.md), with the exact retriever
// as the oracle. To enroll a retriever, add a factory to kRetrievers below.
//
// Properties checked on synthetic traces, at several budgets and steps:
//   - Select honours the contract (the base class turns violations into kInternal);
//   - the same input gives the same selection (retrievers are deterministic);
//   - at equal selection size, no retriever holds more attention mass than the
//     exact retriever (summed-mass top-k is optimal), so metrics never favour a
//     retriever over the oracle;
//   - a full budget selects every visible block; rebuilding on another layer works;
//   - Build reports a non-zero IndexBytes.
// Build sees the trace's last 200 tokens as generated (prompt_tokens) and the
// queries of the first two steps as a query sample.
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include "index/eval_metrics.h"
#include "index/exact_retriever.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "index/synthetic.h"

namespace tierkv::index {
namespace {

struct RetrieverCase {
  const char* name;
  std::function<std::unique_ptr<Retriever>()> make;
};

// A retriever made by its factory string (retriever_factory.h).
std::function<std::unique_ptr<Retriever>()> FromSpec(const char* spec) {
  return [spec] {
    auto r = MakeRetriever(spec);
    EXPECT_TRUE(r.ok()) << spec << ": " << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  };
}

const RetrieverCase kRetrievers[] = {
    {"exact", [] { return std::make_unique<ExactRetriever>(); }},
    {"minmax", FromSpec("minmax")},
    {"mean", FromSpec("mean")},
    {"mean_r4_kcenter", FromSpec("mean:r=4")},
    {"mean_r3_norm", FromSpec("mean:r=3,pick=norm")},
    {"sentence", FromSpec("sentence")},
    {"sentence_fixed", FromSpec("sentence:bounds=fixed,len=10")},
    {"cluster_mass", FromSpec("cluster:size=32,seg=16")},
    {"cluster_max", FromSpec("cluster:k=20,seg=40,map=max")},
    {"vq_window", FromSpec("vq:m=8,train=512,iters=4")},
    {"vq_post_4bit_max", FromSpec("vq:m=16,bits=4,rope=post,train=512,iters=4,reduce=max")},
    {"spann_memory", FromSpec("spann:size=8")},
    {"spann_file_uring", FromSpec("spann:size=4,eps2=0,maxprobe=4,store=file")},
    {"spann_file_pread", FromSpec("spann:size=16,rounds=0,replicas=1,store=file,uring=0")},
};

class RetrieverConformance : public ::testing::TestWithParam<RetrieverCase> {
 protected:
  static void SetUpTestSuite() {
    SetFaissThreads(1);
    SyntheticParams p;
    p.num_tokens = 1600;
    p.num_steps = 8;
    p.head_dim = 32;
    p.num_q_heads = 4;
    p.num_kv_heads = 2;
    auto gen = SyntheticGenerator::Create(p);
    ASSERT_TRUE(gen.ok());
    auto t = (*gen)->GenerateAll();
    ASSERT_TRUE(t.ok());
    trace_ = new Trace(std::move(t).value());
  }
  static void TearDownTestSuite() {
    delete trace_;
    trace_ = nullptr;
  }
  static RetrieverParams Params(uint32_t bt) {
    RetrieverParams rp;
    rp.block_tokens = bt;
    rp.num_q_heads = trace_->info.num_q_heads;
    rp.prompt_tokens = trace_->info.num_tokens - 200;  // the last 200 tokens count as generated
    return rp;
  }
  static Trace* trace_;
};
Trace* RetrieverConformance::trace_ = nullptr;

TEST_P(RetrieverConformance, ContractDeterminismAndNeverAboveTheOracle) {
  const TraceInfo& info = trace_->info;
  auto r = GetParam().make();
  ASSERT_NE(r, nullptr);
  ExactRetriever oracle;
  for (uint32_t bt : {8u, 16u}) {
    for (uint32_t l = 0; l < info.num_layers; ++l) {
      const LayerKeys view = LayerKeysOf(info, trace_->layers[l]);
      RetrieverParams rp = Params(bt);
      // The first two steps' queries as the sample query-aware retrievers learn from.
      rp.query_sample.count = 2;
      rp.query_sample.q = trace_->layers[l].queries.data();
      rp.query_sample.q_pre = trace_->layers[l].queries_pre.data();
      rp.query_sample.positions = info.step_positions.data();
      ASSERT_TRUE(r->Build(view, rp).ok()) << GetParam().name;
      ASSERT_TRUE(oracle.Build(view, Params(bt)).ok());
      EXPECT_GT(r->IndexBytes(), 0u);
      for (uint64_t step = 0; step < info.num_steps(); step += 3) {
        const QueryView q = StepQuery(info, trace_->layers[l], step);
        const uint64_t visible = VisibleBlocks(q.position, bt);
        const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, bt, 4, 64);
        ExactAttention exact;
        ASSERT_TRUE(ComputeExactAttention(view, q, &exact).ok());
        for (uint32_t budget : {0u, 3u, static_cast<uint32_t>(visible / 10), static_cast<uint32_t>(visible / 4),
                                static_cast<uint32_t>(visible)}) {
          std::vector<uint32_t> sel, again, best;
          Status s = r->Select(q, budget, kept, &sel);
          ASSERT_TRUE(s.ok()) << GetParam().name << ": " << s.ToString();
          ASSERT_TRUE(r->Select(q, budget, kept, &again).ok());
          EXPECT_EQ(sel, again) << "not deterministic";
          ASSERT_TRUE(oracle.Select(q, budget, kept, &best).ok());
          ASSERT_EQ(sel.size(), best.size());
          SelectionMetrics mine, top;
          ASSERT_TRUE(EvaluateSelection(view, q, exact, bt, sel, kept, 1, &mine).ok());
          ASSERT_TRUE(EvaluateSelection(view, q, exact, bt, best, kept, 1, &top).ok());
          EXPECT_LE(mine.mass_recall, top.mass_recall + 1e-9) << "budget " << budget;
          if (budget == visible) {
            EXPECT_EQ(sel.size(), visible);
          }
        }
      }
    }
  }
}

TEST_P(RetrieverConformance, MaxHeadCombineKeepsTheContract) {
  const TraceInfo& info = trace_->info;
  auto r = GetParam().make();
  ASSERT_NE(r, nullptr);
  RetrieverParams rp = Params(16);
  rp.head_combine = HeadCombine::kMax;
  ASSERT_TRUE(r->Build(LayerKeysOf(info, trace_->layers[0]), rp).ok());
  for (uint64_t step = 0; step < info.num_steps(); step += 4) {
    const QueryView q = StepQuery(info, trace_->layers[0], step);
    const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, 16, 4, 64);
    for (uint32_t budget : {5u, 12u, 40u}) {
      std::vector<uint32_t> sel, again;
      ASSERT_TRUE(r->Select(q, budget, kept, &sel).ok()) << GetParam().name;
      ASSERT_TRUE(r->Select(q, budget, kept, &again).ok());
      EXPECT_EQ(sel, again);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllRetrievers, RetrieverConformance, ::testing::ValuesIn(kRetrievers),
                         [](const ::testing::TestParamInfo<RetrieverCase>& info) { return info.param.name; });

}  // namespace
}  // namespace tierkv::index
