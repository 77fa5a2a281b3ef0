// Retrieval triggers (DESIGN §4 "trigger"): whether a decode step runs the
// retriever or reuses the selection of the last step that did.
//
//   every           every step retrieves (Default)
//   drift:tau=T[,rope=pre|post]
//                   LouisKV: retrieve when the query has drifted, i.e. when for some
//                   query head cos(q_h, q_h at the last retrieval) < T; T in
//                   [-1, 1], default 0.9. rope=pre (default): cosines of the
//                   pre-RoPE queries when the step has them (RoPE turns a fixed
//                   query a little every step), else of the post-RoPE ones;
//                   rope=post: always the post-RoPE ones, which is what tierkvd
//                   sees (engines send post-RoPE queries; docs/decisions/0019).
//   every:n=N       retrieve on the first step and then every N-th step of the
//                   stream; N >= 1, default 4.
//
// Per-KV-head retrievers (Retriever::granularity() kKvHead): every KV head is a
// stream of its own (sequence, layer, head), fed its head's retriever and the
// query heads of its group, so the drift test looks at those heads only and
// each head reuses its own last selection. Stats count per stream, i.e. per
// (step, KV head) for those.
//
// State is kept per (sequence, layer) stream; the first step of a stream always
// retrieves. A reused selection keeps the contract of Retriever::Select
// (retriever.h) for the new step: the current always-kept blocks (sinks and the
// moved recent window) come first, then the blocks the last retrieval chose
// beyond its always-kept ones, then the blocks that have just left the recent
// window (most recent first), then the most recent unselected visible blocks,
// until it holds min(visible, max(budget, |always_kept|)) blocks; when the
// retrieved blocks do not all fit, the ones of lowest index are dropped.
//
// Thread-safety: a TriggerBank is not thread-safe; use one per thread or lock.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "common/status.h"
#include "index/retriever.h"

namespace tierkv::index {

// The one definition of the trigger defaults (the evaluation's and tierkvd's).
struct TriggerConfig {
  enum class Kind : uint8_t { kEveryStep, kDrift, kEveryN };
  Kind kind = Kind::kEveryStep;
  double tau = 0.9;        // kDrift: cosine threshold in [-1, 1]. Default: 0.9
  uint32_t every_n = 4;    // kEveryN: >= 1. Default: 4
  bool post_rope = false;  // kDrift: compare post-RoPE queries even when pre-RoPE ones are given. Default: false
  bool operator==(const TriggerConfig&) const = default;

  // From a factory string ("every", "drift:tau=0.85", "every:n=8");
  // kInvalidArgument naming the problem.
  static Result<TriggerConfig> Parse(std::string_view spec);
  std::string ToString() const;  // the canonical spec
};

struct TriggerStats {
  uint64_t taken = 0;    // steps that ran the retriever
  uint64_t skipped = 0;  // steps that reused a selection
};

class TriggerBank {
 public:
  explicit TriggerBank(TriggerConfig config = {}) : config_(config) {}
  const TriggerConfig& config() const { return config_; }

  // Selects the blocks of one step of stream (sequence, layer): runs
  // retriever->Select when the trigger fires, else reuses the stream's last
  // selection as described above. *retrieved tells which. Arguments as
  // Retriever::Select; `retriever` must be built on the layer the stream reads.
  // kInvalidArgument for bad always_kept, a position before the stream's last
  // step, or a query whose head count changed; errors of the retriever as they are.
  Status Select(uint64_t sequence, uint32_t layer, Retriever* retriever, const QueryView& query,
                uint32_t budget_blocks, std::span<const uint32_t> always_kept, std::vector<uint32_t>* selected,
                bool* retrieved);

  // Either granularity: per_head as Retriever::SelectHeads (one list for a
  // per-layer retriever, one per KV head otherwise). *retrieved: whether any
  // stream ran the retriever. Errors as Select.
  Status SelectHeads(uint64_t sequence, uint32_t layer, Retriever* retriever, const QueryView& query,
                     uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                     std::vector<std::vector<uint32_t>>* per_head, bool* retrieved);

  // Whether the next Select of the per-layer stream (sequence, layer) for `query`
  // would run the retriever (true for a stream never seen). Lets a caller prepare
  // the retriever (read keys back, rebuild) only for the steps that use it.
  bool WouldRetrieve(uint64_t sequence, uint32_t layer, const QueryView& query) const;

  // A step of the per-layer stream whose budget covers every visible block: the
  // selection is all of them whichever way the trigger goes, so no retriever runs
  // (the one Select would run must select them all too); the stream advances as
  // Select would advance it. block_tokens: the layer's, as the retriever's params.
  Status SelectAll(uint64_t sequence, uint32_t layer, const QueryView& query, uint32_t block_tokens,
                   std::span<const uint32_t> always_kept, std::vector<uint32_t>* selected, bool* retrieved);

  // Drops every stream of `sequence` (its next step retrieves).
  void Forget(uint64_t sequence);
  // Totals over every stream since construction.
  const TriggerStats& stats() const { return stats_; }
  // The smallest per-head cosine between two queries [num_heads][head_dim]
  // (1 for heads that are zero in either).
  static double MinHeadCosine(const float* a, const float* b, uint32_t num_heads, uint32_t head_dim);

 private:
  struct Stream {
    std::vector<float> last_query;       // [heads][head_dim] at the last retrieval
    std::vector<uint32_t> retrieved;     // the last retrieval's blocks beyond its always-kept ones
    std::vector<uint32_t> last_kept;     // always-kept blocks of the last step
    uint64_t last_position = 0;
    uint64_t steps_since = 0;            // steps since the last retrieval
  };
  // (sequence, layer, KV head or kWholeLayer)
  using StreamKey = std::tuple<uint64_t, uint32_t, uint32_t>;
  static constexpr uint32_t kWholeLayer = UINT32_MAX;
  // retriever == nullptr: select every visible block (SelectAll).
  Status SelectStream(const StreamKey& key, Retriever* retriever, uint32_t block_tokens, const QueryView& query,
                      uint32_t budget_blocks, std::span<const uint32_t> always_kept, std::vector<uint32_t>* selected,
                      bool* retrieved);
  const float* DriftQuery(const QueryView& query) const;
  bool ShouldRetrieve(const Stream& s, const QueryView& query) const;
  static void Reuse(const Stream& s, uint64_t visible, uint64_t want, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected);

  TriggerConfig config_;
  std::map<StreamKey, Stream> streams_;
  TriggerStats stats_;
};

}  // namespace tierkv::index
