// PRIVATE to kernels/: the CUDA launchers behind the dispatch functions. Defined
// in the .cu files when CUDA is compiled in, and as kNotSupported stubs in
// launch_none.cc otherwise (the one platform gate, chosen in CMakeLists.txt).
// The dispatchers validate the arguments before calling these.
#pragma once

#include "common/status.h"
#include "kernels/attention.h"
#include "kernels/gather.h"
#include "kernels/gpu_runtime.h"
#include "kernels/quant.h"
#include "kernels/score.h"
#include "kernels/select_batch.h"
#include "kernels/summary.h"
#include "kernels/topk.h"

namespace tierkv::kernels::internal {

Status BlockCopyCuda(const BlockCopyArgs& args, GpuStream* stream);
Status SummariesCuda(const SummaryArgs& args, GpuStream* stream);
Status ScoreCuda(const ScoreArgs& args, GpuStream* stream);
Status TopKCuda(const TopKArgs& args, GpuStream* stream);
// SelectBatch's two halves: scores (three launches), then top-k (one); max_blocks:
// the largest item's num_blocks.
Status ScoreBatchCuda(const SelectBatchArgs& args, uint32_t max_blocks, GpuStream* stream);
Status TopKBatchCuda(const SelectBatchArgs& args, uint32_t max_blocks, GpuStream* stream);
Status QuantizeCuda(const QuantizeArgs& args, const QuantLayout& layout, GpuStream* stream);
Status DequantizeCuda(const DequantizeArgs& args, const QuantLayout& layout, GpuStream* stream);
Status AttentionCuda(const AttentionArgs& args, GpuStream* stream);

// How DecodeAttention's CUDA path splits the table across thread blocks (fixed by
// the shapes, not the device, so results and workspace sizes are reproducible).
struct AttentionSplit {
  uint32_t splits = 1;            // thread blocks per KV head
  uint32_t blocks_per_split = 1;  // table entries per thread block (the last may have fewer)
};
AttentionSplit SplitAttention(uint32_t num_blocks, uint32_t num_kv_heads);

}  // namespace tierkv::kernels::internal
