#include "daemon/data_ops.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/checksum.h"
#include "common/log.h"
#include "daemon/remote_link.h"

#include <prometheus/histogram.h>

namespace tierkv::daemon {
namespace {
using dp::Detail;

dp::RingCompletion Done(uint32_t count = 0, uint64_t value = 0, uint64_t value2 = 0) {
  dp::RingCompletion c{};
  c.count = count;
  c.value = value;
  c.value2 = value2;
  return c;
}

dp::RingCompletion Fail(StatusCode code, Detail detail, uint32_t count = 0) {
  dp::RingCompletion c = ErrorCompletion(0, code, detail);
  c.count = count;
  return c;
}

// Maps a storage error to a completion.
dp::RingCompletion FromStatus(const Status& st, uint32_t count) {
  Detail d = Detail::kInternal;
  switch (st.code()) {
    case StatusCode::kNotFound: d = Detail::kNotFound; break;
    case StatusCode::kResourceExhausted: d = Detail::kNoSpace; break;
    case StatusCode::kInvalidArgument: d = Detail::kLength; break;
    case StatusCode::kBusy: d = Detail::kBusy; break;
    case StatusCode::kCorruption: d = Detail::kCorruption; break;
    case StatusCode::kPermissionDenied: d = Detail::kOwner; break;
    default: break;
  }
  return Fail(st.code(), d, count);
}

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

dp::RingCompletion NamespaceOps::Handle(const dp::RingRequest& req, std::span<uint8_t> staging) {
  const ModelSpec& m = rt_->model();
  const bool needs_layer = req.op == dp::Op::kPut || req.op == dp::Op::kGet || req.op == dp::Op::kRetrieve ||
                           req.op == dp::Op::kRetrieveBatch || req.op == dp::Op::kAppend;
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
  if (Status st = rt_->owners().ClaimForWrite(req.seq, caller_); !st.ok()) return FromStatus(st, 0);
  const uint64_t stored_hash = prefix ? ScopedPrefixHash(req.arg, caller_.uid) : 0;
  // Payload bytes go from staging straight into their slot. The client may rewrite
  // staging meanwhile: that only garbles its own block (and that block's summary),
  // never daemon state, so no defensive copy is made on this hot path.
  rt_->open_blocks().Forget(req.seq, req.layer);  // a whole-block put ends an append's open block
  // Under write-through the blocks of one put share one D commit (BlockStore::PutBlocks).
  storage::PutOutcome out;
  const auto payload = std::as_bytes(staging.subspan(req.offset, size_t{req.count} * bb));
  const Status put = rt_->store().PutBlocks(req.seq, req.layer, req.block, req.count, payload, stored_hash, &out);
  for (uint32_t i = 0; i < out.stored; ++i) {
    // Summaries are per sequence: a deduplicated block is summarized for this one too.
    const Status st = rt_->retrieval().OnPut(req.seq, req.layer, req.block + i, payload.subspan(size_t{i} * bb, bb));
    if (!st.ok()) return FromStatus(st, i);
  }
  // A new full prefix block (a prefix put is one block) goes to R in the background
  // (queued, never waited for).
  if (prefix && out.stored == 1 && out.deduplicated == 0) {
    WritePrefixBlockToRemote(*rt_, stored_hash, req.layer, payload);
  }
  if (!put.ok()) return FromStatus(put, out.stored);
  return Done(req.count, out.durable == req.count ? 1 : 0, out.deduplicated);
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
  // Copied out of staging first: the client may rewrite it while the blocks are built.
  scratch_.assign(reinterpret_cast<const std::byte*>(staging.data() + req.offset),
                  reinterpret_cast<const std::byte*>(staging.data() + req.offset + req.length));
  auto r = rt_->open_blocks().Append(rt_->store(), rt_->retrieval(), req.seq, req.layer, req.arg, req.count, scratch_);
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
  // Local misses of a namespace that keeps closed sequences in R are asked of R
  // after the local pass, in one batch (docs/remote-tier.md).
  const bool remote = SequencesInRemote(*rt_);
  std::vector<uint32_t> misses;
  uint32_t end = req.count;
  Status error;
  for (uint32_t i = 0; i < req.count; ++i) {
    error = rt_->store().Get(req.seq, req.layer, req.block + i,
                             std::as_writable_bytes(staging.subspan(req.offset + i * bb, bb)));
    if (error.ok()) continue;
    if (!remote || error.code() != StatusCode::kNotFound) {
      end = i;
      break;
    }
    misses.push_back(i);
  }
  if (!misses.empty()) return GetMissesFromRemote(req, staging, misses, end, error);
  return end == req.count ? Done(req.count) : FromStatus(error, end);
}

dp::RingCompletion NamespaceOps::GetMissesFromRemote(const dp::RingRequest& req, std::span<uint8_t> staging,
                                                     std::span<const uint32_t> misses, uint32_t end,
                                                     const Status& error) {
  const size_t bb = rt_->model().BlockBytes();
  std::vector<uint32_t> blocks;
  for (uint32_t i : misses) blocks.push_back(req.block + i);
  std::vector<std::byte> fetched(blocks.size() * bb);
  std::vector<bool> found;
  GetSequenceBlocksFromRemote(*rt_, req.seq, req.layer, blocks, fetched, &found);
  for (size_t k = 0; k < misses.size(); ++k) {
    if (!found[k]) return FromStatus(NotFound("block"), misses[k]);  // the blocks before it are whole
    std::memcpy(staging.data() + req.offset + size_t{misses[k]} * bb, fetched.data() + k * bb, bb);
  }
  return end == req.count ? Done(req.count) : FromStatus(error, end);
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
  if (req.length < qbytes + size_t{req.count} * sizeof(dp::BlockTableEntry)) {
    return Fail(StatusCode::kInvalidArgument, Detail::kQuery);
  }
  std::vector<float> query(qfloats);
  if (on_gpu) {
    const Status st = gpu_->ReadQuery(req.offset, std::as_writable_bytes(std::span(query)));
    if (!st.ok()) return FromStatus(st, 0);
  } else {
    std::memcpy(query.data(), staging.data() + req.offset, qbytes);
  }
  dp::RingCompletion done = SelectAndPin({req.seq, req.layer, req.count, req.aux, query}, &table_);
  if (done.status != static_cast<uint8_t>(StatusCode::kOk)) return done;
  const auto bytes = std::as_bytes(std::span(table_));
  if (on_gpu) {
    const Status st = gpu_->PublishTable(req.offset + qbytes, bytes);
    if (!st.ok()) {  // the client never learns the lease: give it back now
      leases_.erase(done.value);
      rt_->store().Release(done.value).IgnoreError();
      return FromStatus(st, 0);
    }
    ++stats_->gpu_steps;
  } else {
    if (!bytes.empty()) std::memcpy(staging.data() + req.offset + qbytes, bytes.data(), bytes.size());  // unaligned
  }
  return done;
}

dp::RingCompletion NamespaceOps::SelectAndPin(const Step& step, std::vector<dp::BlockTableEntry>* table) {
  const StepPolicy policy = CurrentPolicy();
  Selection sel;
  uint64_t select_ns = 0;
  dp::RingCompletion done = SelectOnly(step, policy, &sel, &select_ns);
  if (done.status != static_cast<uint8_t>(StatusCode::kOk)) return done;
  return Pin(step, policy, sel, select_ns, table);
}

dp::RingCompletion NamespaceOps::SelectOnly(const Step& step, const StepPolicy& policy, Selection* out,
                                            uint64_t* select_ns) const {
  const uint64_t t0 = NowNs();
  const size_t bb = rt_->model().BlockBytes();
  // Blocks whose keys retrieval has not seen (a sequence recovered at start, a
  // changed retriever): one call per chunk of blocks.
  auto reader = [&](std::span<const uint32_t> indices, std::span<std::byte> bytes, std::vector<bool>* found) {
    found->assign(indices.size(), false);
    for (size_t i = 0; i < indices.size(); ++i) {
      const Status st = rt_->store().Get(step.seq, step.layer, indices[i], bytes.subspan(i * bb, bb));
      if (st.code() == StatusCode::kNotFound) continue;  // a hole
      RETURN_IF_ERROR(st);
      (*found)[i] = true;
    }
    return OkStatus();
  };
  const uint32_t window = step.window ? step.window : policy.store.recent_window;
  // The policy always keeps the sinks and the recent window: a budget below them
  // would silently drop some of those blocks. Refuse it, naming the problem (after
  // the query's own check, so that a bad query is named first).
  if (!std::all_of(step.query.begin(), step.query.end(), [](float v) { return std::isfinite(v); })) {
    return Fail(StatusCode::kInvalidArgument, Detail::kQuery);
  }
  const uint32_t stored = rt_->store().SequenceBlocks(step.seq, step.layer);
  const uint64_t kept = uint64_t{policy.store.sink_blocks} + window;
  if (step.budget < std::min<uint64_t>(kept, stored)) {
    return Fail(StatusCode::kInvalidArgument, Detail::kBudget);
  }
  auto sel = rt_->retrieval().Select(step.seq, step.layer, step.query, step.budget, policy.store.sink_blocks, window,
                                     policy.retrieval, stored, reader);
  if (!sel.ok()) {
    switch (sel.status().code()) {
      case StatusCode::kNotFound: return Fail(StatusCode::kNotFound, Detail::kNoBlocks);
      case StatusCode::kInvalidArgument: return Fail(StatusCode::kInvalidArgument, Detail::kQuery);
      default: return FromStatus(sel.status(), 0);
    }
  }
  *out = std::move(sel).value();
  *select_ns = NowNs() - t0;
  return Done();
}

dp::RingCompletion NamespaceOps::Pin(const Step& step, const StepPolicy& policy, const Selection& sel,
                                     uint64_t select_ns, std::vector<dp::BlockTableEntry>* table) {
  const storage::Policy& sp = policy.store;
  const uint64_t t1 = NowNs();
  auto lease = rt_->store().Acquire(step.seq, step.layer, sel.blocks, sp.miss_mode);
  if (!lease.ok()) return FromStatus(lease.status(), 0);
  const uint64_t t2 = NowNs();
  leases_.insert(lease->id);
  ++stats_->steps;
  ++(sel.triggered ? stats_->triggers_taken : stats_->triggers_skipped);
  stats_->selected_blocks += lease->blocks.size();
  (sp.miss_mode == storage::MissMode::kDefer ? stats_->misses_deferred : stats_->misses_waited) +=
      lease->missing.size();
  stats_->select_ns += select_ns;
  stats_->acquire_ns += t2 - t1;
  if (latency_.select) latency_.select->Observe(select_ns * 1e-9);
  if (latency_.acquire) latency_.acquire->Observe((t2 - t1) * 1e-9);
  if (latency_.total) latency_.total->Observe((select_ns + t2 - t1) * 1e-9);
  const size_t n = std::min<size_t>(lease->blocks.size(), step.budget);
  table->resize(n);
  for (size_t i = 0; i < n; ++i) {
    dp::BlockTableEntry& e = (*table)[i];
    e = {};
    e.block = lease->blocks[i].index;
    e.tier = lease->blocks[i].where == storage::Where::kGpu ? 0 : 1;
    e.offset = lease->blocks[i].offset;
  }
  return Done(static_cast<uint32_t>(n), lease->id, lease->missing.size());
}

dp::RingCompletion NamespaceOps::Release(const dp::RingRequest& req) {
  if (req.arg & dp::kBatchLeaseBit) {  // a batch: every sequence's lease
    auto it = batch_leases_.find(req.arg);
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
  if (!leases_.erase(req.arg)) return Fail(StatusCode::kNotFound, Detail::kLease);
  Status st = rt_->store().Release(req.arg);
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
  const uint32_t from_remote = blocks < content.size() ? FetchPrefixFromRemote(*rt_, hashes, blocks, &remote) : 0;
  if (req.op == dp::Op::kLookupPrefix) blocks += from_remote;
  if (req.op == dp::Op::kLoadPrefix && blocks + from_remote > 0) {
    if (Status st = rt_->owners().ClaimForWrite(req.seq, caller_); !st.ok()) return FromStatus(st, 0);
    Status st = blocks ? rt_->store().LinkPrefix(req.seq, std::span<const uint64_t>(hashes).first(blocks)) : OkStatus();
    if (!st.ok()) return FromStatus(st, 0);
    blocks += StoreRemotePrefix(req.seq, hashes, blocks, remote);
    // The sequence's retrieval summaries of the shared blocks.
    scratch_.resize(rt_->model().BlockBytes());
    for (uint32_t layer = 0; layer < rt_->model().num_layers; ++layer) {
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
