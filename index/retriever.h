// Retriever: picks, for one decode step of one layer, the KV blocks attention will
// read (DESIGN §4). Every retrieval method (min/max bounds, mean keys, VQ,
// clusters, SPANN) implements BuildImpl/SelectImpl; the public, non-virtual Build
// and Select check the arguments and the selection contract once for all of
// them, so implementations see validated input and a broken implementation is
// caught (kInternal) instead of returning a bad block list.
//
// Selection contract: strictly increasing block indices below
// VisibleBlocks(query.position, block_tokens), every always-kept block included,
// exactly min(visible, max(budget_blocks, |always_kept|)) entries. When that is
// every visible block, Select returns them all without scoring (any method).
//
// Granularity (docs/decisions/0012-per-head-selection.md): a per-layer retriever
// (every method as made by MakeRetriever(spec)) returns one selection that serves
// every head of the layer; a per-KV-head retriever (PerHeadRetriever,
// MakeRetriever(spec, Granularity::kKvHead)) returns one selection per KV head,
// each under the contract above with the same budget_blocks. Equal bytes: a
// per-head block holds one KV head's tokens (1/num_kv_heads of a layer block),
// so k blocks per KV head move the same bytes as k blocks per layer.
// SelectHeads serves both; Select is the per-layer call.
//
// Thread-safety: a Retriever is not thread-safe; use one per thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "index/layer_view.h"
#include "kernels/head_combine.h"

namespace tierkv::index {

class SummaryScorer;  // block_scoring.h

// How per-head block scores combine (kSum: summed per-head softmax, kMax): one
// definition, the kernels' (kernels/head_combine.h), named here too.
using HeadCombine = kernels::HeadCombine;

// What one selection serves: every head of a layer, or one KV head (its GQA
// group of query heads).
enum class Granularity : uint8_t { kLayer = 0, kKvHead = 1 };
const char* GranularityName(Granularity g);  // "layer" | "head"

// A sample of the layer's queries that Build may learn from (query-aware
// codebooks, DESIGN §4). In a deployment these are queries the engine already
// ran (prefill, earlier decode steps); the evaluation passes decode steps it does
// not score (EvalOptions::calibration_steps). Layouts as QueryView, per sample:
// q and q_pre [count][num_q_heads][head_dim], positions [count].
struct QuerySample {
  uint32_t count = 0;               // 0: no sample
  const float* q = nullptr;         // post-RoPE; non-null when count > 0
  const float* q_pre = nullptr;     // pre-RoPE; may be null
  const uint64_t* positions = nullptr;  // non-null when count > 0
};

struct RetrieverParams {
  uint32_t block_tokens = 16;                 // tokens per block, >= 1. Default: 16
  uint32_t num_q_heads = 0;                   // query heads Select will see; a multiple of num_kv_heads
  HeadCombine head_combine = HeadCombine::kSum;  // Default: sum of per-head softmax mass
  // Tokens [0, prompt_tokens) are the prompt, the rest were generated (the
  // cluster retriever clusters the prompt and cuts generated tokens into
  // time-ordered segments). 0 or >= num_tokens: every token is prompt. Default: 0
  uint64_t prompt_tokens = 0;
  QuerySample query_sample;                   // read during Build only. Default: none
};

class Retriever {
 public:
  virtual ~Retriever() = default;

  // Short stable name for tables and JSON ("exact", "quest", ...).
  virtual std::string Name() const = 0;
  // Bytes of the index built for the current layer held in memory (summaries,
  // codes, centroids, posting directories; for the exact retriever, the keys it
  // scans). 0 before Build.
  virtual size_t IndexBytes() const = 0;
  // Bytes of the index kept off memory (SPANN posting lists on the D tier).
  virtual uint64_t OffMemoryIndexBytes() const { return 0; }
  // Bytes Select calls have read from off-memory index storage since Build
  // (cumulative; the evaluation reports the per-step difference).
  virtual uint64_t IndexBytesRead() const { return 0; }

  // Indexes every token of `layer`, replacing any previous index.
  // REQUIRES: the arrays behind `layer` stay alive and unchanged until the next
  // Build or the retriever's destruction (implementations may read them in Select).
  // kInvalidArgument on a bad view or params.
  Status Build(const LayerKeys& layer, const RetrieverParams& params);

