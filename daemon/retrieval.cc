#include "daemon/retrieval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/log.h"
#include "index/retriever_factory.h"
#include "index/trigger.h"
#include "kernels/half.h"
#include "kernels/summary.h"
#include "kernels/topk.h"

namespace tierkv::daemon {
namespace {
using Json = nlohmann::json;

float Element(const std::byte* p, DType t, size_t i) {
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return kernels::F16ToFloat(h);
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return kernels::Bf16ToFloat(h);
    }
  }
  return 0;
}
// The k = out.size() best of `scores`, always-kept blocks first (CPU reference).
Status SelectTopK(std::span<const float> scores, std::span<const uint8_t> always, std::span<uint32_t> out) {
  kernels::TopKArgs t;
  t.scores = scores.data();
  t.num_blocks = static_cast<uint32_t>(scores.size());
  t.k = static_cast<uint32_t>(out.size());
  t.always = always.data();
  t.out_indices = out.data();
  return kernels::TopK(kernels::Backend::kCpu, t);
}
}  // namespace

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
  static const char* kMethods[] = {"exact", "minmax", "mean", ""};
  static const char* kTriggers[] = {"every", "drift", "every_n"};
  return Json{{"retriever", p.method == Method::kIndex ? p.index_spec : kMethods[static_cast<int>(p.method)]},
              {"trigger", kTriggers[static_cast<int>(p.trigger)]},
              {"drift_tau", p.drift_tau},
              {"trigger_every", p.every_n},
              {"head_combine", p.combine == kernels::HeadCombine::kMax ? "max" : "softmax_sum"}};
}

Result<RetrievalPolicy> ApplyRetrievalChanges(const RetrievalPolicy& base, const Json& changes) {
  RetrievalPolicy p = base;
  for (const auto& [field, v] : changes.items()) {
    const std::string s = v.is_string() ? v.get<std::string>() : "";
    if (field == "retriever") {
      p.index_spec.clear();
      if (s == "exact") p.method = Method::kExact;
      else if (s == "minmax") p.method = Method::kMinMax;
      else if (s == "mean") p.method = Method::kMean;
      else {
        auto r = index::MakeRetriever(s);  // validates the factory string
        if (!r.ok()) return InvalidArgument("policy.retriever: " + r.status().message());
        p.method = Method::kIndex;
        p.index_spec = (*r)->Name();
      }
    } else if (field == "trigger") {
      if (s == "every") p.trigger = Trigger::kEveryStep;
      else if (s == "drift") p.trigger = Trigger::kDrift;
      else if (s == "every_n") p.trigger = Trigger::kEveryN;
      else return InvalidArgument("policy.trigger must be one of every, drift, every_n");
    } else if (field == "drift_tau") {
      if (!v.is_number() || v.get<double>() < -1 || v.get<double>() > 1) {
        return InvalidArgument("policy.drift_tau must be a number in [-1, 1]");
      }
      p.drift_tau = v.get<float>();
    } else if (field == "trigger_every") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() < 1 || v.get<uint64_t>() > 1024) {
        return InvalidArgument("policy.trigger_every must be an integer in [1, 1024]");
      }
      p.every_n = v.get<uint32_t>();
    } else if (field == "head_combine") {
      if (s == "softmax_sum") p.combine = kernels::HeadCombine::kSoftmaxSum;
      else if (s == "max") p.combine = kernels::HeadCombine::kMax;
      else return InvalidArgument("policy.head_combine must be softmax_sum or max");
    } else {
      return InvalidArgument("policy has no retrieval field '" + field.substr(0, 64) + "'");
    }
  }
  return p;
}

RetrievalIndex::StatePtr RetrievalIndex::Find(uint64_t seq, uint32_t layer) const {
  std::lock_guard lock(map_mu_);
  auto it = layers_.find({seq, layer});
  return it == layers_.end() ? nullptr : it->second;
}

RetrievalIndex::StatePtr RetrievalIndex::FindOrCreate(uint64_t seq, uint32_t layer) {
  std::lock_guard lock(map_mu_);
  StatePtr& s = layers_[{seq, layer}];
  if (!s) s = std::make_shared<LayerState>();
  return s;
}

