// Validation, dispatch and the CPU reference of summary.h.
#include "kernels/summary.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cpu_simd.h"
#include "kernels/half.h"
#include "kernels/launch.h"

namespace tierkv::kernels {
namespace {

Status Validate(const SummaryArgs& a) {
  auto bad = [](const std::string& m) { return InvalidArgument("BuildSummaries: " + m); };
  if (a.num_kv_heads == 0 || a.num_kv_heads > ModelLimits::kMaxHeads) return bad("num_kv_heads out of range");
  if (a.block_tokens == 0 || a.block_tokens > ModelLimits::kMaxBlockTokens) return bad("block_tokens out of range");
  if (a.head_dim == 0 || a.head_dim > ModelLimits::kMaxHeadDim) return bad("head_dim out of range");
  if (a.num_blocks > (1u << 31)) return bad("num_blocks out of range");
  if (a.num_blocks == 0) return OkStatus();
  if (a.keys == nullptr) return bad("null keys");
  if (a.min_out == nullptr && a.max_out == nullptr && a.mean_out == nullptr) return bad("no output requested");
  const size_t key_bytes = size_t{a.num_kv_heads} * a.block_tokens * a.head_dim * DTypeBytes(a.key_dtype);
  if (a.block_stride_bytes != 0 && a.block_stride_bytes < key_bytes)
    return bad("block_stride_bytes " + std::to_string(a.block_stride_bytes) + " < key bytes " +
               std::to_string(key_bytes));
  return OkStatus();
}

Status SummariesCpu(const SummaryArgs& a) {
  const size_t D = a.head_dim, T = a.block_tokens;
  const size_t elt = DTypeBytes(a.key_dtype);
  const size_t stride = a.block_stride_bytes != 0 ? a.block_stride_bytes : a.num_kv_heads * T * D * elt;
  if (a.token_counts != nullptr) {
    for (uint32_t b = 0; b < a.num_blocks; ++b) {
      if (a.token_counts[b] == 0 || a.token_counts[b] > T)
        return InvalidArgument("BuildSummaries: token_counts[" + std::to_string(b) + "] = " +
                               std::to_string(a.token_counts[b]) + " out of [1, " + std::to_string(T) + "]");
    }
  }
  std::vector<float> mn(D), mx(D), sum(D);
  for (uint32_t b = 0; b < a.num_blocks; ++b) {
    const uint32_t count = a.token_counts != nullptr ? a.token_counts[b] : static_cast<uint32_t>(T);
    const char* block = static_cast<const char*>(a.keys) + b * stride;
    for (uint32_t h = 0; h < a.num_kv_heads; ++h) {
      internal::ReduceKeyRows(block + h * T * D * elt, static_cast<int>(a.key_dtype), D, count, mn.data(), mx.data(),
                              sum.data());
      const size_t out = (size_t{b} * a.num_kv_heads + h) * D;
      for (size_t d = 0; d < D; ++d) {
        if (a.min_out != nullptr) StoreFromFloat(a.min_out, a.summary_dtype, out + d, mn[d], Rounding::kDown);
        if (a.max_out != nullptr) StoreFromFloat(a.max_out, a.summary_dtype, out + d, mx[d], Rounding::kUp);
        if (a.mean_out != nullptr)
          StoreFromFloat(a.mean_out, a.summary_dtype, out + d, sum[d] / static_cast<float>(count));
      }
    }
  }
  return OkStatus();
}

}  // namespace

Status BuildSummaries(Backend backend, const SummaryArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "BuildSummaries"));
  RETURN_IF_ERROR(Validate(args));
  if (args.num_blocks == 0) return OkStatus();
  if (backend == Backend::kCuda) return internal::SummariesCuda(args, stream);
  return SummariesCpu(args);
}

}  // namespace tierkv::kernels
