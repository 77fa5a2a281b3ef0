#include "index/per_head_retriever.h"

#include <algorithm>

namespace tierkv::index {

LayerKeys LayerKeysOfHead(const LayerKeys& layer, uint32_t kv_head) {
  const size_t offset = size_t{kv_head} * layer.num_tokens * layer.head_dim;
  LayerKeys v = layer;
  v.num_kv_heads = 1;
  v.keys = layer.keys + offset;
  v.keys_pre = layer.keys_pre != nullptr ? layer.keys_pre + offset : nullptr;
  v.values = layer.values != nullptr ? layer.values + offset : nullptr;
  return v;
}

PerHeadRetriever::PerHeadRetriever(std::unique_ptr<Retriever> first, Factory make) : make_(std::move(make)) {
  heads_.push_back(std::move(first));
}

std::string PerHeadRetriever::Name() const { return heads_[0]->Name() + "/head"; }

size_t PerHeadRetriever::IndexBytes() const {
  size_t n = 0;
  for (uint32_t h = 0; h < built_heads_; ++h) n += heads_[h]->IndexBytes();
  return n;
}

uint64_t PerHeadRetriever::OffMemoryIndexBytes() const {
  uint64_t n = 0;
  for (uint32_t h = 0; h < built_heads_; ++h) n += heads_[h]->OffMemoryIndexBytes();
  return n;
}

uint64_t PerHeadRetriever::IndexBytesRead() const {
  uint64_t n = 0;
  for (const auto& r : heads_) n += r->IndexBytesRead();  // cumulative, built or not
  return n;
}

Status PerHeadRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  built_heads_ = 0;
  while (heads_.size() < layer.num_kv_heads) {
    ASSIGN_OR_RETURN(std::unique_ptr<Retriever> r, make_());
    if (r->granularity() != Granularity::kLayer) return InvalidArgument("per-head retriever of a per-head retriever");
    heads_.push_back(std::move(r));
  }
  const uint32_t group = params.num_q_heads / layer.num_kv_heads, d = layer.head_dim;
  const QuerySample& qs = params.query_sample;
  std::vector<float> q, q_pre;
  for (uint32_t h = 0; h < layer.num_kv_heads; ++h) {
    RetrieverParams p = params;
    p.num_q_heads = group;
    if (qs.count > 0) {
      // The group's query heads of every sample, [count][group][d].
      q.resize(size_t{qs.count} * group * d);
      q_pre.resize(qs.q_pre != nullptr ? q.size() : 0);
      for (uint32_t i = 0; i < qs.count; ++i) {
        const size_t from = (size_t{i} * params.num_q_heads + size_t{h} * group) * d, to = size_t{i} * group * d;
        std::copy_n(qs.q + from, size_t{group} * d, q.data() + to);
        if (qs.q_pre != nullptr) std::copy_n(qs.q_pre + from, size_t{group} * d, q_pre.data() + to);
      }
      p.query_sample.q = q.data();
      p.query_sample.q_pre = qs.q_pre != nullptr ? q_pre.data() : nullptr;
    }
    Status s = heads_[h]->Build(LayerKeysOfHead(layer, h), p);
    if (!s.ok()) return s.WithContext("KV head " + std::to_string(h));
  }
  built_heads_ = layer.num_kv_heads;
  return OkStatus();
}

Status PerHeadRetriever::ExtendImpl(const LayerKeys& layer, uint64_t) {
  for (uint32_t h = 0; h < built_heads_; ++h) {
    Status s = heads_[h]->Extend(LayerKeysOfHead(layer, h));
    if (!s.ok()) {
      built_heads_ = 0;  // no head is handed out (HeadRetriever) until the next Build
      return s.WithContext("KV head " + std::to_string(h));
    }
  }
  return OkStatus();
}

Status PerHeadRetriever::SelectImpl(const QueryView&, uint64_t, std::span<const uint32_t>, std::vector<uint32_t>*) {
  return InvalidArgument(Name() + " selects per KV head: call SelectHeads");
}

Status PerHeadRetriever::SelectHeadsImpl(const QueryView& query, uint64_t num_blocks,
                                         std::span<const uint32_t> always_kept,
                                         std::vector<std::vector<uint32_t>>* per_head) {
  const uint32_t kv = layer().num_kv_heads;
  for (uint32_t h = 0; h < kv; ++h) {
    RETURN_IF_ERROR(heads_[h]->Select(QueryOfHead(query, kv, h), static_cast<uint32_t>(num_blocks), always_kept,
                                      &(*per_head)[h]));
  }
  return OkStatus();
}

}  // namespace tierkv::index
