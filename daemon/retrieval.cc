#include "daemon/retrieval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/log.h"
#include "index/block_scoring.h"
#include "index/retriever_factory.h"
#include "kernels/half.h"

namespace tierkv::daemon {
namespace {
using Json = nlohmann::json;

// Payloads read back per BlockListReader call: bounds the catch-up's buffer.
constexpr size_t kCatchUpBytes = size_t{32} << 20;

const char* TriggerName(index::TriggerConfig::Kind k) {
  switch (k) {
    case index::TriggerConfig::Kind::kDrift: return "drift";
    case index::TriggerConfig::Kind::kEveryN: return "every_n";
    case index::TriggerConfig::Kind::kEveryStep: break;
  }
  return "every";
}
// Blocks below `limit` that every selection keeps: the sinks and the recent window
// of a sequence of n blocks.
std::vector<uint32_t> KeptBlocks(uint32_t limit, uint32_t n, uint32_t sinks, uint32_t window) {
  std::vector<uint32_t> kept;
  for (uint32_t b = 0; b < limit; ++b) {
    if (b < sinks || b + window >= n) kept.push_back(b);
  }
  return kept;
}

}  // namespace

// Scores a summary retriever's rows on the GPU (index::SummaryScorer), over this
// (sequence, layer)'s device mirror of them.
class RetrievalIndex::GpuScorer final : public index::SummaryScorer {
 public:
  explicit GpuScorer(RetrievalIndex* owner) : owner_(owner) {}
  Status Select(const kernels::ScoreArgs& args, std::span<const uint32_t> always_kept, uint64_t num_blocks,
                std::vector<uint32_t>* selected) override {
    return owner_->ScoreOnGpu(&rows_, args, always_kept, num_blocks, selected);
  }
  void MarkDirty(uint32_t block) { rows_.MarkDirty(block); }
  size_t DeviceBytes() const { return rows_.buffer.size(); }

 private:
  RetrievalIndex* const owner_;
  DeviceRows rows_;
};

RetrievalIndex::~RetrievalIndex() = default;

std::vector<uint32_t> CapSelection(std::span<const uint32_t> chosen, uint32_t chosen_below, uint32_t n, uint32_t k,
                                   uint32_t sinks, uint32_t window) {
  std::vector<uint32_t> out;
  std::vector<uint8_t> taken(n, 0);
  auto take = [&](uint32_t b) {
    if (b < n && !taken[b] && out.size() < k) {
      taken[b] = 1;
      out.push_back(b);
    }
  };
  // Always kept now: the current recent window (newest first) and the sinks.
  for (uint32_t b = n; b > (n > window ? n - window : 0); --b) take(b - 1);
  for (uint32_t b = 0; b < std::min(sinks, n); ++b) take(b);
  // Then the chosen blocks below `chosen_below`, newest first.
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
    if (*it < chosen_below) take(*it);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool IsRetrievalPolicyField(const std::string& f) {
  return f == "retriever" || f == "trigger" || f == "drift_tau" || f == "trigger_every" || f == "head_combine";
}

Json RetrievalPolicyToJson(const RetrievalPolicy& p) {
  return Json{{"retriever", p.retriever},
              {"trigger", TriggerName(p.trigger.kind)},
              {"drift_tau", p.trigger.tau},
              {"trigger_every", p.trigger.every_n},
              {"head_combine", p.combine == index::HeadCombine::kMax ? "max" : "softmax_sum"}};
}

Result<RetrievalPolicy> ApplyRetrievalChanges(const RetrievalPolicy& base, const Json& changes) {
  using Kind = index::TriggerConfig::Kind;
  RetrievalPolicy p = base;
  for (const auto& [field, v] : changes.items()) {
    const std::string s = v.is_string() ? v.get<std::string>() : "";
    if (field == "retriever") {
      auto r = index::MakeRetriever(s);  // validates the factory string
      if (!r.ok()) return InvalidArgument("policy.retriever: " + r.status().message());
      p.retriever = (*r)->Name();
    } else if (field == "trigger") {
      if (s == "every") p.trigger.kind = Kind::kEveryStep;
      else if (s == "drift") p.trigger.kind = Kind::kDrift;
      else if (s == "every_n") p.trigger.kind = Kind::kEveryN;
      else return InvalidArgument("policy.trigger must be one of every, drift, every_n");
    } else if (field == "drift_tau") {
      if (!v.is_number() || v.get<double>() < -1 || v.get<double>() > 1) {
        return InvalidArgument("policy.drift_tau must be a number in [-1, 1]");
      }
      p.trigger.tau = v.get<double>();
    } else if (field == "trigger_every") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() < 1 || v.get<uint64_t>() > 1024) {
        return InvalidArgument("policy.trigger_every must be an integer in [1, 1024]");
      }
      p.trigger.every_n = v.get<uint32_t>();
    } else if (field == "head_combine") {
      if (s == "softmax_sum") p.combine = index::HeadCombine::kSum;
      else if (s == "max") p.combine = index::HeadCombine::kMax;
      else return InvalidArgument("policy.head_combine must be softmax_sum or max");
    } else {
      return InvalidArgument("policy has no retrieval field '" + field.substr(0, 64) + "'");
    }
  }
  p.trigger.post_rope = true;  // the only queries tierkvd sees (decision 0019)
  return p;
}

