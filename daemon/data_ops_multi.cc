// NamespaceOps::AcquireBatch and PutBatch: dp::Op::kAcquireBatch and kPutBatch, B
// sequences of one layer in one request (common/data_plane.h has the regions'
// layouts; the decisions are in docs/decisions/0028-batched-acquire-and-put.md).
// Each entry is the single op's work (PinRange, PutRange); this file only checks
// the region and the entries and packs the results.
#include <cstring>

#include "daemon/data_ops.h"
#include "daemon/data_ops_util.h"

namespace tierkv::daemon {
namespace {
using dp::Detail;

dp::RingCompletion Refuse(Detail detail) { return ErrorCompletion(0, StatusCode::kInvalidArgument, detail); }

// The request-level checks both ops share: the sequence count and the fixed part of
// the region. Returns OK or the refusal of the whole batch.
dp::RingCompletion CheckRegion(const dp::RingRequest& req, uint32_t max_sequences) {
  if (req.count == 0 || req.count > max_sequences) return Refuse(Detail::kCount);
  if (req.length < dp::BatchHeaderBytes(req.count)) return Refuse(Detail::kLength);
  if (req.flags != 0 || req.block != 0 || req.aux != 0) return Refuse(Detail::kFlags);
  return ops::Done();
}

// A range of `count` blocks from `first` one request may name (the single ops' rule).
bool GoodRange(uint32_t first, uint32_t count) {
  return count != 0 && count <= kMaxBlocksPerRequest && first <= UINT32_MAX - count;
}

template <typename T>
T ReadAt(const uint8_t* region, size_t i) {
  T v;
  std::memcpy(&v, region + i * sizeof v, sizeof v);
  return v;
}
}  // namespace

dp::RingCompletion NamespaceOps::AcquireBatch(const dp::RingRequest& req, std::span<uint8_t> staging) {
  if (dp::RingCompletion c = CheckRegion(req, batch_.max_sequences); !ops::IsOk(c)) return c;
  // ProcessRequest checked [offset, offset + length) against the staging area. The
  // entries are copied out first: the client may rewrite staging meanwhile.
  uint8_t* region = staging.data() + req.offset;
  const uint64_t header = dp::BatchHeaderBytes(req.count);
  std::vector<dp::AcquireBatchEntry> entries(req.count);
  std::vector<dp::RingCompletion> outcome(req.count);
  uint64_t needed = 0;  // table entries of the good entries
  for (uint32_t i = 0; i < req.count; ++i) {
    const auto e = entries[i] = ReadAt<dp::AcquireBatchEntry>(region, i);
    if (!GoodRange(e.first, e.count)) outcome[i] = Refuse(Detail::kCount);
    else if (e.reserved != 0 || e.reserved2 != 0) outcome[i] = Refuse(Detail::kFlags);
    else needed += e.count;
  }
  needed *= rt_->record().spec.TableHeads();  // per KV head: a run per head
  if (needed > (req.length - header) / sizeof(dp::BlockTableEntry)) return Refuse(Detail::kRange);
  if (req.arg != 0) {  // the reader's previous lease, given back in the same round trip
    if (dp::RingCompletion r = ReleaseLease(req.arg); !ops::IsOk(r)) return r;
  }
  table_.clear();
  std::vector<uint64_t> leases;
  uint32_t served = 0;
  uint64_t missing = 0;
  for (uint32_t i = 0; i < req.count; ++i) {
    const dp::AcquireBatchEntry& e = entries[i];
    const uint64_t at = table_.size();
    if (ops::IsOk(outcome[i])) outcome[i] = PinRange(e.seq, req.layer, e.first, e.count, &leases, &table_);
    dp::RetrieveBatchResult r{};
    r.status = outcome[i].status;
    r.detail = outcome[i].detail;
    if (ops::IsOk(outcome[i])) {
      r.count = outcome[i].count;
      r.table_index = at;
      r.missing = static_cast<uint32_t>(outcome[i].value2);
      missing += r.missing;
      ++served;
    }
    std::memcpy(region + header / 2 + i * sizeof r, &r, sizeof r);  // results follow the entries
  }
  const auto bytes = std::as_bytes(std::span(table_));
  if (!bytes.empty()) std::memcpy(region + header, bytes.data(), bytes.size());
  return ops::Done(served, ClientLease(std::move(leases)), missing);
}

dp::RingCompletion NamespaceOps::PutBatch(const dp::RingRequest& req, std::span<uint8_t> staging) {
  if (dp::RingCompletion c = CheckRegion(req, batch_.max_sequences); !ops::IsOk(c)) return c;
  const size_t bb = rt_->model().BlockBytes();
  const uint64_t header = dp::BatchHeaderBytes(req.count);
  uint8_t* region = staging.data() + req.offset;
  const uint64_t max_block = rt_->store().max_blocks_per_sequence();
  // First every entry's checks and store ranges (entry i's at ranges[begin[i], begin[i + 1])),
  // then one PutRanges: under write-through one D commit for the whole batch.
  std::vector<dp::RingCompletion> refused(req.count);
  std::vector<storage::PutRange> ranges;
  std::vector<size_t> begin(req.count + 1, 0);
  std::vector<std::vector<std::byte>> splits(req.count);  // per-head copies, alive until the store call
  for (uint32_t i = 0; i < req.count; ++i) {
    const auto e = ReadAt<dp::PutBatchEntry>(region, i);
    dp::RingCompletion& c = refused[i];
    if (!GoodRange(e.first, e.count)) c = Refuse(Detail::kCount);
    else if (uint64_t{e.first} + e.count > max_block) c = Refuse(Detail::kBlock);
    else if (e.reserved != 0) c = Refuse(Detail::kFlags);
    else if (e.data_offset < header || !dp::InStaging(e.data_offset, uint64_t{e.count} * bb, req.length)) {
      c = Refuse(Detail::kRange);
    } else {  // as Put: straight from staging, no defensive copy (decision 0028)
      c = AddPutRanges(e.seq, req.layer, e.first, e.count,
                       std::as_bytes(std::span(region + e.data_offset, size_t{e.count} * bb)), 0, &ranges, &splits[i]);
    }
    begin[i + 1] = ranges.size();
  }
  rt_->store().PutRanges(ranges);
  uint32_t whole = 0;
  uint64_t stored = 0, durable = 1;
  for (uint32_t i = 0; i < req.count; ++i) {
    const dp::RingCompletion c =
        begin[i + 1] > begin[i] ? FinishPutRanges(std::span(ranges).subspan(begin[i], begin[i + 1] - begin[i]))
                                : refused[i];
    dp::PutBatchResult r{};
    r.status = c.status;
    r.detail = c.detail;
    r.stored = c.count;
    if (ops::IsOk(c)) {
      r.durable = static_cast<uint32_t>(c.value);
      r.deduplicated = static_cast<uint32_t>(c.value2);
      durable &= c.value;
      ++whole;
    }
    stored += r.stored;
    std::memcpy(region + header / 2 + i * sizeof r, &r, sizeof r);
  }
  return ops::Done(whole, whole ? durable : 0, stored);
}

}  // namespace tierkv::daemon
