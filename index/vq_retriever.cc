#include "index/vq_retriever.h"

#include <faiss/IndexFlat.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/ProductQuantizer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>

#include "index/block_scoring.h"
#include "index/rope.h"
#include "kernels/score.h"

namespace tierkv::index {
namespace {

// In-place Cholesky of the symmetric positive definite a [d][d] into its lower
// factor (upper part zeroed). False when a is not positive definite.
bool Cholesky(std::vector<double>* a, uint32_t d) {
  std::vector<double>& m = *a;
  for (uint32_t j = 0; j < d; ++j) {
    double s = m[size_t{j} * d + j];
    for (uint32_t k = 0; k < j; ++k) s -= m[size_t{j} * d + k] * m[size_t{j} * d + k];
    if (!(s > 0.0)) return false;
    const double ljj = std::sqrt(s);
    m[size_t{j} * d + j] = ljj;
    for (uint32_t i = j + 1; i < d; ++i) {
      double t = m[size_t{i} * d + j];
      for (uint32_t k = 0; k < j; ++k) t -= m[size_t{i} * d + k] * m[size_t{j} * d + k];
      m[size_t{i} * d + j] = t / ljj;
    }
    for (uint32_t i = 0; i < j; ++i) m[size_t{i} * d + j] = 0.0;
  }
  return true;
}

// Solves L y = q (forward substitution) into out.
void SolveL(const std::vector<double>& l, const float* q, uint32_t d, float* out) {
  std::vector<double> y(d);
  for (uint32_t i = 0; i < d; ++i) {
    double s = q[i];
    for (uint32_t k = 0; k < i; ++k) s -= l[size_t{i} * d + k] * y[k];
    y[i] = s / l[size_t{i} * d + i];
    out[i] = static_cast<float>(y[i]);
  }
}

}  // namespace

std::string VqRetriever::Name() const {
  // The factory string with the keys that differ from the defaults.
  const VqOptions def;
  std::string keys;
  auto add = [&keys](const std::string& kv) { keys += (keys.empty() ? "" : ",") + kv; };
  if (opt_.m != def.m) add("m=" + std::to_string(opt_.m));
  if (opt_.bits != def.bits) add("bits=" + std::to_string(opt_.bits));
  if (!opt_.window) add("rope=post");
  if (opt_.window && opt_.w != def.w) add("w=" + std::to_string(opt_.w));
  if (!opt_.query_aware) add("qa=off");
  if (opt_.shrink != def.shrink) add("shrink=" + std::to_string(opt_.shrink));
  if (opt_.train != def.train) add("train=" + std::to_string(opt_.train));
  if (opt_.iters != def.iters) add("iters=" + std::to_string(opt_.iters));
  if (!opt_.lse) add("reduce=max");
  if (opt_.exact != def.exact) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "exact=%g", opt_.exact);
    add(buf);
  }
  return keys.empty() ? "vq" : "vq:" + keys;
}

size_t VqRetriever::IndexBytes() const {
  size_t n = codes_.size();
  for (const auto& b : books_) n += b.size() * sizeof(float);
  for (const auto& l : l_) n += l.size() * sizeof(float);  // stored as float in a deployment
  for (const auto& e : exact_) n += e.size() * (sizeof(uint64_t) + layer().head_dim * sizeof(float));  // id + key
  return n;
}

void VqRetriever::ScoringQuery(const float* q, const float* q_pre, float* out) const {
  const uint32_t d = layer().head_dim;
  if (!opt_.window) {
    std::copy_n(q, d, out);
    return;
  }
  std::copy_n(q_pre, d, out);
  RopeAngles rope(d, layer().rope_theta);
  rope.SetPosition(static_cast<double>(opt_.w));
  rope.Apply(out, layer().rope_style);
}