std::vector<uint32_t> RetrievalIndex::Unsummarized(uint64_t seq, uint32_t layer, uint32_t stored) const {
  const StatePtr s = Find(seq, layer);
  std::vector<uint32_t> out;
  std::unique_lock<std::mutex> lock;
  if (s) {
    lock = std::unique_lock(s->mu);
    if (s->num_summarized >= stored) return out;
  }
  for (uint32_t b = 0; b < stored; ++b) {
    if (!s || b >= s->summarized.size() || !s->summarized[b]) out.push_back(b);
  }
  return out;
}

Status RetrievalIndex::OnPut(uint64_t seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload) {
  const size_t per_block = size_t{model_.num_kv_heads} * model_.head_dim;
  std::vector<float> mn(per_block), mx(per_block), mean(per_block);
  kernels::SummaryArgs a;
  a.key_dtype = model_.dtype;
  a.num_kv_heads = model_.num_kv_heads;
  a.block_tokens = model_.block_tokens;
  a.head_dim = model_.head_dim;
  a.num_blocks = 1;
  a.keys = payload.data();
  a.min_out = mn.data();
  a.max_out = mx.data();
  a.mean_out = mean.data();
  RETURN_IF_ERROR(kernels::BuildSummaries(kernels::Backend::kCpu, a));
  const StatePtr state = FindOrCreate(seq, layer);
  std::lock_guard lock(state->mu);
  LayerState& s = *state;
  if (index >= s.blocks) {
    s.blocks = index + 1;
    s.min.resize(s.blocks * per_block, 0.f);
    s.max.resize(s.blocks * per_block, 0.f);
    s.mean.resize(s.blocks * per_block, 0.f);
    s.summarized.resize(s.blocks, false);
  }
  if (!s.summarized[index]) {
    s.summarized[index] = true;
    ++s.num_summarized;
  }
  s.device.MarkDirty(index);
  std::copy(mn.begin(), mn.end(), s.min.begin() + index * per_block);
  std::copy(mx.begin(), mx.end(), s.max.begin() + index * per_block);
  std::copy(mean.begin(), mean.end(), s.mean.begin() + index * per_block);
  return OkStatus();
}

void RetrievalIndex::DropSequence(uint64_t seq) {
  std::lock_guard lock(map_mu_);  // a selection in flight keeps its state alive, then drops it
  auto first = layers_.lower_bound({seq, 0});
  auto last = first;
  while (last != layers_.end() && last->first.first == seq) ++last;
  layers_.erase(first, last);
}

Status RetrievalIndex::ScoreExact(uint32_t blocks, std::span<const float> query, kernels::HeadCombine combine,
                                  const BlockReader& read_block, std::vector<float>* scores) const {
  const uint32_t qh = model_.num_q_heads, kvh = model_.num_kv_heads, d = model_.head_dim, bt = model_.block_tokens;
  const uint32_t group = qh / kvh;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  std::vector<std::byte> payload(model_.BlockBytes());
  std::vector<float> logits(size_t{qh} * blocks * bt, -INFINITY);  // [qh][blocks*bt]
  for (uint32_t b = 0; b < blocks; ++b) {
    if (!read_block(b, payload).ok()) continue;  // a hole: never selected
    for (uint32_t h = 0; h < qh; ++h) {
      const uint32_t g = h / group;
      for (uint32_t t = 0; t < bt; ++t) {
        const size_t k0 = (size_t{g} * bt + t) * d;
        float dot = 0;
        for (uint32_t i = 0; i < d; ++i) dot += query[size_t{h} * d + i] * Element(payload.data(), model_.dtype, k0 + i);
        logits[(size_t{h} * blocks + b) * bt + t] = dot * scale;
      }
    }
  }
  scores->assign(blocks, combine == kernels::HeadCombine::kMax ? -INFINITY : 0.f);
  for (uint32_t h = 0; h < qh; ++h) {
    float* row = &logits[size_t{h} * blocks * bt];
    const float mx = *std::max_element(row, row + size_t{blocks} * bt);
    double sum = 0;
    for (size_t i = 0; i < size_t{blocks} * bt; ++i) sum += std::isinf(row[i]) ? 0 : std::exp(row[i] - mx);
    for (uint32_t b = 0; b < blocks; ++b) {
      double mass = 0;
      float best = -INFINITY;
      for (uint32_t t = 0; t < bt; ++t) {
        const float l = row[size_t{b} * bt + t];
        if (!std::isinf(l)) mass += std::exp(l - mx);
        best = std::max(best, l);
      }
      if (combine == kernels::HeadCombine::kMax) (*scores)[b] = std::max((*scores)[b], best);
      else (*scores)[b] += sum > 0 ? static_cast<float>(mass / sum) : 0.f;
    }
  }
  return OkStatus();
}

