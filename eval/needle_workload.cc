#include "eval/needle_workload.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "index/rng.h"
#include "index/rope.h"
#include "eval/workload_vectors.h"

namespace tierkv::index {
namespace {
using workload::Axpy;
using workload::PairsChannels;

// Random streams (Rng::Derive(seed, layer, stream + index)).
// Norm of the local direction in every key of a local head (the query holds
// local_logit / kLocalKeyNorm of it: the logit at distance 0 is local_logit).
constexpr float kLocalKeyNorm = 3.f;
constexpr uint64_t kRoles = 1, kHead = 1u << 20, kNeedles = 2u << 20, kKeys = 3u << 20, kQuestion = 4u << 20,
                   kQueryNoise = 5u << 20, kSegmentDirs = 6u << 20;

Status Check(bool ok, const char* field) {
  return ok ? OkStatus() : InvalidArgument(std::string("needle workload: ") + field + " is out of range");
}

// Everything of one (layer, KV head) but the token noise.
struct HeadModel {
  bool local = false;
  std::vector<float> mu, sink, local_dir;
  std::vector<std::vector<float>> segment_dirs, value_dirs, needle_dirs;
  std::vector<uint64_t> needles;  // positions, increasing
};

}  // namespace

Status NeedleWorkloadParams::Validate() const {
  RETURN_IF_ERROR(Check(num_layers >= 1 && num_layers <= TraceLimits::kMaxLayers, "num_layers"));
  RETURN_IF_ERROR(Check(num_kv_heads >= 1 && num_q_heads % num_kv_heads == 0 && num_q_heads <= TraceLimits::kMaxHeads,
                        "num_q_heads / num_kv_heads"));
  RETURN_IF_ERROR(Check(head_dim >= 32 && head_dim % 2 == 0 && head_dim <= TraceLimits::kMaxHeadDim, "head_dim"));
  RETURN_IF_ERROR(Check(rope_style != RopeStyle::kUnknown && rope_theta > 1.0, "rope"));
  RETURN_IF_ERROR(Check(num_steps >= 1 && num_steps < num_tokens, "num_steps"));
  RETURN_IF_ERROR(Check(num_tokens <= TraceLimits::kMaxTokens, "num_tokens"));
  RETURN_IF_ERROR(Check(segment_tokens >= 2, "segment_tokens"));
  RETURN_IF_ERROR(Check(needles_per_step <= needles_per_head, "needles_per_step"));
  RETURN_IF_ERROR(Check(needle_pairs >= 1 && needle_pairs + 1 < head_dim / 4, "needle_pairs"));
  RETURN_IF_ERROR(Check(steps_per_question >= 1, "steps_per_question"));
  RETURN_IF_ERROR(Check(local_heads >= 0.f && local_heads <= 1.f, "local_heads"));
  RETURN_IF_ERROR(Check(norm_sigma >= 0.f && norm_sigma <= 2.f, "norm_sigma"));
  const uint64_t first_step = num_tokens - num_steps;
  RETURN_IF_ERROR(Check(needles_per_head == 0 || first_step > sink_tokens + 16 + needle_min_distance + needles_per_head,
                        "num_tokens (too short for the needles)"));
  return OkStatus();
}

Result<std::unique_ptr<NeedleWorkload>> NeedleWorkload::Create(const NeedleWorkloadParams& params) {
  RETURN_IF_ERROR(params.Validate());
  std::unique_ptr<NeedleWorkload> w(new NeedleWorkload(params));
  TraceInfo& info = w->info_;
  info.num_layers = params.num_layers;
  info.num_q_heads = params.num_q_heads;
  info.num_kv_heads = params.num_kv_heads;
  info.head_dim = params.head_dim;
  info.num_tokens = params.num_tokens;
  info.rope_style = params.rope_style;
  info.rope_theta = params.rope_theta;
  for (uint64_t t = params.num_tokens - params.num_steps; t < params.num_tokens; ++t) info.step_positions.push_back(t);
  Rng rng(Rng::Derive(params.seed, 0, 0));
  for (uint64_t t = 0; t < params.num_tokens;) {
    w->segment_starts_.push_back(t);
    t += params.segment_tokens / 2 + rng.Below(params.segment_tokens + 1);
  }
  for (uint64_t t = 0; t < params.num_tokens; t += 12 + rng.Below(25)) info.sentence_starts.push_back(t);
  info.description = "needles workload seed=" + std::to_string(params.seed) + " tokens=" +
                     std::to_string(params.num_tokens) + " (eval/needle_workload.h)";
  RETURN_IF_ERROR(info.Validate());
  return w;
}

bool NeedleWorkload::IsLocal(uint32_t layer, uint32_t kv_head) const {
  std::vector<uint32_t> order(p_.num_kv_heads);
  std::iota(order.begin(), order.end(), 0u);
  Rng rng(Rng::Derive(p_.seed, layer, kRoles));
  for (uint32_t i = p_.num_kv_heads; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
  const auto n = static_cast<uint32_t>(std::lround(p_.local_heads * p_.num_kv_heads));
  return std::find(order.begin(), order.begin() + n, kv_head) != order.begin() + n;
}

std::vector<uint64_t> NeedleWorkload::NeedlePositions(uint32_t layer, uint32_t kv_head) const {
  Rng rng(Rng::Derive(p_.seed, layer, kNeedles + kv_head));
  const uint64_t lo = p_.sink_tokens + 16, hi = info_.step_positions[0] - p_.needle_min_distance;
  std::vector<uint64_t> pos;
  while (pos.size() < p_.needles_per_head) {
    const uint64_t t = lo + rng.Below(hi - lo);
    if (std::find(pos.begin(), pos.end(), t) == pos.end()) pos.push_back(t);
  }
  std::sort(pos.begin(), pos.end());
  return pos;
}

Status NeedleWorkload::LoadLayer(uint32_t index, TraceLayer* out) {
  if (index >= p_.num_layers) return InvalidArgument("layer " + std::to_string(index) + " out of range");
  const uint32_t d = p_.head_dim, kv = p_.num_kv_heads, group = p_.num_q_heads / kv, pairs = d / 2;
  const uint64_t T = p_.num_tokens, S = p_.num_steps, segments = segment_starts_.size();
  const float s = std::sqrt(static_cast<float>(d));
  out->Resize(info_);
  std::vector<uint32_t> all(d);
  std::iota(all.begin(), all.end(), 0u);
  // Pair i turns at theta^(-2i/d): the last pairs are the slowest.
  const std::vector<uint32_t> sink_ch = PairsChannels(p_.rope_style, d, pairs - 1, pairs);
  const std::vector<uint32_t> needle_ch = PairsChannels(p_.rope_style, d, pairs - 1 - p_.needle_pairs, pairs - 1);
  std::vector<uint32_t> local_pairs;
  for (uint32_t i = 0; i < pairs; ++i) {
    const double period = 2.0 * 3.14159265358979 / RopeFrequency(i, d, p_.rope_theta);
    if (period >= 32.0 && period <= 2048.0) local_pairs.push_back(i);
  }
  std::vector<uint32_t> local_ch;
  for (uint32_t i : local_pairs) {
    const auto c = PairsChannels(p_.rope_style, d, i, i + 1);
    local_ch.insert(local_ch.end(), c.begin(), c.end());
  }
  auto segment_of = [&](uint64_t t) {
    return static_cast<uint64_t>(std::upper_bound(segment_starts_.begin(), segment_starts_.end(), t) -
                                 segment_starts_.begin() - 1);
  };
  RopeAngles rope(d, p_.rope_theta);
  for (uint32_t g = 0; g < kv; ++g) {
    HeadModel hm;
    hm.local = IsLocal(index, g);
    Rng rng(Rng::Derive(p_.seed, index, kHead + g));
    hm.mu = workload::UnitOn(all, d, &rng);
    for (float& x : hm.mu) x *= p_.key_mean_norm;
    hm.sink = workload::UnitOn(sink_ch, d, &rng);
    hm.local_dir = local_ch.empty() ? std::vector<float>(d, 0.f) : workload::UnitOn(local_ch, d, &rng);
    Rng srng(Rng::Derive(p_.seed, index, kSegmentDirs + g));
    for (uint64_t j = 0; j < segments; ++j) {
      hm.segment_dirs.push_back(workload::UnitOn(all, d, &srng));
      hm.value_dirs.push_back(workload::UnitOn(all, d, &srng));
    }
    hm.needles = NeedlePositions(index, g);
    for (size_t j = 0; j < hm.needles.size(); ++j) hm.needle_dirs.push_back(workload::UnitOn(needle_ch, d, &rng));
    // Keys and values.
    Rng krng(Rng::Derive(p_.seed, index, kKeys + g));
    size_t next_needle = 0;
    for (uint64_t t = 0; t < T; ++t) {
      const size_t off = (uint64_t{g} * T + t) * d;
      float* kp = out->keys_pre.data() + off;
      float* k = out->keys.data() + off;
      float* v = out->values.data() + off;
      const float scale = static_cast<float>(std::exp(p_.norm_sigma * krng.Normal() - 0.5 * p_.norm_sigma * p_.norm_sigma));
      for (uint32_t c = 0; c < d; ++c) {
        kp[c] = hm.mu[c] + scale * p_.key_noise * static_cast<float>(krng.Normal());
        v[c] = static_cast<float>(krng.Normal());
      }
      const uint64_t seg = segment_of(t);
      Axpy(p_.segment_strength, hm.segment_dirs[seg], kp);
      Axpy(2.f, hm.value_dirs[seg], v);
      if (t < p_.sink_tokens) Axpy(p_.sink_logit, hm.sink, kp);
      if (hm.local) Axpy(kLocalKeyNorm, hm.local_dir, kp);
      while (next_needle < hm.needles.size() && hm.needles[next_needle] == t) {
        Axpy(p_.needle_logit, hm.needle_dirs[next_needle], kp);
        ++next_needle;
      }
      std::copy_n(kp, d, k);
      rope.SetPosition(static_cast<double>(t));
      rope.Apply(k, p_.rope_style);
    }
    // Queries of the group's heads.
    const uint64_t seg_first = segment_of(info_.step_positions[0]);
    for (uint64_t st = 0; st < S; ++st) {
      const uint64_t pos = info_.step_positions[st], question = st / p_.steps_per_question;
      Rng qrng(Rng::Derive(p_.seed, index, kQuestion + (uint64_t{g} << 24) + question));
      std::vector<uint32_t> order(hm.needles.size());
      std::iota(order.begin(), order.end(), 0u);
      for (uint32_t i = 0; i < p_.needles_per_step; ++i) std::swap(order[i], order[i + qrng.Below(order.size() - i)]);
      const uint64_t recalled = seg_first > 0 ? qrng.Below(seg_first) : 0;
      for (uint32_t j = 0; j < group; ++j) {
        const uint32_t h = g * group + j;
        const float w = static_cast<float>(0.5 + qrng.Uniform());
        const size_t off = (st * p_.num_q_heads + h) * d;
        float* qp = out->queries_pre.data() + off;
        float* q = out->queries.data() + off;
        std::fill(qp, qp + d, 0.f);
        Axpy(1.f, hm.sink, qp);
        if (hm.local) {
          Axpy(0.3f * w, hm.segment_dirs[segment_of(pos)], qp);
          Axpy(p_.local_logit / kLocalKeyNorm, hm.local_dir, qp);
        } else {
          Axpy(w, hm.segment_dirs[segment_of(pos)], qp);
          Axpy(p_.recall_weight, hm.segment_dirs[recalled], qp);
          for (uint32_t i = 0; i < p_.needles_per_step; ++i) Axpy(1.f, hm.needle_dirs[order[i]], qp);
        }
        Rng nrng(Rng::Derive(p_.seed, index, kQueryNoise + (uint64_t{h} << 24) + st));
        for (uint32_t c = 0; c < d; ++c) qp[c] = s * qp[c] + p_.query_noise * static_cast<float>(nrng.Normal());
        std::copy_n(qp, d, q);
        rope.SetPosition(static_cast<double>(pos));
        rope.Apply(q, p_.rope_style);
      }
    }
  }
  return OkStatus();
}

}  // namespace tierkv::index