void RetrievalIndex::SetPolicy(const RetrievalPolicy& policy) {
  MutexLock lock(&policy_mu_);
  policy_ = policy;
}

RetrievalPolicy RetrievalIndex::policy() const {
  MutexLock lock(&policy_mu_);
  return policy_;
}

RetrievalIndex::StatePtr RetrievalIndex::Find(uint64_t seq, uint32_t layer) const {
  MutexLock lock(&map_mu_);
  auto it = layers_.find({seq, layer});
  return it == layers_.end() ? nullptr : it->second;
}

RetrievalIndex::StatePtr RetrievalIndex::FindOrCreate(uint64_t seq, uint32_t layer) {
  MutexLock lock(&map_mu_);
  StatePtr& s = layers_[{seq, layer}];
  if (!s) s = std::make_shared<LayerState>();
  return s;
}

std::vector<float> RetrievalIndex::BlockKeys(std::span<const std::byte> payload) const {
  std::vector<float> keys(size_t{model_.num_kv_heads} * model_.block_tokens * model_.head_dim);
  kernels::LoadRowAsFloat(payload.data(), model_.dtype, 0, keys.size(), keys.data());  // K comes first in a block
  return keys;
}

Status RetrievalIndex::EnsureMethod(LayerState& s, const RetrievalPolicy& policy) {
  if (s.retriever && s.spec == policy.retriever && s.combine == policy.combine) return OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<index::Retriever> r, index::MakeRetriever(policy.retriever));
  const Path path = r->block_appendable() ? Path::kBlocks : r->Name() == "exact" ? Path::kExact : Path::kIndex;
  std::unique_ptr<GpuScorer> scorer;
  if (path == Path::kBlocks) {
    index::RetrieverParams params;
    params.block_tokens = model_.block_tokens;
    params.num_q_heads = model_.num_q_heads;
    params.head_combine = policy.combine;
    RETURN_IF_ERROR(r->StartBlocks(model_.num_kv_heads, model_.head_dim, params));
    scorer = std::make_unique<GpuScorer>(this);
    if (!r->SetScorer(scorer.get())) scorer.reset();  // mean:r=R scores on the CPU
  }
  // Every block is fed again (read back from the store) to the new method.
  s.spec = policy.retriever;
  s.combine = policy.combine;
  s.path = path;
  s.retriever = std::move(r);
  s.scorer = std::move(scorer);
  s.fed.assign(s.blocks, false);
  s.num_fed = 0;
  s.keys.clear();
  s.keys.shrink_to_fit();
  s.key_blocks = 0;
  s.pending.clear();
  s.indexed = 0;
  s.keys_changed = false;
  s.extend_failed = false;
  s.bank.reset();  // a new method starts a new trigger stream
  return OkStatus();
}

