// The exact oracle and the selection metrics, on cases small enough to compute by
// hand, then on random GQA data against a naive reference, and on the real model.
#include "eval/eval_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "index/rng.h"
#include "eval/tiny_llama.h"

#ifndef TIERKV_SHARED_DATA_DIR
#define TIERKV_SHARED_DATA_DIR "../shared/data"
#endif

namespace tierkv::index {
namespace {

// One KV head, two query heads, head_dim 2, four tokens. With the 1/sqrt(2) scale,
// head 0 (q = (sqrt2, 0)) has logits (0, ln2, ln3, ln4): probs (.1, .2, .3, .4);
// head 1 (q = (0, sqrt2)) has logits (0, 0, 0, ln7): probs (.1, .1, .1, .7).
class HandCase : public ::testing::Test {
 protected:
  void SetUp() override {
    const float l2 = std::log(2.f), l3 = std::log(3.f), l4 = std::log(4.f), l7 = std::log(7.f);
    keys_ = {0, 0, l2, 0, l3, 0, l4, l7};
    values_ = {1, 0, 0, 1, 1, 1, 2, 0};
    q_ = {std::sqrt(2.f), 0, 0, std::sqrt(2.f)};
    layer_.num_kv_heads = 1;
    layer_.head_dim = 2;
    layer_.num_tokens = 4;
    layer_.keys = keys_.data();
    layer_.values = values_.data();
    query_.num_q_heads = 2;
    query_.head_dim = 2;
    query_.q = q_.data();
    query_.position = 3;
    ASSERT_TRUE(ComputeExactAttention(layer_, query_, &exact_).ok());
  }
  SelectionMetrics Eval(std::vector<uint32_t> sel, std::vector<uint32_t> kept, uint32_t bt = 1) {
    SelectionMetrics m;
    Status s = EvaluateSelection(layer_, query_, exact_, bt, sel, kept, 100, &m);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return m;
  }

