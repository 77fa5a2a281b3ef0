// DataChannel::RetrieveBatch: dp::Op::kRetrieveBatch over the staging area
// (common/data_plane.h has the region's layout). The client lays the region out as
//
//   [entries: 32 * n][results: 32 * n][queries: n * query bytes][tables: 16 * sum(budget)]
//
// writes the entries and the queries, and reads the results and tables back.
#include <cstring>
#include <string>

#include "client/client_internal.h"
#include "tierkv/channel.h"

namespace tierkv {
namespace {

// Checks the items a client can get wrong before anything is sent; *total_budget: their sum.
Status CheckItems(std::span<const DataChannel::BatchItem> items, size_t* query_floats, uint64_t* total_budget) {
  if (items.empty()) return InvalidArgument("retrieve batch: no items");
  *query_floats = items[0].query.size();
  *total_budget = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].query.size() != *query_floats || items[i].query.empty()) {
      return InvalidArgument("retrieve batch: item " + std::to_string(i) + " has a query of " +
                             std::to_string(items[i].query.size()) + " floats, item 0 one of " +
                             std::to_string(*query_floats));
    }
    *total_budget += items[i].budget;
  }
  return OkStatus();
}
}  // namespace

uint64_t DataChannel::BatchStagingBytes(size_t n, size_t query_floats, uint64_t total_budget) {
  return dp::BatchHeaderBytes(n) + n * query_floats * sizeof(float) + total_budget * sizeof(dp::BlockTableEntry);
}

Result<DataChannel::BatchRetrieval> DataChannel::RetrieveBatch(uint32_t layer, std::span<const BatchItem> items) {
  size_t qfloats = 0;
  uint64_t total_budget = 0;
  RETURN_IF_ERROR(CheckItems(items, &qfloats, &total_budget));
  total_budget *= table_heads();  // table entries: per KV head a run per head
  const size_t n = items.size(), qbytes = qfloats * sizeof(float);
  const uint64_t need = BatchStagingBytes(n, qfloats, total_budget);
  std::span<uint8_t> staging = internal::Staging(*this);
  if (n > UINT32_MAX || need > staging.size()) {
    return InvalidArgument("retrieve batch: " + std::to_string(n) + " items with " + std::to_string(total_budget) +
                           " table entries need " + std::to_string(need) + " staging bytes; the channel has " +
                           std::to_string(staging.size()));
  }
  const uint64_t header = dp::BatchHeaderBytes(n), table = header + n * qbytes;
  for (size_t i = 0; i < n; ++i) {
    const dp::RetrieveBatchEntry e{items[i].seq, items[i].budget, items[i].window, header + i * qbytes, 0};
    std::memcpy(staging.data() + i * sizeof e, &e, sizeof e);
    std::memcpy(staging.data() + e.query_offset, items[i].query.data(), qbytes);
  }
  dp::RingRequest req{};
  req.op = dp::Op::kRetrieveBatch;
  req.layer = layer;
  req.count = static_cast<uint32_t>(n);
  req.length = need;
  req.arg = table;
  ASSIGN_OR_RETURN(dp::RingCompletion c, internal::Call(*this, req));
  return internal::ReadBatchTables(
      *this, c, n, table, total_budget, [&](size_t i) { return uint64_t{items[i].budget} * table_heads(); }, false,
      "retrieve batch");
}

namespace internal {

Status BatchItemStatus(uint8_t status, uint8_t detail, const char* what, size_t i) {
  dp::RingCompletion c{};
  c.status = status;
  c.detail = detail;
  const std::string op = std::string(what) + ": item " + std::to_string(i);
  return CompletionStatus(c, op.c_str());
}

Result<DataChannel::BatchRetrieval> ReadBatchTables(DataChannel& ch, const dp::RingCompletion& c, size_t n,
                                                    uint64_t table_offset, uint64_t table_entries,
                                                    const std::function<uint64_t(size_t)>& max_count, bool exact,
                                                    const char* what) {
  const std::span<uint8_t> staging = Staging(ch);
  const uint64_t results = dp::BatchHeaderBytes(n) / 2;
  DataChannel::BatchRetrieval out;
  out.lease = c.value;
  out.served = c.count;
  out.results.resize(n);
  for (size_t i = 0; i < n; ++i) {
    dp::RetrieveBatchResult r;
    std::memcpy(&r, staging.data() + results + i * sizeof r, sizeof r);
    DataChannel::BatchResult& res = out.results[i];
    res.status = BatchItemStatus(r.status, r.detail, what, i);
    if (!res.status.ok()) continue;
    const uint64_t most = max_count(i);
    if ((exact ? r.count != most : r.count > most) || r.table_index > table_entries - r.count) {
      if (out.lease) ch.Release(out.lease).IgnoreError();
      return Corruption(std::string(what) + ": the daemon's result " + std::to_string(i) + " lies outside the table");
    }
    res.missing = r.missing;
    res.triggered = r.triggered != 0;
    res.blocks.reserve(r.count);
    for (uint32_t k = 0; k < r.count; ++k) {
      dp::BlockTableEntry e;
      std::memcpy(&e, staging.data() + table_offset + (r.table_index + k) * sizeof e, sizeof e);
      res.blocks.push_back({e.block, e.tier, e.offset, e.head});
    }
  }
  return out;
}

}  // namespace internal
}  // namespace tierkv