Status RetrievalIndex::Feed(LayerState& s, uint32_t b, std::span<const std::byte> payload) {
  if (b >= s.blocks) {
    s.blocks = b + 1;
    s.fed.resize(s.blocks, false);
  }
  if (s.path == Path::kBlocks) {  // K comes first in a block
    RETURN_IF_ERROR(s.retriever->PutBlock(b, payload.first(model_.BlockBytes() / 2), model_.dtype));
    if (s.scorer) s.scorer->MarkDirty(b);
    MarkFed(s, b);
    return OkStatus();
  }
  std::vector<float> keys = BlockKeys(payload);
  if (b < s.key_blocks) {  // in place: [kv][key_blocks * bt][d]
    const size_t bt = model_.block_tokens, d = model_.head_dim, tokens = size_t{s.key_blocks} * bt;
    for (uint32_t g = 0; g < model_.num_kv_heads; ++g) {
      std::copy_n(keys.data() + g * bt * d, bt * d, s.keys.data() + (g * tokens + b * bt) * d);
    }
    if (b < s.indexed) s.keys_changed = true;
  } else {
    s.pending[b] = std::move(keys);
  }
  MarkFed(s, b);
  return OkStatus();
}

void RetrievalIndex::MarkFed(LayerState& s, uint32_t b) {
  if (!s.fed[b]) {
    s.fed[b] = true;
    ++s.num_fed;
  }
}

Status RetrievalIndex::OnPut(uint64_t seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload) {
  if (payload.size() < model_.BlockBytes()) return InvalidArgument("payload smaller than a block");
  const RetrievalPolicy current = policy();
  const StatePtr state = FindOrCreate(seq, layer);
  LayerState& s = *state;
  MutexLock lock(&s.mu);
  RETURN_IF_ERROR(EnsureMethod(s, current));
  return Feed(s, index, payload);
}

void RetrievalIndex::DropSequence(uint64_t seq) {
  MutexLock lock(&map_mu_);  // a selection in flight keeps its state alive, then drops it
  auto first = layers_.lower_bound({seq, 0});
  auto last = first;
  while (last != layers_.end() && last->first.first == seq) ++last;
  layers_.erase(first, last);
}

Status RetrievalIndex::CatchUp(LayerState& s, uint32_t n, const BlockListReader& read) {
  if (s.num_fed >= n) return OkStatus();
  std::vector<uint32_t> missing;
  for (uint32_t b = 0; b < n; ++b) {
    if (b >= s.fed.size() || !s.fed[b]) missing.push_back(b);
  }
  const size_t bb = model_.BlockBytes();
  const size_t per_call = std::max<size_t>(1, kCatchUpBytes / bb);
  std::vector<std::byte> buffer;
  std::vector<bool> found;
  for (size_t first = 0; first < missing.size(); first += per_call) {
    const std::span<const uint32_t> part = std::span(missing).subspan(first, std::min(per_call, missing.size() - first));
    buffer.resize(part.size() * bb);
    RETURN_IF_ERROR(read(part, buffer, &found));
    for (size_t i = 0; i < part.size(); ++i) {
      if (i < found.size() && found[i]) {
        RETURN_IF_ERROR(Feed(s, part[i], std::span(buffer).subspan(i * bb, bb)));
      }
    }
  }
  if (n > s.blocks) {  // trailing holes: the step still sees n blocks
    s.blocks = n;
    s.fed.resize(n, false);
  }
  return OkStatus();
}

