#include "daemon/gpu_selector.h"

#include <algorithm>
#include <vector>

#include "kernels/select_batch.h"
#include "kernels/topk.h"

namespace tierkv::daemon {
namespace {

// Grows `buffer` to at least `bytes` (contents not kept).
Status Reserve(kernels::DeviceBuffer* buffer, size_t bytes) {
  if (buffer->size() >= bytes) return OkStatus();
  ASSIGN_OR_RETURN(*buffer, kernels::DeviceBuffer::Allocate(std::max<size_t>(bytes, 4096)));
  return OkStatus();
}

// The device rows' min, max and mean planes ([3][capacity][kv * d] of rows.dtype).
struct Planes {
  const std::byte *min, *max, *mean;
};
Planes DevicePlanes(const DeviceRows& rows, size_t per_block) {
  const size_t plane = size_t{rows.capacity} * per_block * DTypeBytes(rows.dtype);
  const auto* base = static_cast<const std::byte*>(rows.buffer.data());
  return {base, base + plane, base + 2 * plane};
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
    const auto* src = static_cast<const std::byte*>(arrays[a]) + first * row_bytes;
    RETURN_IF_ERROR(
        kernels::CopyAsync(dst, src, count * row_bytes, kernels::CopyKind::kHostToDevice, &stream_));
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
  const Planes planes = DevicePlanes(*rows, per_block_);
  kernels::ScoreArgs a = SummaryScoreArgs(model_, mode, combine, n);
  a.query = static_cast<const float*>(query_.data());
  a.summary_dtype = rows->dtype;
  a.min_keys = planes.min;
  a.max_keys = planes.max;
  a.mean_keys = planes.mean;
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

Status GpuSelector::SelectBatch(std::span<const GpuSelection> items, kernels::ScoreMode mode,
                                kernels::HeadCombine combine) {
  const size_t B = items.size(), qd = size_t{model_.num_q_heads} * model_.head_dim;
  if (B == 0 || B > kernels::kMaxSelectBatch) return InvalidArgument("GpuSelector: batch size out of range");
  size_t blocks = 0, picks = 0;
  for (const GpuSelection& it : items) {
    const uint32_t n = it.host.blocks;
    if (it.always.size() != n || it.out.empty() || it.out.size() > n || it.query.size() != qd ||
        it.host.dtype != items[0].host.dtype) {
      return InvalidArgument("GpuSelector: shapes do not match the summaries");
    }
    blocks += n;
    picks += it.out.size();
  }
  for (const GpuSelection& it : items) {
    if (Status st = Upload(it.rows, it.host); !st.ok()) {
      it.rows->uploaded = 0;  // the device copy is unknown now
      return st;
    }
  }
  const size_t H = model_.num_q_heads;
  RETURN_IF_ERROR(Reserve(&query_, B * qd * sizeof(float)));
  RETURN_IF_ERROR(Reserve(&always_, blocks));
  RETURN_IF_ERROR(Reserve(&scores_, blocks * sizeof(float)));
  RETURN_IF_ERROR(Reserve(&head_scores_, blocks * H * sizeof(float)));
  RETURN_IF_ERROR(Reserve(&stats_, B * 2 * H * sizeof(float)));
  RETURN_IF_ERROR(Reserve(&indices_, picks * sizeof(uint32_t)));
  RETURN_IF_ERROR(Reserve(&items_, B * sizeof(kernels::SelectBatchItem)));
  // Queries and masks packed for one copy each; items pointing into the scratch.
  std::vector<float> queries(B * qd);
  std::vector<uint8_t> always(blocks);
  std::vector<kernels::SelectBatchItem> batch(B);
  auto* d_query = static_cast<float*>(query_.data());
  auto* d_always = static_cast<uint8_t*>(always_.data());
  auto* d_scores = static_cast<float*>(scores_.data());
  auto* d_head = static_cast<float*>(head_scores_.data());
  auto* d_stats = static_cast<float*>(stats_.data());
  auto* d_indices = static_cast<uint32_t*>(indices_.data());
  size_t block_at = 0, pick_at = 0;
  for (size_t i = 0; i < B; ++i) {
    const GpuSelection& it = items[i];
    const uint32_t n = it.host.blocks;
    std::copy(it.query.begin(), it.query.end(), queries.begin() + i * qd);
    std::copy(it.always.begin(), it.always.end(), always.begin() + block_at);
    const Planes planes = DevicePlanes(*it.rows, per_block_);
    kernels::SelectBatchItem& v = batch[i];
    v.query = d_query + i * qd;
    v.min_keys = planes.min;
    v.max_keys = planes.max;
    v.mean_keys = planes.mean;
    v.num_blocks = n;
    v.k = static_cast<uint32_t>(it.out.size());
    v.always = d_always + block_at;
    v.out_indices = d_indices + pick_at;
    v.scores = d_scores + block_at;
    v.head_scores = d_head + block_at * H;
    v.stats = d_stats + i * 2 * H;
    block_at += n;
    pick_at += it.out.size();
  }
  RETURN_IF_ERROR(kernels::CopyAsync(d_query, queries.data(), queries.size() * sizeof(float),
                                     kernels::CopyKind::kHostToDevice, &stream_));
  RETURN_IF_ERROR(
      kernels::CopyAsync(d_always, always.data(), always.size(), kernels::CopyKind::kHostToDevice, &stream_));
  RETURN_IF_ERROR(kernels::CopyAsync(items_.data(), batch.data(), B * sizeof(kernels::SelectBatchItem),
                                     kernels::CopyKind::kHostToDevice, &stream_));
  kernels::SelectBatchArgs a;
  a.mode = mode;
  a.combine = combine;
  a.num_q_heads = model_.num_q_heads;
  a.num_kv_heads = model_.num_kv_heads;
  a.head_dim = model_.head_dim;
  a.summary_dtype = items[0].host.dtype;
  a.items = batch.data();
  a.device_items = static_cast<const kernels::SelectBatchItem*>(items_.data());
  a.num_items = static_cast<uint32_t>(B);
  RETURN_IF_ERROR(kernels::SelectBatch(kernels::Backend::kCuda, a, &stream_));
  std::vector<uint32_t> picked(picks);
  RETURN_IF_ERROR(kernels::CopyAsync(picked.data(), d_indices, picks * sizeof(uint32_t),
                                     kernels::CopyKind::kDeviceToHost, &stream_));
  RETURN_IF_ERROR(stream_.Synchronize());
  pick_at = 0;
  for (const GpuSelection& it : items) {
    std::copy_n(picked.begin() + pick_at, it.out.size(), it.out.begin());
    pick_at += it.out.size();
  }
  return OkStatus();
}

}  // namespace tierkv::daemon
