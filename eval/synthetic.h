// Synthetic attention traces with the properties retrieval methods rely on
// (DESIGN §4), seeded and reproducible, generated one layer at a time so that
// 128K-token traces never hold more than one layer in memory.
//
// The model of one (layer, KV head), with s = sqrt(head_dim). Everything is
// built pre-RoPE; keys and queries are then rotated by their positions
// (rope_style, rope_theta), so long-range matching works through the
// low-frequency pairs, as in trained models. The lowest-frequency RoPE pair holds
// the sink direction; the next `semantic_pairs` pairs hold topic and sentence
// content ("semantic" channels); the other channels hold the key mean, outliers
// and noise.
//
//   text:   sentences of ~sentence_tokens tokens; topic segments of
//           ~segment_sentences sentences; each segment draws one of num_topics
//           topics (never the previous one), so topics recur across the context.
//   key:    k_t = mu + topic_strength * salience(t) * topic_dir[topic(t)]
//                    + sentence_strength * sentence_dir[sentence(t)]
//                    + [t < sink_tokens] * sink_logit * sink_dir + noise
//           mu: a shared mean offset (norm key_mean_norm) plus outlier_channels
//           channels at +-outlier_magnitude (with 3x noise there);
//           noise ~ N(0, key_noise^2) per channel.
//   query:  q = s * (sink_dir + sum_j w_j topic_dir[j] + query_offset * nu) + xi
//           nu: a per-head unit offset (no overlap with outlier channels): queries
//           are not drawn from the keys' distribution; xi ~ N(0, query_noise^2).
//           With unit directions, a key component of size x along a direction
//           the query holds with weight w adds w * x to the logit q.k / s: the
//           *_strength / *_logit parameters are logit units.
//   drift:  w = softmax(topic_focus * z + current_topic_boost * onehot(topic of
//           the step's own segment)), z an AR(1) process per head (innovation
//           query_drift per step, correlation head_correlation between the heads
//           of a layer), kicked by sentence_kick at each sentence start. Queries
//           drift slowly within a sentence, move at sentence starts and jump
//           when the decode position enters a new segment.
//   sinks:  the first sink_tokens keys add sink_logit along the sink direction,
//           which every query holds with weight 1 (minus RoPE's slow rotation).
//   needles: needles_per_layer tokens per layer, each planted for one (decode
//           step at position p, KV head) with its own random unit direction u:
//           the queries of that group at that step also hold s * u (the step
//           asks for the needle), and the needle's key gets b * R(p - n) u
//           pre-RoPE, i.e. b * R(p) u post-RoPE, so it matches those queries
//           after RoPE at any distance while other steps barely see it. b puts
//           the needle needle_margin above the best ordinary visible key for every
//           head of the group, so it stands out in the layer's shared selection.
//           Needles sit after the sinks and at least needle_min_distance tokens
//           before their step.
//   roles:  a share of each layer's KV groups are streaming heads: little topic
//           weight, more sink weight (see streaming_heads below).
//   values: v_t = value_mean + topic_value_strength * topic_value_dir[topic(t)]
//           + N(0, 1) per channel.
//
// Decode steps are the last num_steps positions. Layers are independent: layer l
// draws from streams derived from (seed, l), so it is the same whatever other
// layers are generated. Thread-safety: LoadLayer does not modify the generator;
// concurrent calls are safe when each writes its own TraceLayer.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "eval/trace.h"

namespace tierkv::index {

struct SyntheticParams {
  uint64_t seed = 1;            // Default: 1
  uint32_t num_layers = 2;      // Default: 2
  uint32_t num_q_heads = 8;     // Default: 8
  uint32_t num_kv_heads = 2;    // Default: 2 (GQA 4:1)
  uint32_t head_dim = 64;       // even, >= 8. Default: 64
  uint64_t num_tokens = 4096;   // <= 2^30. Default: 4096 (benchmarks: 128K and more)
  uint64_t num_steps = 32;      // decode steps: the last num_steps positions. Default: 32
  RopeStyle rope_style = RopeStyle::kHalfSplit;  // Default: half split (Hugging Face Llama)
  double rope_theta = 500000.0;                  // Default: 500000 (Llama 3)

  // Text structure.
  uint32_t sentence_tokens = 24;    // mean sentence length, uniform in [n/2, 3n/2]. Default: 24
  uint32_t segment_sentences = 16;  // mean sentences per topic segment, uniform in [n/2, 3n/2]. Default: 16
  uint32_t num_topics = 12;         // >= 2. Default: 12
  // RoPE pairs holding topic and sentence content, right above the sink pair;
  // 0 = head_dim / 8. Default: 0
  uint32_t semantic_pairs = 0;

  // Keys.
  float key_noise = 0.9f;           // per-channel std of token noise. Default: 0.9
  float key_mean_norm = 8.0f;       // norm of the shared mean offset. Default: 8
  uint32_t outlier_channels = 4;    // channels with a large shared offset. Default: 4
  float outlier_magnitude = 12.0f;  // their offset (random sign). Default: 12
  float topic_strength = 6.0f;      // logit units. Default: 6
  float sentence_strength = 1.5f;   // logit units. Default: 1.5
  // Salience: the topic component of a key is scaled by a mean-1 log-normal factor
  // drawn per sentence (sigma sentence_salience) times one drawn per token (sigma
  // token_salience), so a few sentences and tokens of a topic stand out, as the
  // heavy-tailed attention of trained models does; the product is capped at
  // max_salience so that the tail does not grow with the context length.
  // Defaults: 1.0, 0.3, 4
  float sentence_salience = 1.0f;
  float token_salience = 0.3f;
  float max_salience = 4.0f;
  // In [0, 1]: share of the log-salience that belongs to the text (the same
  // draws for every KV head and layer) rather than to the head. Default: 0
  float salience_sharing = 0.0f;

