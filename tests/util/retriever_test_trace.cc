#include "tests/util/retriever_test_trace.h"

#include "eval/synthetic.h"

namespace tierkv::index {

Result<Trace> RetrieverTestTrace(uint32_t num_layers) {
  SyntheticParams p;
  p.num_layers = num_layers;
  p.num_tokens = 1600;
  p.num_steps = 8;
  p.head_dim = 32;
  p.num_q_heads = 4;
  p.num_kv_heads = 2;
  ASSIGN_OR_RETURN(std::unique_ptr<SyntheticGenerator> gen, SyntheticGenerator::Create(p));
  return gen->GenerateAll();
}

RetrieverParams TraceBuildParams(const Trace& trace, uint32_t layer, uint32_t block_tokens, uint64_t prompt_tokens,
                                 uint32_t sample_steps) {
  RetrieverParams rp;
  rp.block_tokens = block_tokens;
  rp.num_q_heads = trace.info.num_q_heads;
  rp.prompt_tokens = prompt_tokens;
  if (sample_steps > 0) {
    rp.query_sample.count = sample_steps;
    rp.query_sample.q = trace.layers[layer].queries.data();
    rp.query_sample.q_pre = trace.layers[layer].queries_pre.data();
    rp.query_sample.positions = trace.info.step_positions.data();
  }
  return rp;
}

}  // namespace tierkv::index
