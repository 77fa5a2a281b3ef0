// Planted needles (DESIGN §4): at a 5% budget a retriever must select the block
// of every needle at the step whose query it was planted for. The exact
// retriever does (with a check that the needle carries real mass), and so does
// every method that can by design. Those that cannot, and why:
//   mean, sentence, cluster, spann:r=1: a unit's vector averages its tokens, so a
//     one-token needle adds only 1/16 (block), ~1/24 (sentence) or ~1/64
//     (cluster) of its logit to its unit: it is diluted below ordinary units.
//     Their variants with representative keys (mean:r>=2, spann:r>=2) keep the
//     needle as its own representative (farthest point) and find it.
//   vq:rope=window: every token is scored as if it sat w tokens before the
//     query; the generator's needle answers its query only at its true relative
//     rotation (its pre-RoPE key is b R(p - n) u), which a position-free score
//     cannot see. vq:rope=post keeps positions and finds it, with 4 dimensions
//     per subspace (m = head_dim / 4) and the needle among its training keys
//     (train >= the context here); with 8 dimensions per subspace, or codebooks
//     trained on a sample without the needle, a one-off key falls on an
//     ordinary centroid and 1 or 2 of the 12 are missed.
//   spann with tight pruning (the default eps2=0.05): the needle's vector sits in
//     a cluster whose centroid averages it with ~16 others, so the ranking by
//     q . centroid can leave it unprobed (1 of the 12 here); eps2=0.2 probes it.
#include <gtest/gtest.h>

#include <algorithm>

#include "eval/eval_metrics.h"
#include "index/exact_retriever.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "eval/synthetic.h"

namespace tierkv::index {
namespace {

constexpr uint32_t kBlockTokens = 16;
constexpr uint64_t kSinkTokens = 4, kRecentTokens = 64;

TEST(PlantedNeedleTest, ExactRetrieverAtFivePercentSelectsEveryNeedleBlock) {
  SyntheticParams p;  // defaults: 8 query heads, 2 KV heads, head_dim 64
  p.num_tokens = 4096;
  p.num_steps = 32;
  p.needles_per_layer = 6;
  auto gen = SyntheticGenerator::Create(p);
  ASSERT_TRUE(gen.ok()) << gen.status().ToString();
  const TraceInfo& info = (*gen)->info();
  ASSERT_EQ((*gen)->needles().size(), 12u);

  ExactRetriever exact;
  RetrieverParams rp;
  rp.block_tokens = kBlockTokens;
  rp.num_q_heads = p.num_q_heads;
  TraceLayer layer;
  for (uint32_t l = 0; l < p.num_layers; ++l) {
    ASSERT_TRUE((*gen)->LoadLayer(l, &layer).ok());
    const LayerKeys view = LayerKeysOf(info, layer);
    ASSERT_TRUE(exact.Build(view, rp).ok());
    for (const PlantedNeedle& n : (*gen)->needles()) {
      if (n.layer != l) continue;
      const QueryView q = StepQuery(info, layer, n.step);
      const uint32_t needle_block = static_cast<uint32_t>(n.position / kBlockTokens);
      const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, kBlockTokens, kSinkTokens, kRecentTokens);
      // The needle is neither a sink nor in the recent window: retrieval must find it.
      ASSERT_FALSE(std::binary_search(kept.begin(), kept.end(), needle_block)) << "needle at " << n.position;
      const uint64_t visible = VisibleBlocks(q.position, kBlockTokens);
      const uint32_t budget = static_cast<uint32_t>((visible * 5 + 99) / 100);  // 5%
      ASSERT_GT(budget, kept.size());
      std::vector<uint32_t> sel;
      ASSERT_TRUE(exact.Select(q, budget, kept, &sel).ok());
      EXPECT_TRUE(std::binary_search(sel.begin(), sel.end(), needle_block))
          << "layer " << l << " step " << n.step << " kv head " << n.kv_head << " needle " << n.position;

      // Control: the needle carries real mass for every head of its group, which
      // the always-kept blocks alone miss and the 5% selection recovers.
      ExactAttention ex;
      ASSERT_TRUE(ComputeExactAttention(view, q, &ex).ok());
      const std::vector<double> per_head = BlockMassPerHead(ex, kBlockTokens);
      const uint32_t group = p.num_q_heads / p.num_kv_heads;
      for (uint32_t h = n.kv_head * group; h < (n.kv_head + 1) * group; ++h) {
        const float needle_p = ex.probs[size_t{h} * ex.num_visible + n.position];
        EXPECT_GT(needle_p, 0.3f);
        auto head_mass = [&](const std::vector<uint32_t>& blocks) {
          double m = 0;
          for (uint32_t b : blocks) m += per_head[size_t{h} * visible + b];
          return m;
        };
        EXPECT_LT(head_mass(kept), 1.0 - needle_p + 1e-6);
        EXPECT_GE(head_mass(sel), needle_p);
      }
    }
  }
}

}  // namespace
}  // namespace tierkv::index

namespace tierkv::index {
namespace {

TEST(PlantedNeedleTest, EveryMethodThatCanByDesignSelectsEveryNeedleBlock) {
  SetFaissThreads(1);
  SyntheticParams p;  // as above
  p.num_tokens = 4096;
  p.num_steps = 32;
  p.needles_per_layer = 6;
  auto gen = SyntheticGenerator::Create(p);
  ASSERT_TRUE(gen.ok());
  const TraceInfo& info = (*gen)->info();
  std::vector<TraceLayer> layers(p.num_layers);
  for (uint32_t l = 0; l < p.num_layers; ++l) ASSERT_TRUE((*gen)->LoadLayer(l, &layers[l]).ok());
  for (const char* spec : {"minmax", "mean:r=2", "mean:r=4,pick=norm", "vq:rope=post,m=16,iters=2", "spann:eps2=0.2",
                           "spann:eps2=0.2,store=file"}) {
    auto r = MakeRetriever(spec);
    ASSERT_TRUE(r.ok()) << spec;
    int found = 0, total = 0;
    for (uint32_t l = 0; l < p.num_layers; ++l) {
      RetrieverParams rp;
      rp.block_tokens = kBlockTokens;
      rp.num_q_heads = p.num_q_heads;
      rp.prompt_tokens = info.step_positions[0];
      ASSERT_TRUE((*r)->Build(LayerKeysOf(info, layers[l]), rp).ok()) << spec;
      for (const PlantedNeedle& n : (*gen)->needles()) {
        if (n.layer != l) continue;
        const QueryView q = StepQuery(info, layers[l], n.step);
        const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, kBlockTokens, kSinkTokens, kRecentTokens);
        const uint64_t visible = VisibleBlocks(q.position, kBlockTokens);
        std::vector<uint32_t> sel;
        ASSERT_TRUE((*r)->Select(q, static_cast<uint32_t>((visible * 5 + 99) / 100), kept, &sel).ok());
        ++total;
        const bool hit = std::binary_search(sel.begin(), sel.end(), static_cast<uint32_t>(n.position / kBlockTokens));
        found += hit;
        EXPECT_TRUE(hit) << spec << ": layer " << l << " step " << n.step << " needle " << n.position;
      }
    }
    EXPECT_EQ(total, 12) << spec;
    EXPECT_EQ(found, total) << spec;
  }
}

}  // namespace
}  // namespace tierkv::index
