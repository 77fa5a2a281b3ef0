#include "index/sentence_retriever.h"

#include <algorithm>

#include "index/block_scoring.h"

namespace tierkv::index {

std::string SentenceRetriever::Name() const {
  std::string name;
  if (force_fixed_) {
    name = "sentence:bounds=fixed,len=" + std::to_string(fallback_len_);
  } else {
    name = used_fallback_ ? "sentence:len=" + std::to_string(fallback_len_) + "(fixed)" : "sentence";
  }
  if (outliers_on_) name += name.find(':') == std::string::npos ? ":out=1" : ",out=1";
  return name;
}

size_t SentenceRetriever::IndexBytes() const {
  return (units_.size() + outliers_.size()) * sizeof(float) + unit_starts_.size() * sizeof(uint64_t) +
         (block_first_unit_.size() + block_last_unit_.size()) * sizeof(uint32_t);
}

Status SentenceRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  const uint64_t T = layer.num_tokens;
  unit_starts_.clear();
  used_fallback_ = force_fixed_ || layer.sentence_starts.empty();
  if (used_fallback_) {
    for (uint64_t t = 0; t < T; t += fallback_len_) unit_starts_.push_back(t);
  } else {
    // Tokens before the first boundary form a unit of their own.
    if (layer.sentence_starts.front() != 0) unit_starts_.push_back(0);
    for (uint64_t s : layer.sentence_starts) {
      if (s >= T || (!unit_starts_.empty() && s <= unit_starts_.back())) {
        return InvalidArgument("sentence_starts must be strictly increasing and below num_tokens");
      }
      unit_starts_.push_back(s);
    }
  }
  const uint64_t U = unit_starts_.size(), KV = layer.num_kv_heads, D = layer.head_dim;
  units_.assign(U * KV * D, 0.f);
  for (uint64_t u = 0; u < U; ++u) {
    const uint64_t end = u + 1 < U ? unit_starts_[u + 1] : T;
    for (uint32_t g = 0; g < KV; ++g) MeanKey(layer, g, unit_starts_[u], end, units_.data() + (u * KV + g) * D);
  }
  const uint32_t bt = params.block_tokens;
  const uint64_t B = (T + bt - 1) / bt;
  block_first_unit_.resize(B);
  block_last_unit_.resize(B);
  for (uint64_t b = 0; b < B; ++b) {
    auto unit_of = [this](uint64_t t) {
      return static_cast<uint32_t>(std::upper_bound(unit_starts_.begin(), unit_starts_.end(), t) -
                                   unit_starts_.begin() - 1);
    };
    block_first_unit_[b] = unit_of(b * bt);
    block_last_unit_[b] = unit_of(std::min(T, (b + 1) * bt) - 1);
  }
  outliers_.clear();
  if (outliers_on_) BuildOutlierKeys(layer, bt, &outliers_);
  return OkStatus();
}

Status SentenceRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks,
                                     std::span<const uint32_t> always_kept, std::vector<uint32_t>* selected) {
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  const uint64_t units_visible =
      std::upper_bound(unit_starts_.begin(), unit_starts_.end(), query.position) - unit_starts_.begin();
  const uint32_t H = query.num_q_heads;
  RETURN_IF_ERROR(ScoreUnitsPerHead(query, layer().num_kv_heads, units_, units_visible, &unit_scores_));
  head_scores_.resize(size_t{H} * visible);
  for (uint32_t h = 0; h < H; ++h) {
    const float* u = unit_scores_.data() + size_t{h} * units_visible;
    float* out = head_scores_.data() + size_t{h} * visible;
    for (uint64_t b = 0; b < visible; ++b) {
      // Units starting after the position are not visible; the block of the
      // position always has its first unit visible.
      const uint64_t last = std::min<uint64_t>(block_last_unit_[b], units_visible - 1);
      out[b] = *std::max_element(u + block_first_unit_[b], u + last + 1);
    }
  }
  if (outliers_on_) {
    RETURN_IF_ERROR(
        MaxWithOutlierKeys(query, layer().num_kv_heads, outliers_, visible, &outlier_scores_, &head_scores_));
  }
  CombineHeads(head_scores_, H, visible, params().head_combine, SoftmaxScale(query.head_dim), &scores_);
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
