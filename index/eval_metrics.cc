#include "index/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tierkv::index {

Status ComputeExactAttention(const LayerKeys& layer, const QueryView& query, ExactAttention* out) {
  RETURN_IF_ERROR(CheckQueryFitsLayer(layer, query));
  const uint32_t d = layer.head_dim, heads = query.num_q_heads, group = heads / layer.num_kv_heads;
  const uint64_t n = query.position + 1;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  out->num_q_heads = heads;
  out->head_dim = d;
  out->num_visible = n;
  out->probs.resize(size_t{heads} * n);
  out->output.assign(layer.values != nullptr ? size_t{heads} * d : 0, 0.f);
  std::vector<double> acc(d);
  for (uint32_t h = 0; h < heads; ++h) {
    const float* q = query.q + size_t{h} * d;
    float* p = out->probs.data() + size_t{h} * n;
    float mx = -INFINITY;
    for (uint64_t t = 0; t < n; ++t) {
      const float* k = layer.Key(h / group, t);
      float dot = 0.f;
      for (uint32_t i = 0; i < d; ++i) dot += q[i] * k[i];
      p[t] = dot * scale;
      mx = std::max(mx, p[t]);
    }
    double sum = 0.0;
    for (uint64_t t = 0; t < n; ++t) sum += (p[t] = std::exp(p[t] - mx));
    const double inv = 1.0 / sum;
    for (uint64_t t = 0; t < n; ++t) p[t] = static_cast<float>(p[t] * inv);
    if (layer.values == nullptr) continue;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (uint64_t t = 0; t < n; ++t) {
      const float* v = layer.Value(h / group, t);
      for (uint32_t i = 0; i < d; ++i) acc[i] += double(p[t]) * v[i];
    }
    for (uint32_t i = 0; i < d; ++i) out->output[size_t{h} * d + i] = static_cast<float>(acc[i]);
  }
  return OkStatus();
}

std::vector<double> BlockMassPerHead(const ExactAttention& exact, uint32_t block_tokens) {
  const uint64_t n = exact.num_visible, blocks = (n + block_tokens - 1) / block_tokens;
  std::vector<double> mass(exact.num_q_heads * blocks, 0.0);
  for (uint32_t h = 0; h < exact.num_q_heads; ++h) {
    const float* p = exact.probs.data() + size_t{h} * n;
    for (uint64_t t = 0; t < n; ++t) mass[h * blocks + t / block_tokens] += p[t];
  }
  return mass;
}

std::vector<double> SummedBlockMass(const ExactAttention& exact, uint32_t block_tokens) {
  const std::vector<double> per_head = BlockMassPerHead(exact, block_tokens);
  const size_t blocks = per_head.size() / std::max<uint32_t>(exact.num_q_heads, 1);
  std::vector<double> sum(blocks, 0.0);
  for (size_t i = 0; i < per_head.size(); ++i) sum[i % blocks] += per_head[i];
  return sum;
}

Status CheckBlockList(const char* what, std::span<const uint32_t> blocks, uint64_t num_blocks) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] >= num_blocks) {
      return InvalidArgument(std::string(what) + " block " + std::to_string(blocks[i]) + " is not below the " +
                             std::to_string(num_blocks) + " visible blocks");
    }
    if (i > 0 && blocks[i] <= blocks[i - 1]) {
      return InvalidArgument(std::string(what) + " blocks must be strictly increasing (entry " + std::to_string(i) +
                             ")");
    }
  }
  return OkStatus();
}

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

std::vector<double> GroupBlockMass(const ExactAttention& exact, uint32_t num_kv_heads, uint32_t block_tokens) {
  const std::vector<double> per_head = BlockMassPerHead(exact, block_tokens);
  const size_t blocks = per_head.size() / std::max<uint32_t>(exact.num_q_heads, 1);
  const uint32_t group = exact.num_q_heads / num_kv_heads;
  std::vector<double> sum(size_t{num_kv_heads} * blocks, 0.0);
  for (uint32_t h = 0; h < exact.num_q_heads; ++h) {
    for (size_t b = 0; b < blocks; ++b) sum[(h / group) * blocks + b] += per_head[h * blocks + b];
  }
  return sum;
}

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