bool RetrievalIndex::ShouldReuse(const LayerState& s, std::span<const float> query,
                                 const RetrievalPolicy& policy) const {
  if (s.last_selection.empty() || s.last_query.size() != query.size()) return false;
  if (policy.trigger == Trigger::kDrift) {
    return index::TriggerBank::MinHeadCosine(query.data(), s.last_query.data(), model_.num_q_heads,
                                             model_.head_dim) >= policy.drift_tau;
  }
  if (policy.trigger == Trigger::kEveryN) return (s.steps - 1) % policy.every_n != 0;
  return false;
}

Result<Selection> RetrievalIndex::Select(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t k,
                                         uint32_t sinks, uint32_t window, const RetrievalPolicy& policy,
                                         const BlockReader& read_block) {
  if (query.size() != size_t{model_.num_q_heads} * model_.head_dim) {
    return InvalidArgument("query must hold num_q_heads * head_dim floats");
  }
  for (float f : query) {
    if (!std::isfinite(f)) return InvalidArgument("query holds a non-finite value");
  }
  const StatePtr state = Find(seq, layer);
  if (!state) return NotFound("no blocks for this sequence and layer");
  std::unique_lock lock(state->mu);
  LayerState& s = *state;
  if (s.blocks == 0) return NotFound("no blocks for this sequence and layer");
  const uint32_t n = s.blocks;
  ++s.steps;
  Selection sel;
  if (k >= n) {  // the budget covers every block: nothing to score (exact would read them all)
    sel.blocks.resize(n);
    std::iota(sel.blocks.begin(), sel.blocks.end(), 0u);
    s.last_query.assign(query.begin(), query.end());
    s.last_selection = sel.blocks;
    s.last_blocks = n;
    return sel;
  }
  if (policy.method == Method::kIndex) {
    return SelectWithIndex(s, seq, layer, n, query, k, sinks, window, policy, read_block, lock);
  }
  if (ShouldReuse(s, query, policy)) {
    // The last triggered step's own recent window has slid since: not carried over.
    const uint32_t last_window_start = s.last_blocks > window ? s.last_blocks - window : 0;
    sel.blocks = CapSelection(s.last_selection, last_window_start, n, k, sinks, window);
    sel.triggered = false;
    return sel;
  }
  std::vector<uint8_t> always(n, 0);
  for (uint32_t b = 0; b < std::min(sinks, n); ++b) always[b] = 1;
  for (uint32_t b = n > window ? n - window : 0; b < n; ++b) always[b] = 1;
  sel.blocks.resize(std::min(k, n));
  if (policy.method == Method::kExact) {
    std::vector<float> scores(n);
    lock.unlock();  // reads blocks back; the summaries are not needed
    RETURN_IF_ERROR(ScoreExact(n, query, policy.combine, read_block, &scores));
    lock.lock();
    RETURN_IF_ERROR(SelectTopK(scores, always, sel.blocks));
  } else {
    RETURN_IF_ERROR(SelectFromSummaries(s, n, query, always, policy, sel.blocks));
  }
  s.last_query.assign(query.begin(), query.end());
  s.last_selection = sel.blocks;
  s.last_blocks = n;
  return sel;
}

