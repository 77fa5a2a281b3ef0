// Online retrieval for one namespace (DESIGN §4–§5, CPU path): block summaries
// built at put time, a trigger, scoring + top-k over the summaries, and the
// always-kept blocks (sinks, recent window).
//
//   exact   scores every key (reads the blocks back): the oracle, for evaluation
//   minmax  Quest bound from per-block min/max keys, kept up to date at every put
//   mean    q . mean key per block, kept up to date at every put
//   any other index/ factory string ("mean:r=4", "sentence", "cluster", "vq",
//           "spann", ...): an index::Retriever built over the keys of the
//           (sequence, layer), read back from the store. It is rebuilt only when
//           blocks it has not indexed would leave the recent window (until then
//           they are selected as recent blocks anyway): cheap for prompt-sized
//           contexts that then decode, costly for methods that train (cluster,
//           vq, spann) on long generations — they have no incremental update yet.
//
// Summaries are f32 [blocks][kv_heads][head_dim] per (sequence, layer), in daemon
// memory. minmax and mean are scored on the CPU, or, after EnableGpuScoring (the
// namespace's G tier is device memory), on the GPU over a device mirror of the
// summaries (gpu_selector.h).
//
// Thread-safety: every method is thread-safe. Each (sequence, layer) has its own
// state and lock; the map of states has a lock held only to find, add or drop one,
// so selections for different sequences (or layers) run in parallel — on the
// channel threads of different clients, or on the worker pool of a batched
// Retrieve. Two selections of one (sequence, layer) run one after the other. The
// GPU selector, when enabled, is shared and serialized by its own lock.
// Lock order: a state's lock is never held while taking the map's.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <mutex>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_spec.h"
#include "common/status.h"
#include "daemon/gpu_selector.h"
#include "kernels/score.h"

namespace tierkv::daemon {

enum class Method : uint8_t { kExact = 0, kMinMax = 1, kMean = 2, kIndex = 3 };
enum class Trigger : uint8_t { kEveryStep = 0, kDrift = 1, kEveryN = 2 };

struct RetrievalPolicy {
  Method method = Method::kMinMax;
  std::string index_spec;  // kIndex: the index/ factory string (canonical)
  Trigger trigger = Trigger::kEveryStep;
  float drift_tau = 0.95f;  // kDrift: retrieve again when, for some query head, cos(q_h, q_h at the
                            // last retrieval) < tau (index::TriggerBank's rule)
  uint32_t every_n = 4;     // kEveryN: retrieve every n-th step, reuse the selection between
  kernels::HeadCombine combine = kernels::HeadCombine::kSoftmaxSum;
  bool operator==(const RetrievalPolicy&) const = default;
};

// Fields of the namespace policy that belong to retrieval ("retriever", "trigger",
// "drift_tau", "trigger_every", "head_combine").
bool IsRetrievalPolicyField(const std::string& field);
nlohmann::json RetrievalPolicyToJson(const RetrievalPolicy& p);
// kInvalidArgument naming the field for a bad value.
Result<RetrievalPolicy> ApplyRetrievalChanges(const RetrievalPolicy& base, const nlohmann::json& changes);

// Counters exported by the daemon (DESIGN §8, retrieval). Relaxed atomics.
struct RetrievalStats {
  std::atomic<uint64_t> steps{0}, triggers_taken{0}, triggers_skipped{0}, selected_blocks{0};
  std::atomic<uint64_t> misses_waited{0}, misses_deferred{0};
  std::atomic<uint64_t> gpu_steps{0};  // steps served through a channel's GPU exchange (dp::kFlagGpu)
  std::atomic<uint64_t> select_ns{0}, acquire_ns{0};  // time spent in each phase
};

struct Selection {
  std::vector<uint32_t> blocks;  // ascending block indices
  bool triggered = true;         // false: the previous selection was reused
};

// At most k of a sequence's n blocks, ascending: the recent window (newest first)
// and the sinks, then the `chosen` blocks below `chosen_below`, newest first. Serves
// a step that reuses the last selection (the trigger did not fire: blocks put since
// arrive in the window, the old window is not carried over) and caps the index path.
std::vector<uint32_t> CapSelection(std::span<const uint32_t> chosen, uint32_t chosen_below, uint32_t n, uint32_t k,
                                   uint32_t sinks, uint32_t window);

class RetrievalIndex {
 public:
  explicit RetrievalIndex(const ModelSpec& model) : model_(model) {}

  // Indices below `stored` of (seq, layer) that have no summary yet (empty in the
  // common case: every put summarizes its block).
  std::vector<uint32_t> Unsummarized(uint64_t seq, uint32_t layer, uint32_t stored) const;
  // Summarizes block `index` of (seq, layer) from its payload (K then V).
  Status OnPut(uint64_t seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload);
  void DropSequence(uint64_t seq);

