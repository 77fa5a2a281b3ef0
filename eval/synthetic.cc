#include "eval/synthetic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "index/rng.h"
#include "index/rope.h"
#include "eval/workload_vectors.h"

namespace tierkv::index {
namespace {
using workload::Axpy;
using workload::PairChannels;
using workload::UnitOn;

// Stream ids for Rng::Derive(seed, layer, stream): each purpose its own stream.
constexpr uint64_t kStructureStream = 1;
constexpr uint64_t kNeedleStream = 2;
constexpr uint64_t kHeadModelStream = 1000;   // + kv head
constexpr uint64_t kQueryHeadStream = 3000;   // + q head
constexpr uint64_t kQuerySharedStream = 5000;
constexpr uint64_t kTokenStream = 6000;       // + kv head
constexpr uint64_t kNeedleDirStream = 8000;   // + needle index
constexpr uint64_t kSalienceStream = 9000;    // layer 0 only: the text's own salience
constexpr uint64_t kRoleStream = 9001;        // which KV groups stream

Status CheckFloat(const char* name, float v, float lo, float hi) {
  if (!(v >= lo && v <= hi)) {
    return InvalidArgument("synthetic." + std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + std::to_string(v));
  }
  return OkStatus();
}
Status CheckInt(const char* name, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi) {
    return InvalidArgument("synthetic." + std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + std::to_string(v));
  }
  return OkStatus();
}

}  // namespace