Status RetrievalIndex::SelectFromSummaries(LayerState& s, uint32_t n, std::span<const float> query,
                                           std::span<const uint8_t> always, const RetrievalPolicy& policy,
                                           std::span<uint32_t> out) {
  const auto mode = policy.method == Method::kMean ? kernels::ScoreMode::kMean : kernels::ScoreMode::kMinMax;
  const uint64_t work = uint64_t{n} * model_.num_q_heads * model_.head_dim;
  if (std::unique_lock gpu(gpu_mu_); gpu_ && work >= gpu_min_work_) {  // one at a time on the shared selector
    const Status st = gpu_->Select(&s.device, HostRows{s.min.data(), s.max.data(), s.mean.data(), n}, query, always,
                                   mode, policy.combine, out);
    ++(st.ok() ? gpu_selections_ : gpu_fallbacks_);
    if (st.ok()) return st;
    if (!gpu_failure_logged_) LOG(WARNING) << "GPU scoring failed, scoring on the CPU: " << st.ToString();
    gpu_failure_logged_ = true;
  }
  std::vector<float> scores(n);
  kernels::ScoreArgs a = SummaryScoreArgs(model_, mode, policy.combine, n);
  a.query = query.data();
  a.min_keys = s.min.data();
  a.max_keys = s.max.data();
  a.mean_keys = s.mean.data();
  a.scores = scores.data();
  RETURN_IF_ERROR(kernels::ScoreBlocks(kernels::Backend::kCpu, a));
  ++cpu_selections_;
  return SelectTopK(scores, always, out);
}

Status RetrievalIndex::EnableGpuScoring(uint64_t min_work) {
  ASSIGN_OR_RETURN(std::unique_ptr<GpuSelector> selector, GpuSelector::Create(model_));
  std::lock_guard lock(gpu_mu_);
  gpu_ = std::move(selector);
  gpu_min_work_ = min_work;
  return OkStatus();
}

bool RetrievalIndex::gpu_scoring() const {
  std::lock_guard lock(gpu_mu_);
  return gpu_ != nullptr;
}

struct RetrievalIndex::IndexState {
  std::string spec;
  std::unique_ptr<index::Retriever> retriever;
  std::vector<float> keys;  // [kv_heads][tokens][head_dim], viewed by the retriever
  uint32_t blocks = 0;      // blocks indexed
  std::unique_ptr<index::TriggerBank> triggers;
};

Result<std::shared_ptr<RetrievalIndex::IndexState>> RetrievalIndex::BuildIndex(uint32_t n, const RetrievalPolicy& policy,
                                                                              const BlockReader& read_block) const {
  const uint32_t bt = model_.block_tokens, kvh = model_.num_kv_heads, d = model_.head_dim;
  auto fresh = std::make_shared<IndexState>();
  fresh->spec = policy.index_spec;
  ASSIGN_OR_RETURN(fresh->retriever, index::MakeRetriever(policy.index_spec));
  fresh->blocks = n;
  const uint64_t tokens = uint64_t{n} * bt;
  fresh->keys.assign(uint64_t{kvh} * tokens * d, 0.f);
  std::vector<std::byte> payload(model_.BlockBytes());
  for (uint32_t b = 0; b < n; ++b) {
    if (!read_block(b, payload).ok()) continue;  // a hole: zero keys
    for (uint32_t g = 0; g < kvh; ++g) {
      for (uint32_t t = 0; t < bt; ++t) {
        float* dst = &fresh->keys[(uint64_t{g} * tokens + uint64_t{b} * bt + t) * d];
        for (uint32_t i = 0; i < d; ++i) dst[i] = Element(payload.data(), model_.dtype, (size_t{g} * bt + t) * d + i);
      }
    }
  }
  index::LayerKeys keys;
  keys.num_kv_heads = kvh;
  keys.head_dim = d;
  keys.num_tokens = tokens;
  keys.keys = fresh->keys.data();
  index::RetrieverParams params;
  params.block_tokens = bt;
  params.num_q_heads = model_.num_q_heads;
  params.head_combine = policy.combine == kernels::HeadCombine::kMax ? index::HeadCombine::kMax
                                                                    : index::HeadCombine::kSum;
  RETURN_IF_ERROR(fresh->retriever->Build(keys, params));
  index::TriggerConfig tc;
  tc.kind = policy.trigger == Trigger::kDrift    ? index::TriggerConfig::Kind::kDrift
            : policy.trigger == Trigger::kEveryN ? index::TriggerConfig::Kind::kEveryN
                                                 : index::TriggerConfig::Kind::kEveryStep;
  tc.tau = policy.drift_tau;
  tc.every_n = policy.every_n;
  fresh->triggers = std::make_unique<index::TriggerBank>(tc);
  return fresh;
}

