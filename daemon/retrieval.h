// Online retrieval for one namespace (DESIGN §4–§5): the daemon runs index/'s
// retrievers and triggers — the code the evaluation (tierkv_bench_eval) scores —
// over the blocks clients put (docs/decisions/0019-one-retrieval-implementation.md).
//
// Per (sequence, layer), the policy's retriever (index::MakeRetriever of its
// "retriever" string) and one index::TriggerBank stream. A step at n stored
// blocks is the evaluation's step at position n * block_tokens - 1: the always-
// kept blocks are the first `sinks` and the last `window`, the budget is k blocks.
// Three ways to keep the retriever's index, by method:
//
//   block methods (minmax, mean, mean:r=R: Retriever::block_appendable)
//           every put summarizes its block (Retriever::PutBlock); nothing is read
//           back. minmax and mean score on the GPU over a device mirror of the
//           same rows once EnableGpuScoring (gpu_selector.h), else on the CPU.
//   exact   the oracle: every put's keys go into an f32 copy of the layer's keys
//           held here; a step that retrieves (the trigger fires, k < n) scores
//           every key of the n blocks. No block is read back.
//   others  (sentence, cluster, vq, spann, ...) built over that key copy, and
//           rebuilt (or Retriever::Extend'ed) only when blocks it has not indexed
//           would leave the recent window; until then a step selects among the
//           indexed blocks as if it were the last indexed token, and the newer
//           blocks (all in the window) are added.
//
// Blocks whose keys this index has not seen (a sequence recovered at start, or
// every block after the policy changed the retriever or head_combine) are read
// back from the store on the next Select, in one BlockListReader call per chunk.
// A step whose budget covers every block selects them all without scoring
// (TriggerBank::SelectAll; for the `others`, the trigger stream restarts).
//
// Thread-safety: every method is thread-safe. Each (sequence, layer) has its own
// state and lock; the map of states has a lock held only to find, add or drop one,
// so selections for different sequences (or layers) run in parallel — on the
// channel threads of different clients, or on the worker pool of a batched
// Retrieve. Two selections of one (sequence, layer) run one after the other. The
// GPU selector, when enabled, is shared and serialized by its own lock.
// Lock order: a state's lock, then gpu_mu_ or policy_mu_; never map_mu_ while
// holding a state's lock. The locks are tierkv::Mutex, the fields they guard
// GUARDED_BY and the helpers that expect one REQUIRES (checked by `make tsa`,
// decision 0018).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_spec.h"
#include "common/mutex.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "daemon/gpu_selector.h"
#include "index/retriever.h"
#include "index/trigger.h"
#include "storage/commit_queue.h"

namespace tierkv::daemon {

// The namespace policy's retrieval part. Defaults are index/'s (TriggerConfig:
// drift tau 0.9, every_n 4) but for the drift query: tierkvd gets post-RoPE
// queries only, so its drift trigger compares those (rope=post; decision 0019).
struct RetrievalPolicy {
  std::string retriever = "minmax";  // canonical index/ factory string (Retriever::Name())
  index::TriggerConfig trigger = DefaultTrigger();
  index::HeadCombine combine = index::HeadCombine::kSum;
  bool operator==(const RetrievalPolicy&) const = default;

  static index::TriggerConfig DefaultTrigger() {
    index::TriggerConfig c;
    c.post_rope = true;
    return c;
  }
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
  bool triggered = true;         // false: the trigger reused the last selection
};

// At most k of a sequence's n blocks, ascending: the recent window (newest first)
// and the sinks, then the `chosen` blocks below `chosen_below`, newest first. Caps
// the selection of the index path (indexed blocks + the newer ones).
std::vector<uint32_t> CapSelection(std::span<const uint32_t> chosen, uint32_t chosen_below, uint32_t n, uint32_t k,
                                   uint32_t sinks, uint32_t window);

class RetrievalIndex {
 public:
  explicit RetrievalIndex(const ModelSpec& model) : model_(model) {}
  ~RetrievalIndex();

  // The policy puts are indexed for (the namespace's current one). Select
  // brings a (sequence, layer) over to the policy it is given.
  void SetPolicy(const RetrievalPolicy& policy) EXCLUDES(policy_mu_);

  // Indexes block `index` of (seq, layer) from its payload (K then V) for the
  // current policy's retriever.
  Status OnPut(uint64_t seq, uint32_t layer, uint32_t index, std::span<const std::byte> payload);
  void DropSequence(uint64_t seq);

