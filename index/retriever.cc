#include "index/retriever.h"

#include <algorithm>
#include <numeric>

#include "kernels/score.h"

namespace tierkv::index {

Status Retriever::Build(const LayerKeys& layer, const RetrieverParams& params) {
  built_ = false;
  RETURN_IF_ERROR(layer.Validate());
  RETURN_IF_ERROR(CheckParams(layer.num_kv_heads, params));
  Status s = BuildImpl(layer, params);
  if (!s.ok()) return s.WithContext(Name() + " build");
  layer_ = layer;
  params_ = params;
  built_ = true;
  blockwise_ = false;
  return OkStatus();
}

Status Retriever::CheckParams(uint32_t num_kv_heads, const RetrieverParams& params) const {
  if (params.block_tokens == 0) return InvalidArgument("retriever block_tokens must be >= 1");
  if (params.num_q_heads == 0 || params.num_q_heads % num_kv_heads != 0) {
    return InvalidArgument("retriever num_q_heads " + std::to_string(params.num_q_heads) +
                           " must be a positive multiple of num_kv_heads " + std::to_string(num_kv_heads));
  }
  if (params.head_combine != HeadCombine::kSum && params.head_combine != HeadCombine::kMax) {
    return InvalidArgument("retriever head_combine is not a known mode");
  }
  if (params.query_sample.count > 0 && (params.query_sample.q == nullptr || params.query_sample.positions == nullptr)) {
    return InvalidArgument("retriever query_sample has a count but no queries or positions");
  }
  return OkStatus();
}

Status Retriever::StartBlocks(uint32_t num_kv_heads, uint32_t head_dim, const RetrieverParams& params) {
  built_ = false;
  blockwise_ = false;
  if (!block_appendable()) return NotSupported(Name() + " cannot index block by block");
  if (num_kv_heads == 0 || head_dim == 0) return InvalidArgument(Name() + ": StartBlocks needs num_kv_heads, head_dim > 0");
  RETURN_IF_ERROR(CheckParams(num_kv_heads, params));
  RetrieverParams p = params;
  p.query_sample = QuerySample();
  p.prompt_tokens = 0;
  Status s = StartBlocksImpl(num_kv_heads, head_dim, p);
  if (!s.ok()) return s.WithContext(Name() + " start");
  layer_ = LayerKeys();
  layer_.num_kv_heads = num_kv_heads;
  layer_.head_dim = head_dim;
  params_ = p;
  built_ = true;
  blockwise_ = true;
  return OkStatus();
}

Status Retriever::PutBlock(uint32_t block, std::span<const float> keys) {
  return PutBlock(block, std::as_bytes(keys), DType::kF32);
}

Status Retriever::PutBlock(uint32_t block, std::span<const std::byte> keys, DType dtype) {
  if (!built_ || !blockwise_) return InvalidArgument(Name() + ": PutBlock before StartBlocks");
  const size_t want = size_t{layer_.num_kv_heads} * params_.block_tokens * layer_.head_dim;
  if (keys.size() != want * DTypeBytes(dtype)) {
    return InvalidArgument(Name() + ": PutBlock with " + std::to_string(keys.size() / DTypeBytes(dtype)) +
                           " keys (" + std::to_string(keys.size()) + " bytes), a block holds " + std::to_string(want));
  }
  if (block >= kernels::kMaxScoreBlocks) {
    return InvalidArgument(Name() + ": block " + std::to_string(block) + " is past what ScoreBlocks accepts");
  }
  Status s = PutBlockImpl(block, keys, dtype);
  if (!s.ok()) return s.WithContext(Name() + " put block");
  layer_.num_tokens = std::max<uint64_t>(layer_.num_tokens, (uint64_t{block} + 1) * params_.block_tokens);
  return OkStatus();
}

Status Retriever::StartBlocksImpl(uint32_t, uint32_t, const RetrieverParams&) {
  return NotSupported(Name() + " cannot index block by block");
}

Status Retriever::PutBlockImpl(uint32_t, std::span<const std::byte>, DType) {
  return NotSupported(Name() + " cannot index block by block");
}

Status Retriever::Extend(const LayerKeys& layer) {
  if (!built_ || blockwise_) return InvalidArgument(Name() + ": Extend before a successful Build");
  RETURN_IF_ERROR(layer.Validate());
  if (layer.num_kv_heads != layer_.num_kv_heads || layer.head_dim != layer_.head_dim ||
      layer.rope_style != layer_.rope_style || layer.rope_theta != layer_.rope_theta ||
      (layer.keys_pre == nullptr) != (layer_.keys_pre == nullptr)) {
    return InvalidArgument(Name() + ": Extend with another layer shape than the built one");
  }
  if (layer.num_tokens < layer_.num_tokens) {
    return InvalidArgument(Name() + ": Extend to " + std::to_string(layer.num_tokens) + " tokens, fewer than the " +
                           std::to_string(layer_.num_tokens) + " indexed");
  }
  const uint64_t old_tokens = layer_.num_tokens;
  built_ = false;  // a failed Extend leaves no half-extended index in use
  Status s = ExtendImpl(layer, old_tokens);
  if (!s.ok()) {
    built_ = ExtendFailureKeepsIndex();  // the old index, untouched, over the old layer_
    return s.WithContext(Name() + " extend");
  }
  layer_ = layer;
  params_.query_sample = QuerySample();
  built_ = true;
  return OkStatus();
}

Status Retriever::ExtendImpl(const LayerKeys& layer, uint64_t) {
  RetrieverParams p = params_;
  p.query_sample = QuerySample();
  return BuildImpl(layer, p);
}

const char* GranularityName(Granularity g) { return g == Granularity::kKvHead ? "head" : "layer"; }

Status Retriever::CheckSelectArgs(const QueryView& query, std::span<const uint32_t> always_kept) const {
  if (!built_) return InvalidArgument(Name() + ": Select before a successful Build");
  if (blockwise_) {
    // No keys to validate: the shape only (CheckQueryFitsLayer's other rules).
    if (layer_.num_tokens == 0) return InvalidArgument(Name() + ": Select before any PutBlock");
    LayerKeys shape = layer_;
    static const float kNoKeys = 0.f;
    shape.keys = &kNoKeys;  // never read
    RETURN_IF_ERROR(CheckQueryFitsLayer(shape, query));
  } else {
    RETURN_IF_ERROR(CheckQueryFitsLayer(layer_, query));
  }
  if (query.num_q_heads != params_.num_q_heads) {
    return InvalidArgument(Name() + ": query has " + std::to_string(query.num_q_heads) + " heads, built for " +
                           std::to_string(params_.num_q_heads));
  }
  return CheckBlockList("always-kept", always_kept, VisibleBlocks(query.position, params_.block_tokens));
}

Status Retriever::CheckContract(std::span<const uint32_t> selected, uint64_t want, uint64_t visible,
                                std::span<const uint32_t> always_kept) const {
  Status shape = CheckBlockList("selected", selected, visible);
  if (!shape.ok() || selected.size() != want ||
      !std::includes(selected.begin(), selected.end(), always_kept.begin(), always_kept.end())) {
    return Internal(Name() + " broke the selection contract (" + std::to_string(selected.size()) + " blocks for " +
                    std::to_string(want) + " wanted" + (shape.ok() ? "" : "; " + shape.message()) +
                    ", always-kept blocks must all be selected)");
  }
  return OkStatus();
}

Status Retriever::Select(const QueryView& query, uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                         std::vector<uint32_t>* selected) {
  RETURN_IF_ERROR(CheckSelectArgs(query, always_kept));
  if (granularity() != Granularity::kLayer) {
    return InvalidArgument(Name() + " selects per KV head: call SelectHeads");
  }
  const uint64_t visible = VisibleBlocks(query.position, params_.block_tokens);
  const uint64_t want = std::min<uint64_t>(visible, std::max<uint64_t>(budget_blocks, always_kept.size()));
  selected->clear();
  if (want == visible) {  // the contract leaves one answer: every visible block, no scoring
    selected->resize(visible);
    std::iota(selected->begin(), selected->end(), 0u);
    return OkStatus();
  }
  Status s = SelectImpl(query, want, always_kept, selected);
  if (!s.ok()) return s.WithContext(Name() + " select");
  // The contract, checked for every implementation.
  return CheckContract(*selected, want, visible, always_kept);
}

Status Retriever::SelectHeads(const QueryView& query, uint32_t budget_blocks, std::span<const uint32_t> always_kept,
                              std::vector<std::vector<uint32_t>>* per_head) {
  if (granularity() == Granularity::kLayer) {
    per_head->resize(1);
    return Select(query, budget_blocks, always_kept, &(*per_head)[0]);
  }
  RETURN_IF_ERROR(CheckSelectArgs(query, always_kept));
  const uint64_t visible = VisibleBlocks(query.position, params_.block_tokens);
  const uint64_t want = std::min<uint64_t>(visible, std::max<uint64_t>(budget_blocks, always_kept.size()));
  per_head->assign(layer_.num_kv_heads, {});
  Status s = SelectHeadsImpl(query, want, always_kept, per_head);
  if (!s.ok()) return s.WithContext(Name() + " select");
  if (per_head->size() != layer_.num_kv_heads) {
    return Internal(Name() + " returned " + std::to_string(per_head->size()) + " head selections for " +
                    std::to_string(layer_.num_kv_heads) + " KV heads");
  }
  for (const std::vector<uint32_t>& sel : *per_head) RETURN_IF_ERROR(CheckContract(sel, want, visible, always_kept));
  return OkStatus();
}

Status Retriever::SelectHeadsImpl(const QueryView&, uint64_t, std::span<const uint32_t>,
                                  std::vector<std::vector<uint32_t>>*) {
  return Internal(Name() + " claims per-KV-head selection but does not implement it");
}

QueryView QueryOfHead(const QueryView& query, uint32_t num_kv_heads, uint32_t kv_head) {
  const uint32_t group = query.num_q_heads / num_kv_heads;
  const size_t offset = size_t{kv_head} * group * query.head_dim;
  QueryView q = query;
  q.num_q_heads = group;
  q.q = query.q + offset;
  q.q_pre = query.q_pre != nullptr ? query.q_pre + offset : nullptr;
  return q;
}

std::vector<uint32_t> AlwaysKeptBlocks(uint64_t position, uint32_t block_tokens, uint64_t sink_tokens,
                                       uint64_t recent_tokens) {
  const uint64_t visible = VisibleBlocks(position, block_tokens);
  std::vector<uint32_t> out;
  const uint64_t sink_blocks = std::min(visible, (sink_tokens + block_tokens - 1) / block_tokens);
  for (uint64_t b = 0; b < sink_blocks; ++b) out.push_back(static_cast<uint32_t>(b));
  if (recent_tokens > 0) {
    const uint64_t first_token = position + 1 > recent_tokens ? position + 1 - recent_tokens : 0;
    for (uint64_t b = std::max(sink_blocks, first_token / block_tokens); b < visible; ++b) {
      out.push_back(static_cast<uint32_t>(b));
    }
  }
  return out;
}

namespace {

template <typename Score>
void SelectTop(std::span<const Score> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
               std::vector<uint32_t>* selected) {
  std::vector<bool> kept(scores.size(), false);
  for (uint32_t b : always_kept) kept[b] = true;
  std::vector<uint32_t> others;
  others.reserve(scores.size() - always_kept.size());
  for (uint32_t b = 0; b < scores.size(); ++b) {
    if (!kept[b]) others.push_back(b);
  }
  const size_t extra = std::min<size_t>(num_blocks - always_kept.size(), others.size());
  auto better = [&scores](uint32_t a, uint32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::partial_sort(others.begin(), others.begin() + extra, others.end(), better);
  selected->assign(always_kept.begin(), always_kept.end());
  selected->insert(selected->end(), others.begin(), others.begin() + extra);
  std::sort(selected->begin(), selected->end());
}

}  // namespace

void SelectTopBlocks(std::span<const double> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                     std::vector<uint32_t>* selected) {
  SelectTop(scores, num_blocks, always_kept, selected);
}

void SelectTopBlocks(std::span<const float> scores, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                     std::vector<uint32_t>* selected) {
  SelectTop(scores, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
