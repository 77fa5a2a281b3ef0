// Validation, dispatch and the CPU reference of select_batch.h.
#include "kernels/select_batch.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/launch.h"
#include "kernels/topk.h"

namespace tierkv::kernels {
namespace {

ScoreArgs ItemScoreArgs(const SelectBatchArgs& a, const SelectBatchItem& it) {
  ScoreArgs s;
  s.mode = a.mode;
  s.combine = a.combine;
  s.num_q_heads = a.num_q_heads;
  s.num_kv_heads = a.num_kv_heads;
  s.head_dim = a.head_dim;
  s.num_blocks = it.num_blocks;
  s.softmax_scale = a.softmax_scale;
  s.query = it.query;
  s.summary_dtype = a.summary_dtype;
  s.min_keys = it.min_keys;
  s.max_keys = it.max_keys;
  s.mean_keys = it.mean_keys;
  return s;
}

Status Validate(Backend backend, const SelectBatchArgs& a, uint32_t* max_blocks) {
  auto bad = [](const std::string& m) { return InvalidArgument("SelectBatch: " + m); };
  if (a.mode != ScoreMode::kMinMax && a.mode != ScoreMode::kMean) return bad("mode must be kMinMax or kMean");
  // The shapes, as ScoreBlocks checks them.
  if (a.num_kv_heads == 0 || a.num_kv_heads > ModelLimits::kMaxHeads) return bad("num_kv_heads out of range");
  if (a.num_q_heads == 0 || a.num_q_heads > ModelLimits::kMaxHeads || a.num_q_heads % a.num_kv_heads != 0)
    return bad("num_q_heads must be in [1, 1024] and a multiple of num_kv_heads");
  if (a.head_dim == 0 || a.head_dim > ModelLimits::kMaxHeadDim) return bad("head_dim out of range");
  if (!(a.softmax_scale >= 0.f) || std::isinf(a.softmax_scale)) return bad("softmax_scale must be finite and >= 0");
  if (a.num_items == 0 || a.num_items > kMaxSelectBatch) return bad("num_items out of range");
  if (a.items == nullptr) return bad("null items");
  if (backend == Backend::kCuda && a.device_items == nullptr) return bad("kCuda needs device_items");
  *max_blocks = 0;
  for (uint32_t i = 0; i < a.num_items; ++i) {
    const SelectBatchItem& it = a.items[i];
    const std::string at = "item " + std::to_string(i) + ": ";
    if (it.num_blocks == 0 || it.num_blocks > kMaxScoreBlocks) return bad(at + "num_blocks out of range");
    if (uint64_t{a.num_q_heads} * it.num_blocks > (uint64_t{1} << 28))
      return bad(at + "num_q_heads * num_blocks exceeds 2^28 per-head scores");
    if (it.k == 0 || it.k > it.num_blocks) return bad(at + "k must be in [1, num_blocks]");
    if (it.query == nullptr || it.out_indices == nullptr) return bad(at + "null query or out_indices");
    if (a.mode == ScoreMode::kMinMax && (it.min_keys == nullptr || it.max_keys == nullptr))
      return bad(at + "kMinMax needs min_keys and max_keys");
    if (a.mode == ScoreMode::kMean && it.mean_keys == nullptr) return bad(at + "kMean needs mean_keys");
    if (backend == Backend::kCuda && (it.scores == nullptr || it.head_scores == nullptr || it.stats == nullptr))
      return bad(at + "kCuda needs scores, head_scores and stats scratch");
    *max_blocks = std::max(*max_blocks, it.num_blocks);
  }
  return OkStatus();
}

Status SelectBatchCpu(const SelectBatchArgs& a) {
  std::vector<float> scores;
  for (uint32_t i = 0; i < a.num_items; ++i) {
    const SelectBatchItem& it = a.items[i];
    scores.resize(it.num_blocks);
    ScoreArgs s = ItemScoreArgs(a, it);
    s.scores = scores.data();
    RETURN_IF_ERROR(ScoreBlocks(Backend::kCpu, s));
    TopKArgs t;
    t.scores = scores.data();
    t.num_blocks = it.num_blocks;
    t.k = it.k;
    t.always = it.always;
    t.out_indices = it.out_indices;
    RETURN_IF_ERROR(TopK(Backend::kCpu, t));
  }
  return OkStatus();
}

}  // namespace

Status SelectBatch(Backend backend, const SelectBatchArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "SelectBatch"));
  uint32_t max_blocks = 0;
  RETURN_IF_ERROR(Validate(backend, args, &max_blocks));
  if (backend == Backend::kCuda) {
    RETURN_IF_ERROR(internal::ScoreBatchCuda(args, max_blocks, stream));
    return internal::TopKBatchCuda(args, max_blocks, stream);
  }
  return SelectBatchCpu(args);
}

}  // namespace tierkv::kernels