  // Reads blocks `indices` of the (sequence, layer) being selected into `out`
  // (indices.size() payloads back to back); (*found)[i] false for a block the
  // store does not hold (a hole: it scores from zeros). Other errors fail the step.
  using BlockListReader =
      std::function<Status(std::span<const uint32_t> indices, std::span<std::byte> out, std::vector<bool>* found)>;
  // Selects up to k blocks of (seq, layer) for `query` (f32 [num_q_heads][head_dim],
  // post-RoPE): the first `sinks` and last `window` blocks always, the best-scoring
  // others, through the policy's retriever and trigger. `stored`: the blocks the
  // store holds for (seq, layer) (those this index has not seen are read with
  // `read`). kNotFound for a sequence/layer without blocks; kInvalidArgument for
  // a bad query.
  Result<Selection> Select(uint64_t seq, uint32_t layer, std::span<const float> query, uint32_t k, uint32_t sinks,
                           uint32_t window, const RetrievalPolicy& policy, uint32_t stored,
                           const BlockListReader& read);

  size_t SummaryBytes() const;
  // GPU memory of the device mirrors of the summaries (0 when scoring on the CPU).
  size_t DeviceSummaryBytes() const;

  // Scores minmax/mean selections of at least min_work multiply-adds (blocks x
  // q_heads x head_dim) on the GPU from now on; smaller ones stay on the CPU.
  // kNotSupported without a device. A selection whose GPU work fails is scored
  // on the CPU (logged).
  Status EnableGpuScoring(uint64_t min_work) EXCLUDES(gpu_mu_);
  bool gpu_scoring() const EXCLUDES(gpu_mu_);
  // Selections scored from summaries (minmax, mean) on the GPU and on the CPU, and
  // those whose GPU work failed (then scored on the CPU, counted there too).
  uint64_t gpu_selections() const { return gpu_selections_.load(std::memory_order_relaxed); }
  uint64_t cpu_selections() const { return cpu_selections_.load(std::memory_order_relaxed); }
  uint64_t gpu_fallbacks() const { return gpu_fallbacks_.load(std::memory_order_relaxed); }
  // GPU scoring runs: one per group of concurrent selections scored together
  // (gpu_selections / gpu_batches = selections per launch sequence).
  uint64_t gpu_batches() const { return gpu_batches_.load(std::memory_order_relaxed); }

 private:
  class GpuScorer;
  // How a (sequence, layer) keeps its retriever's index (the three ways above).
  enum class Path : uint8_t { kBlocks, kExact, kIndex };
  // One (sequence, layer): its method, key copy and trigger stream, under `mu`.
  struct LayerState {
    Mutex mu;
    uint32_t blocks GUARDED_BY(mu) = 0;  // highest block index put or caught up + 1
    std::vector<bool> fed GUARDED_BY(mu);  // [blocks]: the block's keys reached the current method
    uint32_t num_fed GUARDED_BY(mu) = 0;
    // The current method, made for (spec, combine).
    std::string spec GUARDED_BY(mu);
    index::HeadCombine combine GUARDED_BY(mu) = index::HeadCombine::kSum;
    Path path GUARDED_BY(mu) = Path::kBlocks;
    // The retriever calls scorer (GpuScorer::Select -> ScoreOnGpu) only from
    // inside a method that holds mu: the scorer's rows are guarded by mu through it.
    std::unique_ptr<index::Retriever> retriever GUARDED_BY(mu);
    std::unique_ptr<GpuScorer> scorer GUARDED_BY(mu);  // kBlocks
    // kExact, kIndex: the keys, f32 [kv][key_blocks * bt][d], and blocks fed past
    // them (f32 [kv][bt][d] each), laid out at the next build.
    std::vector<float> keys GUARDED_BY(mu);
    uint32_t key_blocks GUARDED_BY(mu) = 0;
    std::map<uint32_t, std::vector<float>> pending GUARDED_BY(mu);
    uint32_t indexed GUARDED_BY(mu) = 0;       // blocks the retriever is built over (0: not built)
    bool keys_changed GUARDED_BY(mu) = false;  // an indexed block was rewritten since that build
    // The trigger stream of this (sequence, layer).
    index::TriggerConfig trigger GUARDED_BY(mu);
    std::unique_ptr<index::TriggerBank> bank GUARDED_BY(mu);
    uint32_t last_blocks GUARDED_BY(mu) = 0;  // n at the last step
    // The last Extend failed and left the retriever on its `indexed` blocks (spann
    // whose postings could not be written): steps select with that index.
    bool extend_failed GUARDED_BY(mu) = false;
  };
  using StatePtr = std::shared_ptr<LayerState>;
  StatePtr Find(uint64_t seq, uint32_t layer) const EXCLUDES(map_mu_);  // null when absent; takes map_mu_ briefly
  StatePtr FindOrCreate(uint64_t seq, uint32_t layer) EXCLUDES(map_mu_);
  std::vector<StatePtr> Snapshot() const EXCLUDES(map_mu_);  // every state, for the byte counts
  RetrievalPolicy policy() const EXCLUDES(policy_mu_);

