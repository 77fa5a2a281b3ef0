// The real trained model (stories260K, ../shared/data): loading, determinism, and
// sanity of the forward pass. Skips when the checkpoint is not present.
#include "eval/tiny_llama.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "index/rng.h"
#include "index/rope.h"

#ifndef TIERKV_SHARED_DATA_DIR
#define TIERKV_SHARED_DATA_DIR "../shared/data"
#endif

namespace tierkv::index {
namespace {

namespace fs = std::filesystem;

std::string ModelPath() {
  const char* env = std::getenv("TIERKV_STORIES260K");
  return env != nullptr ? env : std::string(TIERKV_SHARED_DATA_DIR) + "/stories260K.bin";
}

class TinyLlamaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(ModelPath())) return;
    auto m = TinyLlama::Load(ModelPath(), kStories260KChecksum);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << "checkpoint not found at " << ModelPath();
  }
  static TinyLlama* model_;
};
TinyLlama* TinyLlamaTest::model_ = nullptr;

TEST(TinyLlamaLoadTest, MissingFileIsNotFoundNamingThePath) {
  auto m = TinyLlama::Load("/nonexistent/stories260K.bin");
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("/nonexistent/stories260K.bin"), std::string::npos);
}

TEST_F(TinyLlamaTest, ConfigMatchesTheReadme) {
  const TinyLlamaConfig& c = model_->config();
  EXPECT_EQ(c.dim, 64u);
  EXPECT_EQ(c.hidden_dim, 172u);
  EXPECT_EQ(c.num_layers, 5u);
  EXPECT_EQ(c.num_heads, 8u);
  EXPECT_EQ(c.num_kv_heads, 4u);
  EXPECT_EQ(c.head_dim(), 8u);
  EXPECT_EQ(c.vocab_size, 512u);
  EXPECT_EQ(c.seq_len, 512u);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(model_->file_checksum(), kStories260KChecksum);
}

