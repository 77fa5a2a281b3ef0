// The C API's batched retrieve (tierkv/tierkv.h, decision 0011) over
// DataChannel::RetrieveBatch. Every caller-supplied pointer and size is checked here.
#include <cstring>
#include <string>
#include <vector>

#include "client/c_api_internal.h"

namespace tierkv::capi {
namespace {
constexpr size_t kBatchArgsV1Bytes = 56;  // sizeof when appended (LP64): never shrinks
static_assert(sizeof(tierkv_retrieve_batch_args) >= kBatchArgsV1Bytes);
static_assert(sizeof(tierkv_batch_item) == 24 && sizeof(tierkv_batch_result) == 16);

Status CheckArgs(const tierkv_channel* ch, const tierkv_retrieve_batch_args& a) {
  const size_t want = size_t{ch->model.num_q_heads} * ch->model.head_dim;
  if (a.num_items == 0 || !a.items || !a.results) {
    return InvalidArgument("retrieve batch: items and results must not be NULL, num_items not 0");
  }
  if (a.layer >= ch->model.num_layers) {
    return InvalidArgument("retrieve batch: layer " + std::to_string(a.layer) + " is not below num_layers " +
                           std::to_string(ch->model.num_layers));
  }
  if (a.query_floats != want) {
    return InvalidArgument("retrieve batch: query_floats is " + std::to_string(a.query_floats) +
                           "; the namespace needs " + std::to_string(want) + " (num_q_heads * head_dim)");
  }
  uint64_t total = 0;
  for (size_t i = 0; i < a.num_items; ++i) {
    if (!a.items[i].query) return InvalidArgument("retrieve batch: item " + std::to_string(i) + " has a NULL query");
    total += a.items[i].budget;
  }
  total *= ch->channel->table_heads();  // granularity head: a run per KV head
  if (total > a.table_capacity || (total && !a.table)) {
    return InvalidArgument("retrieve batch: a table of " + std::to_string(a.table_capacity) +
                           " entries is smaller than the budgets' sum (times table heads) " + std::to_string(total));
  }
  return OkStatus();
}
}  // namespace
}  // namespace tierkv::capi

using tierkv::capi::Report;

extern "C" {

void tierkv_retrieve_batch_args_init(tierkv_retrieve_batch_args* a) {
  if (!a) return;
  std::memset(a, 0, sizeof *a);
  a->struct_size = sizeof *a;
}

tierkv_status tierkv_retrieve_batch(tierkv_channel* ch, const tierkv_retrieve_batch_args* args, uint64_t* lease,
                                    uint32_t* served) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  ch->batch_errors.clear();
  if (!args || !lease) return Report(ch, tierkv::InvalidArgument("retrieve batch: args and lease must not be NULL"));
  tierkv_retrieve_batch_args a;
  auto st = tierkv::capi::CopyOptions(args, tierkv::capi::kBatchArgsV1Bytes, "tierkv_retrieve_batch_args", &a);
  if (st.ok()) st = tierkv::capi::CheckArgs(ch, a);
  if (!st.ok()) return Report(ch, st);
  std::vector<tierkv::DataChannel::BatchItem> items(a.num_items);
  for (size_t i = 0; i < a.num_items; ++i) {
    const tierkv_batch_item& it = a.items[i];
    items[i] = {it.seq, {it.query, a.query_floats}, it.budget, it.window};
  }
  auto r = ch->channel->RetrieveBatch(a.layer, items);
  if (!r.ok()) return Report(ch, r.status());
  ch->batch_errors.resize(a.num_items);
  uint32_t cursor = 0;
  for (size_t i = 0; i < a.num_items; ++i) {
    const auto& res = r->results[i];
    tierkv_batch_result& out = a.results[i];
    out = {static_cast<tierkv_status>(res.status.code()), cursor, static_cast<uint32_t>(res.blocks.size()), res.missing};
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

const char* tierkv_batch_item_error(const tierkv_channel* ch, size_t i) {
  if (!ch || i >= ch->batch_errors.size()) return "";
  return ch->batch_errors[i].c_str();
}

}  // extern "C"