Status SyntheticParams::Validate() const {
  RETURN_IF_ERROR(CheckInt("num_layers", num_layers, 1, TraceLimits::kMaxLayers));
  RETURN_IF_ERROR(CheckInt("num_q_heads", num_q_heads, 1, TraceLimits::kMaxHeads));
  RETURN_IF_ERROR(CheckInt("num_kv_heads", num_kv_heads, 1, num_q_heads));
  if (num_q_heads % num_kv_heads != 0) return InvalidArgument("synthetic.num_q_heads must be a multiple of num_kv_heads");
  RETURN_IF_ERROR(CheckInt("head_dim", head_dim, 8, TraceLimits::kMaxHeadDim));
  if (head_dim % 2 != 0) return InvalidArgument("synthetic.head_dim must be even");
  RETURN_IF_ERROR(CheckInt("num_tokens", num_tokens, 1, TraceLimits::kMaxTokens));
  RETURN_IF_ERROR(CheckInt("num_steps", num_steps, 1, std::min<uint64_t>(num_tokens, TraceLimits::kMaxSteps)));
  if (rope_style != RopeStyle::kInterleaved && rope_style != RopeStyle::kHalfSplit) {
    return InvalidArgument("synthetic.rope_style must be interleaved or half split");
  }
  if (!(rope_theta > 1.0 && std::isfinite(rope_theta))) return InvalidArgument("synthetic.rope_theta must be > 1");
  RETURN_IF_ERROR(CheckInt("sentence_tokens", sentence_tokens, 2, 1 << 20));
  RETURN_IF_ERROR(CheckInt("segment_sentences", segment_sentences, 2, 1 << 20));
  RETURN_IF_ERROR(CheckInt("num_topics", num_topics, 2, 4096));
  const uint32_t pairs = head_dim / 2;
  const uint32_t sem = semantic_pairs == 0 ? std::max<uint32_t>(1, head_dim / 8) : semantic_pairs;
  RETURN_IF_ERROR(CheckInt("semantic_pairs", sem, 1, pairs - 2));
  // Outliers take one channel of each of the lowest-frequency half of the pairs
  // left after the sink pair and the semantic pairs.
  const uint32_t other_pairs = pairs - 1 - sem;
  RETURN_IF_ERROR(CheckInt("outlier_channels", outlier_channels, 0, (other_pairs + 1) / 2));
  RETURN_IF_ERROR(CheckFloat("key_noise", key_noise, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("key_mean_norm", key_mean_norm, 0.f, 1e4f));
  RETURN_IF_ERROR(CheckFloat("outlier_magnitude", outlier_magnitude, 0.f, 1e4f));
  RETURN_IF_ERROR(CheckFloat("topic_strength", topic_strength, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("sentence_strength", sentence_strength, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("sentence_salience", sentence_salience, 0.f, 4.f));
  RETURN_IF_ERROR(CheckFloat("token_salience", token_salience, 0.f, 4.f));
  RETURN_IF_ERROR(CheckFloat("max_salience", max_salience, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("salience_sharing", salience_sharing, 0.f, 1.f));
  RETURN_IF_ERROR(CheckFloat("streaming_heads", streaming_heads, 0.f, 1.f));
  RETURN_IF_ERROR(CheckFloat("streaming_sink_weight", streaming_sink_weight, 0.f, 10.f));
  RETURN_IF_ERROR(CheckFloat("streaming_topic_scale", streaming_topic_scale, 0.f, 1.f));
  RETURN_IF_ERROR(CheckFloat("query_offset", query_offset, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("query_noise", query_noise, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("topic_focus", topic_focus, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("current_topic_boost", current_topic_boost, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("query_drift", query_drift, 1e-6f, 1.f));
  RETURN_IF_ERROR(CheckFloat("sentence_kick", sentence_kick, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("head_correlation", head_correlation, 0.f, 1.f));
  RETURN_IF_ERROR(CheckInt("sink_tokens", sink_tokens, 0, num_tokens));
  RETURN_IF_ERROR(CheckFloat("sink_logit", sink_logit, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckInt("needles_per_layer", needles_per_layer, 0, 1024));
  RETURN_IF_ERROR(CheckFloat("needle_margin", needle_margin, 0.f, 1e3f));
  RETURN_IF_ERROR(CheckFloat("value_mean_norm", value_mean_norm, 0.f, 1e4f));
  RETURN_IF_ERROR(CheckFloat("topic_value_strength", topic_value_strength, 0.f, 1e4f));
  if (needles_per_layer > 0) {
    // Room for distinct needles in [sink_tokens, first step - needle_min_distance].
    const uint64_t first_step = num_tokens - num_steps;
    if (first_step < needle_min_distance || first_step - needle_min_distance < sink_tokens + 2 * needles_per_layer) {
      return InvalidArgument("synthetic: " + std::to_string(num_tokens) + " tokens leave no room for " +
                             std::to_string(needles_per_layer) + " needles at least " +
                             std::to_string(needle_min_distance) +
                             " tokens before the decode steps; lower needle_min_distance or needles_per_layer");
    }
  }
  return OkStatus();
}

// The fixed vectors of one (layer, KV head).
struct SyntheticGenerator::HeadModel {
  std::vector<float> mu;                          // [d] shared key mean, outliers included
  std::vector<float> noise_scale;                 // [d] key noise std per channel
  std::vector<float> sink_dir;                    // [d] unit
  std::vector<std::vector<float>> topic_dir;      // [topics][d] unit, semantic channels
  std::vector<std::vector<float>> topic_value;    // [topics][d] unit
  std::vector<float> value_mean;                  // [d]
  std::vector<uint32_t> semantic_channels, other_channels;
  std::vector<uint32_t> plain_channels;           // every channel but the outliers
};

Result<SyntheticParams> SyntheticPreset(std::string_view name) {
  SyntheticParams p;
  if (name == "v1") return p;
  if (name == "v2") {
    p.salience_sharing = 0.5f;
    p.streaming_heads = 0.5f;
    return p;
  }
  return InvalidArgument("unknown synthetic preset '" + std::string(name) + "' (known: v1, v2)");
}

Result<std::unique_ptr<SyntheticGenerator>> SyntheticGenerator::Create(const SyntheticParams& params) {
  RETURN_IF_ERROR(params.Validate());
  std::unique_ptr<SyntheticGenerator> g(new SyntheticGenerator(params));
  g->semantic_pairs_ = params.semantic_pairs == 0 ? std::max<uint32_t>(1, params.head_dim / 8) : params.semantic_pairs;
  g->DrawStructure();
  g->DrawRoles();
  return g;
}

void SyntheticGenerator::DrawStructure() {
  const SyntheticParams& p = params_;
  info_.num_layers = p.num_layers;
  info_.num_q_heads = p.num_q_heads;
  info_.num_kv_heads = p.num_kv_heads;
  info_.head_dim = p.head_dim;
  info_.num_tokens = p.num_tokens;
  info_.rope_style = p.rope_style;
  info_.rope_theta = p.rope_theta;
  for (uint64_t t = p.num_tokens - p.num_steps; t < p.num_tokens; ++t) info_.step_positions.push_back(t);
  info_.description = "synthetic seed=" + std::to_string(p.seed);

  Rng rng(Rng::Derive(p.seed, 0, kStructureStream));
  auto length = [&rng](uint32_t mean) { return mean / 2 + rng.Below(mean + 1); };  // uniform [n/2, 3n/2]
  uint64_t t = 0;
  uint32_t sentences_left = 0, topic = p.num_topics;
  while (t < p.num_tokens) {
    if (sentences_left == 0) {
      sentences_left = static_cast<uint32_t>(length(p.segment_sentences));
      uint32_t next = static_cast<uint32_t>(rng.Below(p.num_topics - 1));
      if (topic < p.num_topics && next >= topic) ++next;  // never the previous topic
      topic = next;
      segment_starts_.push_back(t);
      segment_topics_.push_back(topic);
    }
    info_.sentence_starts.push_back(t);
    t += length(p.sentence_tokens);
    --sentences_left;
  }

  for (uint32_t l = 0; l < p.num_layers; ++l) {
    Rng nr(Rng::Derive(p.seed, l, kNeedleStream));
    std::vector<uint64_t> used;
    for (uint32_t i = 0; i < p.needles_per_layer; ++i) {
      PlantedNeedle n;
      n.layer = l;
      n.kv_head = static_cast<uint32_t>(nr.Below(p.num_kv_heads));
      n.step = static_cast<uint32_t>(nr.Below(p.num_steps));
      const uint64_t last = info_.step_positions[n.step] - p.needle_min_distance;  // >= sink_tokens (Validate)
      do {
        n.position = p.sink_tokens + nr.Below(last - p.sink_tokens + 1);
      } while (std::find(used.begin(), used.end(), n.position) != used.end());
      used.push_back(n.position);
      needles_.push_back(n);
    }
  }
}

void SyntheticGenerator::DrawRoles() {
  const SyntheticParams& p = params_;
  const uint32_t streaming = static_cast<uint32_t>(std::lround(double(p.streaming_heads) * p.num_kv_heads));
  streaming_.assign(p.num_layers, std::vector<bool>(p.num_kv_heads, false));
  for (uint32_t l = 0; l < p.num_layers; ++l) {
    std::vector<uint32_t> order(p.num_kv_heads);
    for (uint32_t g = 0; g < p.num_kv_heads; ++g) order[g] = g;
    Rng rng(Rng::Derive(p.seed, l, kRoleStream));
    for (uint32_t i = p.num_kv_heads; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
    for (uint32_t i = 0; i < streaming; ++i) streaming_[l][order[i]] = true;
  }
}

uint32_t SyntheticGenerator::TopicOf(uint64_t t) const {
  const size_t seg = std::upper_bound(segment_starts_.begin(), segment_starts_.end(), t) - segment_starts_.begin();
  return segment_topics_[seg - 1];
}

SyntheticGenerator::HeadModel SyntheticGenerator::DrawHeadModel(uint32_t layer, uint32_t kv_head) const {
  const SyntheticParams& p = params_;
  const uint32_t d = p.head_dim, pairs = d / 2;
  HeadModel h;
  Rng rng(Rng::Derive(p.seed, layer, kHeadModelStream + kv_head));
  uint32_t a = 0, b = 0;
  PairChannels(p.rope_style, d, pairs - 1, &a, &b);  // lowest frequency: sinks
  h.sink_dir = UnitOn({a, b}, d, &rng);
  for (uint32_t pr = 0; pr + 1 < pairs; ++pr) {
    PairChannels(p.rope_style, d, pr, &a, &b);
    auto& to = pr + 1 + semantic_pairs_ >= pairs ? h.semantic_channels : h.other_channels;
    to.push_back(a);
    to.push_back(b);
  }
  for (uint32_t j = 0; j < p.num_topics; ++j) h.topic_dir.push_back(UnitOn(h.semantic_channels, d, &rng));
  std::vector<uint32_t> all(d);
  for (uint32_t c = 0; c < d; ++c) all[c] = c;
  for (uint32_t j = 0; j < p.num_topics; ++j) h.topic_value.push_back(UnitOn(all, d, &rng));
  h.value_mean = UnitOn(all, d, &rng);
  for (float& x : h.value_mean) x *= p.value_mean_norm;
  h.mu = UnitOn(h.other_channels, d, &rng);
  for (float& x : h.mu) x *= p.key_mean_norm;
  h.noise_scale.assign(d, p.key_noise);
  std::vector<bool> outlier(d, false);
  // Outliers: one channel of each of the lowest-frequency "other" pairs (the
  // "other" channels are listed from high to low frequency, two per pair).
  for (uint32_t i = 0; i < p.outlier_channels; ++i) {
    const uint32_t c = h.other_channels[h.other_channels.size() - 2 - 2 * i + rng.Below(2)];
    h.mu[c] = (rng.Below(2) == 0 ? 1.f : -1.f) * p.outlier_magnitude;
    h.noise_scale[c] = 3.f * p.key_noise;
    outlier[c] = true;
  }
  for (uint32_t c = 0; c < d; ++c) {
    if (!outlier[c]) h.plain_channels.push_back(c);
  }
  return h;
}

Status SyntheticGenerator::LoadLayer(uint32_t index, TraceLayer* layer) {
  if (index >= params_.num_layers) {
    return InvalidArgument("layer " + std::to_string(index) + " out of range (trace has " +
                           std::to_string(params_.num_layers) + ")");
  }
  const SyntheticParams& p = params_;
  const uint32_t d = p.head_dim;
  std::vector<HeadModel> heads;
  for (uint32_t g = 0; g < p.num_kv_heads; ++g) heads.push_back(DrawHeadModel(index, g));
  layer->Resize(info_);
  // One random direction per needle of this layer (never on outlier channels).
  std::vector<std::vector<float>> needle_dirs(needles_.size());
  for (size_t i = 0; i < needles_.size(); ++i) {
    if (needles_[i].layer != index) continue;
    Rng rng(Rng::Derive(p.seed, index, kNeedleDirStream + i));
    needle_dirs[i] = UnitOn(heads[needles_[i].kv_head].plain_channels, d, &rng);
  }
  GenerateQueries(index, heads, needle_dirs, layer);
  for (uint32_t g = 0; g < p.num_kv_heads; ++g) GenerateKeysAndValues(index, g, heads[g], needle_dirs, layer);
  return OkStatus();
}

void SyntheticGenerator::GenerateQueries(uint32_t layer, const std::vector<HeadModel>& heads,
                                         const std::vector<std::vector<float>>& needle_dirs, TraceLayer* out) const {
  const SyntheticParams& p = params_;
  const uint32_t d = p.head_dim, topics = p.num_topics, group = p.num_q_heads / p.num_kv_heads;
  const float s = std::sqrt(static_cast<float>(d));
  const double keep = 1.0 - p.query_drift, fresh = std::sqrt(1.0 - keep * keep);
  const double kick_norm = 1.0 / std::sqrt(1.0 + double(p.sentence_kick) * p.sentence_kick);
  const double shared_w = std::sqrt(double(p.head_correlation)), own_w = std::sqrt(1.0 - p.head_correlation);

  // AR(1) topic processes: one shared by the layer's heads, one per head.
  std::vector<Rng> rngs;
  rngs.emplace_back(Rng::Derive(p.seed, layer, kQuerySharedStream));
  for (uint32_t h = 0; h < p.num_q_heads; ++h) rngs.emplace_back(Rng::Derive(p.seed, layer, kQueryHeadStream + h));
  std::vector<std::vector<double>> z(p.num_q_heads + 1, std::vector<double>(topics));
  for (size_t k = 0; k < z.size(); ++k) {
    for (double& x : z[k]) x = rngs[k].Normal();
  }
  // Per-head query offsets (never on the keys' outlier channels: those stay key-only).
  std::vector<std::vector<float>> offset(p.num_q_heads);
  for (uint32_t h = 0; h < p.num_q_heads; ++h) {
    offset[h] = UnitOn(heads[h / group].plain_channels, d, &rngs[h + 1]);
  }
  RopeAngles rope(d, p.rope_theta);
  std::vector<double> w(topics);
  for (uint64_t i = 0; i < info_.step_positions.size(); ++i) {
    const uint64_t pos = info_.step_positions[i];
    const bool sentence_start =
        std::binary_search(info_.sentence_starts.begin(), info_.sentence_starts.end(), pos);
    if (i > 0) {
      for (size_t k = 0; k < z.size(); ++k) {
        for (double& x : z[k]) {
          x = keep * x + fresh * rngs[k].Normal();
          if (sentence_start) x = (x + p.sentence_kick * rngs[k].Normal()) * kick_norm;
        }
      }
    }
    const uint32_t current = TopicOf(pos);
    rope.SetPosition(static_cast<double>(pos));
    for (uint32_t h = 0; h < p.num_q_heads; ++h) {
      const HeadModel& hm = heads[h / group];
      const bool streaming = streaming_[layer][h / group];
      const float topic_scale = streaming ? p.streaming_topic_scale : 1.f;
      double mx = -1e300, sum = 0.0;
      for (uint32_t j = 0; j < topics; ++j) {
        w[j] = p.topic_focus * (shared_w * z[0][j] + own_w * z[h + 1][j]) + (j == current ? p.current_topic_boost : 0.0);
        mx = std::max(mx, w[j]);
      }
      for (double& x : w) sum += (x = std::exp(x - mx));
      float* q_pre = out->queries_pre.data() + (i * p.num_q_heads + h) * d;
      std::fill(q_pre, q_pre + d, 0.f);
      Axpy(s * (streaming ? p.streaming_sink_weight : 1.f), hm.sink_dir, q_pre);
      for (uint32_t j = 0; j < topics; ++j) Axpy(static_cast<float>(topic_scale * s * w[j] / sum), hm.topic_dir[j], q_pre);
      Axpy(s * p.query_offset, offset[h], q_pre);
      for (uint32_t c = 0; c < d; ++c) q_pre[c] += p.query_noise * static_cast<float>(rngs[h + 1].Normal());
      for (size_t k = 0; k < needles_.size(); ++k) {  // this step asks for its needles
        const PlantedNeedle& n = needles_[k];
        if (n.layer == layer && n.step == i && n.kv_head == h / group) Axpy(s, needle_dirs[k], q_pre);
      }
      float* q = out->queries.data() + (i * p.num_q_heads + h) * d;
      std::copy(q_pre, q_pre + d, q);
      rope.Apply(q, p.rope_style);
    }
  }
}

void SyntheticGenerator::GenerateKeysAndValues(uint32_t layer, uint32_t kv_head, const HeadModel& hm,
                                               const std::vector<std::vector<float>>& needle_dirs,
                                               TraceLayer* out) const {
  const SyntheticParams& p = params_;
  const uint32_t d = p.head_dim;
  const uint64_t T = p.num_tokens;
  Rng rng(Rng::Derive(p.seed, layer, kTokenStream + kv_head));
  RopeAngles rope(d, p.rope_theta);
  std::vector<float> sentence_dir(d);
  // The salience stream of the text (the same draws for every layer and head).
  Rng text_rng(Rng::Derive(p.seed, 0, kSalienceStream));
  const double shared_w = std::sqrt(double(p.salience_sharing)), own_w = std::sqrt(1.0 - p.salience_sharing);
  // Log-normal with mean 1: exp(sigma * z - sigma^2 / 2), z ~ N(0,1) mixing the
  // head's own draw and the text's (salience_sharing); sharing 0 draws no text z.
  auto lognormal = [&](float sigma) {
    const double own = rng.Normal();
    const double z = p.salience_sharing > 0.f ? shared_w * text_rng.Normal() + own_w * own : own;
    return std::exp(sigma * z - 0.5 * double(sigma) * sigma);
  };
  double sentence_salience = 1.0;
  size_t next_sentence = 0, segment = 0;
  for (uint64_t t = 0; t < T; ++t) {
    if (next_sentence < info_.sentence_starts.size() && info_.sentence_starts[next_sentence] == t) {
      sentence_dir = UnitOn(hm.semantic_channels, d, &rng);
      sentence_salience = lognormal(p.sentence_salience);
      ++next_sentence;
    }
    while (segment + 1 < segment_starts_.size() && segment_starts_[segment + 1] <= t) ++segment;
    const uint32_t topic = segment_topics_[segment];
    const size_t row = (size_t{kv_head} * T + t) * d;
    float* k_pre = out->keys_pre.data() + row;
    for (uint32_t c = 0; c < d; ++c) k_pre[c] = hm.mu[c] + hm.noise_scale[c] * static_cast<float>(rng.Normal());
    const double salience = std::min<double>(sentence_salience * lognormal(p.token_salience), p.max_salience);
    Axpy(static_cast<float>(p.topic_strength * salience), hm.topic_dir[topic], k_pre);
    Axpy(p.sentence_strength, sentence_dir, k_pre);
    if (t < p.sink_tokens) Axpy(p.sink_logit, hm.sink_dir, k_pre);
    float* k = out->keys.data() + row;
    std::copy(k_pre, k_pre + d, k);
    rope.SetPosition(static_cast<double>(t));
    rope.Apply(k, p.rope_style);
    float* v = out->values.data() + row;
    for (uint32_t c = 0; c < d; ++c) v[c] = hm.value_mean[c] + static_cast<float>(rng.Normal());
    Axpy(p.topic_value_strength, hm.topic_value[topic], v);
  }
  for (size_t k = 0; k < needles_.size(); ++k) {
    const PlantedNeedle& n = needles_[k];
    if (n.layer == layer && n.kv_head == kv_head) PlantNeedle(n, needle_dirs[k], out);
  }
}

// The target step's queries of the needle's group hold s * u (pre-RoPE, u the
// needle's unit direction). Adds b R(p - n) u to the needle's pre-RoPE key, hence
// b R(p) u to its post-RoPE key: head h's logit for it rises by b (q_pre_h . u) / s
// (about b). b is the smallest value that puts the needle needle_margin above the
// best ordinary visible key (other needles excluded: they would make each later
// needle outbid the earlier ones) for every head of the group.
void SyntheticGenerator::PlantNeedle(const PlantedNeedle& n, const std::vector<float>& u, TraceLayer* out) const {
  const SyntheticParams& p = params_;
  const uint32_t d = p.head_dim, g = p.num_q_heads / p.num_kv_heads;
  const uint64_t T = p.num_tokens, pos = info_.step_positions[n.step];
  const double s = std::sqrt(static_cast<double>(d));
  const size_t first = (size_t{n.step} * p.num_q_heads + size_t{n.kv_head} * g) * d;
  const float* q_pre = out->queries_pre.data() + first;
  const float* q = out->queries.data() + first;
  std::vector<uint64_t> others;
  for (const PlantedNeedle& o : needles_) {
    if (o.layer == n.layer && o.kv_head == n.kv_head && o.position != n.position) others.push_back(o.position);
  }
  std::sort(others.begin(), others.end());
  double b = 0.0;
  for (uint32_t h = 0; h < g; ++h) {
    double align = 0.0, best = -std::numeric_limits<double>::infinity(), own = 0.0;
    for (uint32_t c = 0; c < d; ++c) align += double(q_pre[h * d + c]) * u[c] / s;
    for (uint64_t t = 0; t <= pos; ++t) {
      if (std::binary_search(others.begin(), others.end(), t)) continue;
      const float* k = out->keys.data() + (size_t{n.kv_head} * T + t) * d;
      double dot = 0.0;
      for (uint32_t c = 0; c < d; ++c) dot += double(q[h * d + c]) * k[c];
      if (t == n.position) {
        own = dot / s;
      } else {
        best = std::max(best, dot / s);
      }
    }
    // align is about 1 (the query holds s * u); a head that cancels it is left out.
    if (align > 0.25) b = std::max(b, (best + p.needle_margin - own) / align);
  }
  if (b <= 0.0) return;
  std::vector<float> x(u);
  RopeAngles rope(d, p.rope_theta);
  rope.SetPosition(static_cast<double>(pos) - static_cast<double>(n.position));
  rope.Apply(x.data(), p.rope_style);
  const size_t row = (size_t{n.kv_head} * T + n.position) * d;
  for (uint32_t c = 0; c < d; ++c) out->keys_pre[row + c] += static_cast<float>(b) * x[c];
  rope.SetPosition(static_cast<double>(n.position));
  rope.Apply(x.data(), p.rope_style);  // R(n) R(p - n) u = R(p) u
  for (uint32_t c = 0; c < d; ++c) out->keys[row + c] += static_cast<float>(b) * x[c];
}

}  // namespace tierkv::index
