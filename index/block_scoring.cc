#include "index/block_scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/score.h"
#include "kernels/summary.h"
#include "kernels/topk.h"

namespace tierkv::index {

namespace {

double Dist2(const float* a, const float* b, uint32_t d) {
  double s = 0.0;
  for (uint32_t c = 0; c < d; ++c) {
    const double x = double(a[c]) - b[c];
    s += x * x;
  }
  return s;
}

}  // namespace

float SoftmaxScale(uint32_t head_dim) { return 1.f / std::sqrt(static_cast<float>(head_dim)); }

Status BuildBlockSummaries(const LayerKeys& layer, uint32_t block_tokens, bool want_minmax, bool want_mean,
                           BlockSummaries* out) {
  const uint64_t T = layer.num_tokens, D = layer.head_dim, KV = layer.num_kv_heads;
  const uint64_t B = (T + block_tokens - 1) / block_tokens;
  if (B > kernels::kMaxScoreBlocks) {
    return InvalidArgument("layer has " + std::to_string(B) + " blocks, more than ScoreBlocks accepts");
  }
  out->num_blocks = B;
  const size_t n = B * KV * D;
  out->min.assign(want_minmax ? n : 0, 0.f);
  out->max.assign(want_minmax ? n : 0, 0.f);
  out->mean.assign(want_mean ? n : 0, 0.f);
  // The trace layout is [kv][T][d]: one kernel call per KV head sees K-only
  // blocks of block_tokens rows back to back, then rows are interleaved into
  // [B][kv][d].
  std::vector<uint32_t> counts(B, block_tokens);
  counts.back() = static_cast<uint32_t>(T - (B - 1) * block_tokens);
  std::vector<float> mn(want_minmax ? B * D : 0), mx(want_minmax ? B * D : 0), mean(want_mean ? B * D : 0);
  for (uint64_t g = 0; g < KV; ++g) {
    kernels::SummaryArgs a;
    a.key_dtype = DType::kF32;
    a.summary_dtype = DType::kF32;
    a.num_kv_heads = 1;
    a.block_tokens = block_tokens;
    a.head_dim = layer.head_dim;
    a.num_blocks = static_cast<uint32_t>(B);
    a.keys = layer.keys + g * T * D;
    a.block_stride_bytes = size_t{block_tokens} * D * sizeof(float);
    a.token_counts = counts.data();
    a.min_out = want_minmax ? mn.data() : nullptr;
    a.max_out = want_minmax ? mx.data() : nullptr;
    a.mean_out = want_mean ? mean.data() : nullptr;
    RETURN_IF_ERROR(kernels::BuildSummaries(kernels::Backend::kCpu, a));
    for (uint64_t b = 0; b < B; ++b) {
      const size_t dst = (b * KV + g) * D, src = b * D;
      if (want_minmax) {
        std::copy_n(mn.data() + src, D, out->min.data() + dst);
        std::copy_n(mx.data() + src, D, out->max.data() + dst);
      }
      if (want_mean) std::copy_n(mean.data() + src, D, out->mean.data() + dst);
    }
  }
  return OkStatus();
}

Status SummarizeBlock(uint32_t num_kv_heads, uint32_t head_dim, uint32_t block_tokens, const void* keys, DType dtype,
                      float* min, float* max, float* mean) {
  kernels::SummaryArgs a;
  a.key_dtype = dtype;
  a.summary_dtype = DType::kF32;
  a.num_kv_heads = num_kv_heads;
  a.block_tokens = block_tokens;
  a.head_dim = head_dim;
  a.num_blocks = 1;
  a.keys = keys;
  a.min_out = min;
  a.max_out = max;
  a.mean_out = mean;
  return kernels::BuildSummaries(kernels::Backend::kCpu, a);
}

namespace {

Status ScoreUnits(const QueryView& query, uint32_t num_kv_heads, const void* units, size_t units_size, DType dtype,
                  uint64_t num_units, std::vector<float>* out) {
  if (num_units > kernels::kMaxScoreBlocks || units_size < num_units * num_kv_heads * query.head_dim) {
    return InvalidArgument("ScoreUnitsPerHead: " + std::to_string(num_units) + " units out of range");
  }
  out->resize(size_t{query.num_q_heads} * num_units);
  if (num_units == 0) return OkStatus();
  std::vector<float> combined(num_units);
  kernels::ScoreArgs a;
  a.mode = kernels::ScoreMode::kMean;
  a.combine = kernels::HeadCombine::kMax;
  a.num_q_heads = query.num_q_heads;
  a.num_kv_heads = num_kv_heads;
  a.head_dim = query.head_dim;
  a.num_blocks = static_cast<uint32_t>(num_units);
  a.query = query.q;
  a.summary_dtype = dtype;
  a.mean_keys = units;
  a.scores = combined.data();
  a.head_scores = out->data();
  return kernels::ScoreBlocks(kernels::Backend::kCpu, a);
}

}  // namespace

Status ScoreUnitsPerHead(const QueryView& query, uint32_t num_kv_heads, std::span<const float> units,
                         uint64_t num_units, std::vector<float>* out) {
  return ScoreUnits(query, num_kv_heads, units.data(), units.size(), DType::kF32, num_units, out);
}

Status ScoreUnitsPerHead(const QueryView& query, uint32_t num_kv_heads, std::span<const uint16_t> units_f16,
                         uint64_t num_units, std::vector<float>* out) {
  return ScoreUnits(query, num_kv_heads, units_f16.data(), units_f16.size(), DType::kF16, num_units, out);
}

void CombineHeads(std::span<const float> head_scores, uint32_t num_heads, uint64_t num_blocks, HeadCombine combine,
                  float scale, std::vector<float>* out) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (combine == HeadCombine::kMax) {
    out->assign(num_blocks, kNegInf);
    for (uint32_t h = 0; h < num_heads; ++h) {
      const float* s = head_scores.data() + size_t{h} * num_blocks;
      for (uint64_t b = 0; b < num_blocks; ++b) (*out)[b] = std::max((*out)[b], s[b]);
    }
    return;
  }
  out->assign(num_blocks, 0.f);
  std::vector<float> p(num_blocks);
  for (uint32_t h = 0; h < num_heads; ++h) {
    const float* s = head_scores.data() + size_t{h} * num_blocks;
    const float mx = *std::max_element(s, s + num_blocks);
    if (mx == kNegInf) continue;
    double z = 0.0;
    for (uint64_t b = 0; b < num_blocks; ++b) {
      p[b] = s[b] == kNegInf ? 0.f : std::exp(scale * (s[b] - mx));
      z += p[b];
    }
    const float inv = static_cast<float>(1.0 / z);
    for (uint64_t b = 0; b < num_blocks; ++b) (*out)[b] += p[b] * inv;
  }
}

