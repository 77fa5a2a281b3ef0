// The retrieval evaluation driver: runs one retriever over a trace at a list of
// budgets and measures each selection against exact attention (DESIGN §4). Layers
// are loaded one at a time from the TraceSource, so a 128K-token synthetic trace
// needs one layer in memory. `tierkv-bench eval` prints the reports as tables and
// JSON (EvalReportToJson, FormatEvalTable).
//
// Per layer: one Build with params block_tokens, num_q_heads, head_combine,
// prompt_tokens = the first decode step's position, and the calibration steps'
// queries as query_sample. Per scored (layer, decode step): exact attention of
// every query head, the always-kept blocks (sinks + recent window), then for
// each budget one SelectHeads (through the trigger) and one EvaluateHeadSelection:
// per-layer and per-KV-head retrievers are scored alike, per query head, at
// equal bytes (eval_metrics.h). Reported figures are means over the evaluated (layer, step)
// pairs unless named min/max.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/model_spec.h"
#include "common/status.h"
#include "index/retriever.h"
#include "eval/trace.h"
#include "index/exact_attention.h"
#include "index/trigger.h"

namespace tierkv::index {

// A budget: a share of the visible blocks (rounded up) or a fixed block count;
// either way at least 1 and at most the visible blocks.
struct EvalBudget {
  enum class Kind : uint8_t { kFraction, kBlocks };
  Kind kind = Kind::kFraction;
  double value = 0.1;

  static EvalBudget Fraction(double f) { return {Kind::kFraction, f}; }
  static EvalBudget Blocks(uint32_t n) { return {Kind::kBlocks, static_cast<double>(n)}; }
  uint32_t Resolve(uint64_t visible_blocks) const;
  std::string ToString() const;  // "10%" or "64 blocks"
};

struct EvalOptions {
  uint32_t block_tokens = 16;     // Default: 16
  uint64_t sink_tokens = 4;       // blocks holding them are always kept. Default: 4
  uint64_t recent_tokens = 64;    // the recent window, always kept. Default: 64
  std::vector<EvalBudget> budgets = {EvalBudget::Fraction(0.05), EvalBudget::Fraction(0.1),
                                     EvalBudget::Fraction(0.2)};
  HeadCombine head_combine = HeadCombine::kSum;  // Default: sum
  DType kv_dtype = DType::kF16;   // for the bytes figures: block bytes = 2*kv*bt*d*size. Default: f16
  std::vector<uint32_t> layers;   // layers to evaluate; empty = all. Default: all
  uint32_t step_stride = 1;       // evaluate every n-th decode step. Default: 1
  // The first calibration_steps decode steps are not scored: their queries are
  // the RetrieverParams::query_sample given to Build (query-aware codebooks).
  // Must leave at least one step to score. Default: 0
  uint32_t calibration_steps = 0;
  // When steps retrieve (trigger.h); each budget is its own stream. Default: every
  TriggerConfig trigger;

