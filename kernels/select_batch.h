// One selection per sequence for a batch of sequences of one model (DESIGN §5
// step 2; issue 12 item 3): for each item, ScoreBlocks in a summary mode (kMinMax
// or kMean) and then TopK, as score.h and topk.h define them. On kCuda the whole
// batch takes four launches whatever its size — raw scores, per-head softmax
// statistics, head combination (grids of (blocks, items)), then one top-k thread
// block per item — where B separate selections take 4B and B synchronizations.
// kCpu runs ScoreBlocks + TopK item by item (the reference).
//
// Every item has its own query, summaries, block count, k and always-kept mask;
// the shapes, mode, head combination and summary dtype are the batch's.
#pragma once

#include <cstdint>

#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"
#include "kernels/head_combine.h"
#include "kernels/score.h"

namespace tierkv::kernels {

inline constexpr uint32_t kMaxSelectBatch = 1024;

struct SelectBatchItem {
  const float* query = nullptr;      // [num_q_heads][head_dim]
  const void* min_keys = nullptr;    // kMinMax: [num_blocks][num_kv_heads][head_dim] of summary_dtype
  const void* max_keys = nullptr;    // kMinMax
  const void* mean_keys = nullptr;   // kMean
  uint32_t num_blocks = 0;           // in [1, kMaxScoreBlocks]
  uint32_t k = 0;                    // in [1, num_blocks]
  const uint8_t* always = nullptr;   // optional [num_blocks]: nonzero = always selected (counted in k)
  uint32_t* out_indices = nullptr;   // out [k], ascending
  // kCuda scratch in device memory (kCpu ignores them): scores [num_blocks],
  // head_scores [num_q_heads][num_blocks], stats [2 * num_q_heads].
  float* scores = nullptr;
  float* head_scores = nullptr;
  float* stats = nullptr;
};

struct SelectBatchArgs {
  ScoreMode mode = ScoreMode::kMinMax;  // kMinMax or kMean
  HeadCombine combine = HeadCombine::kSum;
  uint32_t num_q_heads = 0;   // as ScoreArgs
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  float softmax_scale = 0.f;  // 0: 1/sqrt(head_dim)
  DType summary_dtype = DType::kF32;
  // The items in host memory: validated, and read by kCpu.
  const SelectBatchItem* items = nullptr;
  // kCuda: the same items copied to device memory (the kernels read them there).
  const SelectBatchItem* device_items = nullptr;
  uint32_t num_items = 0;  // in [1, kMaxSelectBatch]
};

// kInvalidArgument for shapes out of range, a mode other than the summary ones,
// an item whose block count, k or pointers ScoreBlocks / TopK would refuse, or
// (kCuda) missing scratch or device_items. kCuda is asynchronous on `stream` and
// does not check each item's pointers (one cudaPointerGetAttributes per pointer
// would cost more than the launches): they must be device-accessible.
Status SelectBatch(Backend backend, const SelectBatchArgs& args, GpuStream* stream = nullptr);

}  // namespace tierkv::kernels