  // Queries.
  float query_offset = 1.0f;          // weight of the per-head query offset. Default: 1
  float query_noise = 0.5f;           // per-channel std of query noise. Default: 0.5
  float topic_focus = 2.0f;           // sharpness of the topic mixture. Default: 2
  float current_topic_boost = 2.0f;   // pull towards the step's own segment topic. Default: 2
  float query_drift = 0.05f;          // AR(1) innovation per step, in (0, 1]. Default: 0.05
  float sentence_kick = 0.5f;         // extra innovation at a sentence start. Default: 0.5
  float head_correlation = 0.5f;      // in [0, 1]: shared part of the heads' topic processes. Default: 0.5

  // Head roles (the v2 calibration; docs/retrieval-eval.md). A share
  // streaming_heads of each layer's KV groups are streaming heads (StreamingLLM,
  // DuoAttention): their queries hold the sink direction with weight
  // streaming_sink_weight instead of 1 and weigh the topic mixture by
  // streaming_topic_scale, so most of their mass sits on the sinks.
  float streaming_heads = 0.0f;        // in [0, 1]. Default: 0 (preset v2: 0.5)
  float streaming_sink_weight = 1.5f;  // in [0, 10]. Default: 1.5
  float streaming_topic_scale = 0.25f; // in [0, 1]. Default: 0.25

  // Sinks and needles.
  uint32_t sink_tokens = 4;           // Default: 4
  float sink_logit = 11.0f;           // Default: 11
  uint32_t needles_per_layer = 2;     // Default: 2
  float needle_margin = 5.0f;         // logit units. Default: 5
  uint64_t needle_min_distance = 256; // Default: 256

  // Values.
  float value_mean_norm = 2.0f;       // Default: 2
  float topic_value_strength = 2.0f;  // Default: 2

  // kInvalidArgument naming the field when a value is out of range or the context
  // is too short for the needles.
  Status Validate() const;
};

// Named parameter sets (shapes and sizes keep their defaults):
//   "v2"  the calibration of docs/retrieval-eval.md ("Generator calibration"):
//         v1 with salience_sharing 0.5 and streaming_heads 0.5.
//         The default workload of tierkv_bench_eval.
//   "v1"  the field defaults of SyntheticParams (no head roles, no shared salience),
//         which the generator's property tests pin.
// kInvalidArgument for another name.
Result<SyntheticParams> SyntheticPreset(std::string_view name);

// A planted needle: at decode step `step` (position step_positions[step]), every
// query head of KV group `kv_head` in `layer` scores the key at `position` at
// least needle_margin above any ordinary (non-needle) key it sees.
struct PlantedNeedle {
  uint32_t layer = 0;
  uint32_t kv_head = 0;
  uint32_t step = 0;
  uint64_t position = 0;
};

class SyntheticGenerator final : public TraceSource {
 public:
  // Validates params and draws the text structure and needle placements
  // (O(num_tokens) small integers); tensors are drawn by LoadLayer.
  static Result<std::unique_ptr<SyntheticGenerator>> Create(const SyntheticParams& params);

  const TraceInfo& info() const override { return info_; }
  // Generates layer `index` (3 * kv_heads * num_tokens * head_dim floats for keys
  // pre/post RoPE and values, plus the queries).
  Status LoadLayer(uint32_t index, TraceLayer* layer) override;

  const SyntheticParams& params() const { return params_; }
  const std::vector<PlantedNeedle>& needles() const { return needles_; }
  // True when KV group `kv_head` of `layer` is a streaming head (its query heads
  // are kv_head * group .. + group - 1). REQUIRES: layer, kv_head in range.
  bool IsStreamingGroup(uint32_t layer, uint32_t kv_head) const { return streaming_[layer][kv_head]; }
  // Topic segments: first token of each, and its topic in [0, num_topics).
  const std::vector<uint64_t>& segment_starts() const { return segment_starts_; }
  const std::vector<uint32_t>& segment_topics() const { return segment_topics_; }
  // Topic of token t. REQUIRES: t < num_tokens.
  uint32_t TopicOf(uint64_t t) const;


 private:
  struct HeadModel;
  explicit SyntheticGenerator(const SyntheticParams& params) : params_(params) {}
  void DrawStructure();
  void DrawRoles();
  HeadModel DrawHeadModel(uint32_t layer, uint32_t kv_head) const;
  // needle_dirs: one unit vector per entry of needles_ (empty for other layers).
  void GenerateQueries(uint32_t layer, const std::vector<HeadModel>& heads,
                       const std::vector<std::vector<float>>& needle_dirs, TraceLayer* out) const;
  void GenerateKeysAndValues(uint32_t layer, uint32_t kv_head, const HeadModel& head,
                             const std::vector<std::vector<float>>& needle_dirs, TraceLayer* out) const;
  void PlantNeedle(const PlantedNeedle& needle, const std::vector<float>& dir, TraceLayer* out) const;

  SyntheticParams params_;
  TraceInfo info_;
  uint32_t semantic_pairs_ = 0;
  std::vector<uint64_t> segment_starts_;
  std::vector<uint32_t> segment_topics_;
  std::vector<PlantedNeedle> needles_;
  std::vector<std::vector<bool>> streaming_;  // [layer][kv head]
};

}  // namespace tierkv::index