  // kInvalidArgument naming the field.
  Status Validate(const TraceInfo& info) const;
};

struct BudgetMetrics {
  EvalBudget budget;
  uint64_t evaluations = 0;          // (layer, step) pairs
  double visible_blocks = 0.0;       // mean
  double selected_blocks = 0.0;      // mean
  double topk_recall = 0.0;
  double mass_recall = 0.0;
  double min_mass_recall = 0.0;      // worst (layer, step), head-averaged
  double min_head_mass_recall = 0.0; // worst single head anywhere
  double output_rel_error = 0.0;
  double max_output_rel_error = 0.0;
  double kl_divergence = 0.0;
  double bytes_selected = 0.0;       // per (layer, step), mean
  double bytes_retrieved = 0.0;      // per (layer, step), mean: fetched by top-k
  double index_bytes_read = 0.0;     // per (layer, step), mean: read off memory by the index (SPANN postings)
  uint64_t triggers_taken = 0;       // (layer, step) pairs that ran the retriever
  uint64_t triggers_skipped = 0;     // ... that reused the last selection
  std::vector<double> layer_mass_recall;  // mean per evaluated layer, in evaluation order
  // [evaluated layer][query head], flattened: each head's mean over the layer's steps.
  std::vector<double> head_mass_recall;
};

struct EvalReport {
  std::string retriever;
  Granularity granularity = Granularity::kLayer;  // of the retriever's selections
  std::string trace_description;
  uint32_t num_layers = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  uint64_t num_tokens = 0, num_steps = 0;
  EvalOptions options;
  std::vector<uint32_t> layers;  // evaluated
  uint64_t index_bytes = 0;      // summed over evaluated layers
  uint64_t off_memory_index_bytes = 0;  // summed over evaluated layers (SPANN postings)
  double build_seconds = 0.0;    // wall time, summed over layers (informational)
  double select_seconds = 0.0;   // wall time of all Select calls (informational)
  std::vector<BudgetMetrics> budgets;  // one per options.budgets entry, same order
};

// The exact attention of each scored (layer, step) of one source, kept for the
// next retriever evaluated on it: every retriever is scored against the same
// exact attention, which costs more to compute (heads x tokens x head_dim, twice)
// than most retrievers' selections. Keeps at most `max_bytes`; beyond that each
// run computes what is not kept. One cache per source.
class ExactAttentionCache {
 public:
  explicit ExactAttentionCache(uint64_t max_bytes = uint64_t{1} << 30) : max_bytes_(max_bytes) {}
  // The entry of (layer, step): computed from keys and query on the first call, kept
  // when it fits (else valid until the next Get).
  Result<const ExactAttention*> Get(uint32_t layer, uint64_t step, const LayerKeys& keys, const QueryView& query);
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  const uint64_t max_bytes_;
  uint64_t bytes_ = 0, hits_ = 0, misses_ = 0;
  std::map<std::pair<uint32_t, uint64_t>, ExactAttention> kept_;
  ExactAttention scratch_;  // an entry that did not fit
};

// Runs `retriever` over `source`. Errors of the source, the retriever or the
// options come back as they are, with context. `cache` (optional) shares the exact
// attention between the retrievers evaluated on one source.
Result<EvalReport> RunEval(TraceSource* source, Retriever* retriever, const EvalOptions& options,
                           ExactAttentionCache* cache = nullptr);

// How concentrated the exact attention of a workload is (no retriever involved):
// the figures published measurements of real models use, to judge whether a
// synthetic workload is realistic. Means over scored (layer, step, query head)
// unless said otherwise; shares are of the step's visible tokens or blocks.
struct ConcentrationReport {
  uint64_t heads = 0;                // (layer, step, query head) triples measured
  double tokens_for_90 = 0.0;        // share of tokens holding 90% of a head's mass
  double tokens_for_90_median = 0.0;
  double blocks_for_90_head = 0.0;   // share of blocks holding 90% of a head's mass
  double blocks_for_90_layer = 0.0;  // ... of the head-summed mass (one selection per layer), per (layer, step)
  double sink_mass = 0.0;            // mass on the sink tokens (options.sink_tokens)
  double recent_mass = 0.0;          // mass on the recent window (options.recent_tokens)
  double h2o_share = 0.0;            // share of tokens with p >= 1% of the head's largest p (H2O's statistic)
  // Agreement of KV groups on which tokens matter: per layer, the attention each
  // token receives from each KV group's query heads (summed over the scored
  // steps), for tokens after the sinks and before the first scored step's recent
  // window; the Pearson correlation of its logarithm between two groups,
  // averaged over group pairs and layers. 0 with one KV head.
  double cross_group_correlation = 0.0;
};

// Measures `source` at the steps RunEval would score (options' layers, stride,
// calibration steps, block_tokens, sink and recent window).
Result<ConcentrationReport> MeasureConcentration(TraceSource* source, const EvalOptions& options,
                                                 ExactAttentionCache* cache = nullptr);

nlohmann::json EvalReportToJson(const EvalReport& report);
nlohmann::json ConcentrationToJson(const ConcentrationReport& report);
// One row per (report, budget): retriever, budget, blocks, recalls, errors, KV
// KiB fetched per step, index KiB read off memory per step, index KiB in memory.
std::string FormatEvalTable(const std::vector<EvalReport>& reports);

}  // namespace tierkv::index