void VqRetriever::FitMetric(const LayerKeys& layer, const RetrieverParams& params, uint32_t g) {
  const uint32_t d = layer.head_dim, group = params.num_q_heads / layer.num_kv_heads;
  std::vector<double>& l = l_[g];
  l.assign(size_t{d} * d, 0.0);
  const QuerySample& qs = params.query_sample;
  bool ok = false;
  if (opt_.query_aware && qs.count > 0 && (!opt_.window || qs.q_pre != nullptr)) {
    RopeAngles rope(d, layer.rope_theta);
    rope.SetPosition(static_cast<double>(opt_.w));
    std::vector<float> q(d);
    uint64_t n = 0;
    for (uint32_t i = 0; i < qs.count; ++i) {
      for (uint32_t h = g * group; h < (g + 1) * group; ++h) {
        const size_t off = (size_t{i} * params.num_q_heads + h) * d;
        std::copy_n((opt_.window ? qs.q_pre : qs.q) + off, d, q.data());
        if (opt_.window) rope.Apply(q.data(), layer.rope_style);
        for (uint32_t a = 0; a < d; ++a) {
          for (uint32_t b = 0; b <= a; ++b) l[size_t{a} * d + b] += double(q[a]) * q[b];
        }
        ++n;
      }
    }
    double trace = 0.0;
    for (uint32_t a = 0; a < d; ++a) trace += l[size_t{a} * d + a];
    const double ridge = opt_.shrink * trace / (double(n) * d);
    for (uint32_t a = 0; a < d; ++a) {
      for (uint32_t b = 0; b <= a; ++b) {
        double v = (1.0 - opt_.shrink) * l[size_t{a} * d + b] / double(n) + (a == b ? ridge : 0.0);
        l[size_t{a} * d + b] = l[size_t{b} * d + a] = v;
      }
    }
    ok = trace > 0.0 && Cholesky(&l, d);
  }
  if (!ok) {
    std::fill(l.begin(), l.end(), 0.0);
    for (uint32_t a = 0; a < d; ++a) l[size_t{a} * d + a] = 1.0;
  }
  if (g == 0) qa_built_ = ok;
}

Status VqRetriever::BuildHead(const LayerKeys& layer, uint32_t g, uint32_t bt) {
  const uint32_t d = layer.head_dim, KV = layer.num_kv_heads;
  const uint64_t T = layer.num_tokens;
  const float* keys = (opt_.window ? layer.keys_pre : layer.keys) + uint64_t{g} * T * d;
  const uint64_t n_train = std::min<uint64_t>(T, opt_.train);
  std::vector<float> xt(T * d), train(n_train * d);
  std::vector<uint8_t> codes(T * m_);
  try {
    // Transformed keys k' = L^T k (FAISS applies the matrix with BLAS), all of
    // them for encoding and an evenly spaced subset for training.
    faiss::LinearTransform lt(d, d, false);
    lt.A.resize(size_t{d} * d);
    for (uint32_t i = 0; i < d; ++i) {
      for (uint32_t j = 0; j < d; ++j) lt.A[size_t{i} * d + j] = static_cast<float>(l_[g][size_t{j} * d + i]);
    }
    lt.is_trained = true;
    lt.apply_noalloc(static_cast<faiss::Index::idx_t>(T), keys, xt.data());
    for (uint64_t i = 0; i < n_train; ++i) std::copy_n(xt.data() + (i * T / n_train) * d, d, train.data() + i * d);
    faiss::ProductQuantizer pq(d, m_, opt_.bits);
    pq.verbose = false;
    pq.cp.niter = static_cast<int>(opt_.iters);
    pq.cp.min_points_per_centroid = 1;
    pq.cp.max_points_per_centroid = 1 << 30;  // already subsampled
    pq.cp.seed = 1234 + static_cast<int>(g);
    pq.train(static_cast<faiss::Index::idx_t>(n_train), train.data());
    books_[g] = pq.centroids;
    if (opt_.bits == 8) {
      faiss::IndexFlatL2 assign(dsub_);  // nearest centroids by BLAS, per subspace
      pq.assign_index = &assign;
      pq.compute_codes_with_assign_index(xt.data(), codes.data(), T);
      pq.assign_index = nullptr;
    }
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS product quantizer: ") + e.what());
  }
  if (opt_.bits != 8) {
    // FAISS packs codes narrower than a byte; assign them unpacked here.
    for (uint64_t t = 0; t < T; ++t) {
      for (uint32_t m = 0; m < m_; ++m) {
        const float* x = xt.data() + t * d + size_t{m} * dsub_;
        float best = INFINITY;
        for (uint32_t c = 0; c < ksub_; ++c) {
          const float* cen = books_[g].data() + (size_t{m} * ksub_ + c) * dsub_;
          float dist = 0.f;
          for (uint32_t j = 0; j < dsub_; ++j) dist += (x[j] - cen[j]) * (x[j] - cen[j]);
          if (dist < best) best = dist, codes[t * m_ + m] = static_cast<uint8_t>(c);
        }
      }
    }
  }
  for (uint64_t t = 0; t < T; ++t) {
    const uint64_t b = t / bt, tt = t % bt;
    std::copy_n(codes.data() + t * m_, m_, codes_.data() + ((b * KV + g) * bt + tt) * m_);
  }
  return OkStatus();
}

