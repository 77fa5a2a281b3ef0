#include "index/cluster_retriever.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "index/block_scoring.h"
#include "index/faiss_util.h"

namespace tierkv::index {

std::string ClusterRetriever::Name() const {
  // The factory string with the keys that differ from the defaults.
  const ClusterOptions def;
  std::string keys;
  auto add = [&keys](const std::string& kv) { keys += (keys.empty() ? "" : ",") + kv; };
  if (opt_.k != 0) add("k=" + std::to_string(opt_.k));
  if (opt_.k == 0 && opt_.size != def.size) add("size=" + std::to_string(opt_.size));
  if (opt_.seg != def.seg) add("seg=" + std::to_string(opt_.seg));
  if (opt_.iters != def.iters) add("iters=" + std::to_string(opt_.iters));
  if (opt_.train != def.train) add("train=" + std::to_string(opt_.train));
  if (!opt_.mass) add("map=max");
  if (opt_.outliers) add("out=1");
  return keys.empty() ? "cluster" : "cluster:" + keys;
}

size_t ClusterRetriever::IndexBytes() const {
  return (units_.size() + outliers_.size()) * sizeof(float) + offsets_.size() * sizeof(uint64_t) +
         entry_unit_.size() * sizeof(uint32_t) + entry_count_.size() * sizeof(uint16_t);
}

Status ClusterRetriever::BuildHead(const LayerKeys& layer, uint32_t g, uint64_t prompt,
                                   std::vector<uint32_t>* unit_of) {
  const uint32_t D = layer.head_dim, KV = layer.num_kv_heads;
  const uint64_t T = layer.num_tokens;
  const float* keys = layer.Key(g, 0);  // [T][D], prompt first
  std::vector<float> centroids;
  KMeansOptions km;
  km.iterations = opt_.iters;
  km.max_points_per_centroid = opt_.train;
  km.seed = 1234 + g;
  RETURN_IF_ERROR(KMeans(keys, prompt, D, k_, km, &centroids));
  std::vector<int64_t> labels;
  std::vector<float> dist2;
  RETURN_IF_ERROR(NearestCentroids(keys, prompt, D, centroids.data(), k_, 1, &labels, &dist2));
  unit_of->resize(T);
  for (uint64_t t = 0; t < prompt; ++t) (*unit_of)[t] = static_cast<uint32_t>(labels[t]);
  for (uint64_t t = prompt; t < T; ++t) (*unit_of)[t] = k_ + static_cast<uint32_t>((t - prompt) / opt_.seg);
  for (uint32_t c = 0; c < k_; ++c) std::copy_n(centroids.data() + size_t{c} * D, D, units_.data() + (size_t{c} * KV + g) * D);
  for (uint64_t u = k_; u < num_units_; ++u) {
    const uint64_t begin = prompt + (u - k_) * opt_.seg, end = std::min(T, begin + opt_.seg);
    MeanKey(layer, g, begin, end, units_.data() + (u * KV + g) * D);
  }
  return OkStatus();
}

Status ClusterRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  const uint64_t T = layer.num_tokens, KV = layer.num_kv_heads, D = layer.head_dim;
  const uint32_t bt = params.block_tokens;
  if (bt > UINT16_MAX) return InvalidArgument("cluster retriever counts tokens per block in 16 bits");
  prompt_ = params.prompt_tokens > 0 && params.prompt_tokens < T ? params.prompt_tokens : T;
  const uint64_t want = opt_.k > 0 ? opt_.k : (prompt_ + opt_.size - 1) / opt_.size;
  k_ = static_cast<uint32_t>(std::clamp<uint64_t>(want, 1, prompt_));
  const uint64_t segments = (T - prompt_ + opt_.seg - 1) / opt_.seg;
  num_units_ = k_ + segments;
  units_.assign(num_units_ * KV * D, 0.f);
  num_blocks_ = (T + bt - 1) / bt;
  offsets_.assign(KV * num_blocks_ + 1, 0);
  entry_unit_.clear();
  entry_count_.clear();
  std::vector<uint32_t> unit_of;
  for (uint32_t g = 0; g < KV; ++g) {
    RETURN_IF_ERROR(BuildHead(layer, g, prompt_, &unit_of));
    for (uint64_t b = 0; b < num_blocks_; ++b) {
      const size_t first = entry_unit_.size();
      for (uint64_t t = b * bt; t < std::min(T, (b + 1) * bt); ++t) {
        const uint32_t u = unit_of[t];
        auto it = std::find(entry_unit_.begin() + first, entry_unit_.end(), u);
        if (it == entry_unit_.end()) {
          entry_unit_.push_back(u);
          entry_count_.push_back(1);
        } else {
          ++entry_count_[it - entry_unit_.begin()];
        }
      }
      offsets_[g * num_blocks_ + b + 1] = entry_unit_.size();
    }
  }
  outliers_.clear();
  if (opt_.outliers) BuildOutlierKeys(layer, bt, &outliers_);
  return OkStatus();
}