TEST_F(TinyLlamaTest, DamagedCopiesAreRefused) {
  std::ifstream in(ModelPath(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const fs::path tmp = fs::temp_directory_path() / ("tierkv_model_" + std::to_string(::getpid()) + ".bin");
  auto write = [&](const std::string& b) { std::ofstream(tmp, std::ios::binary | std::ios::trunc) << b; };

  write(bytes.substr(0, bytes.size() - 4));
  auto m = TinyLlama::Load(tmp.string());
  EXPECT_EQ(m.status().code(), StatusCode::kCorruption);
  EXPECT_NE(m.status().message().find("header implies"), std::string::npos) << m.status().ToString();

  std::string flipped = bytes;
  flipped[1000] ^= 0x01;
  write(flipped);
  EXPECT_TRUE(TinyLlama::Load(tmp.string()).ok());  // no checksum asked: loads
  EXPECT_EQ(TinyLlama::Load(tmp.string(), kStories260KChecksum).status().code(), StatusCode::kCorruption);

  std::string bad_header = bytes;
  const int32_t zero_heads = 0;
  std::memcpy(bad_header.data() + 12, &zero_heads, 4);
  write(bad_header);
  EXPECT_EQ(TinyLlama::Load(tmp.string()).status().code(), StatusCode::kCorruption);
  fs::remove(tmp);
}

TEST_F(TinyLlamaTest, LogitsAreFiniteAndTheModelPredictsItsOwnText) {
  std::vector<float> logits;
  model_->Reset();
  ASSERT_TRUE(model_->Forward(1, &logits).ok());
  ASSERT_EQ(logits.size(), 512u);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(model_->Forward(512, &logits).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(model_->Forward(-1, &logits).code(), StatusCode::kInvalidArgument);

  GenerateOptions o;
  o.num_tokens = 256;
  GenerationStats sampled;
  auto t = GenerateTrace(model_, o, &sampled);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // Uniform guessing costs log(512) = 6.24 nats per token. A trained model sampling
  // at temperature 1 predicts its own text at a perplexity of a few units.
  EXPECT_EQ(sampled.scored_tokens, 255u);
  EXPECT_LT(sampled.mean_nll, 0.5 * std::log(512.0)) << "perplexity " << std::exp(sampled.mean_nll);

  // Scoring the same tokens again gives the same figure (the sampler's bookkeeping is right).
  auto rescored = MeanNegLogLikelihood(model_, t->info.token_ids);
  ASSERT_TRUE(rescored.ok());
  EXPECT_NEAR(*rescored, sampled.mean_nll, 1e-4);

  // Random tokens are far harder to predict than the model's own text.
  Rng rng(7);
  std::vector<int32_t> noise{1};
  for (int i = 0; i < 255; ++i) noise.push_back(static_cast<int32_t>(rng.Below(512)));
  auto noise_nll = MeanNegLogLikelihood(model_, noise);
  ASSERT_TRUE(noise_nll.ok());
  EXPECT_GT(*noise_nll, sampled.mean_nll + 2.0);

  o.temperature = 0.f;
  GenerationStats greedy;
  ASSERT_TRUE(GenerateTrace(model_, o, &greedy).ok());
  EXPECT_LT(greedy.mean_nll, sampled.mean_nll);
}

TEST_F(TinyLlamaTest, GenerationIsDeterministicForASeed) {
  GenerateOptions o;
  o.num_tokens = 96;
  o.num_query_steps = 8;
  auto a = GenerateTrace(model_, o);
  auto b = GenerateTrace(model_, o);
  o.seed = 2;
  auto c = GenerateTrace(model_, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->info.token_ids, b->info.token_ids);
  EXPECT_NE(a->info.token_ids, c->info.token_ids);
  for (uint32_t l = 0; l < 5; ++l) {
    EXPECT_EQ(a->layers[l].keys, b->layers[l].keys);
    EXPECT_EQ(a->layers[l].queries, b->layers[l].queries);
  }
}

TEST_F(TinyLlamaTest, TraceHoldsConsistentActivations) {
  GenerateOptions o;
  o.num_tokens = 200;
  o.num_query_steps = 10;
  o.seed = 3;
  auto t = GenerateTrace(model_, o);
  ASSERT_TRUE(t.ok());
  const TraceInfo& info = t->info;
  ASSERT_TRUE(info.Validate().ok());
  ASSERT_EQ(info.step_positions.size(), 10u);
  EXPECT_EQ(info.step_positions.front(), 190u);
  EXPECT_EQ(info.step_positions.back(), 199u);
  EXPECT_EQ(info.token_ids.size(), 200u);
  EXPECT_EQ(info.token_ids[0], 1);
  const uint32_t hd = 8;
  RopeAngles rope(hd, 10000.0);
  for (uint32_t l = 0; l < 5; ++l) {
    const TraceLayer& layer = t->layers[l];
    ASSERT_TRUE(layer.CheckShape(info).ok());
    // Post-RoPE keys and queries are the pre-RoPE ones rotated by their positions.
    for (uint64_t pos : {uint64_t{0}, uint64_t{57}, uint64_t{199}}) {
      rope.SetPosition(static_cast<double>(pos));
      for (uint32_t g = 0; g < 4; ++g) {
        std::vector<float> k(layer.keys_pre.begin() + (g * 200 + pos) * hd,
                             layer.keys_pre.begin() + (g * 200 + pos + 1) * hd);
        rope.Apply(k.data(), RopeStyle::kInterleaved);
        for (uint32_t i = 0; i < hd; ++i) EXPECT_NEAR(k[i], layer.keys[(g * 200 + pos) * hd + i], 1e-5);
      }
    }
    rope.SetPosition(195.0);
    std::vector<float> q(layer.queries_pre.begin() + 5 * 64, layer.queries_pre.begin() + 6 * 64);
    for (uint32_t h = 0; h < 8; ++h) rope.Apply(q.data() + h * hd, RopeStyle::kInterleaved);
    for (uint32_t i = 0; i < 64; ++i) EXPECT_NEAR(q[i], layer.queries[5 * 64 + i], 1e-5);
  }
}

// Recomputes attention of the last step from the trace alone (GQA head h reads KV
// head h / 2) and checks it against what the model computed inside its forward pass.
TEST_F(TinyLlamaTest, AttentionFromTheTraceMatchesTheForwardPass) {
  GenerateOptions o;
  o.num_tokens = 150;
  o.num_query_steps = 1;
  auto t = GenerateTrace(model_, o);
  ASSERT_TRUE(t.ok());
  // Replay the same tokens to capture the forward pass's own attention outputs.
  std::vector<float> logits;
  std::vector<LayerActivations> acts;
  model_->Reset();
  for (int32_t tok : t->info.token_ids) ASSERT_TRUE(model_->Forward(tok, &logits, &acts).ok());
  const size_t T = 150, hd = 8;
  for (uint32_t l = 0; l < 5; ++l) {
    const TraceLayer& layer = t->layers[l];
    for (uint32_t h = 0; h < 8; ++h) {
      const uint32_t g = h / 2;
      std::vector<double> p(T);
      double mx = -1e30, sum = 0.0;
      for (size_t j = 0; j < T; ++j) {
        double dot = 0.0;
        for (size_t i = 0; i < hd; ++i) dot += double(layer.queries[h * hd + i]) * layer.keys[(g * T + j) * hd + i];
        p[j] = dot / std::sqrt(8.0);
        mx = std::max(mx, p[j]);
      }
      for (double& x : p) sum += (x = std::exp(x - mx));
      double row = 0.0;
      for (double& x : p) row += (x /= sum);
      EXPECT_NEAR(row, 1.0, 1e-9);
      for (size_t i = 0; i < hd; ++i) {
        double out = 0.0;
        for (size_t j = 0; j < T; ++j) out += p[j] * layer.values[(g * T + j) * hd + i];
        EXPECT_NEAR(out, acts[l].attn_out[h * hd + i], 1e-4) << "layer " << l << " head " << h;
      }
    }
  }
}

TEST_F(TinyLlamaTest, PastTheTrainedContextOnlyWhenAskedAndSaidSo) {
  GenerateOptions o;
  o.num_tokens = 600;
  o.num_query_steps = 4;
  auto refused = GenerateTrace(model_, o);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("allow_untrained_positions"), std::string::npos);
  o.allow_untrained_positions = true;
  auto t = GenerateTrace(model_, o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_NE(t->info.description.find("outside the trained context"), std::string::npos);
  for (float v : t->layers[4].queries) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace tierkv::index