Status VqRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  const uint32_t d = layer.head_dim, bt = params.block_tokens;
  m_ = opt_.m != 0 ? opt_.m : std::max<uint32_t>(1, d / 8);
  if (d % m_ != 0) {
    return InvalidArgument("vq: m=" + std::to_string(m_) + " does not divide head_dim " + std::to_string(d));
  }
  if (opt_.window && (layer.keys_pre == nullptr || (layer.rope_style != RopeStyle::kInterleaved &&
                                                    layer.rope_style != RopeStyle::kHalfSplit) ||
                      !(layer.rope_theta > 0.0))) {
    return InvalidArgument("vq: rope=window needs pre-RoPE keys and the layer's RoPE style and theta; use rope=post");
  }
  dsub_ = d / m_;
  ksub_ = 1u << opt_.bits;
  const uint64_t B = (layer.num_tokens + bt - 1) / bt;
  if (B > kernels::kMaxScoreBlocks) return InvalidArgument("vq: too many blocks for ScoreBlocks");
  codes_.assign(B * layer.num_kv_heads * bt * m_, 0);
  l_.assign(layer.num_kv_heads, {});
  books_.assign(layer.num_kv_heads, {});
  exact_.assign(layer.num_kv_heads, {});
  exact_threshold_.assign(layer.num_kv_heads, INFINITY);
  // layer() is not set until BuildImpl returns: FitMetric and BuildHead take it.
  for (uint32_t g = 0; g < layer.num_kv_heads; ++g) {
    FitMetric(layer, params, g);
    RETURN_IF_ERROR(BuildHead(layer, g, bt));
    if (opt_.exact > 0) {
      // The code error of every token (re-encoding; codes come out the same).
      std::vector<float> errors;
      errors.reserve(layer.num_tokens);
      EncodeTokens(layer, g, 0, layer.num_tokens, bt, &errors);
      PickExactTokens(g, errors);
    }
  }
  return OkStatus();
}

void VqRetriever::EncodeTokens(const LayerKeys& layer, uint32_t g, uint64_t begin, uint64_t end, uint32_t bt,
                               std::vector<float>* errors) {
  const uint32_t d = layer.head_dim, KV = layer.num_kv_heads;
  const float* keys = (opt_.window ? layer.keys_pre : layer.keys) + uint64_t{g} * layer.num_tokens * d;
  const std::vector<double>& l = l_[g];
  std::vector<float> x(d);
  for (uint64_t t = begin; t < end; ++t) {
    const float* k = keys + t * d;
    for (uint32_t i = 0; i < d; ++i) {  // k' = L^T k
      double acc = 0.0;
      for (uint32_t j = i; j < d; ++j) acc += l[size_t{j} * d + i] * k[j];
      x[i] = static_cast<float>(acc);
    }
    uint8_t* out = codes_.data() + (((t / bt) * KV + g) * bt + t % bt) * m_;
    float err = 0.f;
    for (uint32_t m = 0; m < m_; ++m) {
      float best = INFINITY;
      for (uint32_t c = 0; c < ksub_; ++c) {
        const float* cen = books_[g].data() + (size_t{m} * ksub_ + c) * dsub_;
        float dist = 0.f;
        for (uint32_t j = 0; j < dsub_; ++j) dist += (x[size_t{m} * dsub_ + j] - cen[j]) * (x[size_t{m} * dsub_ + j] - cen[j]);
        if (dist < best) best = dist, out[m] = static_cast<uint8_t>(c);
      }
      err += best;
    }
    if (errors != nullptr) errors->push_back(err);
  }
}

void VqRetriever::PickExactTokens(uint32_t g, const std::vector<float>& errors) {
  const uint64_t T = errors.size();
  const auto n = static_cast<uint64_t>(std::ceil(opt_.exact * static_cast<double>(T)));
  exact_[g].clear();
  if (n == 0) {
    exact_threshold_[g] = INFINITY;
    return;
  }
  std::vector<float> sorted = errors;
  std::nth_element(sorted.begin(), sorted.begin() + (T - n), sorted.end());
  exact_threshold_[g] = sorted[T - n];
  for (uint64_t t = 0; t < T && exact_[g].size() < n; ++t) {
    if (errors[t] >= exact_threshold_[g]) exact_[g].push_back(t);
  }
}

