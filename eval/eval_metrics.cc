#include "eval/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tierkv::index {

namespace {

// |S' ∩ E'| / |S'| with S' = selected minus always-kept (see the header).
double TopKRecall(const std::vector<double>& summed, std::span<const uint32_t> selected,
                  const std::vector<bool>& kept) {
  std::vector<double> candidates, chosen;
  for (size_t b = 0; b < summed.size(); ++b) {
    if (!kept[b]) candidates.push_back(summed[b]);
  }
  for (uint32_t b : selected) {
    if (!kept[b]) chosen.push_back(summed[b]);
  }
  if (chosen.empty()) return 1.0;
  const size_t k = chosen.size();
  std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end(), std::greater<double>());
  const double threshold = candidates[k - 1];
  const size_t hits = std::count_if(chosen.begin(), chosen.end(), [&](double m) { return m >= threshold; });
  return static_cast<double>(hits) / static_cast<double>(k);
}

}  // namespace

Status EvaluateSelection(const LayerKeys& layer, const QueryView& query, const ExactAttention& exact,
                         uint32_t block_tokens, std::span<const uint32_t> selected,
                         std::span<const uint32_t> always_kept, uint64_t block_bytes, SelectionMetrics* out) {
  const std::vector<std::vector<uint32_t>> one = {std::vector<uint32_t>(selected.begin(), selected.end())};
  return EvaluateHeadSelection(layer, query, exact, block_tokens, one, always_kept, block_bytes, out);
}

Status EvaluateHeadSelection(const LayerKeys& layer, const QueryView& query, const ExactAttention& exact,
                             uint32_t block_tokens, std::span<const std::vector<uint32_t>> per_head,
                             std::span<const uint32_t> always_kept, uint64_t block_bytes, SelectionMetrics* out) {
  RETURN_IF_ERROR(CheckQueryFitsLayer(layer, query));
  if (block_tokens == 0) return InvalidArgument("block_tokens must be > 0");
  if (exact.num_visible != query.position + 1 || exact.num_q_heads != query.num_q_heads ||
      exact.probs.size() != size_t{exact.num_q_heads} * exact.num_visible) {
    return InvalidArgument("exact attention was not computed for this query");
  }
  const uint32_t kv = layer.num_kv_heads;
  if (per_head.size() != 1 && per_head.size() != kv) {
    return InvalidArgument("a selection has " + std::to_string(per_head.size()) + " entries: 1 (per layer) or " +
                           std::to_string(kv) + " (per KV head) expected");
  }
  const uint64_t n = exact.num_visible, blocks = (n + block_tokens - 1) / block_tokens;
  RETURN_IF_ERROR(CheckBlockList("always-kept", always_kept, blocks));
  std::vector<bool> kept(blocks, false);
  for (uint32_t b : always_kept) kept[b] = true;
  uint64_t selected_total = 0;
  for (size_t g = 0; g < per_head.size(); ++g) {
    Status s = CheckBlockList("selected", per_head[g], blocks);
    if (!s.ok()) return per_head.size() == 1 ? s : s.WithContext("KV head " + std::to_string(g));
    std::vector<bool> in_sel(blocks, false);
    for (uint32_t b : per_head[g]) in_sel[b] = true;
    for (uint32_t b : always_kept) {
      if (!in_sel[b]) return InvalidArgument("always-kept block " + std::to_string(b) + " is not selected");
    }
    selected_total += per_head[g].size();
  }

  const uint32_t heads = exact.num_q_heads, d = exact.head_dim, group = heads / kv;
  const bool with_output = layer.values != nullptr && exact.output.size() == size_t{heads} * d;
  double mass_sum = 0.0, mass_min = 1.0, kl_sum = 0.0, err2 = 0.0, ref2 = 0.0;
  std::vector<double> o(d);
  out->head_mass_recall.assign(heads, 0.0);
  for (uint32_t h = 0; h < heads; ++h) {
    const std::vector<uint32_t>& selected = per_head.size() == 1 ? per_head[0] : per_head[h / group];
    const float* p = exact.probs.data() + size_t{h} * n;
    double m = 0.0;
    std::fill(o.begin(), o.end(), 0.0);
    for (uint32_t b : selected) {
      const uint64_t end = std::min<uint64_t>(n, (uint64_t{b} + 1) * block_tokens);
      for (uint64_t t = uint64_t{b} * block_tokens; t < end; ++t) {
        m += p[t];
        if (!with_output) continue;
        const float* v = layer.Value(h / group, t);
        for (uint32_t i = 0; i < d; ++i) o[i] += double(p[t]) * v[i];
      }
    }
    mass_sum += m;
    mass_min = std::min(mass_min, m);
    out->head_mass_recall[h] = m;
    // KL(q || p) with q = p / m on the selected tokens: sum_t q_t log(q_t / p_t) = -log m.
    const double kl = -std::log(std::max(m, 1e-30));
    kl_sum += kl;
    if (!with_output) continue;
    for (uint32_t i = 0; i < d; ++i) {
      const double full = exact.output[size_t{h} * d + i], restricted = m > 1e-30 ? o[i] / m : 0.0;
      err2 += (restricted - full) * (restricted - full);
      ref2 += full * full;
    }
  }
  out->mass_recall = mass_sum / heads;
  out->min_head_mass_recall = mass_min;
  out->kl_divergence = kl_sum / heads;
  out->output_rel_error = with_output ? std::sqrt(err2 / std::max(ref2, 1e-300)) : 0.0;
  if (per_head.size() == 1) {
    out->topk_recall = TopKRecall(SummedBlockMass(exact, block_tokens), per_head[0], kept);
  } else {
    const std::vector<double> gm = GroupBlockMass(exact, kv, block_tokens);
    double sum = 0.0;
    for (uint32_t g = 0; g < kv; ++g) {
      sum += TopKRecall(std::vector<double>(gm.begin() + g * blocks, gm.begin() + (g + 1) * blocks), per_head[g], kept);
    }
    out->topk_recall = sum / kv;
  }
  const uint64_t entries = per_head.size();
  out->selected_blocks = (selected_total + entries / 2) / entries;
  out->retrieved_blocks = out->selected_blocks - always_kept.size();
  // A per-head block is 1/kv of a layer block: bytes = sum of (head, block) pairs * block_bytes / kv.
  out->bytes_selected = entries == 1 ? selected_total * block_bytes : selected_total * block_bytes / kv;
  const uint64_t retrieved_pairs = selected_total - entries * always_kept.size();
  out->bytes_retrieved = entries == 1 ? retrieved_pairs * block_bytes : retrieved_pairs * block_bytes / kv;
  return OkStatus();
}

}  // namespace tierkv::index
