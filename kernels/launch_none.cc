// The CUDA launchers of launch.h for builds without CUDA: all kNotSupported.
#include "kernels/launch.h"

namespace tierkv::kernels::internal {
namespace {

Status NoCuda(const char* what) { return NotSupported(std::string(what) + ": built without CUDA"); }

}  // namespace

Status BlockCopyCuda(const BlockCopyArgs&, GpuStream*) { return NoCuda("Gather/Scatter"); }
Status SummariesCuda(const SummaryArgs&, GpuStream*) { return NoCuda("BuildSummaries"); }
Status ScoreCuda(const ScoreArgs&, GpuStream*) { return NoCuda("ScoreBlocks"); }
Status TopKCuda(const TopKArgs&, GpuStream*) { return NoCuda("TopK"); }
Status ScoreBatchCuda(const SelectBatchArgs&, uint32_t, GpuStream*) { return NoCuda("SelectBatch"); }
Status TopKBatchCuda(const SelectBatchArgs&, uint32_t, GpuStream*) { return NoCuda("SelectBatch"); }
Status QuantizeCuda(const QuantizeArgs&, const QuantLayout&, GpuStream*) { return NoCuda("Quantize"); }
Status DequantizeCuda(const DequantizeArgs&, const QuantLayout&, GpuStream*) { return NoCuda("Dequantize"); }
Status AttentionCuda(const AttentionArgs&, GpuStream*) { return NoCuda("DecodeAttention"); }

}  // namespace tierkv::kernels::internal