  // Makes the retriever of `policy` unless s has it already (then a no-op).
  Status EnsureMethod(LayerState& s, const RetrievalPolicy& policy) REQUIRES(s.mu);
  // Gives block b's keys (the K half of its payload) to the retriever (as stored:
  // summary methods reduce them without converting) or to the key copy (as f32).
  Status Feed(LayerState& s, uint32_t b, std::span<const std::byte> payload) REQUIRES(s.mu);
  void MarkFed(LayerState& s, uint32_t b) REQUIRES(s.mu);
  // Reads back and feeds the blocks below n that s has not seen.
  Status CatchUp(LayerState& s, uint32_t n, const BlockListReader& read) REQUIRES(s.mu);
  // Exact and the others: lays the key copy out over n blocks and builds (or
  // extends) the retriever over it.
  Status BuildFromKeys(LayerState& s, uint32_t n) REQUIRES(s.mu);
  // The query of the evaluation's step at the last token of block `blocks` - 1.
  index::QueryView StepQuery(std::span<const float> query, uint32_t blocks) const;
  Result<Selection> SelectWithIndex(LayerState& s, uint64_t seq, uint32_t layer, uint32_t n,
                                    std::span<const float> query, uint32_t k, uint32_t sinks, uint32_t window)
      REQUIRES(s.mu);
  // GpuScorer's work: index::SummaryScorer::Select on the shared selector. Runs
  // under the selecting state's lock (lock order: a state's mu, then gpu_mu_).
  Status ScoreOnGpu(DeviceRows* rows, const kernels::ScoreArgs& args, std::span<const uint32_t> always_kept,
                    uint64_t num_blocks, std::vector<uint32_t>* selected) EXCLUDES(gpu_mu_);
  // One GpuScorer::Select waiting for the shared selector. Selections that arrive
  // together (a batched Retrieve's sequences, on the worker pool; several clients)
  // are scored together, group-commit style: the first becomes the leader, takes
  // every job queued meanwhile and runs them as one GpuSelector::SelectBatch.
  struct GpuJob {
    DeviceRows* rows;
    const kernels::ScoreArgs* args;
    std::span<const uint32_t> always_kept;
    uint64_t num_blocks;
    std::vector<uint32_t>* selected;
    Status status;
  };
  void RunGpuJobs(std::span<GpuJob* const> jobs) EXCLUDES(gpu_mu_);
  // Jobs of one mode, combination and summary dtype: Select for one, SelectBatch for more.
  void RunGpuGroup(std::span<GpuJob* const> group) REQUIRES(gpu_mu_);
  // f32 keys [kv][bt][d] of a payload's K.
  std::vector<float> BlockKeys(std::span<const std::byte> payload) const;

  const ModelSpec model_;
  mutable Mutex map_mu_;
  std::map<std::pair<uint64_t, uint32_t>, StatePtr> layers_ GUARDED_BY(map_mu_);
  mutable Mutex policy_mu_;
  RetrievalPolicy policy_ GUARDED_BY(policy_mu_);
  mutable Mutex gpu_mu_;
  std::unique_ptr<GpuSelector> gpu_ GUARDED_BY(gpu_mu_);  // null: CPU scoring
  uint64_t gpu_min_work_ GUARDED_BY(gpu_mu_) = 0;
  bool gpu_failure_logged_ GUARDED_BY(gpu_mu_) = false;
  std::atomic<uint64_t> gpu_selections_{0}, cpu_selections_{0}, gpu_fallbacks_{0}, gpu_batches_{0};
  // A leader waits up to this long (and at most half the last run) for the
  // selections the last groups had, as storage's commit queue waits for writers.
  static constexpr std::chrono::microseconds kGpuGatherWindow{100};
  storage::CommitQueue<GpuJob> gpu_queue_{[this](std::span<GpuJob* const> jobs) { RunGpuJobs(jobs); },
                                          /*max_group=*/256, kGpuGatherWindow};
};

}  // namespace tierkv::daemon