Status TopKSelect(std::span<const float> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                  std::vector<uint32_t>* selected) {
  std::vector<uint8_t> always(scores.size(), 0);
  for (uint32_t b : always_kept) always[b] = 1;
  selected->resize(num_blocks);
  kernels::TopKArgs a;
  a.scores = scores.data();
  a.num_blocks = static_cast<uint32_t>(scores.size());
  a.k = static_cast<uint32_t>(num_blocks);
  a.always = always.data();
  a.out_indices = selected->data();
  return kernels::TopK(kernels::Backend::kCpu, a);
}

void MeanKey(const LayerKeys& layer, uint32_t kv_head, uint64_t begin, uint64_t end, float* out) {
  const uint32_t D = layer.head_dim;
  std::vector<double> acc(D, 0.0);
  for (uint64_t t = begin; t < end; ++t) {
    const float* k = layer.Key(kv_head, t);
    for (uint32_t c = 0; c < D; ++c) acc[c] += k[c];
  }
  const double inv = 1.0 / static_cast<double>(end - begin);
  for (uint32_t c = 0; c < D; ++c) out[c] = static_cast<float>(acc[c] * inv);
}

void PickRepresentatives(const LayerKeys& layer, uint32_t g, uint64_t begin, uint64_t end, const float* mean,
                         uint32_t num_reps, RepPick pick, float* reps) {
  const uint32_t D = layer.head_dim;
  std::copy_n(mean, D, reps);
  if (num_reps == 1) return;
  const uint64_t n = end - begin;
  std::vector<uint64_t> chosen;
  if (pick == RepPick::kNorm) {
    std::vector<std::pair<double, uint64_t>> by_norm;  // (-|k|^2, t): largest norm first, then earliest
    const std::vector<float> zero(D, 0.f);
    for (uint64_t t = begin; t < end; ++t) by_norm.push_back({-Dist2(layer.Key(g, t), zero.data(), D), t});
    std::sort(by_norm.begin(), by_norm.end());
    for (uint32_t i = 0; i + 1 < num_reps && i < n; ++i) chosen.push_back(by_norm[i].second);
  } else {
    // Greedy k-center seeded by the mean: min_d[t] = distance of key t to the
    // nearest representative so far.
    std::vector<double> min_d(n);
    for (uint64_t i = 0; i < n; ++i) min_d[i] = Dist2(layer.Key(g, begin + i), mean, D);
    for (uint32_t r = 1; r < num_reps; ++r) {
      const uint64_t far = std::max_element(min_d.begin(), min_d.end()) - min_d.begin();
      if (min_d[far] <= 0.0) break;  // every key already represented exactly
      chosen.push_back(begin + far);
      const float* kf = layer.Key(g, begin + far);
      for (uint64_t i = 0; i < n; ++i) min_d[i] = std::min(min_d[i], Dist2(layer.Key(g, begin + i), kf, D));
    }
  }
  for (uint32_t r = 1; r < num_reps; ++r) {
    const float* src = chosen.empty() ? mean : layer.Key(g, chosen[std::min<size_t>(r - 1, chosen.size() - 1)]);
    std::copy_n(src, D, reps + size_t{r} * D);
  }
}