Status RetrievalIndex::BuildFromKeys(LayerState& s, uint32_t n) {
  const size_t bt = model_.block_tokens, d = model_.head_dim, kvh = model_.num_kv_heads;
  const bool grew = n != s.key_blocks || !s.pending.empty();
  if (grew) {  // lay the copy out over n blocks: the old rows, then the pending blocks, holes zero
    const size_t old_tokens = size_t{s.key_blocks} * bt, tokens = size_t{n} * bt;
    std::vector<float> keys(kvh * tokens * d, 0.f);
    for (size_t g = 0; g < kvh; ++g) {
      std::copy_n(s.keys.data() + g * old_tokens * d, std::min(old_tokens, tokens) * d, keys.data() + g * tokens * d);
    }
    for (auto it = s.pending.begin(); it != s.pending.end() && it->first < n;) {
      for (size_t g = 0; g < kvh; ++g) {
        std::copy_n(it->second.data() + g * bt * d, bt * d, keys.data() + (g * tokens + it->first * bt) * d);
      }
      it = s.pending.erase(it);
    }
    s.keys = std::move(keys);
    s.key_blocks = n;
  }
  index::LayerKeys view;
  view.num_kv_heads = model_.num_kv_heads;
  view.head_dim = model_.head_dim;
  view.num_tokens = uint64_t{n} * bt;
  view.keys = s.keys.data();
  Status st;
  const bool extend = s.indexed > 0 && !s.keys_changed && n >= s.indexed;
  if (extend) {
    st = s.retriever->Extend(view);  // vq, cluster, spann: only the new tokens (the others rebuild)
    if (!st.ok() && s.retriever->built()) {  // spann's postings could not be written: the old index serves
      if (!s.extend_failed) LOG(WARNING) << "retrieval index not extended, serving the old one: " << st.ToString();
      s.extend_failed = true;
      return st;
    }
  } else {
    index::RetrieverParams params;
    params.block_tokens = model_.block_tokens;
    params.num_q_heads = model_.num_q_heads;
    params.head_combine = s.combine;
    st = s.retriever->Build(view, params);
  }
  s.indexed = st.ok() ? n : 0;
  s.keys_changed = false;
  if (st.ok()) s.extend_failed = false;
  return st;
}

index::QueryView RetrievalIndex::StepQuery(std::span<const float> query, uint32_t blocks) const {
  index::QueryView q;
  q.num_q_heads = model_.num_q_heads;
  q.head_dim = model_.head_dim;
  q.q = query.data();
  q.position = uint64_t{blocks} * model_.block_tokens - 1;  // the last token of block blocks - 1
  return q;
}

Result<Selection> RetrievalIndex::Select(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t k,
                                         uint32_t sinks, uint32_t window, const RetrievalPolicy& policy,
                                         uint32_t stored, const BlockListReader& read) {
  if (query.size() != size_t{model_.num_q_heads} * model_.head_dim) {
    return InvalidArgument("query must hold num_q_heads * head_dim floats");
  }
  for (float f : query) {
    if (!std::isfinite(f)) return InvalidArgument("query holds a non-finite value");
  }
  if (k == 0) return InvalidArgument("budget must be at least one block");
  const StatePtr state = stored > 0 ? FindOrCreate(seq, layer) : Find(seq, layer);
  if (!state) return NotFound("no blocks for this sequence and layer");
  LayerState& s = *state;
  MutexLock lock(&s.mu);
  const uint32_t n = std::max(s.blocks, stored);
  if (n == 0) return NotFound("no blocks for this sequence and layer");
  RETURN_IF_ERROR(EnsureMethod(s, policy));
  RETURN_IF_ERROR(CatchUp(s, n, read));
  if (s.path == Path::kBlocks && s.retriever->indexed_blocks() < n) {  // trailing holes score from zeros
    RETURN_IF_ERROR(s.retriever->PutBlock(n - 1, std::vector<float>(size_t{model_.num_kv_heads} * model_.block_tokens * model_.head_dim, 0.f)));
  }
  if (!s.bank || !(s.trigger == policy.trigger) || n < s.last_blocks) {
    s.trigger = policy.trigger;
    s.bank = std::make_unique<index::TriggerBank>(policy.trigger);
  }
  s.last_blocks = n;
  if (s.path == Path::kIndex) return SelectWithIndex(s, seq, layer, n, query, k, sinks, window);
  // The evaluation's step at the last token of block n - 1.
  const std::vector<uint32_t> always = KeptBlocks(n, n, sinks, window);
  const index::QueryView q = StepQuery(query, n);
  Selection sel;
  if (k >= n) {  // every block: nothing to score (exact would scan every key)
    RETURN_IF_ERROR(s.bank->SelectAll(seq, layer, q, model_.block_tokens, always, &sel.blocks, &sel.triggered));
    return sel;
  }
  if (s.path == Path::kExact && (s.indexed == 0 || s.bank->WouldRetrieve(seq, layer, q))) {
    RETURN_IF_ERROR(BuildFromKeys(s, n));  // the oracle scores all n blocks
  }
  RETURN_IF_ERROR(s.bank->Select(seq, layer, s.retriever.get(), q, k, always, &sel.blocks, &sel.triggered));
  return sel;
}

