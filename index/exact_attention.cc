#include "index/exact_attention.h"

#include <algorithm>
#include <cmath>

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

}  // namespace tierkv::index
