// The synthetic trace and the Build parameters the retriever suites share
// (index_retriever_conformance_test, index_extend_test): one definition of the
// workload every retriever is checked on.
// Thread-safety: free functions; the returned values are plain data.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "eval/trace.h"
#include "index/retriever.h"

namespace tierkv::index {

// A v2 synthetic trace (eval/synthetic.h, seed 1): 1600 tokens, 8 decode steps,
// 4 query heads and 2 KV heads of 32 dims, `num_layers` layers (>= 1).
Result<Trace> RetrieverTestTrace(uint32_t num_layers);

// Build parameters for layer `layer` of `trace`: block_tokens, the trace's query
// heads and prompt_tokens; with sample_steps > 0, the pre- and post-RoPE queries
// of its first sample_steps decode steps are the query sample query-aware
// retrievers learn from. The sample points into *trace: it must outlive Build.
// REQUIRES: layer < trace.info.num_layers, sample_steps <= trace.info.num_steps().
RetrieverParams TraceBuildParams(const Trace& trace, uint32_t layer, uint32_t block_tokens, uint64_t prompt_tokens,
                                 uint32_t sample_steps = 0);

}  // namespace tierkv::index
