// Incremental indexes during a long generation (issue 12 item 5): a prompt of
// --prompt tokens, then --gen generated tokens, on a synthetic v2 trace (eval/
// synthetic.h; 32 q / 8 kv heads, d 128, 16-token blocks by default), for each
// method driven as daemon/retrieval.cc drives index::Retriever + TriggerBank
// (SelectWithIndex): Build over the prompt; at each step, when the complete
// blocks not yet indexed would leave the recent window (n > indexed + window),
// Extend to them (in the timed step, as the daemon does it on the Retrieve
// path); select among the indexed blocks with the step's query placed at the
// last indexed token, the newer blocks all kept, capped at the budget.
// Reported per method and seed: p50/p99/max of the per-step latency (Extend +
// Select) over --before steps at the end of the prompt (index over the
// prompt, no Extend) and over the generated steps; the Extend calls and the
// slowest; and at the end (index extended to every token) the mass recall of
// the last --end steps against a fresh Build over every token.
//
//   tierkv_bench_incremental [--seeds 1,2] [--methods "vq;cluster;spann"] [--prompt 32768] [--gen 8192]
//                            [--before 128] [--end 32] [--window 8] [--sinks 1] [--budget 0.1]
//                            [--trigger every|drift] [--json PATH]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "eval/eval_metrics.h"
#include "eval/synthetic.h"
#include "index/exact_attention.h"
#include "index/faiss_util.h"
#include "index/retriever_factory.h"
#include "index/spann_retriever.h"
#include "index/trigger.h"

