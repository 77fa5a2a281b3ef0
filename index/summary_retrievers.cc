#include "index/summary_retrievers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/f16_rows.h"
#include "kernels/half.h"
#include "kernels/score.h"

namespace tierkv::index {
namespace {

// One block's keys [num_kv_heads][block_tokens][head_dim] as a layer of block_tokens tokens.
LayerKeys BlockView(const LayerKeys& shape, uint32_t block_tokens, std::span<const float> keys) {
  LayerKeys v;
  v.num_kv_heads = shape.num_kv_heads;
  v.head_dim = shape.head_dim;
  v.num_tokens = block_tokens;
  v.keys = keys.data();
  return v;
}

// Grows rows [blocks][row] (zero-filled) so that `block` fits.
void GrowRows(std::vector<uint16_t>* rows, uint64_t blocks, size_t row) {
  if (rows->size() < blocks * row) rows->resize(blocks * row, 0);
}

// f32 rows as f16 (kernels::FloatRowToF16: saturating, rounded as asked) into a
// vector sized to them.
void SetF16(std::span<const float> in, kernels::Rounding rounding, std::vector<uint16_t>* out) {
  out->resize(in.size());
  kernels::FloatRowToF16(in.data(), in.size(), rounding, out->data());
}

}  // namespace

Status MinMaxRetriever::StartBlocksImpl(uint32_t, uint32_t, const RetrieverParams&) {
  num_blocks_ = 0;
  min_.clear();
  max_.clear();
  return OkStatus();
}

Status MinMaxRetriever::PutBlockImpl(uint32_t block, std::span<const std::byte> keys, DType dtype) {
  const uint32_t KV = layer().num_kv_heads, D = layer().head_dim;
  const size_t row = size_t{KV} * D;
  std::vector<float> mn(row), mx(row);
  RETURN_IF_ERROR(SummarizeBlock(KV, D, params().block_tokens, keys.data(), dtype, mn.data(), mx.data(), nullptr));
  num_blocks_ = std::max<uint64_t>(num_blocks_, uint64_t{block} + 1);
  GrowRows(&min_, num_blocks_, row);
  GrowRows(&max_, num_blocks_, row);
  kernels::FloatRowToF16(mn.data(), row, kernels::Rounding::kDown, min_.data() + block * row);
  kernels::FloatRowToF16(mx.data(), row, kernels::Rounding::kUp, max_.data() + block * row);
  return OkStatus();
}

Status MinMaxRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  BlockSummaries s;
  RETURN_IF_ERROR(BuildBlockSummaries(layer, params.block_tokens, /*want_minmax=*/true, /*want_mean=*/false, &s));
  num_blocks_ = s.num_blocks;
  SetF16(s.min, kernels::Rounding::kDown, &min_);
  SetF16(s.max, kernels::Rounding::kUp, &max_);
  return OkStatus();
}

Status MinMaxRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                   std::vector<uint32_t>* selected) {
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  scores_.resize(visible);
  kernels::ScoreArgs a;
  a.mode = kernels::ScoreMode::kMinMax;
  a.combine = params().head_combine;
  a.num_q_heads = query.num_q_heads;
  a.num_kv_heads = layer().num_kv_heads;
  a.head_dim = query.head_dim;
  a.num_blocks = static_cast<uint32_t>(visible);
  a.query = query.q;
  a.summary_dtype = DType::kF16;
  a.min_keys = min_.data();
  a.max_keys = max_.data();
  if (scorer_ != nullptr && scorer_->Select(a, always_kept, num_blocks, selected).ok()) return OkStatus();
  selected->clear();
  a.scores = scores_.data();
  RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCpu, a));
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

std::string MeanRetriever::Name() const {
  if (reps_ == 1) return "mean";
  return "mean:r=" + std::to_string(reps_) + (pick_ == Pick::kNorm ? ",pick=norm" : "");
}

Status MeanRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  BlockSummaries s;
  RETURN_IF_ERROR(BuildBlockSummaries(layer, params.block_tokens, /*want_minmax=*/false, /*want_mean=*/true, &s));
  num_blocks_ = s.num_blocks;
  const uint64_t KV = layer.num_kv_heads, D = layer.head_dim, R = reps_;
  if (num_blocks_ * R > kernels::kMaxScoreBlocks) {
    return InvalidArgument(std::to_string(num_blocks_ * R) + " representatives exceed what ScoreBlocks accepts");
  }
  if (R == 1) {
    SetF16(s.mean, kernels::Rounding::kNearest, &reps_vec_);
    return OkStatus();
  }
  reps_vec_.assign(num_blocks_ * R * KV * D, 0);
  std::vector<float> reps(R * D);
  for (uint64_t b = 0; b < num_blocks_; ++b) {
    const uint64_t begin = b * params.block_tokens, end = std::min(layer.num_tokens, begin + params.block_tokens);
    for (uint32_t g = 0; g < KV; ++g) {
      PickRepresentatives(layer, g, begin, end, s.mean.data() + (b * KV + g) * D, R,
                          pick_ == Pick::kNorm ? RepPick::kNorm : RepPick::kKCenter, reps.data());
      for (uint64_t r = 0; r < R; ++r) {
        kernels::FloatRowToF16(reps.data() + r * D, D, kernels::Rounding::kNearest,
                  reps_vec_.data() + ((b * R + r) * KV + g) * D);
      }
    }
  }
  return OkStatus();
}

