#include "index/trigger.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "index/spec.h"

namespace tierkv::index {

Result<TriggerConfig> TriggerConfig::Parse(std::string_view text) {
  ParsedSpec s;
  RETURN_IF_ERROR(ParseSpec(text, &s));
  TriggerConfig c;
  if (s.name() == "every") {
    uint32_t n = 1;
    RETURN_IF_ERROR(s.GetUint32("n", 1, 1, 1u << 30, &n));
    c.kind = n == 1 ? Kind::kEveryStep : Kind::kEveryN;
    if (n > 1) c.every_n = n;
  } else if (s.name() == "drift") {
    c.kind = Kind::kDrift;
    RETURN_IF_ERROR(s.GetDouble("tau", TriggerConfig().tau, -1.0, 1.0, &c.tau));
    std::string rope;
    RETURN_IF_ERROR(s.GetWord("rope", "pre", {"pre", "post"}, &rope));
    c.post_rope = rope == "post";
  } else {
    return InvalidArgument("unknown trigger '" + s.name() + "'; known: every, every:n=N, drift:tau=T");
  }
  RETURN_IF_ERROR(s.CheckAllUsed());
  return c;
}

std::string TriggerConfig::ToString() const {
  char buf[64];
  switch (kind) {
    case Kind::kEveryStep:
      return "every";
    case Kind::kEveryN:
      return "every:n=" + std::to_string(every_n);
    case Kind::kDrift:
      std::snprintf(buf, sizeof(buf), "drift:tau=%g%s", tau, post_rope ? ",rope=post" : "");
      return buf;
  }
  return "?";
}

double TriggerBank::MinHeadCosine(const float* a, const float* b, uint32_t num_heads, uint32_t head_dim) {
  double worst = 1.0;
  for (uint32_t h = 0; h < num_heads; ++h) {
    double ab = 0, aa = 0, bb = 0;
    for (uint32_t c = 0; c < head_dim; ++c) {
      const double x = a[size_t{h} * head_dim + c], y = b[size_t{h} * head_dim + c];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    if (aa > 0 && bb > 0) worst = std::min(worst, ab / std::sqrt(aa * bb));
  }
  return worst;
}

bool TriggerBank::ShouldRetrieve(const Stream& s, const QueryView& query) const {
  switch (config_.kind) {
    case TriggerConfig::Kind::kEveryStep:
      return true;
    case TriggerConfig::Kind::kEveryN:
      return s.steps_since + 1 >= config_.every_n;
    case TriggerConfig::Kind::kDrift:
      return MinHeadCosine(DriftQuery(query), s.last_query.data(), query.num_q_heads, query.head_dim) < config_.tau;
  }
  return true;
}

const float* TriggerBank::DriftQuery(const QueryView& query) const {
  return query.q_pre != nullptr && !config_.post_rope ? query.q_pre : query.q;
}

bool TriggerBank::WouldRetrieve(uint64_t sequence, uint32_t layer, const QueryView& query) const {
  auto it = streams_.find({sequence, layer, kWholeLayer});
  if (it == streams_.end()) return true;
  if (it->second.last_query.size() != size_t{query.num_q_heads} * query.head_dim) return true;  // Select refuses it
  return ShouldRetrieve(it->second, query);
}

Status TriggerBank::SelectAll(uint64_t sequence, uint32_t layer, const QueryView& query, uint32_t block_tokens,
                              std::span<const uint32_t> always_kept, std::vector<uint32_t>* selected,
                              bool* retrieved) {
  if (block_tokens == 0) return InvalidArgument("trigger: block_tokens must be >= 1");
  return SelectStream({sequence, layer, kWholeLayer}, nullptr, block_tokens, query, 0, always_kept, selected,
                      retrieved);
}

void TriggerBank::Reuse(const Stream& s, uint64_t visible, uint64_t want, std::span<const uint32_t> always_kept,
                        std::vector<uint32_t>* selected) {
  std::vector<bool> in(visible, false);
  selected->assign(always_kept.begin(), always_kept.end());
  for (uint32_t b : always_kept) in[b] = true;
  // Retrieved blocks that fit, highest index first (the lowest are dropped).
  std::vector<uint32_t> add;
  for (uint32_t b : s.retrieved) {
    if (b < visible && !in[b]) add.push_back(b);
  }
  std::reverse(add.begin(), add.end());
  // Then blocks that just left the window, then the most recent others.
  std::vector<uint32_t> left;
  for (uint32_t b : s.last_kept) {
    if (b < visible && !in[b]) left.push_back(b);
  }
  std::reverse(left.begin(), left.end());
  add.insert(add.end(), left.begin(), left.end());
  for (uint32_t b : add) {
    if (selected->size() >= want) break;
    if (!in[b]) {
      in[b] = true;
      selected->push_back(b);
    }
  }
  for (uint64_t b = visible; b-- > 0 && selected->size() < want;) {
    if (!in[b]) {
      in[b] = true;
      selected->push_back(static_cast<uint32_t>(b));
    }
  }
  std::sort(selected->begin(), selected->end());
}

Status TriggerBank::Select(uint64_t sequence, uint32_t layer, Retriever* retriever, const QueryView& query,
                           uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                           std::vector<uint32_t>* selected, bool* retrieved) {
  return SelectStream({sequence, layer, kWholeLayer}, retriever, retriever->params().block_tokens, query,
                      budget_blocks, always_kept, selected, retrieved);
}

Status TriggerBank::SelectHeads(uint64_t sequence, uint32_t layer, Retriever* retriever, const QueryView& query,
                                uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                                std::vector<std::vector<uint32_t>>* per_head, bool* retrieved) {
  if (retriever->granularity() == Granularity::kLayer) {
    per_head->resize(1);
    return Select(sequence, layer, retriever, query, budget_blocks, always_kept, &(*per_head)[0], retrieved);
  }
  const uint32_t kv = retriever->layer().num_kv_heads;
  if (kv == 0 || retriever->HeadRetriever(0) == nullptr) {
    return InvalidArgument("trigger: " + retriever->Name() + " is not built");
  }
  if (query.num_q_heads != retriever->params().num_q_heads) {
    return InvalidArgument("trigger: query has " + std::to_string(query.num_q_heads) + " heads, " +
                           retriever->Name() + " was built for " + std::to_string(retriever->params().num_q_heads));
  }
  per_head->resize(kv);
  *retrieved = false;
  for (uint32_t h = 0; h < kv; ++h) {
    Retriever* r = retriever->HeadRetriever(h);
    if (r == nullptr) return Internal("trigger: " + retriever->Name() + " has no retriever for KV head " + std::to_string(h));
    bool took = false;
    RETURN_IF_ERROR(SelectStream({sequence, layer, h}, r, r->params().block_tokens, QueryOfHead(query, kv, h),
                                 budget_blocks, always_kept, &(*per_head)[h], &took));
    *retrieved = *retrieved || took;
  }
  return OkStatus();
}

Status TriggerBank::SelectStream(const StreamKey& key, Retriever* retriever, uint32_t block_tokens,
                                 const QueryView& query, uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                                 std::vector<uint32_t>* selected, bool* retrieved) {
  const uint64_t visible = VisibleBlocks(query.position, block_tokens);
  if (retriever == nullptr) budget_blocks = static_cast<uint32_t>(std::min<uint64_t>(visible, UINT32_MAX));
  RETURN_IF_ERROR(CheckBlockList("always-kept", always_kept, visible));
  auto [it, inserted] = streams_.try_emplace(key);
  Stream& s = it->second;
  const size_t qn = size_t{query.num_q_heads} * query.head_dim;
  const bool fresh = inserted || s.last_query.empty();  // empty: its first step failed
  if (!fresh) {
    if (query.position < s.last_position) {
      return InvalidArgument("trigger: step at position " + std::to_string(query.position) +
                             " comes after one at " + std::to_string(s.last_position));
    }
    if (s.last_query.size() != qn) return InvalidArgument("trigger: query shape changed within a stream");
  }
  *retrieved = fresh || ShouldRetrieve(s, query);
  if (*retrieved) {
    if (retriever != nullptr) {
      RETURN_IF_ERROR(retriever->Select(query, budget_blocks, always_kept, selected));
    } else {  // what any retriever's Select returns when the budget covers every visible block
      selected->resize(visible);
      std::iota(selected->begin(), selected->end(), 0u);
    }
    const float* q = DriftQuery(query);
    s.last_query.assign(q, q + qn);
    s.retrieved.clear();
    std::set_difference(selected->begin(), selected->end(), always_kept.begin(), always_kept.end(),
                        std::back_inserter(s.retrieved));
    s.steps_since = 0;
    ++stats_.taken;
  } else {
    const uint64_t want = std::min<uint64_t>(visible, std::max<uint64_t>(budget_blocks, always_kept.size()));
    Reuse(s, visible, want, always_kept, selected);
    ++s.steps_since;
    ++stats_.skipped;
  }
  s.last_kept.assign(always_kept.begin(), always_kept.end());
  s.last_position = query.position;
  return OkStatus();
}

void TriggerBank::Forget(uint64_t sequence) {
  streams_.erase(streams_.lower_bound({sequence, 0, 0}), streams_.upper_bound({sequence, UINT32_MAX, UINT32_MAX}));
}

}  // namespace tierkv::index