  // Reads one block's payload (for kExact); kNotFound when absent.
  using BlockReader = std::function<Status(uint32_t index, std::span<std::byte> out)>;
  // Selects up to k blocks of (seq, layer) for `query` (f32 [num_q_heads][head_dim]):
  // the first `sinks` and last `window` blocks always, the best-scoring others.
  // kNotFound for a sequence/layer without blocks.
  Result<Selection> Select(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t k, uint32_t sinks,
                           uint32_t window, const RetrievalPolicy& policy, const BlockReader& read_block);

  size_t SummaryBytes() const;
  // GPU memory of the device mirrors of the summaries (0 when scoring on the CPU).
  size_t DeviceSummaryBytes() const;

  // Scores minmax/mean selections on the GPU from now on. kNotSupported without a
  // device. A selection whose GPU work fails is scored on the CPU (logged).
  // Scores minmax/mean selections of at least min_work multiply-adds (blocks x
  // q_heads x head_dim) on the GPU from now on; smaller ones stay on the CPU.
  Status EnableGpuScoring(uint64_t min_work);
  bool gpu_scoring() const;
  // Selections scored from summaries on the GPU and on the CPU, and those whose GPU
  // work failed (then scored on the CPU, counted there too).
  uint64_t gpu_selections() const { return gpu_selections_.load(std::memory_order_relaxed); }
  uint64_t cpu_selections() const { return cpu_selections_.load(std::memory_order_relaxed); }
  uint64_t gpu_fallbacks() const { return gpu_fallbacks_.load(std::memory_order_relaxed); }

 private:
  struct IndexState;  // a built index::Retriever and the keys it views
  struct LayerState {
    std::mutex mu;  // guards every field below
    uint32_t blocks = 0;  // index of the last summarized block + 1
    std::vector<float> min, max, mean;  // [blocks][kv_heads][head_dim]
    std::vector<bool> summarized;       // [blocks]: a put (or a catch-up) summarized it
    uint32_t num_summarized = 0;
    std::vector<float> last_query;
    std::vector<uint32_t> last_selection;
    uint32_t last_blocks = 0;  // blocks of the sequence when last_selection was chosen
    uint64_t steps = 0;
    std::shared_ptr<IndexState> index;  // kIndex only
    DeviceRows device;                  // GPU scoring only
  };
  using StatePtr = std::shared_ptr<LayerState>;
  StatePtr Find(uint64_t seq, uint32_t layer) const;  // null when absent; takes map_mu_ briefly
  StatePtr FindOrCreate(uint64_t seq, uint32_t layer);
  std::vector<StatePtr> Snapshot() const;  // every state, for the byte counts
  // minmax/mean: scores the n blocks of `s` and selects k (always-kept mask first).
  // REQUIRES: s.mu held.
  Status SelectFromSummaries(LayerState& s, uint32_t n, std::span<const float> query, std::span<const uint8_t> always,
                             const RetrievalPolicy& policy, std::span<uint32_t> out);
  // REQUIRES: `lock` holds s.mu (dropped while the index is built).
  Result<Selection> SelectWithIndex(LayerState& s, uint64_t seq, uint32_t layer, uint32_t n,
                                    std::span<const float> query, uint32_t k, uint32_t sinks, uint32_t window,
                                    const RetrievalPolicy& policy, const BlockReader& read_block,
                                    std::unique_lock<std::mutex>& lock);
  // Builds a fresh index over the first n blocks (reads them back).
  Result<std::shared_ptr<IndexState>> BuildIndex(uint32_t n, const RetrievalPolicy& policy,
                                                 const BlockReader& read_block) const;
  // Whether this step reuses the last selection of `s` (the trigger does not fire).
  // REQUIRES: s.mu held; s.steps already counts this step.
  bool ShouldReuse(const LayerState& s, std::span<const float> query, const RetrievalPolicy& policy) const;
  Status ScoreExact(uint32_t blocks, std::span<const float> query, kernels::HeadCombine combine,
                    const BlockReader& read_block, std::vector<float>* scores) const;

  const ModelSpec model_;
  mutable std::mutex map_mu_;
  std::map<std::pair<uint64_t, uint32_t>, StatePtr> layers_;  // GUARDED_BY(map_mu_)
  mutable std::mutex gpu_mu_;
  std::unique_ptr<GpuSelector> gpu_;  // GUARDED_BY(gpu_mu_); null: CPU scoring
  uint64_t gpu_min_work_ = 0;          // GUARDED_BY(gpu_mu_)
  bool gpu_failure_logged_ = false;   // GUARDED_BY(gpu_mu_)
  std::atomic<uint64_t> gpu_selections_{0}, cpu_selections_{0}, gpu_fallbacks_{0};
};

}  // namespace tierkv::daemon
