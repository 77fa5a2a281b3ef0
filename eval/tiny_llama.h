// A real trained transformer on the CPU, for real attention activations.
//
// Loads a checkpoint in the legacy llama2.c format (7 int32 header fields, then the
// float32 weights; ../shared/data/README.md) such as stories260K, runs the decoder
// one token at a time (RMSNorm, RoPE computed with theta 10000 in interleaved pairs,
// grouped-query attention, SwiGLU, output layer shared with the token embedding
// when the header's vocab_size is positive), samples its own next tokens, and
// records pre- and post-RoPE Q, K and V of every layer and head into a Trace.
//
// Trained range: stories260K was trained on 512-token contexts. Generating past
// config().seq_len works (RoPE is computed, not tabulated) but the activations
// there are outside what the model learned; GenerateTrace refuses it unless
// GenerateOptions::allow_untrained_positions is set, and then says so in the
// trace's description. Results that use such traces must say so too.
//
// Thread-safety: a TinyLlama is not thread-safe (it owns its KV cache).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "eval/trace.h"

namespace tierkv::index {

// xxh3-64 (seed 0) of ../shared/data/stories260K.bin (1,056,540 bytes).
inline constexpr uint64_t kStories260KChecksum = 0x23167b88d38820e3ull;

struct TinyLlamaConfig {
  uint32_t dim = 0;
  uint32_t hidden_dim = 0;
  uint32_t num_layers = 0;
  uint32_t num_heads = 0;     // query heads
  uint32_t num_kv_heads = 0;  // divides num_heads
  uint32_t vocab_size = 0;
  uint32_t seq_len = 0;       // trained context length
  bool shared_classifier = true;

  uint32_t head_dim() const { return dim / num_heads; }
  uint32_t kv_dim() const { return num_kv_heads * head_dim(); }
};

// What one Forward call saw in one layer (sizes in the comments).
struct LayerActivations {
  std::vector<float> q_pre, q;  // [num_heads][head_dim]
  std::vector<float> k_pre, k;  // [num_kv_heads][head_dim]
  std::vector<float> v;         // [num_kv_heads][head_dim]
  std::vector<float> attn_out;  // [num_heads][head_dim]: softmax(q K^T / sqrt(d)) V, before wo
};

class TinyLlama {
 public:
  // Reads and checks the checkpoint: the header fields must be positive and
  // consistent, the file length must match them exactly (kCorruption otherwise),
  // and when expected_checksum != 0 the file's xxh3-64 must equal it.
  // kNotFound when the file does not exist.
  static Result<std::unique_ptr<TinyLlama>> Load(const std::string& path, uint64_t expected_checksum = 0);

  ~TinyLlama();
  TinyLlama(const TinyLlama&) = delete;
  TinyLlama& operator=(const TinyLlama&) = delete;

  const TinyLlamaConfig& config() const { return config_; }
  uint64_t file_checksum() const { return file_checksum_; }
  // Position of the next Forward call (tokens in the KV cache).
  uint64_t position() const { return pos_; }
  // Empties the KV cache; the next Forward runs at position 0.
  void Reset();

  // Runs `token` at position(), appends its K/V to the cache and writes
  // vocab_size logits into *logits. When acts != nullptr it receives num_layers
  // LayerActivations. kInvalidArgument when token is outside [0, vocab_size).
  Status Forward(int32_t token, std::vector<float>* logits, std::vector<LayerActivations>* acts = nullptr);

 private:
  struct Weights;
  TinyLlama(TinyLlamaConfig config, std::vector<float> data);
  void Attention(uint32_t layer, const float* q, float* out);

  TinyLlamaConfig config_;
  std::vector<float> data_;  // every weight, in file order
  std::unique_ptr<Weights> w_;
  uint64_t file_checksum_ = 0;
  uint64_t pos_ = 0;
  std::vector<std::vector<float>> key_cache_, value_cache_;  // [layer][pos][kv_dim], post-RoPE keys
  std::vector<float> scores_;
};

struct GenerateOptions {
  // Tokens in the trace, the first token included. Default: 512 (the trained context).
  uint64_t num_tokens = 512;
  // Seed of the sampler. Default: 1.
  uint64_t seed = 1;
  // Softmax temperature for sampling; 0 samples greedily (argmax). Default: 1.
  float temperature = 1.0f;
  // First input token; llama2.c uses 1 (BOS). Default: 1.
  int32_t first_token = 1;
  // Decode steps recorded: the queries of the last num_query_steps positions
  // (clamped to num_tokens). Default: 64.
  uint64_t num_query_steps = 64;
  // Lets num_tokens exceed the trained context (see the header comment). Default: false.
  bool allow_untrained_positions = false;
};

struct GenerationStats {
  // Mean negative log-likelihood (nats, temperature 1) of tokens 1..T-1 under the
  // model; exp(mean_nll) is the perplexity of the generated text.
  double mean_nll = 0.0;
  uint64_t scored_tokens = 0;
};

// Resets the model, feeds first_token, samples the rest, and returns the trace:
// token ids, K/V of every token, queries of the recorded steps. No sentence
// boundaries (no tokenizer ships with the checkpoint).
Result<Trace> GenerateTrace(TinyLlama* model, const GenerateOptions& options, GenerationStats* stats = nullptr);

// Resets the model and returns the mean negative log-likelihood (nats) of
// tokens[1..] given their prefixes. REQUIRES: 2 <= tokens.size().
Result<double> MeanNegLogLikelihood(TinyLlama* model, std::span<const int32_t> tokens);

}  // namespace tierkv::index
