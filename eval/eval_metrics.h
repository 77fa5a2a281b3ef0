// The retrieval quality metrics (DESIGN §4): a selection scored against the
// exact attention oracle (index/exact_attention.h).
//
// A selection is a set of block indices shared by every head of a layer (one block
// holds all KV heads, so the query heads of every KV group read the same blocks),
// or one set per KV head (per-head selection: a block of KV head g holds only
// that head's tokens and serves the query heads of group g; see
// EvaluateHeadSelection).
// Metrics compare attention restricted to the selected blocks with exact
// attention over every visible token: softmax(q . k / sqrt(head_dim)) per query
// head, GQA mapping as in layer_view.h. Float32 inputs; sums in double.
// Thread-safety: free functions on caller-owned data; no shared state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "index/exact_attention.h"
#include "index/layer_view.h"

namespace tierkv::index {

struct SelectionMetrics {
  // |S' ∩ E'| / |S'|: S' = selected blocks that are not always-kept, E' = the |S'|
  // visible non-always-kept blocks of highest summed mass (a block tied with the
  // |S'|-th counts as a hit). 1 when S' is empty.
  double topk_recall = 0.0;
  // Share of each head's exact softmax mass inside the selection, averaged over
  // query heads; and the smallest per-head share.
  double mass_recall = 0.0;
  double min_head_mass_recall = 0.0;
  std::vector<double> head_mass_recall;  // [num_q_heads]: each head's share
  // ||O_sel - O||_F / ||O||_F over all query heads, where O_sel is attention
  // computed only on the selected tokens (softmax renormalized over them).
  // 0 when the layer has no values (not computed).
  double output_rel_error = 0.0;
  // KL(restricted || full) per head, averaged over heads. It equals -log(mass
  // share) of the head; KL(full || restricted) is infinite whenever any mass is
  // missed. A head whose selection holds no mass counts as -log(1e-30).
  double kl_divergence = 0.0;
  uint64_t selected_blocks = 0;
  uint64_t retrieved_blocks = 0;  // selected and not always-kept
  uint64_t bytes_selected = 0;    // selected_blocks * block_bytes
  uint64_t bytes_retrieved = 0;   // retrieved_blocks * block_bytes: what top-k must fetch
};

// Scores one selection against the exact attention of the same step.
// `selected` and `always_kept`: strictly increasing block indices below
// ceil(exact.num_visible / block_tokens); every always-kept block must be
// selected. block_bytes: bytes of one block (ModelSpec::BlockBytes()).
// kInvalidArgument on any violation, naming it.
Status EvaluateSelection(const LayerKeys& layer, const QueryView& query, const ExactAttention& exact,
                         uint32_t block_tokens, std::span<const uint32_t> selected,
                         std::span<const uint32_t> always_kept, uint64_t block_bytes, SelectionMetrics* out);

// Either granularity: per_head holds one selection serving every head (the same
// as EvaluateSelection) or one per KV head, entry g serving query heads
// g*group .. g*group+group-1. Per KV head: a query head's mass, output and KL use
// its group's selection; topk_recall is averaged over KV heads, each against
// its group-summed block mass; selected/retrieved_blocks are the mean per KV
// head, and bytes count block_bytes / num_kv_heads per (head, block), so
// k blocks per KV head cost what k layer blocks cost.
// kInvalidArgument on any violation (per entry) or another number of entries.
Status EvaluateHeadSelection(const LayerKeys& layer, const QueryView& query, const ExactAttention& exact,
                             uint32_t block_tokens, std::span<const std::vector<uint32_t>> per_head,
                             std::span<const uint32_t> always_kept, uint64_t block_bytes, SelectionMetrics* out);

}  // namespace tierkv::index
