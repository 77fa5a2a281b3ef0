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
// Per KV head (every method wrapped by MakeRetriever(spec, Granularity::kKvHead)):
//   - SelectHeads returns one list per KV head, each honouring the contract;
//   - deterministic; Select (the per-layer call) is refused;
//   - no head's group holds more mass than with the per-head oracle (exact per
//     head), and the per-head oracle never holds less than the per-layer one at
//     the same blocks per head (equal bytes);
//   - triggers run per (KV head) stream and keep the contract.
// Build sees the trace's last 200 tokens as generated (prompt_tokens) and the
// queries of the first two steps as a query sample.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <memory>

#include "eval/eval_metrics.h"
#include "eval/trace.h"
#include "index/exact_retriever.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "index/trigger.h"
#include "tests/util/retriever_test_trace.h"

namespace tierkv::index {
namespace {

struct RetrieverCase {
  const char* name;
  std::function<std::unique_ptr<Retriever>()> make;
  const char* spec;  // the factory string of `make`
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
    {"exact", [] { return std::make_unique<ExactRetriever>(); }, "exact"},
    {"minmax", FromSpec("minmax"), "minmax"},
    {"mean", FromSpec("mean"), "mean"},
    {"mean_r4_kcenter", FromSpec("mean:r=4"), "mean:r=4"},
    {"mean_r3_norm", FromSpec("mean:r=3,pick=norm"), "mean:r=3,pick=norm"},
    {"sentence", FromSpec("sentence"), "sentence"},
    {"sentence_fixed", FromSpec("sentence:bounds=fixed,len=10"), "sentence:bounds=fixed,len=10"},
    {"cluster_mass", FromSpec("cluster:size=32,seg=16"), "cluster:size=32,seg=16"},
    {"cluster_max", FromSpec("cluster:k=20,seg=40,map=max"), "cluster:k=20,seg=40,map=max"},
    {"vq_exact_tokens", FromSpec("vq:m=8,train=512,iters=4,exact=0.02"), "vq:m=8,train=512,iters=4,exact=0.02"},
    {"cluster_outliers", FromSpec("cluster:size=32,seg=16,out=1"), "cluster:size=32,seg=16,out=1"},
    {"sentence_outliers", FromSpec("sentence:out=1"), "sentence:out=1"},
    {"vq_window", FromSpec("vq:m=8,train=512,iters=4"), "vq:m=8,train=512,iters=4"},
    {"vq_post_4bit_max", FromSpec("vq:m=16,bits=4,rope=post,train=512,iters=4,reduce=max"), "vq:m=16,bits=4,rope=post,train=512,iters=4,reduce=max"},
    {"spann_memory", FromSpec("spann:size=8"), "spann:size=8"},
    {"spann_file_uring", FromSpec("spann:size=4,eps2=0,maxprobe=4,store=file"), "spann:size=4,eps2=0,maxprobe=4,store=file"},
    {"spann_file_pread", FromSpec("spann:size=16,rounds=0,replicas=1,store=file,uring=0"), "spann:size=16,rounds=0,replicas=1,store=file,uring=0"},
};

class RetrieverConformance : public ::testing::TestWithParam<RetrieverCase> {
 protected:
  static void SetUpTestSuite() {
    SetFaissThreads(1);
    auto t = RetrieverTestTrace(2);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    trace_ = new Trace(std::move(t).value());
  }
  static void TearDownTestSuite() {
    delete trace_;
    trace_ = nullptr;
  }
  // sample_steps > 0: the first steps' queries of `layer` as the query sample.
  static RetrieverParams Params(uint32_t bt, uint32_t layer = 0, uint32_t sample_steps = 0) {
    // The last 200 tokens count as generated.
    return TraceBuildParams(*trace_, layer, bt, trace_->info.num_tokens - 200, sample_steps);
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
      // The first two steps' queries as the sample query-aware retrievers learn from.
      ASSERT_TRUE(r->Build(view, Params(bt, l, 2)).ok()) << GetParam().name;
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

std::unique_ptr<Retriever> PerHead(const char* spec) {
  auto r = MakeRetriever(spec, Granularity::kKvHead);
  EXPECT_TRUE(r.ok()) << spec << ": " << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST_P(RetrieverConformance, PerKvHeadContractDeterminismAndNeverAboveThePerHeadOracle) {
  const TraceInfo& info = trace_->info;
  auto r = PerHead(GetParam().spec);
  auto oracle = PerHead("exact");
  ASSERT_NE(r, nullptr);
  ASSERT_NE(oracle, nullptr);
  EXPECT_EQ(r->granularity(), Granularity::kKvHead);
  ExactRetriever layer_oracle;
  const uint32_t bt = 16, kv = info.num_kv_heads;
  for (uint32_t l = 0; l < info.num_layers; ++l) {
    const LayerKeys view = LayerKeysOf(info, trace_->layers[l]);
    ASSERT_TRUE(r->Build(view, Params(bt, l, 2)).ok()) << GetParam().name;
    ASSERT_TRUE(oracle->Build(view, Params(bt)).ok());
    ASSERT_TRUE(layer_oracle.Build(view, Params(bt)).ok());
    EXPECT_GT(r->IndexBytes(), 0u);
    for (uint64_t step = 0; step < info.num_steps(); step += 3) {
      const QueryView q = StepQuery(info, trace_->layers[l], step);
      const uint64_t visible = VisibleBlocks(q.position, bt);
      const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, bt, 4, 64);
      ExactAttention exact;
      ASSERT_TRUE(ComputeExactAttention(view, q, &exact).ok());
      std::vector<uint32_t> unused;
      EXPECT_EQ(r->Select(q, 3, kept, &unused).code(), StatusCode::kInvalidArgument);
      for (uint32_t budget : {0u, 3u, static_cast<uint32_t>(visible / 10), static_cast<uint32_t>(visible)}) {
        std::vector<std::vector<uint32_t>> sel, again, best;
        std::vector<uint32_t> layer_best;
        Status s = r->SelectHeads(q, budget, kept, &sel);
        ASSERT_TRUE(s.ok()) << GetParam().name << ": " << s.ToString();
        ASSERT_EQ(sel.size(), kv);
        ASSERT_TRUE(r->SelectHeads(q, budget, kept, &again).ok());
        EXPECT_EQ(sel, again) << "not deterministic";
        ASSERT_TRUE(oracle->SelectHeads(q, budget, kept, &best).ok());
        ASSERT_TRUE(layer_oracle.Select(q, budget, kept, &layer_best).ok());
        const uint64_t want = std::min<uint64_t>(visible, std::max<uint64_t>(budget, kept.size()));
        for (uint32_t g = 0; g < kv; ++g) {
          EXPECT_EQ(sel[g].size(), want);
          EXPECT_TRUE(std::includes(sel[g].begin(), sel[g].end(), kept.begin(), kept.end()));
          if (budget == visible) EXPECT_EQ(sel[g].size(), visible);
        }
        SelectionMetrics mine, top, layer_top;
        ASSERT_TRUE(EvaluateHeadSelection(view, q, exact, bt, sel, kept, 64, &mine).ok());
        ASSERT_TRUE(EvaluateHeadSelection(view, q, exact, bt, best, kept, 64, &top).ok());
        ASSERT_TRUE(EvaluateSelection(view, q, exact, bt, layer_best, kept, 64, &layer_top).ok());
        // Per group: summed mass of its heads never above the per-head oracle's.
        const uint32_t group = info.num_q_heads / kv;
        for (uint32_t g = 0; g < kv; ++g) {
          double m = 0, o = 0, lo = 0;
          for (uint32_t h = g * group; h < (g + 1) * group; ++h) {
            m += mine.head_mass_recall[h], o += top.head_mass_recall[h], lo += layer_top.head_mass_recall[h];
          }
          EXPECT_LE(m, o + 1e-6) << "budget " << budget << " group " << g;
          EXPECT_GE(o, lo - 1e-6) << "per-head oracle below the per-layer one, budget " << budget;
        }
        // Equal bytes: k blocks per KV head cost what k layer blocks cost.
        EXPECT_EQ(mine.bytes_selected, layer_top.bytes_selected);
        EXPECT_EQ(mine.selected_blocks, layer_top.selected_blocks);
      }
    }
  }
}

TEST_P(RetrieverConformance, PerKvHeadTriggersKeepTheContract) {
  const TraceInfo& info = trace_->info;
  for (const char* trig : {"every", "every:n=3", "drift:tau=0.99"}) {
    auto r = PerHead(GetParam().spec);
    ASSERT_NE(r, nullptr);
    ASSERT_TRUE(r->Build(LayerKeysOf(info, trace_->layers[0]), Params(16)).ok());
    auto cfg = TriggerConfig::Parse(trig);
    ASSERT_TRUE(cfg.ok());
    TriggerBank bank(*cfg);
    uint64_t steps = 0;
    for (uint64_t step = 0; step < info.num_steps(); ++step, ++steps) {
      const QueryView q = StepQuery(info, trace_->layers[0], step);
      const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, 16, 4, 64);
      const uint64_t visible = VisibleBlocks(q.position, 16);
      std::vector<std::vector<uint32_t>> sel;
      bool retrieved = false;
      Status s = bank.SelectHeads(7, 0, r.get(), q, 10, kept, &sel, &retrieved);
      ASSERT_TRUE(s.ok()) << trig << ": " << s.ToString();
      ASSERT_EQ(sel.size(), info.num_kv_heads);
      if (step == 0) EXPECT_TRUE(retrieved);
      for (const auto& h : sel) {
        EXPECT_TRUE(CheckBlockList("selected", h, visible).ok());
        EXPECT_EQ(h.size(), std::min<uint64_t>(visible, std::max<uint64_t>(10, kept.size())));
        EXPECT_TRUE(std::includes(h.begin(), h.end(), kept.begin(), kept.end()));
      }
    }
    // One stream per KV head.
    EXPECT_EQ(bank.stats().taken + bank.stats().skipped, steps * info.num_kv_heads) << trig;
    if (std::string(trig) == "every:n=3") {
      EXPECT_EQ(bank.stats().taken, ((steps + 2) / 3) * info.num_kv_heads);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllRetrievers, RetrieverConformance, ::testing::ValuesIn(kRetrievers),
                         [](const ::testing::TestParamInfo<RetrieverCase>& info) { return info.param.name; });

}  // namespace
}  // namespace tierkv::index
