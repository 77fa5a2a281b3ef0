#include "daemon/gpu_selector.h"

#include <algorithm>

#include "kernels/topk.h"

namespace tierkv::daemon {
namespace {

// Grows `buffer` to at least `bytes` (contents not kept).
Status Reserve(kernels::DeviceBuffer* buffer, size_t bytes) {
  if (buffer->size() >= bytes) return OkStatus();
  ASSIGN_OR_RETURN(*buffer, kernels::DeviceBuffer::Allocate(std::max<size_t>(bytes, 4096)));
  return OkStatus();
}

}  // namespace

kernels::ScoreArgs SummaryScoreArgs(const ModelSpec& model, kernels::ScoreMode mode, kernels::HeadCombine combine,
                                    uint32_t blocks) {
  kernels::ScoreArgs a;
  a.mode = mode;
  a.combine = combine;
  a.num_q_heads = model.num_q_heads;
  a.num_kv_heads = model.num_kv_heads;
  a.head_dim = model.head_dim;
  a.num_blocks = blocks;
  return a;
}

Result<std::unique_ptr<GpuSelector>> GpuSelector::Create(const ModelSpec& model) {
  std::unique_ptr<GpuSelector> s(new GpuSelector(model));
  ASSIGN_OR_RETURN(s->stream_, kernels::GpuStream::Create());
  return s;
}

Status GpuSelector::Upload(DeviceRows* rows, const HostRows& host) {
  const size_t row_bytes = per_block_ * DTypeBytes(host.dtype);
  if (rows->capacity < host.blocks || rows->dtype != host.dtype) {
    // Doubling keeps a decode's one-block-per-step growth to O(log n) reallocations.
    const uint32_t capacity = std::max({host.blocks, 2 * rows->capacity, 64u});
    ASSIGN_OR_RETURN(rows->buffer, kernels::DeviceBuffer::Allocate(3 * size_t{capacity} * row_bytes));
    rows->capacity = capacity;
    rows->dtype = host.dtype;
    rows->uploaded = 0;
  }
  if (rows->uploaded >= host.blocks) return OkStatus();
  const size_t first = rows->uploaded, count = host.blocks - first;
  auto* base = static_cast<std::byte*>(rows->buffer.data());
  const void* const arrays[3] = {host.min, host.max, host.mean};
  for (size_t a = 0; a < 3; ++a) {
    if (arrays[a] == nullptr) continue;  // the method has no such rows (minmax: mean; mean: min, max)
    std::byte* dst = base + (a * rows->capacity + first) * row_bytes;
    RETURN_IF_ERROR(kernels::CopyAsync(dst, static_cast<const std::byte*>(arrays[a]) + first * row_bytes, count * row_bytes,
                                       kernels::CopyKind::kHostToDevice, &stream_));
  }
  rows->uploaded = host.blocks;
  return OkStatus();
}

Status GpuSelector::Select(DeviceRows* rows, const HostRows& host, std::span<const float> query,
                           std::span<const uint8_t> always, kernels::ScoreMode mode, kernels::HeadCombine combine,
                           std::span<uint32_t> out) {
  const uint32_t n = host.blocks;
  if (always.size() != n || out.size() > n || query.size() != size_t{model_.num_q_heads} * model_.head_dim) {
    return InvalidArgument("GpuSelector: shapes do not match the summaries");
  }
  Status st = Upload(rows, host);
  if (!st.ok()) {
    rows->uploaded = 0;  // the device copy is unknown now
    return st;
  }
  RETURN_IF_ERROR(Reserve(&query_, query.size_bytes()));
  RETURN_IF_ERROR(Reserve(&always_, n));
  RETURN_IF_ERROR(Reserve(&scores_, size_t{n} * sizeof(float)));
  RETURN_IF_ERROR(Reserve(&indices_, std::max<size_t>(1, out.size()) * sizeof(uint32_t)));
  RETURN_IF_ERROR(
      kernels::CopyAsync(query_.data(), query.data(), query.size_bytes(), kernels::CopyKind::kHostToDevice, &stream_));
  RETURN_IF_ERROR(kernels::CopyAsync(always_.data(), always.data(), n, kernels::CopyKind::kHostToDevice, &stream_));
  const size_t plane = size_t{rows->capacity} * per_block_ * DTypeBytes(rows->dtype);
  const auto* summaries = static_cast<const std::byte*>(rows->buffer.data());
  kernels::ScoreArgs a = SummaryScoreArgs(model_, mode, combine, n);
  a.query = static_cast<const float*>(query_.data());
  a.summary_dtype = rows->dtype;
  a.min_keys = summaries;
  a.max_keys = summaries + plane;
  a.mean_keys = summaries + 2 * plane;
  a.scores = static_cast<float*>(scores_.data());
  RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCuda, a, &stream_));
  kernels::TopKArgs t;
  t.scores = static_cast<const float*>(scores_.data());
  t.num_blocks = n;
  t.k = static_cast<uint32_t>(out.size());
  t.always = static_cast<const uint8_t*>(always_.data());
  t.out_indices = static_cast<uint32_t*>(indices_.data());
  RETURN_IF_ERROR(kernels::TopK(kernels::Backend::kCuda, t, &stream_));
  RETURN_IF_ERROR(kernels::CopyAsync(out.data(), indices_.data(), out.size_bytes(), kernels::CopyKind::kDeviceToHost,
                                     &stream_));
  // The daemon's own stream: the host learns the selection to pin and place it.
  return stream_.Synchronize();
}

}  // namespace tierkv::daemon
