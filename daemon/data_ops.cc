#include "daemon/data_ops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/checksum.h"
#include "common/log.h"
#include "daemon/data_ops_util.h"
#include "daemon/head_layout.h"
#include "daemon/remote_link.h"

#include <prometheus/histogram.h>

namespace tierkv::daemon {
using dp::Detail;
using namespace ops;

dp::RingCompletion NamespaceOps::Handle(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const ModelSpec& m = rt_->model();
  const bool needs_layer = req.op == dp::Op::kPut || req.op == dp::Op::kGet || req.op == dp::Op::kRetrieve ||
                           req.op == dp::Op::kRetrieveBatch || req.op == dp::Op::kAppend ||
                           req.op == dp::Op::kAcquire || req.op == dp::Op::kAcquireBatch ||
                           req.op == dp::Op::kPutBatch;
  if (needs_layer && req.layer >= m.num_layers) return Fail(StatusCode::kInvalidArgument, Detail::kLayer);
  const uint32_t allowed = req.op == dp::Op::kPut        ? dp::kFlagPrefixBlock
                           : req.op == dp::Op::kRetrieve ? dp::kFlagGpu
                                                         : 0;  // a batch is host-only (decision 0011)
  if (req.flags & ~allowed) return Fail(StatusCode::kInvalidArgument, Detail::kFlags);
  switch (req.op) {
    case dp::Op::kPut: return Put(req, staging);
    case dp::Op::kGet: return Get(req, staging);
    case dp::Op::kAppend: return Append(req, staging);
    case dp::Op::kRetrieve: return Retrieve(req, staging);
    case dp::Op::kRetrieveBatch: return RetrieveBatch(req, staging);
    case dp::Op::kAcquire: return AcquireRange(req, staging);
    case dp::Op::kAcquireBatch: return AcquireBatch(req, staging);
    case dp::Op::kPutBatch: return PutBatch(req, staging);
    case dp::Op::kRelease: return Release(req);
    case dp::Op::kCloseSequence: return CloseSequence(req);
    case dp::Op::kLookupPrefix:
    case dp::Op::kLoadPrefix: return Prefix(req, staging);
    default: return Fail(StatusCode::kInvalidArgument, Detail::kOp);
  }
}

// Blocks [block, block + count) of (seq, layer) from staging[offset, offset + count * BlockBytes).
dp::RingCompletion NamespaceOps::Put(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const size_t bb = rt_->model().BlockBytes();
  if (req.count == 0 || req.count > kMaxBlocksPerRequest) return Fail(StatusCode::kInvalidArgument, Detail::kCount);
  if (req.length != bb * req.count) return Fail(StatusCode::kInvalidArgument, Detail::kLength);
  if (uint64_t{req.block} + req.count > rt_->store().max_blocks_per_sequence()) {
    return Fail(StatusCode::kInvalidArgument, Detail::kBlock);
  }
  const bool prefix = req.flags & dp::kFlagPrefixBlock;
  if (prefix && (req.count != 1 || req.arg == 0)) return Fail(StatusCode::kInvalidArgument, Detail::kFlags);
  // Payload bytes go from staging straight into their slot. The client may rewrite
  // staging meanwhile: that only garbles its own block (and that block's summary),
  // never daemon state, so no defensive copy is made on this hot path.
  const auto payload = std::as_bytes(staging.subspan(req.offset, size_t{req.count} * bb));
  std::vector<storage::PutRange> ranges;
  const dp::RingCompletion claimed =
      AddPutRanges(req.seq, req.layer, req.block, req.count, payload, prefix ? req.arg : 0, &ranges, &scratch_);
  if (!IsOk(claimed)) return claimed;
  // Under write-through the blocks of the put (every KV head's) share one D commit.
  rt_->store().PutRanges(ranges);
  return FinishPutRanges(ranges);
}

dp::RingCompletion NamespaceOps::AddPutRanges(uint64_t seq, uint32_t layer, uint32_t block, uint32_t count,
                                              std::span<const std::byte> payload, uint64_t prefix_hash,
                                              std::vector<storage::PutRange>* ranges, std::vector<std::byte>* split) {
  if (Status st = rt_->owners().ClaimForWrite(seq, caller_); !st.ok()) return FromStatus(st, 0);
  const uint64_t stored_hash = prefix_hash ? ScopedPrefixHash(prefix_hash, caller_.uid) : 0;
  auto add = [&](uint32_t stored_layer, std::span<const std::byte> bytes) {
    rt_->open_blocks().Forget(seq, stored_layer);  // a whole-block put ends an append's open block
    ranges->push_back({seq, stored_layer, block, count, bytes, stored_hash});
  };
  if (!rt_->per_head()) {
    add(layer, payload);
    return Done(count, 1, 0);
  }
  // Per KV head: each head's run of blocks goes to its stored layer.
  const HeadLayout l = HeadLayout::Of(rt_->model(), rt_->model().block_tokens);
  split->resize(payload.size());
  SplitHeads(l, count, payload, *split);
  const size_t run = size_t{count} * l.head_bytes();
  for (uint32_t h = 0; h < l.kv; ++h) add(StoredLayer(layer, l.kv, h), std::span<const std::byte>(*split).subspan(h * run, run));
  return Done(count, 1, 0);
}

// A failure stops at the first range (KV head) it hit; the count is what every
// range holds.
dp::RingCompletion NamespaceOps::FinishPutRanges(std::span<const storage::PutRange> ranges) {
  const size_t bb = rt_->stored_model().BlockBytes();
  const uint32_t count = ranges.front().count;
  uint64_t durable = 1, deduplicated = count;
  for (const storage::PutRange& r : ranges) {
    for (uint32_t i = 0; i < r.out.stored; ++i) {
      // Summaries are per sequence: a deduplicated block is summarized for this one too.
      const Status st = rt_->retrieval().OnPut(r.seq, r.layer, r.first + i, r.payload.subspan(size_t{i} * bb, bb));
      if (!st.ok()) return FromStatus(st, i);
    }
    // A new full prefix block (a prefix put is one block) goes to R in the background
    // (queued, never waited for).
    if (r.prefix_hash != 0 && r.out.stored == 1 && r.out.deduplicated == 0) {
      WritePrefixBlockToRemote(*rt_, r.prefix_hash, r.layer, r.payload);
    }
    if (!r.status.ok()) return FromStatus(r.status, r.out.stored);
    durable &= r.out.durable == count ? 1 : 0;
    deduplicated = std::min<uint64_t>(deduplicated, r.out.deduplicated);
  }
  return Done(count, durable, deduplicated);
}

// `count` tokens of (seq, layer) from token `arg`, K then V ([kv_heads][count][head_dim]
// each) at staging[offset, offset + length). value: the next token; value2: blocks sealed.
dp::RingCompletion NamespaceOps::Append(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const ModelSpec& m = rt_->model();
  if (req.count == 0 || req.count > kMaxAppendTokens) return Fail(StatusCode::kInvalidArgument, Detail::kCount);
  if (req.length != size_t{2} * m.num_kv_heads * req.count * m.head_dim * DTypeBytes(m.dtype)) {
    return Fail(StatusCode::kInvalidArgument, Detail::kLength);
  }
  if (Status st = rt_->owners().ClaimForWrite(req.seq, caller_); !st.ok()) return FromStatus(st, 0);
  // Copied out of staging first: the client may rewrite it while the blocks are
  // built. Per KV head the copy splits it into each head's K and V rows.
  const auto in = std::as_bytes(staging.subspan(req.offset, req.length));
  scratch_.resize(in.size());
  if (rt_->per_head()) SplitHeads(HeadLayout::Of(m, req.count), 1, in, scratch_);
  else std::copy(in.begin(), in.end(), scratch_.begin());
  const uint32_t heads = rt_->record().spec.TableHeads();
  const size_t run = scratch_.size() / heads;
  Result<OpenBlocks::Result> r = OpenBlocks::Result{};
  for (uint32_t h = 0; h < heads && r.ok() && !r->gap; ++h) {
    r = rt_->open_blocks().Append(rt_->store(), rt_->retrieval(), req.seq, StoredLayer(req.layer, heads, h), req.arg,
                                  req.count, std::span<const std::byte>(scratch_).subspan(h * run, run));
  }
  if (!r.ok()) return FromStatus(r.status(), 0);
  if (r->gap) {
    dp::RingCompletion c = Fail(StatusCode::kInvalidArgument, Detail::kGap);
    c.value = r->next;
    return c;
  }
  return Done(req.count, r->next, r->sealed);
}

dp::RingCompletion NamespaceOps::Get(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const size_t bb = rt_->model().BlockBytes();
  if (req.count == 0 || req.count > kMaxBlocksPerRequest) return Fail(StatusCode::kInvalidArgument, Detail::kCount);
  if (req.length != bb * req.count) return Fail(StatusCode::kInvalidArgument, Detail::kLength);
  const auto out = std::as_writable_bytes(staging.subspan(req.offset, req.length));
  if (!rt_->per_head()) return GetStored(req.seq, req.layer, req.block, req.count, out);
  // Per KV head: each head's run, joined into the layer blocks. The count is what
  // every head had.
  const HeadLayout l = HeadLayout::Of(rt_->model(), rt_->model().block_tokens);
  std::vector<std::byte> run(size_t{req.count} * l.head_bytes());
  for (uint32_t h = 0; h < l.kv; ++h) {
    const dp::RingCompletion c = GetStored(req.seq, StoredLayer(req.layer, l.kv, h), req.block, req.count, run);
    for (uint32_t i = 0; i < (IsOk(c) ? req.count : c.count); ++i) {
      JoinHead(l, h, std::span<const std::byte>(run).subspan(i * l.head_bytes(), l.head_bytes()),
               out.subspan(i * bb, bb));
    }
    if (!IsOk(c)) return c;
  }
  return Done(req.count);
}

dp::RingCompletion NamespaceOps::GetStored(uint64_t seq, uint32_t stored_layer, uint32_t block, uint32_t count,
                                           std::span<std::byte> out) {
  const size_t bb = rt_->stored_model().BlockBytes();
  // Local misses of a namespace that keeps closed sequences in R are asked of R
  // after the local pass, in one batch (docs/remote-tier.md).
  const bool remote = SequencesInRemote(*rt_);
  std::vector<uint32_t> misses;
  uint32_t end = count;
  Status error;
  for (uint32_t i = 0; i < count; ++i) {
    error = rt_->store().Get(seq, stored_layer, block + i, out.subspan(i * bb, bb));
    if (error.ok()) continue;
    if (!remote || error.code() != StatusCode::kNotFound) {
      end = i;
      break;
    }
    misses.push_back(i);
  }
  if (!misses.empty()) return GetMissesFromRemote(seq, stored_layer, block, count, out, misses, end, error);
  return end == count ? Done(count) : FromStatus(error, end);
}

dp::RingCompletion NamespaceOps::GetMissesFromRemote(uint64_t seq, uint32_t stored_layer, uint32_t block,
                                                     uint32_t count, std::span<std::byte> out,
                                                     std::span<const uint32_t> misses, uint32_t end,
                                                     const Status& error) {
  const size_t bb = rt_->stored_model().BlockBytes();
  std::vector<uint32_t> blocks;
  for (uint32_t i : misses) blocks.push_back(block + i);
  std::vector<std::byte> fetched(blocks.size() * bb);
  std::vector<bool> found;
  GetSequenceBlocksFromRemote(*rt_, seq, stored_layer, blocks, fetched, &found);
  for (size_t k = 0; k < misses.size(); ++k) {
    if (!found[k]) return FromStatus(NotFound("block"), misses[k]);  // the blocks before it are whole
    std::memcpy(out.data() + size_t{misses[k]} * bb, fetched.data() + k * bb, bb);
  }
  return end == count ? Done(count) : FromStatus(error, end);
}

// Query f32 [q_heads][head_dim] at staging[offset] (or, with kFlagGpu, at the
// exchange buffer's offset); the block table follows it there.
// count = top-k budget in blocks (sinks and the recent window included), aux = the
// recent window in blocks (0: the namespace policy's).
dp::RingCompletion NamespaceOps::Retrieve(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const ModelSpec& m = rt_->model();
  const size_t qfloats = size_t{m.num_q_heads} * m.head_dim;
  const size_t qbytes = qfloats * sizeof(float);
  const bool on_gpu = req.flags & dp::kFlagGpu;
  if (on_gpu && !gpu_) return Fail(StatusCode::kNotSupported, Detail::kFlags);  // no GPU path
  if (on_gpu && !dp::InStaging(req.offset, req.length, gpu_->bytes())) {
    return Fail(StatusCode::kInvalidArgument, Detail::kRange);
  }
  if (req.count == 0 || req.count > kMaxRetrieveBudget || req.aux > kMaxRetrieveBudget) {
    return Fail(StatusCode::kInvalidArgument, Detail::kCount);
  }
  const uint64_t entries = uint64_t{req.count} * rt_->record().spec.TableHeads();  // per KV head: a run per head
  if (req.length < qbytes + entries * sizeof(dp::BlockTableEntry)) {
    return Fail(StatusCode::kInvalidArgument, Detail::kQuery);
  }
  std::vector<float> query(qfloats);
  if (on_gpu) {
    const Status st = gpu_->ReadQuery(req.offset, std::as_writable_bytes(std::span(query)));
    if (!st.ok()) return FromStatus(st, 0);
  } else {
    std::memcpy(query.data(), staging.data() + req.offset, qbytes);
  }
  table_.clear();
  const Step step{req.seq, req.layer, req.count, req.aux, query};
  Pinned pinned = std::move(SelectAndPinAll(std::span(&step, 1), &table_)[0]);
  if (!IsOk(pinned.outcome)) return pinned.outcome;
  const dp::RingCompletion done = Done(pinned.entries, ClientLease(std::move(pinned.leases)), pinned.missing);
  const auto bytes = std::as_bytes(std::span(table_));
  if (on_gpu) {
    const Status st = gpu_->PublishTable(req.offset + qbytes, bytes);
    if (!st.ok()) {  // the client never learns the lease: give it back now
      (void)ReleaseLease(done.value);  // a batch lease (per KV head) frees every member
      return FromStatus(st, 0);
    }
    ++stats_->gpu_steps;
  } else {
    if (!bytes.empty()) std::memcpy(staging.data() + req.offset + qbytes, bytes.data(), bytes.size());  // unaligned
  }
  return done;
}

dp::RingCompletion NamespaceOps::AcquireRange(const dp::RingRequest& req, std::span<uint8_t> staging) {
  if (req.count == 0 || req.count > kMaxBlocksPerRequest || req.block > UINT32_MAX - req.count) {
    return Fail(StatusCode::kInvalidArgument, Detail::kCount);
  }
  const uint32_t heads = rt_->record().spec.TableHeads();
  if (req.length < uint64_t{req.count} * heads * sizeof(dp::BlockTableEntry)) {
    return Fail(StatusCode::kInvalidArgument, Detail::kLength);
  }
  if (req.arg != 0) {  // the reader's previous lease, given back in the same round trip
    const dp::RingCompletion r = ReleaseLease(req.arg);
    if (!IsOk(r)) return r;
  }
  table_.clear();
  std::vector<uint64_t> leases;
  const dp::RingCompletion c = PinRange(req.seq, req.layer, req.block, req.count, &leases, &table_);
  if (!IsOk(c)) return c;
  const auto bytes = std::as_bytes(std::span(table_));
  if (!bytes.empty()) std::memcpy(staging.data() + req.offset, bytes.data(), bytes.size());
  return Done(c.count, ClientLease(std::move(leases)), c.value2);
}

namespace {
// The blocks of `asked` that a lease neither holds nor scheduled (unknown to the store).
std::vector<uint32_t> UnknownBlocks(const storage::Lease& lease, std::span<const uint32_t> asked) {
  std::vector<uint32_t> known;
  for (const auto& b : lease.blocks) known.push_back(b.index);
  known.insert(known.end(), lease.missing.begin(), lease.missing.end());
  std::sort(known.begin(), known.end());
  std::vector<uint32_t> unknown;
  for (uint32_t b : asked) {
    if (!std::binary_search(known.begin(), known.end(), b)) unknown.push_back(b);
  }
  return unknown;
}
}  // namespace

dp::RingCompletion NamespaceOps::PinRange(uint64_t seq, uint32_t layer, uint32_t first, uint32_t count,
                                          std::vector<uint64_t>* leases, std::vector<dp::BlockTableEntry>* table) {
  const uint32_t heads = rt_->record().spec.TableHeads();
  std::vector<uint32_t> blocks(count);
  std::iota(blocks.begin(), blocks.end(), first);
  const size_t leases_before = leases->size(), table_before = table->size();
  uint64_t missing = 0;
  for (uint32_t h = 0; h < heads; ++h) {  // per KV head: a run per head, as Retrieve's
    // A get: no move to G, a block only on D read into H.
    const uint32_t stored = StoredLayer(layer, heads, h);
    auto lease = rt_->store().Acquire(seq, stored, blocks, storage::MissMode::kInPlace);
    if (lease.ok() && lease->blocks.size() + lease->missing.size() < count && SequencesInRemote(*rt_)) {
      // Blocks this daemon does not hold: asked of R in one batch, kept in H, pinned again.
      rt_->store().Release(lease->id).IgnoreError();
      std::vector<bool> found;
      GetSequenceBlocksFromRemote(*rt_, seq, stored, UnknownBlocks(*lease, blocks), {}, &found);
      lease = rt_->store().Acquire(seq, stored, blocks, storage::MissMode::kInPlace);
    }
    if (lease.ok()) {
      leases_.insert(lease->id);
      leases->push_back(lease->id);
    }
    if (!lease.ok() || lease->blocks.size() + lease->missing.size() < count) {  // unknown blocks are skipped
      GiveBack(std::span<const uint64_t>(*leases).subspan(leases_before));
      leases->resize(leases_before);
      table->resize(table_before);
      return lease.ok() ? Fail(StatusCode::kNotFound, Detail::kBlock) : FromStatus(lease.status(), 0);
    }
    missing += lease->missing.size();
    AppendEntries(*lease, static_cast<uint16_t>(h), lease->blocks.size(), table);
  }
  return Done(static_cast<uint32_t>(table->size() - table_before), 0, missing);
}

void NamespaceOps::GiveBack(std::span<const uint64_t> store_leases) {
  for (uint64_t id : store_leases) {
    leases_.erase(id);
    rt_->store().Release(id).IgnoreError();
  }
}

void NamespaceOps::AppendEntries(const storage::Lease& lease, uint16_t head, size_t n,
                                 std::vector<dp::BlockTableEntry>* table) {
  for (size_t i = 0; i < n; ++i) {
    const auto& b = lease.blocks[i];
    dp::BlockTableEntry e{};
    e.block = b.index;
    e.tier = b.where == storage::Where::kGpu ? 0 : 1;
    e.head = head;
    e.offset = b.offset;
    table->push_back(e);
  }
}

dp::RingCompletion NamespaceOps::Release(const dp::RingRequest& req) { return ReleaseLease(req.arg); }

dp::RingCompletion NamespaceOps::ReleaseLease(uint64_t lease) {
  if (lease & dp::kBatchLeaseBit) {  // a batch: every sequence's lease
    auto it = batch_leases_.find(lease);
    if (it == batch_leases_.end()) return Fail(StatusCode::kNotFound, Detail::kLease);
    Status first = OkStatus();
    for (uint64_t id : it->second) {
      leases_.erase(id);
      Status st = rt_->store().Release(id);
      if (first.ok() && !st.ok()) first = st;
    }
    batch_leases_.erase(it);
    return first.ok() ? Done() : FromStatus(first, 0);
  }
  if (!leases_.erase(lease)) return Fail(StatusCode::kNotFound, Detail::kLease);
  Status st = rt_->store().Release(lease);
  return st.ok() ? Done() : FromStatus(st, 0);
}

dp::RingCompletion NamespaceOps::CloseSequence(const dp::RingRequest& req) {
  if (Status st = rt_->owners().CheckClose(req.seq, caller_); !st.ok()) return FromStatus(st, 0);
  WriteClosedSequenceToRemote(*rt_, req.seq);  // queued (policy remote_blocks = closed-sequences)
  rt_->retrieval().DropSequence(req.seq);
  rt_->open_blocks().Forget(req.seq);
  Status st = rt_->store().DropSequence(req.seq);
  rt_->owners().Forget(req.seq);
  return st.ok() ? Done() : Fail(st.code(), Detail::kSequence);
}

uint64_t ScopedPrefixHash(uint64_t content_hash, uint32_t publisher) {
  struct {
    uint64_t hash;
    uint64_t uid;
    uint64_t domain;
  } in{content_hash, publisher, 0x7469657270726678ull /* "tierprfx" */};
  const uint64_t h = Checksum64(&in, sizeof in);
  return h ? h : 1;
}

std::vector<uint64_t> NamespaceOps::ScopedHashes(std::span<const uint64_t> hashes, uint32_t publisher) const {
  std::vector<uint64_t> out(hashes.size());
  for (size_t i = 0; i < hashes.size(); ++i) out[i] = ScopedPrefixHash(hashes[i], publisher);
  return out;
}

// Token ids (int32) at staging[offset], `count` of them: the hash chain of their
// full blocks names the prefix blocks. Lookup: count = cached tokens. Load: the
// cached prefix becomes the first blocks of `seq`.
dp::RingCompletion NamespaceOps::Prefix(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const uint32_t bt = rt_->model().block_tokens;
  if (req.length != uint64_t{req.count} * sizeof(int32_t) || req.count > kMaxPrefixTokens) {
    return Fail(StatusCode::kInvalidArgument, Detail::kLength);
  }
  std::vector<int32_t> tokens(req.count);
  if (req.length) std::memcpy(tokens.data(), staging.data() + req.offset, req.length);
  const std::vector<uint64_t> content = PrefixBlockHashes(tokens, bt);
  // The caller's own prefix blocks, then the namespace's trusted publishers': the
  // longest match wins (docs/decisions/0007-owners-and-prefix-scope.md).
  std::vector<uint64_t> hashes = ScopedHashes(content, caller_.uid);
  uint32_t blocks = rt_->store().MatchPrefix(hashes);
  for (uint32_t publisher : rt_->record().spec.prefix_publishers) {
    if (publisher == caller_.uid || blocks == content.size()) continue;
    std::vector<uint64_t> theirs = ScopedHashes(content, publisher);
    const uint32_t n = rt_->store().MatchPrefix(theirs);
    if (n > blocks) {
      blocks = n;
      hashes = std::move(theirs);
    }
  }
  // A local miss falls through to R: the next positions, every layer, verified.
  std::vector<std::vector<std::string>> remote;
  const uint32_t from_remote = blocks < content.size() ? FetchPrefixFromRemote(*rt_, hashes, blocks, &remote, req.op == dp::Op::kLookupPrefix)
                                                      : 0;
  if (req.op == dp::Op::kLookupPrefix) blocks += from_remote;
  if (req.op == dp::Op::kLoadPrefix && blocks + from_remote > 0) {
    if (Status st = rt_->owners().ClaimForWrite(req.seq, caller_); !st.ok()) return FromStatus(st, 0);
    Status st = blocks ? rt_->store().LinkPrefix(req.seq, std::span<const uint64_t>(hashes).first(blocks)) : OkStatus();
    if (!st.ok()) return FromStatus(st, 0);
    blocks += StoreRemotePrefix(req.seq, hashes, blocks, remote);
    // The sequence's retrieval summaries of the shared blocks.
    scratch_.resize(rt_->stored_model().BlockBytes());
    for (uint32_t layer = 0; layer < rt_->stored_model().num_layers; ++layer) {
      for (uint32_t b = 0; b < blocks; ++b) {
        st = rt_->store().Get(req.seq, layer, b, scratch_);
        if (st.ok()) st = rt_->retrieval().OnPut(req.seq, layer, b, scratch_);
        if (!st.ok()) return FromStatus(st, 0);
      }
    }
  }
  return Done(blocks * bt, blocks);
}

uint32_t NamespaceOps::StoreRemotePrefix(uint64_t seq, std::span<const uint64_t> hashes, uint32_t first,
                                         const std::vector<std::vector<std::string>>& blocks) {
  for (uint32_t p = 0; p < blocks.size(); ++p) {
    for (uint32_t layer = 0; layer < blocks[p].size(); ++layer) {
      const Status st =
          rt_->store().Put(seq, layer, first + p, storage::remote::RemotePayload(blocks[p][layer]), hashes[first + p]);
      if (!st.ok()) {
        LOG(WARNING) << "prefix block from R not stored: " << st.ToString();
        return p;  // the positions before it are whole
      }
    }
  }
  return static_cast<uint32_t>(blocks.size());
}

void NamespaceOps::OnClose() {
  for (uint64_t id : leases_) rt_->store().Release(id).IgnoreError();  // batch leases' members included
  leases_.clear();
  batch_leases_.clear();
}

}  // namespace tierkv::daemon
