// Scoring + top-k of a retrieval on the GPU (DESIGN §5 step 2): the summaries of
// each (sequence, layer) are mirrored in device memory, and one selection runs
// ScoreBlocks and TopK (kernels/, kCuda) on the selector's own stream. The host
// rows — the index::MinMaxRetriever / MeanRetriever's own summaries — stay the
// source of truth: before each selection the rows added or rewritten since the
// last one are uploaded (DeviceRows::uploaded).
//
// Used by RetrievalIndex as those retrievers' index::SummaryScorer when the
// namespace's G tier is device memory; everything else (exact, mean:r=R, the
// other index/ retrievers, no GPU, selections under retrieval.gpu_min_work)
// scores on the CPU.
//
// Not thread-safe: RetrievalIndex calls it under its gpu mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/gpu_runtime.h"
#include "kernels/score.h"

namespace tierkv::daemon {

// One (sequence, layer)'s summaries in device memory: [3][capacity][kv_heads * head_dim]
// of the host rows' dtype (min, max, mean).
struct DeviceRows {
  kernels::DeviceBuffer buffer;
  DType dtype = DType::kF32;
  uint32_t capacity = 0;  // blocks
  uint32_t uploaded = 0;  // rows [0, uploaded) match the host copy
  // A host row below `uploaded` changed: upload again from there.
  void MarkDirty(uint32_t block) { uploaded = std::min(uploaded, block); }
};

// The host summaries of one (sequence, layer): n blocks of kv_heads * head_dim
// elements of `dtype` each (the retrievers keep f16); the rows a method does not
// score from may be null (not uploaded).
struct HostRows {
  const void* min;
  const void* max;
  const void* mean;
  uint32_t blocks;
  DType dtype;
};

// ScoreArgs of a summary scoring (minmax, mean) of `blocks` blocks of this model;
// the caller sets the query, summary and score pointers (host or device).
kernels::ScoreArgs SummaryScoreArgs(const ModelSpec& model, kernels::ScoreMode mode, kernels::HeadCombine combine,
                                    uint32_t blocks);

// One selection of a batch (GpuSelector::SelectBatch): Select's arguments.
struct GpuSelection {
  DeviceRows* rows;
  HostRows host;
  std::span<const float> query;
  std::span<const uint8_t> always;
  std::span<uint32_t> out;
};

class GpuSelector {
 public:
  // kNotSupported without a device.
  static Result<std::unique_ptr<GpuSelector>> Create(const ModelSpec& model);

  // Selects k of host.blocks blocks for `query` (f32 [q_heads][head_dim]): the
  // `always` ones (mask of host.blocks bytes) first, then the best-scoring; writes
  // the k indices, ascending, to out. Uploads what changed in `host` first.
  Status Select(DeviceRows* rows, const HostRows& host, std::span<const float> query, std::span<const uint8_t> always,
                kernels::ScoreMode mode, kernels::HeadCombine combine, std::span<uint32_t> out);
  // Select for several (sequence, layer)s at once: their changed rows uploaded,
  // then one kernels::SelectBatch (four launches) and one synchronization for all.
  // REQUIRES: the items' host rows share one dtype; at most kernels::kMaxSelectBatch items.
  Status SelectBatch(std::span<const GpuSelection> items, kernels::ScoreMode mode, kernels::HeadCombine combine);

 private:
  explicit GpuSelector(const ModelSpec& model) : model_(model), per_block_(size_t{model.num_kv_heads} * model.head_dim) {}
  Status Upload(DeviceRows* rows, const HostRows& host);

  const ModelSpec model_;
  const size_t per_block_;
  kernels::GpuStream stream_;
  // Scratch, grown on demand: query, always-mask, scores, selected indices; for
  // SelectBatch also per-head scores, softmax statistics and the item array.
  kernels::DeviceBuffer query_, always_, scores_, indices_, head_scores_, stats_, items_;
};

}  // namespace tierkv::daemon