Status ClusterRetriever::ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) {
  const uint64_t T = layer.num_tokens, KV = layer.num_kv_heads, D = layer.head_dim;
  const uint32_t bt = params().block_tokens;
  const uint64_t old_blocks = num_blocks_;
  // The segment holding old_tokens - 1 may grow: recompute from it on.
  const uint64_t first_unit = old_tokens > prompt_ ? k_ + (old_tokens - 1 - prompt_) / opt_.seg : k_;
  num_units_ = k_ + (T - prompt_ + opt_.seg - 1) / opt_.seg;
  units_.resize(num_units_ * KV * D, 0.f);  // units are the outer index: old rows stay
  for (uint64_t u = first_unit; u < num_units_; ++u) {
    const uint64_t begin = prompt_ + (u - k_) * opt_.seg, end = std::min(T, begin + opt_.seg);
    for (uint32_t g = 0; g < KV; ++g) MeanKey(layer, g, begin, end, units_.data() + (u * KV + g) * D);
  }
  // Entries: old blocks keep theirs (plus the new tokens of the last, partial one).
  num_blocks_ = (T + bt - 1) / bt;
  std::vector<uint64_t> offsets(KV * num_blocks_ + 1, 0);
  std::vector<uint32_t> units;
  std::vector<uint16_t> counts;
  for (uint32_t g = 0; g < KV; ++g) {
    for (uint64_t b = 0; b < num_blocks_; ++b) {
      const size_t first = units.size();
      if (b < old_blocks) {
        const uint64_t* off = offsets_.data() + g * old_blocks;
        units.insert(units.end(), entry_unit_.begin() + off[b], entry_unit_.begin() + off[b + 1]);
        counts.insert(counts.end(), entry_count_.begin() + off[b], entry_count_.begin() + off[b + 1]);
      }
      for (uint64_t t = std::max(b * bt, old_tokens); t < std::min(T, (b + 1) * bt); ++t) {
        const uint32_t u = k_ + static_cast<uint32_t>((t - prompt_) / opt_.seg);
        auto it = std::find(units.begin() + first, units.end(), u);
        if (it == units.end()) {
          units.push_back(u);
          counts.push_back(1);
        } else {
          ++counts[it - units.begin()];
        }
      }
      offsets[g * num_blocks_ + b + 1] = units.size();
    }
  }
  offsets_ = std::move(offsets);
  entry_unit_ = std::move(units);
  entry_count_ = std::move(counts);
  if (opt_.outliers) BuildOutlierKeys(layer, bt, &outliers_);
  return OkStatus();
}

Status ClusterRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                    std::vector<uint32_t>* selected) {
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  const uint64_t segments = num_units_ - k_;
  const uint64_t seg_visible =
      query.position >= prompt_ ? std::min<uint64_t>(segments, (query.position - prompt_) / opt_.seg + 1) : 0;
  const uint64_t U = k_ + seg_visible;
  const uint32_t H = query.num_q_heads, group = H / layer().num_kv_heads;
  const float scale = SoftmaxScale(query.head_dim);
  RETURN_IF_ERROR(ScoreUnitsPerHead(query, layer().num_kv_heads, units_, U, &unit_scores_));
  head_scores_.resize(size_t{H} * visible);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (uint32_t h = 0; h < H; ++h) {
    const float* s = unit_scores_.data() + size_t{h} * U;
    const uint64_t* off = offsets_.data() + (h / group) * num_blocks_;
    float* out = head_scores_.data() + size_t{h} * visible;
    for (uint64_t b = 0; b < visible; ++b) {
      float mx = kNegInf;
      for (uint64_t e = off[b]; e < off[b + 1]; ++e) {
        if (entry_unit_[e] < U) mx = std::max(mx, s[entry_unit_[e]]);
      }
      if (opt_.mass && mx != kNegInf) {
        double z = 0.0;
        for (uint64_t e = off[b]; e < off[b + 1]; ++e) {
          if (entry_unit_[e] < U) z += entry_count_[e] * std::exp(double(scale) * (s[entry_unit_[e]] - mx));
        }
        mx += static_cast<float>(std::log(z) / scale);
      }
      out[b] = mx;
    }
  }
  if (opt_.outliers) {
    RETURN_IF_ERROR(
        MaxWithOutlierKeys(query, layer().num_kv_heads, outliers_, visible, &outlier_scores_, &head_scores_));
  }
  CombineHeads(head_scores_, H, visible, params().head_combine, scale, &scores_);
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
