// The C API's batched acquire and put (tierkv/tierkv.h, decision 0028) over
// DataChannel::AcquireBatch and PutBatch. Every caller-supplied pointer and size is
// checked here; per-item statuses are the DataChannel's codes (tierkv_status has the
// same values as tierkv::StatusCode).
#include <cstring>
#include <string>
#include <vector>

#include "client/c_api_internal.h"

namespace tierkv::capi {
namespace {
constexpr size_t kAcquireArgsV1Bytes = 56;  // sizeof when appended (LP64): never shrinks
static_assert(sizeof(tierkv_acquire_batch_args) >= kAcquireArgsV1Bytes);
static_assert(sizeof(tierkv_acquire_item) == 16 && sizeof(tierkv_put_item) == 32 && sizeof(tierkv_put_result) == 16);

Status CheckLayer(const tierkv_channel* ch, uint32_t layer, const char* what) {
  if (layer < ch->model.num_layers) return OkStatus();
  return InvalidArgument(std::string(what) + ": layer " + std::to_string(layer) + " is not below num_layers " +
                         std::to_string(ch->model.num_layers));
}

Status CheckAcquireArgs(const tierkv_channel* ch, const tierkv_acquire_batch_args& a) {
  if (a.num_items == 0 || !a.items || !a.results) {
    return InvalidArgument("acquire batch: items and results must not be NULL, num_items not 0");
  }
  RETURN_IF_ERROR(CheckLayer(ch, a.layer, "acquire batch"));
  uint64_t total = 0;
  for (size_t i = 0; i < a.num_items; ++i) total += a.items[i].count;
  total *= ch->channel->table_heads();  // granularity head: a run per KV head
  if (total > a.table_capacity || (total && !a.table)) {
    return InvalidArgument("acquire batch: a table of " + std::to_string(a.table_capacity) +
                           " entries is smaller than the counts' sum (times table heads) " + std::to_string(total));
  }
  return OkStatus();
}

Status CheckPutItems(const tierkv_channel* ch, uint32_t layer, const tierkv_put_item* items, size_t n,
                     const tierkv_put_result* results) {
  if (n == 0 || !items || !results) return InvalidArgument("put batch: items and results must not be NULL, n not 0");
  RETURN_IF_ERROR(CheckLayer(ch, layer, "put batch"));
  for (size_t i = 0; i < n; ++i) {
    if (!items[i].data || items[i].reserved != 0) {
      return InvalidArgument("put batch: item " + std::to_string(i) + " has NULL data or a nonzero reserved field");
    }
  }
  return OkStatus();
}

tierkv_status Code(const Status& st) { return static_cast<tierkv_status>(st.code()); }
}  // namespace
}  // namespace tierkv::capi

using tierkv::capi::Report;

extern "C" {

void tierkv_acquire_batch_args_init(tierkv_acquire_batch_args* a) {
  if (!a) return;
  std::memset(a, 0, sizeof *a);
  a->struct_size = sizeof *a;
}

tierkv_status tierkv_acquire_batch(tierkv_channel* ch, const tierkv_acquire_batch_args* args, uint64_t* lease,
                                   uint32_t* served) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  ch->batch_errors.clear();
  if (!args || !lease) return Report(ch, tierkv::InvalidArgument("acquire batch: args and lease must not be NULL"));
  tierkv_acquire_batch_args a;
  auto st = tierkv::capi::CopyOptions(args, tierkv::capi::kAcquireArgsV1Bytes, "tierkv_acquire_batch_args", &a);
  if (st.ok()) st = tierkv::capi::CheckAcquireArgs(ch, a);
  if (!st.ok()) return Report(ch, st);
  std::vector<tierkv::DataChannel::AcquireItem> items(a.num_items);
  for (size_t i = 0; i < a.num_items; ++i) items[i] = {a.items[i].seq, a.items[i].first, a.items[i].count};
  auto r = ch->channel->AcquireBatch(a.layer, items, a.release);
  if (!r.ok()) return Report(ch, r.status());
  ch->batch_errors.resize(a.num_items);
  uint32_t cursor = 0;
  for (size_t i = 0; i < a.num_items; ++i) {
    const auto& res = r->results[i];
    a.results[i] = {tierkv::capi::Code(res.status), cursor, static_cast<uint32_t>(res.blocks.size()), res.missing};
    if (!res.status.ok()) ch->batch_errors[i] = res.status.ToString();
    for (const auto& b : res.blocks) {
      auto bytes = ch->channel->BlockBytes(b);
      a.table[cursor++] = {b.block, b.tier, b.head, b.offset, bytes.empty() ? nullptr : bytes.data()};
    }
  }
  *lease = r->lease;
  if (served) *served = r->served;
  return Report(ch, tierkv::OkStatus());
}

tierkv_status tierkv_put_batch(tierkv_channel* ch, uint32_t layer, const tierkv_put_item* items, size_t num_items,
                               tierkv_put_result* results, uint32_t* stored_items) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  ch->batch_errors.clear();
  if (auto st = tierkv::capi::CheckPutItems(ch, layer, items, num_items, results); !st.ok()) return Report(ch, st);
  std::vector<tierkv::DataChannel::PutItem> in(num_items);
  for (size_t i = 0; i < num_items; ++i) {
    in[i] = {items[i].seq, items[i].first_block, {static_cast<const std::byte*>(items[i].data), items[i].bytes}};
  }
  auto r = ch->channel->PutBatch(layer, in);
  if (!r.ok()) return Report(ch, r.status());
  ch->batch_errors.resize(num_items);
  for (size_t i = 0; i < num_items; ++i) {
    const auto& res = r->results[i];
    results[i] = {tierkv::capi::Code(res.status), res.stored, res.durable ? 1u : 0u, 0};
    if (!res.status.ok()) ch->batch_errors[i] = res.status.ToString();
  }
  if (stored_items) *stored_items = r->stored_items;
  return Report(ch, tierkv::OkStatus());
}

}  // extern "C"