// The index/ path for methods that train or scan (retrieval.h, "others"): select
// among the indexed blocks as if the step were the last indexed token; blocks
// added since the build are all in the recent window.
Result<Selection> RetrievalIndex::SelectWithIndex(LayerState& s, uint64_t seq, uint32_t layer, uint32_t n,
                                                  std::span<const float> query, uint32_t k, uint32_t sinks,
                                                  uint32_t window) {
  Selection sel;
  if (k >= n) {  // every block, without building anything; the stream restarts after
    sel.blocks.resize(n);
    std::iota(sel.blocks.begin(), sel.blocks.end(), 0u);
    s.bank = std::make_unique<index::TriggerBank>(s.trigger);
    return sel;
  }
  if (s.indexed == 0 || s.keys_changed || n > s.indexed + window) {
    const Status st = BuildFromKeys(s, n);
    // A failed Extend that kept the index (s.indexed unchanged): select with it;
    // the blocks past it are the newest (CapSelection keeps the window first).
    if (!st.ok() && !(s.extend_failed && s.indexed > 0)) return st;
  }
  const uint32_t m = s.indexed;
  const std::vector<uint32_t> always = KeptBlocks(m, n, sinks, window);
  const index::QueryView q = StepQuery(query, m);
  const uint32_t newer = n - m;  // all in the recent window: always selected
  const uint32_t budget = std::max<uint32_t>(k > newer ? k - newer : 0, static_cast<uint32_t>(always.size()));
  RETURN_IF_ERROR(
      s.bank->Select(seq, layer, s.retriever.get(), q, std::min(budget, m), always, &sel.blocks, &sel.triggered));
  for (uint32_t b = m; b < n; ++b) sel.blocks.push_back(b);
  if (sel.blocks.size() > k) sel.blocks = CapSelection(sel.blocks, n, n, k, sinks, window);
  return sel;
}

Status RetrievalIndex::ScoreOnGpu(DeviceRows* rows, const kernels::ScoreArgs& a, std::span<const uint32_t> always_kept,
                                  uint64_t num_blocks, std::vector<uint32_t>* selected) {
  const uint64_t work = uint64_t{a.num_blocks} * a.num_q_heads * a.head_dim;
  {
    MutexLock gpu(&gpu_mu_);
    if (!gpu_ || work < gpu_min_work_ || num_blocks == 0) {
      ++cpu_selections_;
      return NotSupported("scored on the CPU");
    }
  }
  GpuJob job{rows, &a, always_kept, num_blocks, selected, OkStatus()};
  gpu_queue_.Commit(&job);
  if (job.status.ok()) {
    ++gpu_selections_;
    return OkStatus();
  }
  ++gpu_fallbacks_;
  ++cpu_selections_;
  MutexLock gpu(&gpu_mu_);
  if (!gpu_failure_logged_) LOG(WARNING) << "GPU scoring failed, scoring on the CPU: " << job.status.ToString();
  gpu_failure_logged_ = true;
  return job.status;
}