namespace tierkv::bench {
namespace {

using index::LayerKeys;
using index::QueryView;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<uint64_t> seeds = {1, 2};
  std::vector<std::string> methods = {"vq", "cluster", "spann"};
  uint64_t prompt = 32768, gen = 8192, before = 128, end = 32;
  uint32_t window = 8, sinks = 1, bt = 16, q_heads = 32, kv_heads = 8, dim = 128;
  double budget = 0.1;
  std::string trigger = "every", json;
};

// The first n tokens of `full` laid out as a layer of their own in *buf
// (keys and pre-RoPE keys; [kv][n][d]).
LayerKeys Prefix(const LayerKeys& full, uint64_t n, std::vector<float>* keys, std::vector<float>* pre) {
  const uint64_t d = full.head_dim, kv = full.num_kv_heads;
  keys->resize(kv * n * d);
  pre->resize(kv * n * d);
  for (uint64_t g = 0; g < kv; ++g) {
    std::memcpy(keys->data() + g * n * d, full.keys + g * full.num_tokens * d, n * d * sizeof(float));
    std::memcpy(pre->data() + g * n * d, full.keys_pre + g * full.num_tokens * d, n * d * sizeof(float));
  }
  LayerKeys v = full;
  v.num_tokens = n;
  v.keys = keys->data();
  v.keys_pre = pre->data();
  v.values = nullptr;
  v.sentence_starts = {};
  return v;
}

struct Run {
  std::string method;
  uint64_t seed = 0;
  std::vector<double> before_ms, gen_ms, extend_ms;
  std::vector<double> swap_ms;    // spann: steps that swapped a re-clustered index in
  std::vector<double> during_ms;  // spann: steps while a re-clustering ran
  double build_s = 0, mass_inc = 0, mass_fresh = 0, fresh_build_s = 0;
  uint64_t rebalances = 0;
};

// The daemon's selection of one step (retrieval.cc SelectWithIndex): indexed
// blocks m, visible blocks n.
Status DaemonSelect(index::TriggerBank* bank, index::Retriever* r, const QueryView& step, uint64_t m, uint64_t n,
                    uint32_t k, const Options& o, std::vector<uint32_t>* out) {
  std::vector<uint32_t> always;
  for (uint32_t b = 0; b < m; ++b) {
    if (b < o.sinks || b + o.window >= n) always.push_back(b);
  }
  QueryView q = step;
  q.position = m * o.bt - 1;
  const uint32_t newer = static_cast<uint32_t>(n - m);
  const uint32_t budget = std::max<uint32_t>(k > newer ? k - newer : 0, static_cast<uint32_t>(always.size()));
  bool retrieved = false;
  RETURN_IF_ERROR(bank->Select(1, 0, r, q, std::min<uint32_t>(budget, static_cast<uint32_t>(m)), always, out,
                               &retrieved));
  for (uint64_t b = m; b < n; ++b) out->push_back(static_cast<uint32_t>(b));
  return OkStatus();
}

Status MeanMass(const LayerKeys& full, const index::TraceInfo& info, const index::TraceLayer& layer,
                index::Retriever* r, const Options& o, uint64_t first_step, double* mean) {
  double sum = 0;
  const uint64_t steps = info.num_steps();
  for (uint64_t s = first_step; s < steps; ++s) {
    const QueryView q = index::StepQuery(info, layer, s);
    const uint64_t visible = index::VisibleBlocks(q.position, o.bt);
    const auto kept = index::AlwaysKeptBlocks(q.position, o.bt, uint64_t{o.sinks} * o.bt, uint64_t{o.window} * o.bt);
    std::vector<uint32_t> sel;
    RETURN_IF_ERROR(r->Select(q, static_cast<uint32_t>(std::max<double>(kept.size(), o.budget * visible)), kept, &sel));
    index::ExactAttention ex;
    RETURN_IF_ERROR(index::ComputeExactAttention(full, q, &ex));
    index::SelectionMetrics m;
    RETURN_IF_ERROR(index::EvaluateSelection(full, q, ex, o.bt, sel, kept, 1, &m));
    sum += m.mass_recall;
  }
  *mean = sum / double(steps - first_step);
  return OkStatus();
}

Status RunOne(const std::string& method, uint64_t seed, const Options& o, Run* run) {
  index::SyntheticParams sp;
  sp.seed = seed;
  sp.num_layers = 1;
  sp.num_q_heads = o.q_heads;
  sp.num_kv_heads = o.kv_heads;
  sp.head_dim = o.dim;
  sp.num_tokens = o.prompt + o.gen;
  sp.num_steps = o.before + o.gen;  // the last `before` prompt positions, then every generated one
  ASSIGN_OR_RETURN(auto gen, index::SyntheticGenerator::Create(sp));
  index::TraceLayer layer;
  RETURN_IF_ERROR(gen->LoadLayer(0, &layer));
  const index::TraceInfo& info = gen->info();
  const LayerKeys full = index::LayerKeysOf(info, layer);
  run->method = method;
  run->seed = seed;

  ASSIGN_OR_RETURN(std::unique_ptr<index::Retriever> r, index::MakeRetriever(method));
  index::RetrieverParams params;  // as the daemon: no prompt split, no query sample
  params.block_tokens = o.bt;
  params.num_q_heads = o.q_heads;
  index::TriggerConfig tc;
  tc.kind = o.trigger == "drift" ? index::TriggerConfig::Kind::kDrift : index::TriggerConfig::Kind::kEveryStep;
  index::TriggerBank bank(tc);
  // Two buffers: Extend gets a new layout while the old one is still alive.
  std::vector<float> keys[2], pre[2];
  int cur = 0;
  uint64_t m = o.prompt / o.bt;  // indexed blocks
  auto t0 = Clock::now();
  RETURN_IF_ERROR(r->Build(Prefix(full, m * o.bt, &keys[cur], &pre[cur]), params));
  run->build_s = SecondsSince(t0);
  auto* spann = dynamic_cast<index::SpannRetriever*>(r.get());
  std::vector<uint32_t> sel;
  for (uint64_t s = 0; s < info.num_steps(); ++s) {
    const QueryView q = index::StepQuery(info, layer, s);
    const uint64_t swaps = spann != nullptr ? spann->rebalances() : 0;
    const bool busy = spann != nullptr && spann->rebalancing();
    const uint64_t n = q.position / o.bt + 1;  // visible blocks (the last may be partial)
    const uint64_t complete = (q.position + 1) / o.bt;
    const uint32_t k = static_cast<uint32_t>(std::max<double>(1, o.budget * double(n)));
    LayerKeys next;
    const bool extend = n > m + o.window && complete > m;
    if (extend) next = Prefix(full, complete * o.bt, &keys[1 - cur], &pre[1 - cur]);  // untimed: the daemon's copy
    t0 = Clock::now();
    if (extend) {
      RETURN_IF_ERROR(r->Extend(next));
      run->extend_ms.push_back(SecondsSince(t0) * 1e3);
      cur = 1 - cur;
      m = complete;
    }
    sel.clear();
    RETURN_IF_ERROR(DaemonSelect(&bank, r.get(), q, std::min(m, n), n, k, o, &sel));
    const double ms = SecondsSince(t0) * 1e3;
    (s < o.before ? run->before_ms : run->gen_ms).push_back(ms);
    if (spann != nullptr) {
      if (spann->rebalances() != swaps) run->swap_ms.push_back(ms);
      else if (busy && spann->rebalancing()) run->during_ms.push_back(ms);
    }
  }
  // The end: the incremental index over every token vs a fresh Build over them.
  RETURN_IF_ERROR(r->Extend(Prefix(full, full.num_tokens, &keys[1 - cur], &pre[1 - cur])));
  cur = 1 - cur;
  if (auto* sr = dynamic_cast<index::SpannRetriever*>(r.get())) run->rebalances = sr->rebalances();
  const uint64_t first = info.num_steps() - std::min(o.end, info.num_steps());
  RETURN_IF_ERROR(MeanMass(full, info, layer, r.get(), o, first, &run->mass_inc));
  if (auto* sr = dynamic_cast<index::SpannRetriever*>(r.get())) run->rebalances = sr->rebalances();
  ASSIGN_OR_RETURN(std::unique_ptr<index::Retriever> fresh, index::MakeRetriever(method));
  t0 = Clock::now();
  RETURN_IF_ERROR(fresh->Build(full, params));
  run->fresh_build_s = SecondsSince(t0);
  return MeanMass(full, info, layer, fresh.get(), o, first, &run->mass_fresh);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

int Main(int argc, char** argv) {
  Options o;
  auto help = [] {
    std::puts(
        "tierkv_bench_incremental [--seeds 1,2] [--methods vq;cluster;spann] [--prompt 32768] [--gen 8192]\n"
        "  [--before 128] [--end 32] [--window 8] [--sinks 1] [--budget 0.1] [--trigger every|drift] [--json PATH]");
  };
  if (!ParseFlagValues(argc, argv, help, [&](const std::string& f, const std::string& v) {
        if (f == "--seeds") o.seeds = ParseUintList(v);
        else if (f == "--methods") o.methods = Split(v, ';');  // specs hold commas
        else if (f == "--prompt") o.prompt = std::stoull(v);
        else if (f == "--gen") o.gen = std::stoull(v);
        else if (f == "--before") o.before = std::stoull(v);
        else if (f == "--end") o.end = std::stoull(v);
        else if (f == "--window") o.window = static_cast<uint32_t>(std::stoul(v));
        else if (f == "--sinks") o.sinks = static_cast<uint32_t>(std::stoul(v));
        else if (f == "--budget") o.budget = std::stod(v);
        else if (f == "--trigger") o.trigger = v;
        else if (f == "--json") o.json = v;
        else return false;
        return true;
      })) {
    return 2;
  }
  index::SetFaissThreads(1);
  std::vector<Run> runs;
  nlohmann::json doc = {{"bench", "incremental"},
                        {"prompt", o.prompt},
                        {"gen", o.gen},
                        {"q_heads", o.q_heads},
                        {"kv_heads", o.kv_heads},
                        {"head_dim", o.dim},
                        {"block_tokens", o.bt},
                        {"window_blocks", o.window},
                        {"budget", o.budget},
                        {"trigger", o.trigger},
                        {"runs", nlohmann::json::array()}};
  std::vector<std::vector<std::string>> rows;
  for (uint64_t seed : o.seeds) {
    for (const std::string& method : o.methods) {
      Run run;
      const auto t0 = Clock::now();
      const Status st = RunOne(method, seed, o, &run);
      if (!st.ok()) {
        std::fprintf(stderr, "%s seed %llu: %s\n", method.c_str(), static_cast<unsigned long long>(seed),
                     st.ToString().c_str());
        return 1;
      }
      std::fprintf(stderr, "%s seed %llu: %.0f s\n", method.c_str(), static_cast<unsigned long long>(seed),
                   SecondsSince(t0));
      auto pct = [](const std::vector<double>& v, double p) { return v.empty() ? 0.0 : Percentile(v, p); };
      const double ext_max = run.extend_ms.empty() ? 0.0 : *std::max_element(run.extend_ms.begin(), run.extend_ms.end());
      rows.push_back({method, std::to_string(seed), Fmt(pct(run.before_ms, 50)), Fmt(pct(run.before_ms, 99)),
                      Fmt(pct(run.before_ms, 100)), Fmt(pct(run.gen_ms, 50)), Fmt(pct(run.gen_ms, 99)),
                      Fmt(pct(run.gen_ms, 100)), std::to_string(run.extend_ms.size()), Fmt(ext_max),
                      std::to_string(run.rebalances), Fmt(pct(run.during_ms, 99)), Fmt(pct(run.swap_ms, 100)),
                      Fmt(run.mass_inc, 3), Fmt(run.mass_fresh, 3),
                      Fmt(run.fresh_build_s * 1e3, 0)});
      doc["runs"].push_back({{"method", method},
                             {"seed", seed},
                             {"build_s", run.build_s},
                             {"before_ms", {{"p50", pct(run.before_ms, 50)}, {"p99", pct(run.before_ms, 99)},
                                            {"max", pct(run.before_ms, 100)}, {"steps", run.before_ms.size()}}},
                             {"gen_ms", {{"p50", pct(run.gen_ms, 50)}, {"p99", pct(run.gen_ms, 99)},
                                         {"max", pct(run.gen_ms, 100)}, {"steps", run.gen_ms.size()}}},
                             {"extends", run.extend_ms.size()},
                             {"extend_ms_max", ext_max},
                             {"rebalances", run.rebalances},
                             {"during_rebalance_ms", {{"p50", pct(run.during_ms, 50)}, {"p99", pct(run.during_ms, 99)},
                                                      {"max", pct(run.during_ms, 100)}, {"steps", run.during_ms.size()}}},
                             {"swap_ms", run.swap_ms},
                             {"mass_recall_incremental", run.mass_inc},
                             {"mass_recall_fresh", run.mass_fresh},
                             {"fresh_build_ms", run.fresh_build_s * 1e3}});
    }
  }
  PrintTable({"method", "seed", "before p50 ms", "p99", "max", "gen p50 ms", "p99", "max", "extends", "extend max ms",
              "rebal", "during p99", "swap max", "recall inc", "recall fresh", "fresh build ms"},
             rows);
  return WriteJson(o.json, doc) ? 0 : 1;
}

}  // namespace
}  // namespace tierkv::bench

int main(int argc, char** argv) { return tierkv::bench::Main(argc, argv); }