void BuildOutlierKeys(const LayerKeys& layer, uint32_t block_tokens, std::vector<float>* out) {
  const uint64_t T = layer.num_tokens, B = (T + block_tokens - 1) / block_tokens;
  const uint32_t KV = layer.num_kv_heads, D = layer.head_dim;
  out->assign(B * KV * D, 0.f);
  std::vector<float> mean(D);
  for (uint64_t b = 0; b < B; ++b) {
    const uint64_t begin = b * block_tokens, end = std::min(T, begin + block_tokens);
    for (uint32_t g = 0; g < KV; ++g) {
      MeanKey(layer, g, begin, end, mean.data());
      uint64_t best = begin;
      double best_d2 = -1.0;
      for (uint64_t t = begin; t < end; ++t) {
        const float* k = layer.Key(g, t);
        double d2 = 0.0;
        for (uint32_t c = 0; c < D; ++c) d2 += double(k[c] - mean[c]) * (k[c] - mean[c]);
        if (d2 > best_d2) best_d2 = d2, best = t;
      }
      std::copy_n(layer.Key(g, best), D, out->data() + (b * KV + g) * D);
    }
  }
}

Status MaxWithOutlierKeys(const QueryView& query, uint32_t num_kv_heads, std::span<const float> outliers,
                          uint64_t visible, std::vector<float>* scratch, std::vector<float>* head_scores) {
  if (visible < 2) return OkStatus();
  const uint64_t n = visible - 1;
  RETURN_IF_ERROR(ScoreUnitsPerHead(query, num_kv_heads, outliers, n, scratch));
  for (uint32_t h = 0; h < query.num_q_heads; ++h) {
    const float* o = scratch->data() + size_t{h} * n;
    float* s = head_scores->data() + size_t{h} * visible;
    for (uint64_t b = 0; b < n; ++b) s[b] = std::max(s[b], o[b]);
  }
  return OkStatus();
}

}  // namespace tierkv::index