Status MeanRetriever::StartBlocksImpl(uint32_t, uint32_t, const RetrieverParams&) {
  num_blocks_ = 0;
  reps_vec_.clear();
  return OkStatus();
}

Status MeanRetriever::PutBlockImpl(uint32_t block, std::span<const std::byte> keys, DType dtype) {
  const uint32_t bt = params().block_tokens, KV = layer().num_kv_heads, D = layer().head_dim, R = reps_;
  if ((uint64_t{block} + 1) * R > kernels::kMaxScoreBlocks) {
    return InvalidArgument(std::to_string((uint64_t{block} + 1) * R) + " representatives exceed what ScoreBlocks accepts");
  }
  std::vector<float> means(size_t{KV} * D);
  RETURN_IF_ERROR(SummarizeBlock(KV, D, bt, keys.data(), dtype, nullptr, nullptr, means.data()));
  num_blocks_ = std::max<uint64_t>(num_blocks_, uint64_t{block} + 1);
  GrowRows(&reps_vec_, num_blocks_ * R, size_t{KV} * D);
  if (R == 1) {
    kernels::FloatRowToF16(means.data(), size_t{KV} * D, kernels::Rounding::kNearest,
                           reps_vec_.data() + size_t{block} * KV * D);
    return OkStatus();
  }
  // Picking representatives reads every key as f32, as BuildImpl, over the block's own tokens.
  std::vector<float> floats(size_t{KV} * bt * D);
  kernels::LoadRowAsFloat(keys.data(), dtype, 0, floats.size(), floats.data());
  const LayerKeys view = BlockView(layer(), bt, floats);
  std::vector<float> reps(size_t{R} * D);
  for (uint32_t g = 0; g < KV; ++g) {
    PickRepresentatives(view, g, 0, bt, means.data() + size_t{g} * D, R,
                        pick_ == Pick::kNorm ? RepPick::kNorm : RepPick::kKCenter, reps.data());
    for (uint64_t r = 0; r < R; ++r) {
      kernels::FloatRowToF16(reps.data() + r * D, D, kernels::Rounding::kNearest,
                reps_vec_.data() + ((uint64_t{block} * R + r) * KV + g) * D);
    }
  }
  return OkStatus();
}

Status MeanRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                 std::vector<uint32_t>* selected) {
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  const uint32_t H = query.num_q_heads, R = reps_;
  if (R == 1) {
    // One unit per block: the kernel combines heads itself.
    scores_.resize(visible);
    kernels::ScoreArgs a;
    a.mode = kernels::ScoreMode::kMean;
    a.combine = params().head_combine;
    a.num_q_heads = H;
    a.num_kv_heads = layer().num_kv_heads;
    a.head_dim = query.head_dim;
    a.num_blocks = static_cast<uint32_t>(visible);
    a.query = query.q;
    a.summary_dtype = DType::kF16;
    a.mean_keys = reps_vec_.data();
    if (scorer_ != nullptr && scorer_->Select(a, always_kept, num_blocks, selected).ok()) return OkStatus();
    selected->clear();
    a.scores = scores_.data();
    RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCpu, a));
    return TopKSelect(scores_, num_blocks, always_kept, selected);
  }
  RETURN_IF_ERROR(ScoreUnitsPerHead(query, layer().num_kv_heads, std::span<const uint16_t>(reps_vec_), visible * R,
                                    &unit_scores_));
  head_scores_.resize(size_t{H} * visible);
  for (uint32_t h = 0; h < H; ++h) {
    const float* u = unit_scores_.data() + size_t{h} * visible * R;
    float* out = head_scores_.data() + size_t{h} * visible;
    for (uint64_t b = 0; b < visible; ++b) out[b] = *std::max_element(u + b * R, u + (b + 1) * R);
  }
  CombineHeads(head_scores_, H, visible, params().head_combine, SoftmaxScale(query.head_dim), &scores_);
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
