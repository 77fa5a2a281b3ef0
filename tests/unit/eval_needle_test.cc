// Planted needles (DESIGN §4): at a 5% budget the exact retriever must select the
// block of every needle at the step whose query it was planted for.
#include <gtest/gtest.h>

#include <algorithm>

#include "index/eval_metrics.h"
#include "index/exact_retriever.h"
#include "index/synthetic.h"

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
