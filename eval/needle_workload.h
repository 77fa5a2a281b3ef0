// The second synthetic workload family ("needles", issue 12), designed apart
// from the retrieval methods and from the v2 generator (synthetic.h), with other
// statistics: long topic segments whose keys share a direction, several needles
// per KV head at random depths, heads that attend locally, weak sinks and no
// outlier channels. Seeded and reproducible, one layer at a time.
//
// The model of one (layer, KV head), s = sqrt(head_dim), everything pre-RoPE
// (keys and queries are then rotated by their positions):
//   text:    topic segments of ~segment_tokens tokens (uniform in [n/2, 3n/2]),
//            each with its own random unit direction c_j per KV head (every
//            channel); "sentences" of 12..36 tokens (boundaries only, no signal).
//   key:     k_t = mu + segment_strength * c_seg(t) + g_t * N(0, key_noise^2 I)
//                  + [t < sink_tokens] sink_logit * e_sink + [local head] 3 l
//                  + [t is needle j] needle_logit * u_j
//            mu: a per-head offset of norm key_mean_norm; g_t: a per-token
//            log-normal scale (sigma norm_sigma, mean 1): heavy-tailed key norms;
//            e_sink: a unit vector on the lowest-frequency RoPE pair.
//   needles: needles_per_head tokens per KV head at uniform random depths in
//            [sink_tokens + 16, first step - needle_min_distance); each has a
//            random unit direction u_j on the needle_pairs lowest-frequency RoPE
//            pairs (the channels that rotate least, so a needle matches at any
//            depth as content does in trained models). Every
//            steps_per_question decode steps each non-local KV head asks
//            needles_per_step of its needles (drawn anew).
//   query:   q = s * (e_sink + w * c_seg(p) + recall_weight * c_r + sum_asked u_j)
//                + N(0, query_noise^2 I)           (retrieval heads)
//            q = s * (e_sink + 0.3 w * c_seg(p) + local_logit / 3 * l) + noise  (local heads)
//            w ~ U[0.5, 1.5] per query head and question; c_r: the direction of
//            a random earlier segment (long-range topic recall), redrawn per
//            question; a share local_heads of each layer's KV heads are local:
//            l is a unit vector on the RoPE pairs of period 32..2048 tokens, so
//            after RoPE q.k falls off with the distance (a few hundred tokens).
//   values:  v_t = 2 * c'_seg(t) + N(0, I).
// Decode steps are the last num_steps positions.
// Thread-safety: LoadLayer does not modify the workload.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "eval/trace.h"

namespace tierkv::index {

struct NeedleWorkloadParams {
  uint64_t seed = 1;
  uint32_t num_layers = 1;
  uint32_t num_q_heads = 32;
  uint32_t num_kv_heads = 8;
  uint32_t head_dim = 128;      // even, >= 32
  uint64_t num_tokens = 32768;
  uint64_t num_steps = 24;
  RopeStyle rope_style = RopeStyle::kHalfSplit;
  double rope_theta = 500000.0;

  uint32_t segment_tokens = 2048;   // mean segment length. Default: 2048
  float segment_strength = 4.0f;    // logit units. Default: 4
  float recall_weight = 0.7f;       // weight of the recalled earlier segment. Default: 0.7
  uint32_t needles_per_head = 6;    // per (layer, KV head). Default: 6
  uint32_t needles_per_step = 2;    // asked at once, <= needles_per_head. Default: 2
  uint32_t needle_pairs = 8;        // lowest-frequency RoPE pairs holding needle content. Default: 8
  float needle_logit = 13.0f;       // Default: 13
  uint64_t needle_min_distance = 512;  // Default: 512
  uint32_t steps_per_question = 4;  // Default: 4
  float local_heads = 0.25f;        // share of KV heads that attend locally. Default: 0.25
  float local_logit = 6.0f;         // Default: 6
  uint32_t sink_tokens = 4;         // Default: 4
  float sink_logit = 6.0f;          // Default: 6 (v2: 11)
  float key_mean_norm = 6.0f;       // Default: 6
  float key_noise = 0.35f;          // Default: 0.35
  float norm_sigma = 0.4f;          // Default: 0.4
  float query_noise = 0.5f;         // Default: 0.5

  // kInvalidArgument naming the field.
  Status Validate() const;
};

class NeedleWorkload final : public TraceSource {
 public:
  static Result<std::unique_ptr<NeedleWorkload>> Create(const NeedleWorkloadParams& params);

  const TraceInfo& info() const override { return info_; }
  Status LoadLayer(uint32_t index, TraceLayer* layer) override;

  const NeedleWorkloadParams& params() const { return p_; }
  // True when KV head `kv_head` of `layer` attends locally. REQUIRES: in range.
  bool IsLocal(uint32_t layer, uint32_t kv_head) const;
  // Needle positions of (layer, kv_head), increasing. REQUIRES: in range.
  std::vector<uint64_t> NeedlePositions(uint32_t layer, uint32_t kv_head) const;

 private:
  explicit NeedleWorkload(const NeedleWorkloadParams& p) : p_(p) {}
  NeedleWorkloadParams p_;
  TraceInfo info_;
  std::vector<uint64_t> segment_starts_;
};

}  // namespace tierkv::index
