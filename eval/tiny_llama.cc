#include "eval/tiny_llama.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/checksum.h"
#include "index/rng.h"
#include "index/rope.h"

namespace tierkv::index {
namespace {

constexpr double kRopeTheta = 10000.0;  // llama2.c's fixed RoPE base
constexpr float kRmsEps = 1e-5f;

// out[n_out] = w[n_out][n_in] * x[n_in]
void MatVec(const float* w, const float* x, uint32_t n_out, uint32_t n_in, float* out) {
  for (uint32_t o = 0; o < n_out; ++o) {
    const float* row = w + size_t{o} * n_in;
    float acc = 0.f;
    for (uint32_t i = 0; i < n_in; ++i) acc += row[i] * x[i];
    out[o] = acc;
  }
}

void RmsNorm(const float* x, const float* weight, uint32_t n, float* out) {
  float ss = 0.f;
  for (uint32_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.f / std::sqrt(ss / static_cast<float>(n) + kRmsEps);
  for (uint32_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

// In-place softmax over n values; returns nothing, rows sum to 1.
void Softmax(float* x, size_t n) {
  const float mx = *std::max_element(x, x + n);
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

double LogSoftmaxAt(const std::vector<float>& logits, int32_t index) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  return static_cast<double>(logits[static_cast<size_t>(index)] - mx) - std::log(sum);
}

Status ReadFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FromErrno(errno, "open model checkpoint " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (int64_t{1} << 34)) {
    ::close(fd);
    return InvalidArgument("model checkpoint " + path + " is not a regular file of at most 16 GiB");
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out->size()) {
    ssize_t r = ::read(fd, out->data() + done, out->size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      return r < 0 ? FromErrno(errno, "read model checkpoint " + path)
                   : Corruption("model checkpoint " + path + " shrank while read");
    }
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  return OkStatus();
}

Status ParseConfig(const int32_t h[7], TinyLlamaConfig* c) {
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  const int64_t limits[7] = {1 << 16, 1 << 20, 1024, 1024, 1024, 1 << 22, 1 << 24};
  for (int i = 0; i < 7; ++i) {
    const int64_t v = i == 5 ? std::abs(int64_t{h[i]}) : h[i];
    if (v < 1 || v > limits[i]) {
      return Corruption("model header field " + std::string(names[i]) + " = " + std::to_string(h[i]) +
                        " is out of range");
    }
  }
  *c = TinyLlamaConfig{static_cast<uint32_t>(h[0]), static_cast<uint32_t>(h[1]), static_cast<uint32_t>(h[2]),
                       static_cast<uint32_t>(h[3]), static_cast<uint32_t>(h[4]),
                       static_cast<uint32_t>(std::abs(h[5])), static_cast<uint32_t>(h[6]), h[5] > 0};
  if (c->dim % c->num_heads != 0 || c->num_heads % c->num_kv_heads != 0 || c->head_dim() % 2 != 0) {
    return Corruption("model header: dim must split into num_heads even-sized heads and num_heads must be a "
                      "multiple of num_kv_heads");
  }
  return OkStatus();
}

}  // namespace

// Pointers into data_, in the checkpoint's order. Matrices are [out][in].
struct TinyLlama::Weights {
  const float *embedding, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *classifier;
};

TinyLlama::TinyLlama(TinyLlamaConfig config, std::vector<float> data)
    : config_(config), data_(std::move(data)), w_(std::make_unique<Weights>()) {
  const size_t d = config_.dim, kv = config_.kv_dim(), hid = config_.hidden_dim, layers = config_.num_layers;
  const float* p = data_.data();
  auto take = [&p](size_t n) {
    const float* at = p;
    p += n;
    return at;
  };
  w_->embedding = take(config_.vocab_size * d);
  w_->rms_att = take(layers * d);
  w_->wq = take(layers * d * d);
  w_->wk = take(layers * kv * d);
  w_->wv = take(layers * kv * d);
  w_->wo = take(layers * d * d);
  w_->rms_ffn = take(layers * d);
  w_->w1 = take(layers * hid * d);
  w_->w2 = take(layers * d * hid);
  w_->w3 = take(layers * hid * d);
  w_->rms_final = take(d);
  take(size_t{config_.seq_len} * config_.head_dim());  // legacy RoPE tables (cos, sin): RoPE is computed
  w_->classifier = config_.shared_classifier ? w_->embedding : take(config_.vocab_size * d);
  key_cache_.resize(layers);
  value_cache_.resize(layers);
}

TinyLlama::~TinyLlama() = default;

Result<std::unique_ptr<TinyLlama>> TinyLlama::Load(const std::string& path, uint64_t expected_checksum) {
  std::string bytes;
  RETURN_IF_ERROR(ReadFile(path, &bytes));
  if (bytes.size() < 28) return Corruption("model checkpoint " + path + " is shorter than its 28-byte header");
  int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof(h));
  TinyLlamaConfig c;
  Status s = ParseConfig(h, &c);
  if (!s.ok()) return s.WithContext(path);
  // Every count below is bounded by ParseConfig's limits: no 64-bit overflow.
  const uint64_t d = c.dim, kv = c.kv_dim(), hid = c.hidden_dim, layers = c.num_layers;
  uint64_t floats = c.vocab_size * d + layers * (2 * d + 2 * d * d + 2 * kv * d + 3 * hid * d) + d +
                    uint64_t{c.seq_len} * c.head_dim();
  if (!c.shared_classifier) floats += c.vocab_size * d;
  const uint64_t want = 28 + 4 * floats;
  if (bytes.size() != want) {
    return Corruption("model checkpoint " + path + " has " + std::to_string(bytes.size()) +
                      " bytes, its header implies " + std::to_string(want));
  }
  const uint64_t checksum = Checksum64(bytes.data(), bytes.size());
  if (expected_checksum != 0 && checksum != expected_checksum) {
    return Corruption("model checkpoint " + path + " checksum mismatch (not the expected file or damaged)");
  }
  std::vector<float> data(floats);
  std::memcpy(data.data(), bytes.data() + 28, floats * 4);
  for (size_t i = 0; i < data.size(); ++i) {
    if (!std::isfinite(data[i])) return Corruption("model checkpoint " + path + " has a non-finite weight");
  }
  std::unique_ptr<TinyLlama> m(new TinyLlama(c, std::move(data)));
  m->file_checksum_ = checksum;
  return m;
}

void TinyLlama::Reset() {
  pos_ = 0;
  for (auto& k : key_cache_) k.clear();
  for (auto& v : value_cache_) v.clear();
}

// out[num_heads * head_dim] = per head: softmax(q_h . K_g^T / sqrt(hd)) V_g over positions [0, pos_].
void TinyLlama::Attention(uint32_t layer, const float* q, float* out) {
  const uint32_t hd = config_.head_dim(), kv_dim = config_.kv_dim();
  const uint32_t group = config_.num_heads / config_.num_kv_heads;
  const size_t n = pos_ + 1;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  scores_.resize(n);
  for (uint32_t h = 0; h < config_.num_heads; ++h) {
    const size_t koff = size_t{h / group} * hd;
    const float* qh = q + size_t{h} * hd;
    for (size_t t = 0; t < n; ++t) {
      const float* k = key_cache_[layer].data() + t * kv_dim + koff;
      float dot = 0.f;
      for (uint32_t i = 0; i < hd; ++i) dot += qh[i] * k[i];
      scores_[t] = dot * scale;
    }
    Softmax(scores_.data(), n);
    float* o = out + size_t{h} * hd;
    std::fill(o, o + hd, 0.f);
    for (size_t t = 0; t < n; ++t) {
      const float* v = value_cache_[layer].data() + t * kv_dim + koff;
      for (uint32_t i = 0; i < hd; ++i) o[i] += scores_[t] * v[i];
    }
  }
}

Status TinyLlama::Forward(int32_t token, std::vector<float>* logits, std::vector<LayerActivations>* acts) {
  if (token < 0 || static_cast<uint32_t>(token) >= config_.vocab_size) {
    return InvalidArgument("token " + std::to_string(token) + " outside [0, " + std::to_string(config_.vocab_size) +
                           ")");
  }
  const uint32_t d = config_.dim, kv = config_.kv_dim(), hid = config_.hidden_dim, hd = config_.head_dim();
  std::vector<float> x(w_->embedding + size_t(token) * d, w_->embedding + size_t(token + 1) * d);
  std::vector<float> xb(d), xb2(d), q(d), k(kv), v(kv), hb(hid), hb2(hid);
  RopeAngles rope(hd, kRopeTheta);
  rope.SetPosition(static_cast<double>(pos_));
  if (acts != nullptr) acts->resize(config_.num_layers);
  for (uint32_t l = 0; l < config_.num_layers; ++l) {
    RmsNorm(x.data(), w_->rms_att + size_t{l} * d, d, xb.data());
    MatVec(w_->wq + size_t{l} * d * d, xb.data(), d, d, q.data());
    MatVec(w_->wk + size_t{l} * kv * d, xb.data(), kv, d, k.data());
    MatVec(w_->wv + size_t{l} * kv * d, xb.data(), kv, d, v.data());
    if (acts != nullptr) {
      (*acts)[l].q_pre = q;
      (*acts)[l].k_pre = k;
    }
    for (uint32_t h = 0; h < config_.num_heads; ++h) rope.Apply(q.data() + size_t{h} * hd, RopeStyle::kInterleaved);
    for (uint32_t g = 0; g < config_.num_kv_heads; ++g) rope.Apply(k.data() + size_t{g} * hd, RopeStyle::kInterleaved);
    key_cache_[l].insert(key_cache_[l].end(), k.begin(), k.end());
    value_cache_[l].insert(value_cache_[l].end(), v.begin(), v.end());
    Attention(l, q.data(), xb.data());
    if (acts != nullptr) {
      (*acts)[l].q = q;
      (*acts)[l].k = k;
      (*acts)[l].v = v;
      (*acts)[l].attn_out = xb;
    }
    MatVec(w_->wo + size_t{l} * d * d, xb.data(), d, d, xb2.data());
    for (uint32_t i = 0; i < d; ++i) x[i] += xb2[i];
    RmsNorm(x.data(), w_->rms_ffn + size_t{l} * d, d, xb.data());
    MatVec(w_->w1 + size_t{l} * hid * d, xb.data(), hid, d, hb.data());
    MatVec(w_->w3 + size_t{l} * hid * d, xb.data(), hid, d, hb2.data());
    for (uint32_t i = 0; i < hid; ++i) hb[i] = hb[i] / (1.f + std::exp(-hb[i])) * hb2[i];  // SwiGLU
    MatVec(w_->w2 + size_t{l} * d * hid, hb.data(), d, hid, xb.data());
    for (uint32_t i = 0; i < d; ++i) x[i] += xb[i];
  }
  RmsNorm(x.data(), w_->rms_final, d, x.data());
  logits->resize(config_.vocab_size);
  MatVec(w_->classifier, x.data(), config_.vocab_size, d, logits->data());
  ++pos_;
  return OkStatus();
}

namespace {

int32_t SampleToken(const std::vector<float>& logits, float temperature, Rng* rng) {
  if (temperature <= 0.f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<float> p(logits.size());
  for (size_t i = 0; i < p.size(); ++i) p[i] = logits[i] / temperature;
  Softmax(p.data(), p.size());
  double u = rng->Uniform(), acc = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    acc += p[i];
    if (u < acc) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(p.size() - 1);
}

// Copies one token's activations into the trace tensors (layouts per trace.h).
void RecordToken(const TraceInfo& info, const std::vector<LayerActivations>& acts, uint64_t t, int64_t step,
                 Trace* trace) {
  const size_t hd = info.head_dim, T = info.num_tokens;
  for (uint32_t l = 0; l < info.num_layers; ++l) {
    TraceLayer& tl = trace->layers[l];
    for (uint32_t g = 0; g < info.num_kv_heads; ++g) {
      const size_t src = g * hd, dst = (g * T + t) * hd;
      std::copy_n(acts[l].k_pre.begin() + src, hd, tl.keys_pre.begin() + dst);
      std::copy_n(acts[l].k.begin() + src, hd, tl.keys.begin() + dst);
      std::copy_n(acts[l].v.begin() + src, hd, tl.values.begin() + dst);
    }
    if (step >= 0) {
      const size_t dst = static_cast<size_t>(step) * info.num_q_heads * hd;
      std::copy(acts[l].q_pre.begin(), acts[l].q_pre.end(), tl.queries_pre.begin() + dst);
      std::copy(acts[l].q.begin(), acts[l].q.end(), tl.queries.begin() + dst);
    }
  }
}

}  // namespace

Result<Trace> GenerateTrace(TinyLlama* model, const GenerateOptions& o, GenerationStats* stats) {
  const TinyLlamaConfig& c = model->config();
  if (o.num_tokens < 1 || o.num_tokens > TraceLimits::kMaxTokens) {
    return InvalidArgument("num_tokens must be in [1, " + std::to_string(TraceLimits::kMaxTokens) + "]");
  }
  if (o.num_tokens > c.seq_len && !o.allow_untrained_positions) {
    return InvalidArgument("num_tokens " + std::to_string(o.num_tokens) + " exceeds the model's trained context of " +
                           std::to_string(c.seq_len) +
                           " tokens; set allow_untrained_positions to generate past it (activations there are "
                           "outside the trained range)");
  }
  if (!std::isfinite(o.temperature) || o.temperature < 0.f) return InvalidArgument("temperature must be >= 0");
  if (o.first_token < 0 || static_cast<uint32_t>(o.first_token) >= c.vocab_size) {
    return InvalidArgument("first_token outside the vocabulary");
  }
  Trace trace;
  TraceInfo& info = trace.info;
  info.num_layers = c.num_layers;
  info.num_q_heads = c.num_heads;
  info.num_kv_heads = c.num_kv_heads;
  info.head_dim = c.head_dim();
  info.num_tokens = o.num_tokens;
  info.rope_style = RopeStyle::kInterleaved;
  info.rope_theta = kRopeTheta;
  const uint64_t steps = std::min(o.num_query_steps, o.num_tokens);
  for (uint64_t p = o.num_tokens - steps; p < o.num_tokens; ++p) info.step_positions.push_back(p);
  info.description = "tiny_llama seq_len=" + std::to_string(c.seq_len) + " seed=" + std::to_string(o.seed) +
                     " temperature=" + std::to_string(o.temperature);
  if (o.num_tokens > c.seq_len) {
    info.description += "; positions >= " + std::to_string(c.seq_len) + " are outside the trained context";
  }
  trace.layers.resize(c.num_layers);
  for (TraceLayer& l : trace.layers) l.Resize(info);

  model->Reset();
  Rng rng(o.seed);
  std::vector<float> logits;
  std::vector<LayerActivations> acts;
  int32_t token = o.first_token;
  double nll = 0.0;
  for (uint64_t t = 0; t < o.num_tokens; ++t) {
    info.token_ids.push_back(token);
    RETURN_IF_ERROR(model->Forward(token, &logits, &acts));
    const int64_t step = t >= o.num_tokens - steps ? static_cast<int64_t>(t - (o.num_tokens - steps)) : -1;
    RecordToken(info, acts, t, step, &trace);
    if (t + 1 < o.num_tokens) {
      token = SampleToken(logits, o.temperature, &rng);
      nll -= LogSoftmaxAt(logits, token);
    }
  }
  if (stats != nullptr) {
    stats->scored_tokens = o.num_tokens - 1;
    stats->mean_nll = o.num_tokens > 1 ? nll / static_cast<double>(o.num_tokens - 1) : 0.0;
  }
  return trace;
}

Result<double> MeanNegLogLikelihood(TinyLlama* model, std::span<const int32_t> tokens) {
  if (tokens.size() < 2) return InvalidArgument("need at least 2 tokens to score");
  model->Reset();
  std::vector<float> logits;
  double nll = 0.0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    RETURN_IF_ERROR(model->Forward(tokens[i], &logits));
    if (i + 1 < tokens.size()) {
      if (tokens[i + 1] < 0 || static_cast<size_t>(tokens[i + 1]) >= logits.size()) {
        return InvalidArgument("token " + std::to_string(tokens[i + 1]) + " outside the vocabulary");
      }
      nll -= LogSoftmaxAt(logits, tokens[i + 1]);
    }
  }
  return nll / static_cast<double>(tokens.size() - 1);
}

}  // namespace tierkv::index