  // Selects blocks for `query` (all query heads of the layer) with at most
  // budget_blocks blocks, always_kept included (see the contract above).
  // always_kept: strictly increasing visible blocks (AlwaysKeptBlocks()).
  // kInvalidArgument: Select before Build, a query that does not fit the built
  // layer or params, bad always_kept. kInternal: the implementation broke the contract.
  // kInvalidArgument too for a per-KV-head retriever (use SelectHeads).
  Status Select(const QueryView& query, uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                std::vector<uint32_t>* selected);

  // The selection of either granularity: per_head gets one list for a
  // per-layer retriever (serving every head) or num_kv_heads lists (entry g
  // serves KV head g and the query heads g*group .. g*group+group-1) for a
  // per-KV-head one; each list honours the contract with budget_blocks.
  // Errors as Select.
  Status SelectHeads(const QueryView& query, uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                     std::vector<std::vector<uint32_t>>* per_head);

  virtual Granularity granularity() const { return Granularity::kLayer; }
  // Per-KV-head retrievers: the retriever of KV head `kv_head`, built on that
  // head's keys alone (num_kv_heads 1, the group's query heads), and the query
  // it takes (QueryOfHead). nullptr for per-layer retrievers or out of range.
  virtual Retriever* HeadRetriever(uint32_t kv_head) {
    (void)kv_head;
    return nullptr;
  }

  // Incremental indexing (issue 12 item 5): `layer` is the built layer grown by
  // new tokens at the end — same num_kv_heads, head_dim, RoPE; num_tokens >=
  // the built count; the earlier tokens unchanged (the arrays may have moved,
  // the REQUIRES of Build applies to the new ones). Indexes the new tokens
  // without retraining: vq encodes them with its codebooks, cluster cuts them
  // into generated segments, spann assigns them to its existing postings (and
  // re-clusters on a thread of its own, decision 0024), per-KV-head retrievers
  // extend every head; the others rebuild (their Build is one pass over the
  // keys, no training).
  // kInvalidArgument: before Build, another shape, fewer tokens. After any
  // other error the retriever is not built (Select fails until the next Build),
  // unless ExtendFailureKeepsIndex(): then it still serves the index it had.
  Status Extend(const LayerKeys& layer);
  // False before a successful Build, and after a failed one (or a failed Extend, but see above).
  bool built() const { return built_; }

  // Block-at-a-time indexing (the daemon: a put summarizes its own block, so
  // nothing is read back at retrieval time). Methods whose index is a summary
  // per block (minmax, mean, mean:r=R) support it (block_appendable()); the
  // others return kNotSupported. StartBlocks begins an empty index for this
  // shape (0 tokens, no keys kept: layer().keys stays null); PutBlock(b, keys)
  // sets block b from its post-RoPE keys, f32 [num_kv_heads][block_tokens]
  // [head_dim] (a put block's K, converted): a b past the indexed blocks grows
  // the index to b + 1 blocks (blocks in between score from zero summaries until
  // put), a b below rewrites it. The index then equals Build over the same keys
  // (a layer of blocks * block_tokens tokens), so Select selects the same blocks.
  // kInvalidArgument: a bad shape or params, PutBlock before StartBlocks, keys of
  // another size, b at or past kernels::kMaxScoreBlocks.
  virtual bool block_appendable() const { return false; }
  Status StartBlocks(uint32_t num_kv_heads, uint32_t head_dim, const RetrieverParams& params);
  Status PutBlock(uint32_t block, std::span<const float> keys);
  // The same from the keys as a put block stores them: `keys` holds
  // [num_kv_heads][block_tokens][head_dim] elements of `dtype` (f16, bf16 or f32).
  // The summaries are reduced from those bytes (the put path converts nothing to
  // f32 first) and equal, bit for bit, PutBlock over the keys converted to f32.
  Status PutBlock(uint32_t block, std::span<const std::byte> keys, DType dtype);
  // Blocks indexed by StartBlocks/PutBlock (0 otherwise).
  uint64_t indexed_blocks() const { return blockwise_ ? layer_.num_tokens / params_.block_tokens : 0; }

