// Incremental indexes (Retriever::Extend, issue 12 item 5): a retriever built
// on the first T0 tokens and extended to T selects as the contract says; cluster
// extends to exactly what a build with prompt T0 gives; vq keeps its codebooks
// and stays close to a full rebuild; methods without an incremental path
// rebuild; bad calls are refused.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "eval/eval_metrics.h"
#include "eval/trace.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "tests/util/retriever_test_trace.h"

namespace tierkv::index {
namespace {

class ExtendTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPrefix = 1200;
  static constexpr uint32_t kBt = 16;

  void SetUp() override {
    SetFaissThreads(1);
    auto t = RetrieverTestTrace(1);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    trace_ = std::move(t).value();
    full_ = LayerKeysOf(trace_.info, trace_.layers[0]);
    // The first kPrefix tokens of every KV head, contiguous per head.
    const uint32_t kv = full_.num_kv_heads, d = full_.head_dim;
    for (const auto* src : {&trace_.layers[0].keys, &trace_.layers[0].keys_pre, &trace_.layers[0].values}) {
      std::vector<float> out;
      for (uint32_t g = 0; g < kv; ++g) {
        const float* from = src->data() + size_t{g} * full_.num_tokens * d;
        out.insert(out.end(), from, from + kPrefix * d);
      }
      prefix_data_.push_back(std::move(out));
    }
    prefix_ = full_;
    prefix_.num_tokens = kPrefix;
    prefix_.keys = prefix_data_[0].data();
    prefix_.keys_pre = prefix_data_[1].data();
    prefix_.values = prefix_data_[2].data();
    size_t n = 0;
    while (n < full_.sentence_starts.size() && full_.sentence_starts[n] < kPrefix) ++n;
    prefix_.sentence_starts = full_.sentence_starts.subspan(0, n);
  }
  RetrieverParams Params(uint64_t prompt, bool sample) const {
    return TraceBuildParams(trace_, 0, kBt, prompt, sample ? 2 : 0);
  }
  std::unique_ptr<Retriever> Make(const char* spec, Granularity g = Granularity::kLayer) {
    auto r = MakeRetriever(spec, g);
    EXPECT_TRUE(r.ok()) << spec;
    return std::move(r).value();
  }
  // Selections of every step at a 10% budget, per KV head lists.
  std::vector<std::vector<std::vector<uint32_t>>> SelectAll(Retriever* r) {
    std::vector<std::vector<std::vector<uint32_t>>> out;
    for (uint64_t s = 0; s < trace_.info.num_steps(); ++s) {
      const QueryView q = StepQuery(trace_.info, trace_.layers[0], s);
      const uint64_t visible = VisibleBlocks(q.position, kBt);
      std::vector<std::vector<uint32_t>> sel;
      Status st = r->SelectHeads(q, static_cast<uint32_t>(visible / 10), AlwaysKeptBlocks(q.position, kBt, 4, 64),
                                 &sel);
      EXPECT_TRUE(st.ok()) << st.ToString();
      out.push_back(sel);
    }
    return out;
  }
  double MeanMass(Retriever* r) {
    double sum = 0;
    const auto all = SelectAll(r);
    for (uint64_t s = 0; s < all.size(); ++s) {
      const QueryView q = StepQuery(trace_.info, trace_.layers[0], s);
      ExactAttention ex;
      EXPECT_TRUE(ComputeExactAttention(full_, q, &ex).ok());
      SelectionMetrics m;
      EXPECT_TRUE(
          EvaluateHeadSelection(full_, q, ex, kBt, all[s], AlwaysKeptBlocks(q.position, kBt, 4, 64), 1, &m).ok());
      sum += m.mass_recall;
    }
    return sum / static_cast<double>(all.size());
  }

  Trace trace_;
  LayerKeys full_, prefix_;
  std::vector<std::vector<float>> prefix_data_;
};

TEST_F(ExtendTest, ClusterExtendsToWhatABuildWithThatPromptGives) {
  for (Granularity g : {Granularity::kLayer, Granularity::kKvHead}) {
    auto grown = Make("cluster:size=32,seg=16", g);
    auto fresh = Make("cluster:size=32,seg=16", g);
    ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok());
    const size_t before = grown->IndexBytes();
    ASSERT_TRUE(grown->Extend(full_).ok());
    EXPECT_GT(grown->IndexBytes(), before);
    ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
    EXPECT_EQ(grown->IndexBytes(), fresh->IndexBytes());
    EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get())) << GranularityName(g);
  }
}