// The index/ path: (re)build when needed, then select through a TriggerBank on the
// indexed blocks; blocks added since the build are all in the recent window.
Result<Selection> RetrievalIndex::SelectWithIndex(LayerState& s, uint64_t seq, uint32_t layer, uint32_t n,
                                                  std::span<const float> query, uint32_t k, uint32_t sinks,
                                                  uint32_t window, const RetrievalPolicy& policy,
                                                  const BlockReader& read_block, std::unique_lock<std::mutex>& lock) {
  std::shared_ptr<IndexState> st = s.index;
  const uint32_t bt = model_.block_tokens;
  const bool stale = !st || st->spec != policy.index_spec || n > st->blocks + window;
  if (stale) {
    lock.unlock();  // building reads every block back; the summaries are not needed
    auto built = BuildIndex(n, policy, read_block);
    lock.lock();
    if (!built.ok()) return built.status();
    st = std::move(built).value();
    s.index = st;
  }
  // Select among the indexed blocks as if the step were the last indexed token.
  const uint32_t m = st->blocks;
  std::vector<uint32_t> always;
  for (uint32_t b = 0; b < m; ++b) {
    if (b < sinks || b + window >= n) always.push_back(b);
  }
  index::QueryView q;
  q.num_q_heads = model_.num_q_heads;
  q.head_dim = model_.head_dim;
  q.q = query.data();
  q.position = uint64_t{m} * bt - 1;
  Selection sel;
  const uint32_t newer = n - m;  // all in the recent window: always selected
  const uint32_t budget = std::max<uint32_t>(k > newer ? k - newer : 0, static_cast<uint32_t>(always.size()));
  RETURN_IF_ERROR(st->triggers->Select(seq, layer, st->retriever.get(), q, std::min(budget, m), always, &sel.blocks,
                                       &sel.triggered));
  for (uint32_t b = m; b < n; ++b) sel.blocks.push_back(b);
  if (sel.blocks.size() > k) sel.blocks = CapSelection(sel.blocks, n, n, k, sinks, window);
  return sel;
}

std::vector<RetrievalIndex::StatePtr> RetrievalIndex::Snapshot() const {
  std::lock_guard lock(map_mu_);
  std::vector<StatePtr> out;
  out.reserve(layers_.size());
  for (const auto& [key, s] : layers_) out.push_back(s);
  return out;
}

size_t RetrievalIndex::SummaryBytes() const {
  size_t bytes = 0;
  for (const StatePtr& state : Snapshot()) {
    std::lock_guard lock(state->mu);
    const LayerState& s = *state;
    bytes += (s.min.capacity() + s.max.capacity() + s.mean.capacity() + s.last_query.capacity()) * sizeof(float) +
             s.last_selection.capacity() * sizeof(uint32_t);
    if (s.index) bytes += s.index->keys.capacity() * sizeof(float) + s.index->retriever->IndexBytes();
  }
  return bytes;
}

size_t RetrievalIndex::DeviceSummaryBytes() const {
  size_t bytes = 0;
  for (const StatePtr& state : Snapshot()) {
    std::lock_guard lock(state->mu);
    bytes += state->device.buffer.size();
  }
  return bytes;
}

}  // namespace tierkv::daemon