  // Lets a summary retriever score somewhere else than the CPU (the daemon's GPU
  // mirror of its rows). Returns false for retrievers that do not take one.
  // `scorer` must outlive its use; nullptr goes back to the CPU.
  virtual bool SetScorer(SummaryScorer* scorer) {
    (void)scorer;
    return false;
  }

  // The view and params of the last successful Build (query_sample is not
  // valid after Build returns).
  const LayerKeys& layer() const { return layer_; }
  const RetrieverParams& params() const { return params_; }

 protected:
  // REQUIRES (checked by Build): layer.Validate() OK, params valid for it.
  virtual Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) = 0;
  // REQUIRES (checked by Select): the query fits; always_kept valid;
  // always_kept.size() <= num_blocks <= VisibleBlocks(query.position, block_tokens).
  // Must fill *selected (cleared on entry) with exactly num_blocks blocks honouring
  // the contract; SelectTopBlocks does that from per-block scores.
  virtual Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                            std::vector<uint32_t>* selected) = 0;
  // Extend's work (layer validated; old_tokens = the indexed count). Default:
  // BuildImpl(layer, params() without the query sample).
  virtual Status ExtendImpl(const LayerKeys& layer, uint64_t old_tokens);
  // True when a failed ExtendImpl leaves the index exactly as before the call (and
  // usable): Extend then keeps the retriever built over the old layer. Only for a
  // retriever that never reads layer().keys after Build (it keeps its own copy):
  // the caller may have freed the old layer's arrays by then. Default: false.
  virtual bool ExtendFailureKeepsIndex() const { return false; }
  // StartBlocks/PutBlock's work (arguments checked; block_appendable() only).
  virtual Status StartBlocksImpl(uint32_t num_kv_heads, uint32_t head_dim, const RetrieverParams& params);
  // `keys` holds one block of `dtype` elements (checked).
  virtual Status PutBlockImpl(uint32_t block, std::span<const std::byte> keys, DType dtype);
  // The per-KV-head path (per_head has num_kv_heads empty lists on entry);
  // per-layer retrievers keep the default, which refuses.
  virtual Status SelectHeadsImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                 std::vector<std::vector<uint32_t>>* per_head);
  // kInternal naming the broken rule unless `selected` honours the contract.
  Status CheckContract(std::span<const uint32_t> selected, uint64_t want, uint64_t visible,
                       std::span<const uint32_t> always_kept) const;

 private:
  Status CheckSelectArgs(const QueryView& query, std::span<const uint32_t> always_kept) const;
  Status CheckParams(uint32_t num_kv_heads, const RetrieverParams& params) const;

  LayerKeys layer_;
  RetrieverParams params_;
  bool built_ = false;
  bool blockwise_ = false;  // built by StartBlocks/PutBlock: layer_ has a shape and no keys
};

// The query heads of KV group `kv_head` as a query of their own (num_q_heads =
// the group size; pointers into `query`). REQUIRES: num_kv_heads divides
// query.num_q_heads, kv_head < num_kv_heads.
QueryView QueryOfHead(const QueryView& query, uint32_t num_kv_heads, uint32_t kv_head);

// The blocks every selection keeps: those holding tokens [0, sink_tokens) and the
// recent window (position - recent_tokens, position] (which includes the block
// of `position` itself when recent_tokens > 0). Strictly increasing.
// REQUIRES: block_tokens > 0.
std::vector<uint32_t> AlwaysKeptBlocks(uint64_t position, uint32_t block_tokens, uint64_t sink_tokens,
                                       uint64_t recent_tokens);

// Fills *selected with always_kept plus the highest-scoring other blocks until it
// holds num_blocks, sorted increasing. Ties go to the lower block index.
// scores: one per visible block. REQUIRES: always_kept strictly increasing and
// below scores.size(); always_kept.size() <= num_blocks <= scores.size().
void SelectTopBlocks(std::span<const double> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                     std::vector<uint32_t>* selected);
void SelectTopBlocks(std::span<const float> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                     std::vector<uint32_t>* selected);

}  // namespace tierkv::index