void VqRetriever::ApplyExactTokens(const QueryView& query, uint64_t visible) {
  const uint32_t d = query.head_dim, H = query.num_q_heads, KV = layer().num_kv_heads, group = H / KV;
  const uint32_t bt = params().block_tokens;
  const float scale = SoftmaxScale(d);
  for (uint32_t g = 0; g < KV; ++g) {
    for (uint64_t t : exact_[g]) {
      if (t > query.position) break;
      const uint64_t b = t / bt;
      if (b >= visible) break;
      const uint8_t* code = codes_.data() + ((b * KV + g) * bt + t % bt) * m_;
      const float* k = layer().Key(g, t);
      for (uint32_t h = g * group; h < (g + 1) * group; ++h) {
        const float* q = query.q + size_t{h} * d;
        float exact = 0.f, approx = 0.f;
        for (uint32_t c = 0; c < d; ++c) exact += q[c] * k[c];
        for (uint32_t m = 0; m < m_; ++m) approx += lut_[(size_t{h} * m_ + m) * 256 + code[m]];
        float& s = head_scores_[size_t{h} * visible + b];
        if (!opt_.lse) {
          s = std::max(s, exact);
          continue;
        }
        // exp(scale s) - exp(scale approx) + exp(scale exact), stably.
        const float top = std::max(s, exact);
        const double v = std::exp(double(scale) * (s - top)) - std::exp(double(scale) * (approx - top)) +
                         std::exp(double(scale) * (exact - top));
        s = top + static_cast<float>(std::log(std::max(v, 1e-30)) / scale);
      }
    }
  }
}

Status VqRetriever::ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) {
  const uint32_t bt = params().block_tokens;
  const uint64_t B = (layer.num_tokens + bt - 1) / bt;
  if (B > kernels::kMaxScoreBlocks) return InvalidArgument("vq: too many blocks for ScoreBlocks");
  codes_.resize(B * layer.num_kv_heads * bt * m_, 0);  // blocks are the outer index: old codes stay
  std::vector<float> errors;
  for (uint32_t g = 0; g < layer.num_kv_heads; ++g) {
    errors.clear();
    EncodeTokens(layer, g, old_tokens, layer.num_tokens, bt, opt_.exact > 0 ? &errors : nullptr);
    for (uint64_t i = 0; i < errors.size(); ++i) {
      if (errors[i] >= exact_threshold_[g]) exact_[g].push_back(old_tokens + i);
    }
  }
  return OkStatus();
}

Status VqRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                               std::vector<uint32_t>* selected) {
  const uint32_t d = query.head_dim, H = query.num_q_heads, group = H / layer().num_kv_heads;
  if (opt_.window && query.q_pre == nullptr) return InvalidArgument("vq: rope=window needs the pre-RoPE query");
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  lut_.assign(size_t{H} * m_ * 256, 0.f);
  qbuf_.resize(2 * size_t{d});
  float* qs = qbuf_.data();
  float* qt = qbuf_.data() + d;
  for (uint32_t h = 0; h < H; ++h) {
    const uint32_t g = h / group;
    ScoringQuery(query.q + size_t{h} * d, query.q_pre != nullptr ? query.q_pre + size_t{h} * d : nullptr, qs);
    SolveL(l_[g], qs, d, qt);
    for (uint32_t m = 0; m < m_; ++m) {
      for (uint32_t c = 0; c < ksub_; ++c) {
        const float* cen = books_[g].data() + (size_t{m} * ksub_ + c) * dsub_;
        float s = 0.f;
        for (uint32_t j = 0; j < dsub_; ++j) s += qt[size_t{m} * dsub_ + j] * cen[j];
        lut_[(size_t{h} * m_ + m) * 256 + c] = s;
      }
    }
  }
  scores_.resize(visible);
  kernels::ScoreArgs a;
  a.mode = kernels::ScoreMode::kVqLut;
  a.combine = params().head_combine;
  a.num_q_heads = H;
  a.num_kv_heads = layer().num_kv_heads;
  a.head_dim = d;
  a.num_blocks = static_cast<uint32_t>(visible);
  a.block_tokens = params().block_tokens;
  a.num_tokens = static_cast<uint32_t>(query.position + 1);
  a.num_subspaces = m_;
  a.codes = codes_.data();
  a.lut = lut_.data();
  a.vq_reduce = opt_.lse ? kernels::VqReduce::kLogSumExp : kernels::VqReduce::kMax;
  a.scores = scores_.data();
  bool with_exact = false;
  for (const auto& e : exact_) with_exact = with_exact || !e.empty();
  if (with_exact) {
    head_scores_.resize(size_t{H} * visible);
    a.head_scores = head_scores_.data();
  }
  RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCpu, a));
  if (with_exact) {
    ApplyExactTokens(query, visible);
    CombineHeads(head_scores_, H, visible, params().head_combine, SoftmaxScale(d), &scores_);
  }
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
