// Retrievers by factory string (FAISS index_factory style, index/spec.h):
//
//   exact                          the oracle: every key scanned (exact_retriever.h)
//   minmax                         Quest min/max bound per block (summary_retrievers.h)
//   mean | mean:r=4[,pick=norm]    mean key / R representative keys per block
//   sentence[:len=24]              mean key per sentence span (sentence_retriever.h)
//   cluster[:size=64,seg=32,...]   k-means of the prompt + generated segments (cluster_retriever.h)
//   vq[:m=16,bits=8,rope=window,w=1024,...]   query-aware PQ codes (vq_retriever.h)
//   spann[:size=16,eps=0.1,...]    SPANN postings of block mean keys (spann_retriever.h)
//
// Each header documents its keys and defaults; RetrieverSpecHelp() lists them.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "index/retriever.h"

namespace tierkv::index {

// kInvalidArgument naming the problem for an unknown name, an unknown key or a
// value out of range.
Result<std::unique_ptr<Retriever>> MakeRetriever(std::string_view spec);
// The same method at a granularity: kLayer as above; kKvHead a
// PerHeadRetriever (per_head_retriever.h) of the method, named "<name>/head".
Result<std::unique_ptr<Retriever>> MakeRetriever(std::string_view spec, Granularity granularity);
// "layer" | "head" (also "kv_head", "per-head"); kInvalidArgument otherwise.
Result<Granularity> ParseGranularity(std::string_view text);

// Multi-line summary of every name, key and default (for --help).
std::string RetrieverSpecHelp();

}  // namespace tierkv::index
