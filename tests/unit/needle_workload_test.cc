// The needles workload (eval/needle_workload.h): reproducible, retrieval heads
// attend to their needles at any depth, local heads to the last few hundred
// tokens, bad parameters refused.
#include <gtest/gtest.h>

#include <algorithm>

#include "eval/eval_metrics.h"
#include "eval/needle_workload.h"

namespace tierkv::index {
namespace {

NeedleWorkloadParams Small(uint64_t seed) {
  NeedleWorkloadParams p;
  p.seed = seed;
  p.num_q_heads = 8;
  p.num_kv_heads = 4;
  p.head_dim = 64;
  p.num_tokens = 4096;
  p.num_steps = 8;
  p.segment_tokens = 512;
  return p;
}

TEST(NeedleWorkloadTest, ReproducibleAndSeeded) {
  auto a = NeedleWorkload::Create(Small(1)), b = NeedleWorkload::Create(Small(1)), c = NeedleWorkload::Create(Small(2));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  TraceLayer la, lb, lc;
  ASSERT_TRUE((*a)->LoadLayer(0, &la).ok());
  ASSERT_TRUE((*b)->LoadLayer(0, &lb).ok());
  ASSERT_TRUE((*c)->LoadLayer(0, &lc).ok());
  ASSERT_TRUE(la.CheckShape((*a)->info()).ok());
  EXPECT_EQ(la.keys, lb.keys);
  EXPECT_EQ(la.queries, lb.queries);
  EXPECT_NE(la.keys, lc.keys);
  EXPECT_EQ((*a)->NeedlePositions(0, 1).size(), 6u);
  EXPECT_EQ((*a)->LoadLayer(1, &la).code(), StatusCode::kInvalidArgument);
}

TEST(NeedleWorkloadTest, RetrievalHeadsFindTheirNeedlesLocalHeadsLookBack) {
  auto w = NeedleWorkload::Create(Small(3));
  ASSERT_TRUE(w.ok());
  const TraceInfo& info = (*w)->info();
  TraceLayer layer;
  ASSERT_TRUE((*w)->LoadLayer(0, &layer).ok());
  const LayerKeys view = LayerKeysOf(info, layer);
  const uint32_t group = info.num_q_heads / info.num_kv_heads;
  int retrieval_heads = 0, local_heads = 0, hits = 0, tries = 0;
  double local_mass = 0.0;
  for (uint32_t g = 0; g < info.num_kv_heads; ++g) ((*w)->IsLocal(0, g) ? local_heads : retrieval_heads)++;
  EXPECT_EQ(local_heads, 1);  // a quarter of 4
  for (uint64_t s = 0; s < info.num_steps(); ++s) {
    const QueryView q = StepQuery(info, layer, s);
    ExactAttention ex;
    ASSERT_TRUE(ComputeExactAttention(view, q, &ex).ok());
    for (uint32_t h = 0; h < info.num_q_heads; ++h) {
      const float* p = ex.probs.data() + size_t{h} * ex.num_visible;
      const uint32_t g = h / group;
      if ((*w)->IsLocal(0, g)) {
        double m = 0.0;
        for (uint64_t t = ex.num_visible > 512 ? ex.num_visible - 512 : 0; t < ex.num_visible; ++t) m += p[t];
        local_mass += m;
        continue;
      }
      const uint64_t top = std::max_element(p, p + ex.num_visible) - p;
      const std::vector<uint64_t> needles = (*w)->NeedlePositions(0, g);
      hits += std::find(needles.begin(), needles.end(), top) != needles.end();
      ++tries;
    }
  }
  EXPECT_GE(hits, tries * 3 / 4) << "the most attended token of a retrieval head is one of its needles";
  // 512 of 4096 tokens would hold 0.125 of a flat head's mass.
  EXPECT_GT(local_mass / (local_heads * group * info.num_steps()), 0.4) << "local heads look back a few hundred tokens";
}

TEST(NeedleWorkloadTest, BadParametersAreRefused) {
  NeedleWorkloadParams p = Small(1);
  p.needles_per_step = 7;
  EXPECT_EQ(NeedleWorkload::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = Small(1);
  p.num_tokens = 500;
  EXPECT_EQ(NeedleWorkload::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = Small(1);
  p.num_q_heads = 6;
  EXPECT_EQ(NeedleWorkload::Create(p).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::index