void RetrievalIndex::RunGpuJobs(std::span<GpuJob* const> jobs) {
  MutexLock gpu(&gpu_mu_);
  auto same_kind = [](const GpuJob& x, const GpuJob& y) {
    return x.args->mode == y.args->mode && x.args->combine == y.args->combine &&
           x.args->summary_dtype == y.args->summary_dtype;
  };
  std::vector<bool> taken(jobs.size(), false);
  std::vector<GpuJob*> group;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (taken[i]) continue;
    group.clear();
    for (size_t j = i; j < jobs.size(); ++j) {
      if (taken[j] || !same_kind(*jobs[i], *jobs[j])) continue;
      taken[j] = true;
      group.push_back(jobs[j]);
    }
    RunGpuGroup(group);
  }
}

void RetrievalIndex::RunGpuGroup(std::span<GpuJob* const> group) {
  if (!gpu_) {
    for (GpuJob* j : group) j->status = NotSupported("no GPU selector");
    return;
  }
  ++gpu_batches_;
  std::vector<std::vector<uint8_t>> always(group.size());
  std::vector<GpuSelection> items;
  items.reserve(group.size());
  for (size_t i = 0; i < group.size(); ++i) {
    const GpuJob& j = *group[i];
    const kernels::ScoreArgs& a = *j.args;
    always[i].assign(a.num_blocks, 0);
    for (uint32_t b : j.always_kept) always[i][b] = 1;
    j.selected->resize(j.num_blocks);
    items.push_back({j.rows, HostRows{a.min_keys, a.max_keys, a.mean_keys, a.num_blocks, a.summary_dtype},
                     std::span(a.query, size_t{a.num_q_heads} * a.head_dim), always[i], *j.selected});
  }
  const kernels::ScoreArgs& first = *group[0]->args;
  const Status st = group.size() == 1
                        ? gpu_->Select(items[0].rows, items[0].host, items[0].query, items[0].always, first.mode,
                                       first.combine, items[0].out)
                        : gpu_->SelectBatch(items, first.mode, first.combine);
  for (GpuJob* j : group) j->status = st;
}

Status RetrievalIndex::EnableGpuScoring(uint64_t min_work) {
  ASSIGN_OR_RETURN(std::unique_ptr<GpuSelector> selector, GpuSelector::Create(model_));
  MutexLock lock(&gpu_mu_);
  gpu_ = std::move(selector);
  gpu_min_work_ = min_work;
  return OkStatus();
}

bool RetrievalIndex::gpu_scoring() const {
  MutexLock lock(&gpu_mu_);
  return gpu_ != nullptr;
}

std::vector<RetrievalIndex::StatePtr> RetrievalIndex::Snapshot() const {
  MutexLock lock(&map_mu_);
  std::vector<StatePtr> out;
  out.reserve(layers_.size());
  for (const auto& [key, s] : layers_) out.push_back(s);
  return out;
}

size_t RetrievalIndex::SummaryBytes() const {
  size_t bytes = 0;
  for (const StatePtr& state : Snapshot()) {
    LayerState& s = *state;
    MutexLock lock(&s.mu);
    bytes += s.keys.capacity() * sizeof(float) + s.fed.capacity() / 8;
    for (const auto& [b, keys] : s.pending) bytes += keys.capacity() * sizeof(float);
    if (s.retriever && s.path != Path::kExact) bytes += s.retriever->IndexBytes();  // exact's: the key copy
  }
  return bytes;
}

size_t RetrievalIndex::DeviceSummaryBytes() const {
  size_t bytes = 0;
  for (const StatePtr& state : Snapshot()) {
    LayerState& s = *state;
    MutexLock lock(&s.mu);
    if (s.scorer) bytes += s.scorer->DeviceBytes();
  }
  return bytes;
}

}  // namespace tierkv::daemon
