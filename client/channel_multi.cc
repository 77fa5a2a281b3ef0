// DataChannel::AcquireBatch and PutBatch: dp::Op::kAcquireBatch and kPutBatch over
// the staging area (common/data_plane.h has the regions' layouts; decision 0028).
//
//   AcquireBatch: [entries: 32 * n][results: 32 * n][table: 16 * sum(count) * table heads]
//   PutBatch:     [entries: 32 * n][results: 32 * n][the items' blocks, in item order]
#include <cstring>
#include <string>

#include "client/client_internal.h"
#include "tierkv/channel.h"

namespace tierkv {
namespace {

std::string Fits(uint64_t need, uint64_t staging) {
  return "need " + std::to_string(need) + " staging bytes; the channel has " + std::to_string(staging);
}
}  // namespace

Result<DataChannel::BatchRetrieval> DataChannel::AcquireBatch(uint32_t layer, std::span<const AcquireItem> items,
                                                             uint64_t release) {
  if (items.empty()) return InvalidArgument("acquire batch: no items");
  const size_t n = items.size();
  uint64_t entries = 0;
  for (size_t i = 0; i < n; ++i) entries += items[i].count;  // a bad count fails its item on the daemon
  entries *= table_heads();
  const uint64_t header = dp::BatchHeaderBytes(n), need = header + entries * sizeof(dp::BlockTableEntry);
  std::span<uint8_t> staging = internal::Staging(*this);
  if (n > UINT32_MAX || need > staging.size()) {
    return InvalidArgument("acquire batch: " + std::to_string(n) + " items with " + std::to_string(entries) +
                           " table entries " + Fits(need, staging.size()));
  }
  for (size_t i = 0; i < n; ++i) {
    const dp::AcquireBatchEntry e{items[i].seq, items[i].first, items[i].count, 0, 0};
    std::memcpy(staging.data() + i * sizeof e, &e, sizeof e);
  }
  dp::RingRequest req{};
  req.op = dp::Op::kAcquireBatch;
  req.layer = layer;
  req.count = static_cast<uint32_t>(n);
  req.length = need;
  req.arg = release;
  ASSIGN_OR_RETURN(dp::RingCompletion c, internal::Call(*this, req));
  // An acquire's item has exactly its blocks per head; `triggered` means nothing here.
  auto out = internal::ReadBatchTables(
      *this, c, n, header, entries, [&](size_t i) { return uint64_t{items[i].count} * table_heads(); }, true,
      "acquire batch");
  if (out.ok()) {
    for (BatchResult& res : out->results) res.triggered = false;
  }
  return out;
}

Result<DataChannel::BatchPut> DataChannel::PutBatch(uint32_t layer, std::span<const PutItem> items) {
  const uint64_t bb = block_bytes();
  std::span<uint8_t> staging = internal::Staging(*this);
  if (items.empty()) return InvalidArgument("put batch: no items");
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t bytes = items[i].data.size();
    if (bb == 0 || bytes == 0 || bytes % bb != 0 || bytes / bb > UINT32_MAX) {
      return InvalidArgument("put batch: item " + std::to_string(i) + " holds " + std::to_string(bytes) +
                             " bytes, not a whole number of blocks of " + std::to_string(bb));
    }
    if (dp::BatchHeaderBytes(1) + bytes > staging.size()) {
      return InvalidArgument("put batch: item " + std::to_string(i) + " alone would " +
                             Fits(dp::BatchHeaderBytes(1) + bytes, staging.size()) + " (Put splits it)");
    }
  }
  BatchPut out;
  out.results.resize(items.size());
  out.durable = true;
  for (size_t begin = 0; begin < items.size();) {
    // The most consecutive items that fit the staging area with their header.
    size_t end = begin;
    uint64_t data = 0;
    while (end < items.size() &&
           dp::BatchHeaderBytes(end + 1 - begin) + data + items[end].data.size() <= staging.size()) {
      data += items[end++].data.size();
    }
    const size_t n = end - begin;
    const uint64_t header = dp::BatchHeaderBytes(n);
    uint64_t at = header;
    for (size_t i = 0; i < n; ++i) {
      const PutItem& it = items[begin + i];
      const dp::PutBatchEntry e{it.seq, it.first, static_cast<uint32_t>(it.data.size() / bb), at, 0};
      std::memcpy(staging.data() + i * sizeof e, &e, sizeof e);
      std::memcpy(staging.data() + at, it.data.data(), it.data.size());
      at += it.data.size();
    }
    dp::RingRequest req{};
    req.op = dp::Op::kPutBatch;
    req.layer = layer;
    req.count = static_cast<uint32_t>(n);
    req.length = at;
    ASSIGN_OR_RETURN(dp::RingCompletion c, internal::Call(*this, req));
    (void)c;
    for (size_t i = 0; i < n; ++i) {
      dp::PutBatchResult r;
      std::memcpy(&r, staging.data() + header / 2 + i * sizeof r, sizeof r);
      PutResult& res = out.results[begin + i];
      res.status = internal::BatchItemStatus(r.status, r.detail, "put batch", begin + i);
      res.stored = r.stored;
      res.durable = res.status.ok() && r.durable == 1;
      out.stored_items += res.status.ok() ? 1 : 0;
      out.durable = out.durable && res.durable;
    }
    begin = end;
  }
  return out;
}

}  // namespace tierkv
