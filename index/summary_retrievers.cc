#include "index/summary_retrievers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/score.h"

namespace tierkv::index {
namespace {

kernels::HeadCombine KernelCombine(HeadCombine c) {
  return c == HeadCombine::kMax ? kernels::HeadCombine::kMax : kernels::HeadCombine::kSoftmaxSum;
}

}  // namespace

Status MinMaxRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  return BuildBlockSummaries(layer, params.block_tokens, /*want_minmax=*/true, /*want_mean=*/false, &summaries_);
}

Status MinMaxRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                   std::vector<uint32_t>* selected) {
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  scores_.resize(visible);
  kernels::ScoreArgs a;
  a.mode = kernels::ScoreMode::kMinMax;
  a.combine = KernelCombine(params().head_combine);
  a.num_q_heads = query.num_q_heads;
  a.num_kv_heads = layer().num_kv_heads;
  a.head_dim = query.head_dim;
  a.num_blocks = static_cast<uint32_t>(visible);
  a.query = query.q;
  a.summary_dtype = DType::kF32;
  a.min_keys = summaries_.min.data();
  a.max_keys = summaries_.max.data();
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
    reps_vec_ = std::move(s.mean);
    return OkStatus();
  }
  reps_vec_.assign(num_blocks_ * R * KV * D, 0.f);
  std::vector<float> reps(R * D);
  for (uint64_t b = 0; b < num_blocks_; ++b) {
    const uint64_t begin = b * params.block_tokens, end = std::min(layer.num_tokens, begin + params.block_tokens);
    for (uint32_t g = 0; g < KV; ++g) {
      PickRepresentatives(layer, g, begin, end, s.mean.data() + (b * KV + g) * D, R,
                          pick_ == Pick::kNorm ? RepPick::kNorm : RepPick::kKCenter, reps.data());
      for (uint64_t r = 0; r < R; ++r) std::copy_n(reps.data() + r * D, D, reps_vec_.data() + ((b * R + r) * KV + g) * D);
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
    a.combine = KernelCombine(params().head_combine);
    a.num_q_heads = H;
    a.num_kv_heads = layer().num_kv_heads;
    a.head_dim = query.head_dim;
    a.num_blocks = static_cast<uint32_t>(visible);
    a.query = query.q;
    a.mean_keys = reps_vec_.data();
    a.scores = scores_.data();
    RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCpu, a));
    return TopKSelect(scores_, num_blocks, always_kept, selected);
  }
  RETURN_IF_ERROR(ScoreUnitsPerHead(query, layer().num_kv_heads, reps_vec_, visible * R, &unit_scores_));
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