TEST_F(ExtendTest, ClusterExtendsInSteps) {
  auto grown = Make("cluster:size=32,seg=16,out=1");
  auto fresh = Make("cluster:size=32,seg=16,out=1");
  ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok());
  // Grow through a view of the full layer cut at 1300 tokens (a partial segment and block).
  std::vector<float> k, kp, v;
  const uint32_t d = full_.head_dim;
  for (uint32_t g = 0; g < full_.num_kv_heads; ++g) {
    for (auto [dst, src] : {std::pair{&k, full_.keys}, std::pair{&kp, full_.keys_pre}, std::pair{&v, full_.values}}) {
      dst->insert(dst->end(), src + size_t{g} * full_.num_tokens * d, src + (size_t{g} * full_.num_tokens + 1303) * d);
    }
  }
  LayerKeys mid = full_;
  mid.num_tokens = 1303;
  mid.keys = k.data(), mid.keys_pre = kp.data(), mid.values = v.data();
  ASSERT_TRUE(grown->Extend(mid).ok());
  ASSERT_TRUE(grown->Extend(full_).ok());
  ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
  EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get()));
}

TEST_F(ExtendTest, VqEncodesNewTokensWithItsCodebooks) {
  for (Granularity g : {Granularity::kLayer, Granularity::kKvHead}) {
    for (const char* spec :
         {"vq:m=8,train=512,iters=4", "vq:m=8,rope=post,bits=4,train=512,iters=4", "vq:m=8,train=512,iters=4,exact=0.02"}) {
      auto grown = Make(spec, g);
      auto fresh = Make(spec, g);
      ASSERT_TRUE(grown->Build(prefix_, Params(0, true)).ok());
      const size_t before = grown->IndexBytes();
      ASSERT_TRUE(grown->Extend(full_).ok());
      EXPECT_GT(grown->IndexBytes(), before) << spec;
      ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, true)).ok());
      const bool exact = std::string(spec).find("exact=") != std::string::npos;
      // With exact=F the extended index keeps the new tokens above the build's
      // error threshold, not the top share of all tokens: sizes differ.
      if (!exact) EXPECT_EQ(grown->IndexBytes(), fresh->IndexBytes()) << spec;
      const double g_mass = MeanMass(grown.get()), f_mass = MeanMass(fresh.get());
      std::printf("%s/%s: mass recall extended %.4f, rebuilt %.4f\n", spec, GranularityName(g), g_mass, f_mass);
      // Windowed RoPE codes pre-RoPE keys, whose distribution does not move
      // with the position: new tokens code as well as in a rebuild. Post-RoPE
      // codebooks trained on earlier positions fit later keys less (measured
      // 0.09 below a rebuild per head here): they need the periodic
      // background re-training issue 12 item 5 asks for.
      const bool post = std::string(spec).find("rope=post") != std::string::npos;
      EXPECT_GT(g_mass, f_mass - (post ? 0.15 : exact ? 0.08 : 0.05)) << spec << " " << GranularityName(g);
      // Extending to the same length changes nothing.
      const auto again = SelectAll(grown.get());
      ASSERT_TRUE(grown->Extend(full_).ok());
      EXPECT_EQ(SelectAll(grown.get()), again);
    }
  }
}

TEST_F(ExtendTest, OtherMethodsRebuild) {
  for (const char* spec : {"minmax", "mean:r=4", "sentence", "spann:size=8", "exact"}) {
    auto grown = Make(spec);
    auto fresh = Make(spec);
    ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok()) << spec;
    ASSERT_TRUE(grown->Extend(full_).ok()) << spec;
    ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
    EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get())) << spec;
  }
}

TEST_F(ExtendTest, BadCallsAreRefused) {
  auto r = Make("vq:m=8,train=512,iters=4");
  EXPECT_EQ(r->Extend(full_).code(), StatusCode::kInvalidArgument);  // before Build
  ASSERT_TRUE(r->Build(full_, Params(0, true)).ok());
  EXPECT_EQ(r->Extend(prefix_).code(), StatusCode::kInvalidArgument);  // fewer tokens
  LayerKeys other = full_;
  other.num_kv_heads = 1;
  EXPECT_EQ(r->Extend(other).code(), StatusCode::kInvalidArgument);  // another shape
}

}  // namespace
}  // namespace tierkv::index
