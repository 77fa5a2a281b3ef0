// Per-KV-head selection for any retrieval method (issue 12;
// docs/decisions/0012-per-head-selection.md): one inner retriever per KV head,
// each built on that head's keys alone (a LayerKeys view with num_kv_heads 1)
// and queried with the query heads of its GQA group (QueryOfHead), which
// combine by RetrieverParams::head_combine. Each KV head thus gets its own
// top-k blocks; the exact retriever wrapped this way is the per-head oracle.
//
// Equal bytes: a per-head block is one KV head's tokens, 1/num_kv_heads of a
// layer block, so budget_blocks per KV head moves the bytes of budget_blocks
// per layer. Index memory is the sum of the heads' indexes.
//
// Thread-safety: not thread-safe (as every Retriever).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "index/retriever.h"

namespace tierkv::index {

class PerHeadRetriever final : public Retriever {
 public:
  using Factory = std::function<Result<std::unique_ptr<Retriever>>()>;
  // `make` builds one per-layer retriever of the method (called once per KV
  // head at Build time, as many heads as are missing). `first` is one already
  // made (its Name() + "/head" names this retriever). REQUIRES: first is per-layer.
  PerHeadRetriever(std::unique_ptr<Retriever> first, Factory make);

  std::string Name() const override;
  size_t IndexBytes() const override;
  uint64_t OffMemoryIndexBytes() const override;
  uint64_t IndexBytesRead() const override;
  Granularity granularity() const override { return Granularity::kKvHead; }
  Retriever* HeadRetriever(uint32_t kv_head) override {
    return kv_head < built_heads_ ? heads_[kv_head].get() : nullptr;
  }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;
  Status ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) override;
  Status SelectHeadsImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                         std::vector<std::vector<uint32_t>>* per_head) override;

 private:
  Factory make_;
  std::vector<std::unique_ptr<Retriever>> heads_;
  uint32_t built_heads_ = 0;
};

// The view of KV head `kv_head` of `layer` alone (num_kv_heads 1, pointers into
// layer's arrays). REQUIRES: kv_head < layer.num_kv_heads.
LayerKeys LayerKeysOfHead(const LayerKeys& layer, uint32_t kv_head);

}  // namespace tierkv::index
