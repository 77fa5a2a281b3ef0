// NamespaceOps::RetrieveBatch: dp::Op::kRetrieveBatch, B sequences of one layer in
// one request (common/data_plane.h has the region's layout; the decisions are in
// docs/decisions/0011-batched-retrieve.md).
//
//   1. check the region (count, header, table area) and every entry; copy each
//      good entry's query into daemon memory (the client may rewrite staging);
//   2. select every good entry (per KV head namespace: each of its heads) in
//      parallel on the worker pool (each sequence has its own retrieval state,
//      daemon/retrieval.h), then, on the channel's thread, pin each selection (one
//      store lease per sequence and head, all under one batch lease) —
//      SelectAndPinAll, data_ops_select.cc;
//   3. pack each sequence's table run into the table area;
//   4. write every entry's result.
#include <cstring>

#include "daemon/data_ops.h"
#include "daemon/data_ops_util.h"

namespace tierkv::daemon {
namespace {
using dp::Detail;

dp::RingCompletion Refuse(Detail detail) { return ErrorCompletion(0, StatusCode::kInvalidArgument, detail); }

// One entry as the daemon works on it.
struct Item {
  dp::RetrieveBatchEntry entry{};
  std::vector<float> query;
  dp::RingCompletion outcome{};  // status/detail of this sequence
};

// The checks of one entry that need no store access; sets item->outcome on failure.
void CheckEntry(const dp::RetrieveBatchEntry& e, uint64_t header, uint64_t region, size_t qbytes, Item* item) {
  item->entry = e;
  if (e.budget == 0 || e.budget > kMaxRetrieveBudget || e.window > kMaxRetrieveBudget) {
    item->outcome = Refuse(Detail::kCount);
  } else if (e.reserved != 0) {
    item->outcome = Refuse(Detail::kFlags);
  } else if (e.query_offset < header || !dp::InStaging(e.query_offset, qbytes, region)) {
    item->outcome = Refuse(Detail::kRange);
  }
}
// Reads and checks every entry of the region; copies the good ones' queries out of
// staging. Returns the sum of the good entries' budgets (the table entries needed).
uint64_t ReadEntries(const uint8_t* region, uint32_t count, uint64_t length, size_t qfloats, std::vector<Item>* items) {
  const uint64_t header = dp::BatchHeaderBytes(count);
  const size_t qbytes = qfloats * sizeof(float);
  uint64_t needed = 0;
  items->assign(count, Item{});
  for (uint32_t i = 0; i < count; ++i) {
    dp::RetrieveBatchEntry e;
    std::memcpy(&e, region + i * sizeof e, sizeof e);
    Item& it = (*items)[i];
    CheckEntry(e, header, length, qbytes, &it);
    if (!ops::IsOk(it.outcome)) continue;
    it.query.resize(qfloats);
    std::memcpy(it.query.data(), region + e.query_offset, qbytes);
    needed += e.budget;
  }
  return needed;
}
}  // namespace

dp::RingCompletion NamespaceOps::RetrieveBatch(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const ModelSpec& m = rt_->model();
  if (req.count == 0 || req.count > batch_.max_sequences) return Refuse(Detail::kCount);
  const uint64_t header = dp::BatchHeaderBytes(req.count);
  if (req.length < header) return Refuse(Detail::kLength);
  if (req.arg < header || req.arg > req.length) return Refuse(Detail::kRange);  // the table area
  // ProcessRequest checked [offset, offset + length) against the staging area.
  uint8_t* region = staging.data() + req.offset;
  std::vector<Item> items;
  const uint64_t table_needed = ReadEntries(region, req.count, req.length, size_t{m.num_q_heads} * m.head_dim, &items) *
                                rt_->record().spec.TableHeads();  // per KV head: a run per head
  if (table_needed > (req.length - req.arg) / sizeof(dp::BlockTableEntry)) return Refuse(Detail::kRange);

  std::vector<Step> steps;
  std::vector<uint32_t> step_of(items.size(), UINT32_MAX);
  for (uint32_t i = 0; i < req.count; ++i) {
    const Item& it = items[i];
    if (!ops::IsOk(it.outcome)) continue;
    step_of[i] = static_cast<uint32_t>(steps.size());
    steps.push_back({it.entry.seq, req.layer, it.entry.budget, it.entry.window, it.query});
  }
  table_.clear();
  std::vector<Pinned> pinned = SelectAndPinAll(steps, &table_);

  std::vector<uint64_t> leases;
  uint64_t cursor = 0;  // table entries written
  uint32_t served = 0;
  for (uint32_t i = 0; i < req.count; ++i) {
    Item& it = items[i];
    dp::RetrieveBatchResult r{};
    Pinned* p = step_of[i] != UINT32_MAX ? &pinned[step_of[i]] : nullptr;
    if (p) it.outcome = p->outcome;
    r.status = it.outcome.status;
    r.detail = it.outcome.detail;
    if (ops::IsOk(it.outcome)) {
      leases.insert(leases.end(), p->leases.begin(), p->leases.end());
      r.count = p->entries;
      r.table_index = cursor;
      r.missing = p->missing;
      r.triggered = p->triggered ? 1 : 0;
      cursor += r.count;
      ++served;
    }
    std::memcpy(region + header / 2 + i * sizeof r, &r, sizeof r);  // results follow the entries
  }
  // The served sequences' runs are consecutive in table_, in entry order.
  const auto bytes = std::as_bytes(std::span(table_));
  if (!bytes.empty()) std::memcpy(region + req.arg, bytes.data(), bytes.size());
  dp::RingCompletion done{};
  done.count = served;
  done.value2 = cursor;
  if (!leases.empty()) {
    done.value = dp::kBatchLeaseBit | next_batch_lease_++;
    batch_leases_[done.value] = std::move(leases);
  }
  return done;
}

}  // namespace tierkv::daemon
