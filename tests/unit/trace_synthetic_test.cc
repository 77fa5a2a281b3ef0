// The synthetic generator: reproducibility, structure, and the properties that
// retrieval methods rely on (DESIGN §4), each measured on generated data.
#include "eval/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "index/rope.h"

namespace tierkv::index {
namespace {

SyntheticParams SmallParams() {
  SyntheticParams p;
  p.num_tokens = 2048;
  p.num_steps = 24;
  return p;
}

double Cos(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

// Softmax of one query head over positions [0, pos] of its KV head (post-RoPE).
std::vector<double> AttentionRow(const TraceInfo& info, const TraceLayer& l, size_t step, uint32_t h) {
  const size_t d = info.head_dim, T = info.num_tokens, g = h / info.group_size();
  const uint64_t pos = info.step_positions[step];
  const float* q = l.queries.data() + (step * info.num_q_heads + h) * d;
  std::vector<double> p(pos + 1);
  double mx = -1e300, sum = 0;
  for (uint64_t t = 0; t <= pos; ++t) {
    double dot = 0;
    for (size_t i = 0; i < d; ++i) dot += double(q[i]) * l.keys[(g * T + t) * d + i];
    mx = std::max(mx, p[t] = dot / std::sqrt(double(d)));
  }
  for (double& x : p) sum += (x = std::exp(x - mx));
  for (double& x : p) x /= sum;
  return p;
}

TEST(SyntheticTest, RefusesBadParameters) {
  SyntheticParams p = SmallParams();
  p.head_dim = 63;
  EXPECT_EQ(SyntheticGenerator::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = SmallParams();
  p.num_kv_heads = 3;
  EXPECT_EQ(SyntheticGenerator::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = SmallParams();
  p.num_tokens = 270;  // no room for needles 256 tokens before the steps
  auto r = SyntheticGenerator::Create(p);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("needle"), std::string::npos);
  p.needles_per_layer = 0;
  EXPECT_TRUE(SyntheticGenerator::Create(p).ok());
  p = SmallParams();
  p.query_drift = 0.f;
  EXPECT_EQ(SyntheticGenerator::Create(p).status().code(), StatusCode::kInvalidArgument);
  p = SmallParams();
  p.key_noise = std::nanf("");
  EXPECT_EQ(SyntheticGenerator::Create(p).status().code(), StatusCode::kInvalidArgument);
}

TEST(SyntheticTest, SeedNamesOneTraceAndLayersAreIndependentOfOrder) {
  auto a = SyntheticGenerator::Create(SmallParams());
  auto b = SyntheticGenerator::Create(SmallParams());
  SyntheticParams other = SmallParams();
  other.seed = 2;
  auto c = SyntheticGenerator::Create(other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  TraceLayer a1, b0, b1, c1;
  ASSERT_TRUE((*a)->LoadLayer(1, &a1).ok());
  ASSERT_TRUE((*b)->LoadLayer(0, &b0).ok());
  ASSERT_TRUE((*b)->LoadLayer(1, &b1).ok());
  ASSERT_TRUE((*c)->LoadLayer(1, &c1).ok());
  EXPECT_EQ(a1.keys, b1.keys);
  EXPECT_EQ(a1.values, b1.values);
  EXPECT_EQ(a1.queries, b1.queries);
  EXPECT_NE(a1.keys, c1.keys);
  EXPECT_NE(b0.keys, b1.keys);
  EXPECT_EQ((*a)->info().sentence_starts, (*b)->info().sentence_starts);
  EXPECT_EQ((*a)->LoadLayer(2, &a1).code(), StatusCode::kInvalidArgument);
}

TEST(SyntheticTest, StructureIsConsistent) {
  auto g = SyntheticGenerator::Create(SmallParams());
  ASSERT_TRUE(g.ok());
  const TraceInfo& info = (*g)->info();
  ASSERT_TRUE(info.Validate().ok());
  EXPECT_EQ(info.num_steps(), 24u);
  EXPECT_EQ(info.step_positions.back(), 2047u);
  const auto& sent = info.sentence_starts;
  ASSERT_GT(sent.size(), 2048u / 36);
  EXPECT_EQ(sent.front(), 0u);
  for (size_t i = 1; i < sent.size(); ++i) {
    EXPECT_GE(sent[i] - sent[i - 1], 12u);
    EXPECT_LE(sent[i] - sent[i - 1], 36u);
  }
  const auto& seg = (*g)->segment_starts();
  const auto& topics = (*g)->segment_topics();
  ASSERT_GE(seg.size(), 3u);
  for (size_t i = 0; i < seg.size(); ++i) {
    EXPECT_TRUE(std::binary_search(sent.begin(), sent.end(), seg[i]));
    EXPECT_LT(topics[i], 12u);
    if (i > 0) {
      EXPECT_NE(topics[i], topics[i - 1]);
    }
    EXPECT_EQ((*g)->TopicOf(seg[i]), topics[i]);
  }
  ASSERT_EQ((*g)->needles().size(), 4u);
  for (const PlantedNeedle& n : (*g)->needles()) {
    EXPECT_GE(n.position, 4u);
    EXPECT_LE(n.position + 256, info.step_positions[n.step]);
    EXPECT_LT(n.kv_head, 2u);
  }
}

TEST(SyntheticTest, PostRopeTensorsAreThePreRopeOnesRotated) {
  SyntheticParams p = SmallParams();
  for (RopeStyle style : {RopeStyle::kHalfSplit, RopeStyle::kInterleaved}) {
    p.rope_style = style;
    auto g = SyntheticGenerator::Create(p);
    ASSERT_TRUE(g.ok());
    TraceLayer l;
    ASSERT_TRUE((*g)->LoadLayer(0, &l).ok());
    RopeAngles rope(64, p.rope_theta);
    for (uint64_t t : {0u, 1000u, 2047u}) {
      std::vector<float> k(l.keys_pre.begin() + (2048 + t) * 64, l.keys_pre.begin() + (2049 + t) * 64);
      rope.SetPosition(double(t));
      rope.Apply(k.data(), style);
      for (int i = 0; i < 64; ++i) ASSERT_NEAR(k[i], l.keys[(2048 + t) * 64 + i], 1e-4);
    }
    std::vector<float> q(l.queries_pre.begin() + (3 * 8 + 5) * 64, l.queries_pre.begin() + (3 * 8 + 6) * 64);
    rope.SetPosition(double((*g)->info().step_positions[3]));
    rope.Apply(q.data(), style);
    for (int i = 0; i < 64; ++i) ASSERT_NEAR(q[i], l.queries[(3 * 8 + 5) * 64 + i], 1e-4);
  }
}

TEST(SyntheticTest, KeysHaveASharedOffsetAndOutlierChannelsAndQueriesLieElsewhere) {
  auto g = SyntheticGenerator::Create(SmallParams());
  ASSERT_TRUE(g.ok());
  TraceLayer l;
  ASSERT_TRUE((*g)->LoadLayer(0, &l).ok());
  const size_t T = 2048, d = 64;
  std::vector<double> mean(d, 0.0);
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < d; ++i) mean[i] += l.keys_pre[t * d + i] / double(T);
  }
  std::vector<double> mag(d);
  for (size_t i = 0; i < d; ++i) mag[i] = std::fabs(mean[i]);
  std::sort(mag.begin(), mag.end());
  // Four outlier channels near 12, the median channel's mean far smaller.
  EXPECT_GT(mag[d - 4], 8.0);
  EXPECT_LT(mag[d / 2], 2.0);
  // Keys resemble each other (the shared offset); queries are not drawn from them.
  double kk = 0, qk = 0;
  int n = 0;
  for (size_t s = 0; s < 24; ++s) {
    for (size_t t = 5; t < T; t += 97, ++n) {
      kk += Cos(&l.keys_pre[t * d], &l.keys_pre[((t * 7 + 3) % T) * d], d);
      qk += Cos(&l.queries_pre[(s * 8) * d], &l.keys_pre[t * d], d);
    }
  }
  EXPECT_GT(kk / n, 0.6);
  EXPECT_LT(std::fabs(qk / n), 0.25);
}

TEST(SyntheticTest, KeysOfOneTopicClusterAcrossSegments) {
  SyntheticParams p = SmallParams();
  p.num_tokens = 4096;
  auto g = SyntheticGenerator::Create(p);
  ASSERT_TRUE(g.ok());
  TraceLayer l;
  ASSERT_TRUE((*g)->LoadLayer(1, &l).ok());
  const size_t T = 4096, d = 64;
  std::vector<double> mean(d, 0.0);
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < d; ++i) mean[i] += l.keys_pre[t * d + i] / double(T);
  }
  const auto& seg = (*g)->segment_starts();
  std::vector<std::vector<float>> centroid;  // centered, pre-RoPE, KV head 0
  for (size_t s = 0; s < seg.size(); ++s) {
    const size_t end = s + 1 < seg.size() ? seg[s + 1] : T;
    std::vector<float> c(d, 0.f);
    for (size_t t = seg[s]; t < end; ++t) {
      for (size_t i = 0; i < d; ++i) c[i] += static_cast<float>(l.keys_pre[t * d + i] - mean[i]);
    }
    centroid.push_back(c);
  }
  double same = 0, diff = 0;
  int ns = 0, nd = 0;
  for (size_t a = 0; a < seg.size(); ++a) {
    for (size_t b = a + 1; b < seg.size(); ++b) {
      const double c = Cos(centroid[a].data(), centroid[b].data(), d);
      if ((*g)->segment_topics()[a] == (*g)->segment_topics()[b]) {
        same += c, ++ns;
      } else {
        diff += c, ++nd;
      }
    }
  }
  ASSERT_GT(ns, 0) << "no topic recurs: test needs a longer trace";
  EXPECT_GT(same / ns, 0.8);
  EXPECT_LT(diff / nd, 0.4);
}

TEST(SyntheticTest, QueriesDriftSlowlyAcrossSteps) {
  auto g = SyntheticGenerator::Create(SmallParams());
  ASSERT_TRUE(g.ok());
  TraceLayer l;
  ASSERT_TRUE((*g)->LoadLayer(0, &l).ok());
  const size_t d = 64;
  double adjacent = 0, far = 0;
  for (uint32_t h = 0; h < 8; ++h) {
    for (size_t s = 0; s + 1 < 24; ++s) {
      adjacent += Cos(&l.queries_pre[(s * 8 + h) * d], &l.queries_pre[((s + 1) * 8 + h) * d], d) / (23 * 8);
    }
    far += Cos(&l.queries_pre[h * d], &l.queries_pre[(23 * 8 + h) * d], d) / 8;
  }
  EXPECT_GT(adjacent, 0.85);
  EXPECT_LT(far, adjacent - 0.02);
  // Distinct heads of one layer do not ask the same question.
  EXPECT_LT(Cos(&l.queries_pre[0], &l.queries_pre[d], d), adjacent);
}

TEST(SyntheticTest, SinksAndNeedlesDrawAttention) {
  auto g = SyntheticGenerator::Create(SmallParams());
  ASSERT_TRUE(g.ok());
  const TraceInfo& info = (*g)->info();
  for (uint32_t layer = 0; layer < 2; ++layer) {
    TraceLayer l;
    ASSERT_TRUE((*g)->LoadLayer(layer, &l).ok());
    double sink_mass = 0;
    for (size_t s = 0; s < 24; s += 4) {
      for (uint32_t h = 0; h < 8; ++h) {
        auto p = AttentionRow(info, l, s, h);
        sink_mass += (p[0] + p[1] + p[2] + p[3]) / (6 * 8);
      }
    }
    // 4 of ~2040 tokens (0.2%) hold a large share of the mass.
    EXPECT_GT(sink_mass, 0.05) << "layer " << layer;
    for (const PlantedNeedle& n : (*g)->needles()) {
      if (n.layer != layer) continue;
      for (uint32_t h = n.kv_head * 4; h < n.kv_head * 4 + 4; ++h) {
        auto p = AttentionRow(info, l, n.step, h);
        const size_t top = std::max_element(p.begin(), p.end()) - p.begin();
        EXPECT_EQ(top, n.position);
        EXPECT_GT(p[n.position], 0.3);
      }
    }
  }
}

}  // namespace
}  // namespace tierkv::index