  std::vector<float> keys_, values_, q_;
  LayerKeys layer_;
  QueryView query_;
  ExactAttention exact_;
};

TEST_F(HandCase, ExactAttentionProbabilitiesAndOutput) {
  const float want_p[8] = {.1f, .2f, .3f, .4f, .1f, .1f, .1f, .7f};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(exact_.probs[i], want_p[i], 1e-6) << i;
  // head 0: .1(1,0)+.2(0,1)+.3(1,1)+.4(2,0) = (1.2, .5); head 1: (1.6, .2)
  const float want_o[4] = {1.2f, .5f, 1.6f, .2f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(exact_.output[i], want_o[i], 1e-6) << i;
  auto per_head = BlockMassPerHead(exact_, 2);
  ASSERT_EQ(per_head.size(), 4u);
  EXPECT_NEAR(per_head[0], .3, 1e-6);
  EXPECT_NEAR(per_head[1], .7, 1e-6);
  EXPECT_NEAR(per_head[2], .2, 1e-6);
  EXPECT_NEAR(per_head[3], .8, 1e-6);
  auto summed = SummedBlockMass(exact_, 2);
  EXPECT_NEAR(summed[0], .5, 1e-6);
  EXPECT_NEAR(summed[1], 1.5, 1e-6);
}

TEST_F(HandCase, CausalPrefixAndPartialBlock) {
  query_.position = 2;  // sees tokens 0..2: head 0 logits (0, ln2, ln3) -> (1, 2, 3) / 6
  ASSERT_TRUE(ComputeExactAttention(layer_, query_, &exact_).ok());
  EXPECT_EQ(exact_.num_visible, 3u);
  EXPECT_NEAR(exact_.probs[0], 1.f / 6, 1e-6);
  EXPECT_NEAR(exact_.probs[2], 3.f / 6, 1e-6);
  EXPECT_NEAR(exact_.probs[3 + 2], 1.f / 3, 1e-6);  // head 1: uniform over 3
  auto per_head = BlockMassPerHead(exact_, 2);       // blocks {0,1}, {2}
  ASSERT_EQ(per_head.size(), 4u);
  EXPECT_NEAR(per_head[1], .5, 1e-6);
  EXPECT_NEAR(per_head[3], 1.f / 3, 1e-6);
}

TEST_F(HandCase, SelectionMetricsByHand) {
  // Selection {0, 2} (token blocks), block 0 always kept.
  SelectionMetrics m = Eval({0, 2}, {0});
  // Masses: head 0 .1 + .3 = .4, head 1 .1 + .1 = .2.
  EXPECT_NEAR(m.mass_recall, .3, 1e-6);
  EXPECT_NEAR(m.min_head_mass_recall, .2, 1e-6);
  EXPECT_NEAR(m.kl_divergence, (-std::log(.4) - std::log(.2)) / 2, 1e-5);
  // Restricted outputs (1, .75) and (1, .5) vs (1.2, .5) and (1.6, .2):
  // sqrt((.04 + .0625 + .36 + .09) / (1.44 + .25 + 2.56 + .04)).
  EXPECT_NEAR(m.output_rel_error, std::sqrt(.5525 / 4.29), 1e-5);
  // Summed block masses (.2, .3, .4, 1.1); candidates {1,2,3}; top-1 is 3, not 2.
  EXPECT_EQ(m.topk_recall, 0.0);
  EXPECT_EQ(m.selected_blocks, 2u);
  EXPECT_EQ(m.retrieved_blocks, 1u);
  EXPECT_EQ(m.bytes_selected, 200u);
  EXPECT_EQ(m.bytes_retrieved, 100u);

  m = Eval({0, 2, 3}, {0});
  EXPECT_EQ(m.topk_recall, 1.0);
  EXPECT_NEAR(m.mass_recall, (.8 + .9) / 2, 1e-6);
  m = Eval({0, 1, 3}, {0});
  EXPECT_EQ(m.topk_recall, 0.5);
  m = Eval({0}, {0});
  EXPECT_EQ(m.topk_recall, 1.0);  // nothing retrieved: nothing missed
  EXPECT_EQ(m.retrieved_blocks, 0u);

  m = Eval({0, 1, 2, 3}, {});
  EXPECT_NEAR(m.mass_recall, 1.0, 1e-6);
  EXPECT_NEAR(m.output_rel_error, 0.0, 1e-6);
  EXPECT_NEAR(m.kl_divergence, 0.0, 1e-6);
  EXPECT_EQ(m.topk_recall, 1.0);
  // Blocks of two tokens: {1} holds tokens 2, 3: head 0 .7, head 1 .8.
  m = Eval({1}, {}, 2);
  EXPECT_NEAR(m.mass_recall, .75, 1e-6);
  EXPECT_EQ(m.topk_recall, 1.0);
}

// Per-KV-head selection by hand: two KV heads with the keys above, one query
// head each (head 0 reads KV head 0: probs .1 .2 .3 .4; head 1 reads KV head 1:
// .1 .1 .1 .7).
TEST_F(HandCase, PerKvHeadSelectionByHand) {
  std::vector<float> keys2 = keys_, values2 = values_;
  keys2.insert(keys2.end(), keys_.begin(), keys_.end());
  values2.insert(values2.end(), values_.begin(), values_.end());
  LayerKeys layer = layer_;
  layer.num_kv_heads = 2;
  layer.keys = keys2.data();
  layer.values = values2.data();
  ExactAttention exact;
  ASSERT_TRUE(ComputeExactAttention(layer, query_, &exact).ok());
  EXPECT_NEAR(exact.probs[3], .4, 1e-6);
  EXPECT_NEAR(exact.probs[7], .7, 1e-6);
  const std::vector<uint32_t> kept = {0};
  const std::vector<std::vector<uint32_t>> per_head = {{0, 2}, {0, 3}};
  SelectionMetrics m;
  ASSERT_TRUE(EvaluateHeadSelection(layer, query_, exact, 1, per_head, kept, 100, &m).ok());
  EXPECT_NEAR(m.head_mass_recall[0], .4, 1e-6);
  EXPECT_NEAR(m.head_mass_recall[1], .8, 1e-6);
  EXPECT_NEAR(m.mass_recall, .6, 1e-6);
  EXPECT_NEAR(m.topk_recall, .5, 1e-9);  // KV head 0 misses its top block (3), KV head 1 hits it
  EXPECT_EQ(m.selected_blocks, 2u);      // per KV head
  EXPECT_EQ(m.bytes_selected, 200u);     // 4 (head, block) pairs of 100 / 2 bytes: as 2 layer blocks
  EXPECT_EQ(m.bytes_retrieved, 100u);
  // One shared list is per-layer selection: the same as EvaluateSelection.
  SelectionMetrics shared, layer_m;
  const std::vector<std::vector<uint32_t>> one = {{0, 2}};
  ASSERT_TRUE(EvaluateHeadSelection(layer, query_, exact, 1, one, kept, 100, &shared).ok());
  ASSERT_TRUE(EvaluateSelection(layer, query_, exact, 1, one[0], kept, 100, &layer_m).ok());
  EXPECT_NEAR(shared.mass_recall, .3, 1e-6);
  EXPECT_EQ(shared.mass_recall, layer_m.mass_recall);
  EXPECT_EQ(shared.bytes_selected, 200u);
  // Group masses: KV head 1's block 3 holds .7.
  const std::vector<double> gm = GroupBlockMass(exact, 2, 1);
  ASSERT_EQ(gm.size(), 8u);
  EXPECT_NEAR(gm[4 + 3], .7, 1e-6);
  // Wrong entry count, a head missing an always-kept block.
  const std::vector<std::vector<uint32_t>> three = {{0}, {0}, {0}};
  EXPECT_EQ(EvaluateHeadSelection(layer, query_, exact, 1, three, kept, 100, &m).code(),
            StatusCode::kInvalidArgument);
  const std::vector<std::vector<uint32_t>> missing = {{0, 2}, {2, 3}};
  EXPECT_EQ(EvaluateHeadSelection(layer, query_, exact, 1, missing, kept, 100, &m).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(HandCase, BadSelectionsAreRefused) {
  SelectionMetrics m;
  EXPECT_EQ(EvaluateSelection(layer_, query_, exact_, 1, std::vector<uint32_t>{2, 0}, {}, 1, &m).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateSelection(layer_, query_, exact_, 1, std::vector<uint32_t>{1, 1}, {}, 1, &m).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluateSelection(layer_, query_, exact_, 1, std::vector<uint32_t>{4}, {}, 1, &m).code(),
            StatusCode::kInvalidArgument);
  Status s = EvaluateSelection(layer_, query_, exact_, 1, std::vector<uint32_t>{1}, std::vector<uint32_t>{0}, 1, &m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("always-kept block 0"), std::string::npos);
  EXPECT_EQ(EvaluateSelection(layer_, query_, exact_, 0, std::vector<uint32_t>{0}, {}, 1, &m).code(),
            StatusCode::kInvalidArgument);
  QueryView other = query_;
  other.position = 2;  // exact was computed for position 3
  EXPECT_EQ(EvaluateSelection(layer_, other, exact_, 1, std::vector<uint32_t>{0}, {}, 1, &m).code(),
            StatusCode::kInvalidArgument);
  other.position = 4;
  EXPECT_EQ(ComputeExactAttention(layer_, other, &exact_).code(), StatusCode::kInvalidArgument);
  other = query_;
  other.num_q_heads = 3;
  layer_.num_kv_heads = 2;
  EXPECT_EQ(ComputeExactAttention(layer_, other, &exact_).code(), StatusCode::kInvalidArgument);
  other.head_dim = 4;
  EXPECT_EQ(ComputeExactAttention(layer_, other, &exact_).code(), StatusCode::kInvalidArgument);
}

// Random GQA data (4 query heads over 2 KV heads) against a naive double reference.
TEST(ExactAttentionTest, GqaMatchesNaiveReferenceOnRandomData) {
  Rng rng(11);
  const uint32_t kv = 2, heads = 4, d = 16;
  const uint64_t T = 301;
  std::vector<float> k(kv * T * d), v(kv * T * d), q(heads * d);
  for (float& x : k) x = static_cast<float>(rng.Normal() * 2);
  for (float& x : v) x = static_cast<float>(rng.Normal());
  for (float& x : q) x = static_cast<float>(rng.Normal() * 2);
  LayerKeys layer;
  layer.num_kv_heads = kv;
  layer.head_dim = d;
  layer.num_tokens = T;
  layer.keys = k.data();
  layer.values = v.data();
  QueryView query;
  query.num_q_heads = heads;
  query.head_dim = d;
  query.q = q.data();
  query.position = 250;
  ExactAttention exact;
  ASSERT_TRUE(ComputeExactAttention(layer, query, &exact).ok());
  for (uint32_t h = 0; h < heads; ++h) {
    const uint32_t g = h / 2;
    std::vector<double> p(251);
    double mx = -1e300, sum = 0;
    for (uint64_t t = 0; t <= 250; ++t) {
      double dot = 0;
      for (uint32_t i = 0; i < d; ++i) dot += double(q[h * d + i]) * k[(g * T + t) * d + i];
      mx = std::max(mx, p[t] = dot / 4.0);
    }
    for (double& x : p) sum += (x = std::exp(x - mx));
    double row = 0;
    for (uint64_t t = 0; t <= 250; ++t) {
      p[t] /= sum;
      row += exact.probs[h * 251 + t];
      ASSERT_NEAR(exact.probs[h * 251 + t], p[t], 1e-5 * std::max(1.0, p[t] * 10));
    }
    EXPECT_NEAR(row, 1.0, 1e-5);
    for (uint32_t i = 0; i < d; ++i) {
      double o = 0;
      for (uint64_t t = 0; t <= 250; ++t) o += p[t] * v[(g * T + t) * d + i];
      EXPECT_NEAR(exact.output[h * d + i], o, 1e-4);
    }
  }
  // Selecting every block recovers everything; the metrics are consistent.
  std::vector<uint32_t> all;
  for (uint32_t b = 0; b < VisibleBlocks(250, 16); ++b) all.push_back(b);
  SelectionMetrics m;
  ASSERT_TRUE(EvaluateSelection(layer, query, exact, 16, all, {}, 1, &m).ok());
  EXPECT_NEAR(m.mass_recall, 1.0, 1e-5);
  EXPECT_NEAR(m.output_rel_error, 0.0, 1e-5);
}

// The oracle on a real-model trace reproduces the attention the model computed.
TEST(ExactAttentionTest, OracleReproducesTheRealModelsAttention) {
  const std::string path = std::string(TIERKV_SHARED_DATA_DIR) + "/stories260K.bin";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "checkpoint not found at " << path;
  auto model = TinyLlama::Load(path, kStories260KChecksum);
  ASSERT_TRUE(model.ok());
  GenerateOptions o;
  o.num_tokens = 120;
  o.num_query_steps = 1;
  auto trace = GenerateTrace(model->get(), o);
  ASSERT_TRUE(trace.ok());
  std::vector<float> logits;
  std::vector<LayerActivations> acts;
  (*model)->Reset();
  for (int32_t tok : trace->info.token_ids) ASSERT_TRUE((*model)->Forward(tok, &logits, &acts).ok());
  for (uint32_t l = 0; l < 5; ++l) {
    ExactAttention exact;
    const TraceLayer& layer = trace->layers[l];
    ASSERT_TRUE(ComputeExactAttention(LayerKeysOf(trace->info, layer), StepQuery(trace->info, layer, 0), &exact).ok());
    for (size_t i = 0; i < exact.output.size(); ++i) EXPECT_NEAR(exact.output[i], acts[l].attn_out[i], 1e-4);
  }
}

}  // namespace
}  // namespace tierkv::index
