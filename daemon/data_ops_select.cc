// NamespaceOps' retrieval core (data_ops.h): selection (in parallel, per KV head
// where the namespace selects per head) and pinning, shared by Retrieve and
// RetrieveBatch, host and GPU path.
#include <algorithm>
#include <cmath>

#include "daemon/data_ops.h"
#include "daemon/data_ops_util.h"
#include "daemon/head_layout.h"

#include <prometheus/histogram.h>

namespace tierkv::daemon {
using dp::Detail;
using namespace ops;

std::vector<NamespaceOps::Pinned> NamespaceOps::SelectAndPinAll(std::span<const Step> steps,
                                                                std::vector<dp::BlockTableEntry>* table) {
  const StepPolicy policy = CurrentPolicy();
  const ModelSpec& m = rt_->model();
  const uint32_t heads = rt_->record().spec.TableHeads();
  const size_t group_floats = size_t{m.num_q_heads / heads} * m.head_dim;
  // One unit per (sequence, table head): the stored layer of that head and its
  // group's query heads (per layer: the step itself, heads = 1).
  struct Unit {
    Step step;
    Selection selection;
    dp::RingCompletion outcome{};
    uint64_t select_ns = 0;
  };
  std::vector<Unit> units(steps.size() * heads);
  for (size_t i = 0; i < steps.size(); ++i) {
    for (uint32_t h = 0; h < heads; ++h) {
      Step s = steps[i];
      s.layer = StoredLayer(s.layer, heads, h);
      s.query = s.query.subspan(h * group_floats, group_floats);
      units[i * heads + h].step = s;
    }
  }
  auto select = [&](size_t u) {
    Unit& x = units[u];
    x.outcome = SelectOnly(x.step, policy, &x.selection, &x.select_ns);
  };
  if (batch_.pool && units.size() > 1) batch_.pool->ParallelFor(units.size(), select);
  else for (size_t u = 0; u < units.size(); ++u) select(u);

  std::vector<Pinned> out(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    Pinned& p = out[i];
    const size_t first = table->size();
    PinCost cost;  // the step's, over its heads: counted once per step (a Retrieve call or batch entry)
    for (uint32_t h = 0; h < heads && IsOk(p.outcome); ++h) {
      Unit& x = units[i * heads + h];
      cost.select_ns = std::max(cost.select_ns, x.select_ns);  // the heads were selected in parallel
      if (IsOk(x.outcome)) x.outcome = Pin(x.step, policy, x.selection, static_cast<uint16_t>(h), table, &cost);
      if (!IsOk(x.outcome)) {
        p.outcome = x.outcome;
        break;
      }
      p.leases.push_back(x.outcome.value);
      p.missing += static_cast<uint32_t>(x.outcome.value2);
      p.triggered |= x.selection.triggered;
    }
    if (!IsOk(p.outcome)) {  // a head failed: the sequence's other heads are given back
      GiveBack(p.leases);
      p.leases.clear();
      table->resize(first);
      continue;
    }
    p.entries = static_cast<uint32_t>(table->size() - first);
    CountStep(policy, p, cost);
  }
  return out;
}

void NamespaceOps::CountStep(const StepPolicy& policy, const Pinned& p, const PinCost& cost) {
  ++stats_->steps;
  ++(p.triggered ? stats_->triggers_taken : stats_->triggers_skipped);
  stats_->selected_blocks += cost.selected;
  (policy.store.miss_mode == storage::MissMode::kDefer ? stats_->misses_deferred : stats_->misses_waited) +=
      cost.missing;
  stats_->select_ns += cost.select_ns;
  stats_->acquire_ns += cost.acquire_ns;
  if (latency_.select) latency_.select->Observe(cost.select_ns * 1e-9);
  if (latency_.acquire) latency_.acquire->Observe(cost.acquire_ns * 1e-9);
  if (latency_.total) latency_.total->Observe((cost.select_ns + cost.acquire_ns) * 1e-9);
}

uint64_t NamespaceOps::ClientLease(std::vector<uint64_t> store_leases) {
  if (store_leases.size() == 1) return store_leases[0];
  if (store_leases.empty()) return 0;
  const uint64_t id = dp::kBatchLeaseBit | next_batch_lease_++;
  batch_leases_[id] = std::move(store_leases);
  return id;
}

dp::RingCompletion NamespaceOps::SelectOnly(const Step& step, const StepPolicy& policy, Selection* out,
                                            uint64_t* select_ns) const {
  const uint64_t t0 = NowNs();
  const size_t bb = rt_->stored_model().BlockBytes();  // step.layer is a stored layer
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
                                     uint16_t head, std::vector<dp::BlockTableEntry>* table, PinCost* cost) {
  const uint64_t t1 = NowNs();
  auto lease = rt_->store().Acquire(step.seq, step.layer, sel.blocks, policy.store.miss_mode);
  if (!lease.ok()) return FromStatus(lease.status(), 0);
  cost->acquire_ns += NowNs() - t1;
  cost->selected += lease->blocks.size();
  cost->missing += lease->missing.size();
  leases_.insert(lease->id);
  const size_t n = std::min<size_t>(lease->blocks.size(), step.budget);
  AppendEntries(*lease, head, n, table);
  return Done(static_cast<uint32_t>(n), lease->id, lease->missing.size());
}


}  // namespace tierkv::daemon
