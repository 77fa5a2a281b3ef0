// tierkv_bench_eval: retrieval quality and CPU scoring latency of every retriever
// (DESIGN §4, BENCHMARKS.md "retrieval quality at a 10% budget").
//
//   1. Quality: every method on (a) the synthetic generator and (b) real
//      stories260K traces, at each budget: attention-mass recall, top-k recall,
//      output relative error, KL, KV bytes fetched per step, index bytes read
//      per step (SPANN postings), index memory. Plus the oracle's concentration
//      statistics of each workload.
//   2. Triggers: selected methods at a 10% budget under each trigger: recall
//      and retrievals taken/skipped.
//   3. Latency: Build time and Select latency (scoring + top-k, median per step)
//      of every method at each context length on one layer of random keys,
//      next to FAISS IndexFlatIP searching the same block mean keys (the peer)
//      in the same run.
// Prints tables on stdout, progress on stderr, JSON with --json. Run --help.
#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <faiss/IndexFlat.h>

#include "bench/bench_util.h"
#include "bench/eval_summary.h"
#include "index/block_scoring.h"
#include "eval/eval_driver.h"
#include "index/faiss_util.h"
#include "eval/needle_workload.h"
#include "index/retriever_factory.h"
#include "index/rng.h"
#include "eval/synthetic.h"
#include "eval/tiny_llama.h"

using namespace tierkv;
using namespace tierkv::index;
using tierkv::bench::Fmt;

namespace {

const char* kUsage = R"(usage: tierkv_bench_eval [--flag=value ...]

Quality (synthetic workloads):
  --synthetic-tokens=32768   context lengths, comma-separated ("" skips); --tokens= is an alias
  --workload=v2              synthetic families, comma-separated: v2 (calibrated generator preset),
                             v1 (the old preset), needles (eval/needle_workload.h: long segments,
                             several needles per KV head at random depths, local heads)
  --generator=               alias of --workload (the old name)
  --salience-sharing= --streaming-heads=   override the preset's value ("" keeps it)
  --layers=1 --q-heads=32 --kv-heads=8 --head-dim=128
  --steps=16                 scored decode steps per layer
  --calibration-steps=8      earlier decode steps whose queries train query-aware codebooks
  --block-tokens=16 --sink-tokens=4 --recent-tokens=64
Quality (real model, stories260K: trained on 512-token contexts; longer traces
run at positions it never saw and are labelled so):
  --model=../shared/data/stories260K.bin   ("" skips)
  --model-tokens=512,2048    trace lengths
  --model-steps=48 --model-block-tokens=8 --model-recent-tokens=32
Traces (docs/trace-format.md), any number:
  --trace=FILE               evaluated with --block-tokens and --recent-tokens
  --save-traces=DIR          also write every generated workload as a trace file (f32) into DIR
Both:
  --granularity=layer,head   selection granularities, comma-separated: layer (one block set per
                             layer) and/or head (one per KV head, same bytes: retriever.h)
  --seeds=                   seeds, comma-separated (synthetic and stories260K traces; "" = --seed);
                             a summary table gives mean ±sd over them
  --methods="exact;minmax;mean;mean:r=4;sentence;cluster;vq;vq:rope=post;spann;spann:store=file"
                             retriever factory strings, ';'-separated (see below)
  --budgets=0.02,0.05,0.1,0.2,0.4
Triggers (10% budget, first synthetic length):
  --triggers="every;drift:tau=0.8;every:n=4"   ("" skips)
  --trigger-methods="minmax;mean:r=4"
Latency (one layer of random keys, q-heads/kv-heads/head-dim as above):
  --latency-tokens=32768,131072,1048576   ("" skips)
  --latency-steps=5          Select calls timed per method (after one warm-up); 1M uses 2
  --latency-max-gmac=110     skip a method whose Build needs more multiply-adds (10^9) than
                             this on one layer (k-means / PQ training); said in the output
Other:
  --threads=1                OpenMP threads for FAISS
  --seed=1
  --json=bench/out/tierkv_bench_eval.json
  --help

Retrievers:
)";

using Args = std::map<std::string, std::string>;

Args ParseArgs(int argc, char** argv) {
  Args a = {{"synthetic-tokens", "32768"}, {"generator", ""}, {"workload", "v2"}, {"trace", ""},
            {"granularity", "layer,head"}, {"seeds", ""}, {"save-traces", ""}, {"salience-sharing", ""}, {"streaming-heads", ""}, {"layers", "1"}, {"q-heads", "32"},
            {"kv-heads", "8"}, {"head-dim", "128"}, {"steps", "16"}, {"calibration-steps", "8"},
            {"block-tokens", "16"}, {"sink-tokens", "4"}, {"recent-tokens", "64"},
            {"model", "../shared/data/stories260K.bin"}, {"model-tokens", "512,2048"}, {"model-steps", "48"},
            {"model-block-tokens", "8"}, {"model-recent-tokens", "32"},
            {"methods", "exact;minmax;mean;mean:r=4;sentence;cluster;vq;vq:rope=post;spann;spann:store=file"},
            {"budgets", "0.02,0.05,0.1,0.2,0.4"}, {"triggers", "every;drift:tau=0.8;every:n=4"},
            {"trigger-methods", "minmax;mean:r=4"}, {"latency-tokens", "32768,131072,1048576"},
            {"latency-steps", "5"}, {"latency-max-gmac", "110"}, {"threads", "1"}, {"seed", "1"},
            {"json", "bench/out/tierkv_bench_eval.json"}};
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      std::printf("%s%s", kUsage, RetrieverSpecHelp().c_str());
      std::exit(0);
    }
    const size_t eq = s.find('=');
    std::string key = eq == std::string::npos ? "" : s.substr(2, eq - 2);
    if (key == "tokens") key = "synthetic-tokens";  // the name bench_eval used
    if (s.rfind("--", 0) != 0 || eq == std::string::npos || !a.count(key)) {
      std::fprintf(stderr, "unknown argument '%s' (try --help)\n", s.c_str());
      std::exit(2);
    }
    if (key == "generator") key = "workload";
    if (key == "trace" && !a[key].empty()) {
      a[key] += ";" + s.substr(eq + 1);  // any number of traces
    } else {
      a[key] = s.substr(eq + 1);
    }
  }
  return a;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<double> Numbers(const std::string& s) {
  std::vector<double> out;
  for (const std::string& x : Split(s, ',')) out.push_back(std::stod(x));
  return out;
}

uint64_t U(const Args& a, const char* k) { return std::stoull(a.at(k)); }

void Progress(const char* fmt, const std::string& what) {
  std::fprintf(stderr, fmt, what.c_str());
  std::fflush(stderr);
}

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "tierkv_bench_eval: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

// One workload to run: a family, a length, a seed (or a trace file).
struct WorkloadPlan {
  std::string kind;   // "v1" | "v2" | "needles" | "stories260K" | "trace"
  uint64_t tokens = 0;
  uint64_t seed = 1;
  std::string path;   // trace file
};

// One workload: a trace source and the evaluation options that fit it.
struct Workload {
  std::string name;    // "synthetic v2 32768 seed 1", "stories260K 512 seed 1"
  std::string group;   // the name without the seed: seeds of a group are summarized together
  std::string source;  // "synthetic" | "needles" | "stories260K" | "trace"
  std::string note;
  std::unique_ptr<Trace> trace;  // every layer in memory: methods reuse it
  std::unique_ptr<InMemoryTraceSource> mem;
  std::unique_ptr<TraceReader> reader;  // trace files stream layer by layer
  EvalOptions options;
  // Synthetic head roles, [layer][query head] flattened (empty: no roles).
  std::vector<bool> streaming;
  TraceSource* src() { return reader ? static_cast<TraceSource*>(reader.get()) : mem.get(); }
};

std::vector<EvalBudget> Budgets(const Args& a) {
  std::vector<EvalBudget> b;
  for (double f : Numbers(a.at("budgets"))) b.push_back(EvalBudget::Fraction(f));
  return b;
}

std::vector<uint64_t> Seeds(const Args& a) {
  std::vector<uint64_t> out;
  for (double s : Numbers(a.at("seeds").empty() ? a.at("seed") : a.at("seeds"))) out.push_back(uint64_t(s));
  return out;
}

std::vector<WorkloadPlan> PlanWorkloads(const Args& a) {
  std::vector<WorkloadPlan> out;
  const std::string workloads = a.at("workload").empty() ? "v2" : a.at("workload");
  for (const std::string& kind : Split(workloads, ',')) {
    if (kind != "v1" && kind != "v2" && kind != "needles") {
      std::fprintf(stderr, "unknown --workload '%s' (v1, v2, needles)\n", kind.c_str());
      std::exit(2);
    }
    for (double tokens : Numbers(a.at("synthetic-tokens"))) {
      for (uint64_t seed : Seeds(a)) out.push_back({kind, static_cast<uint64_t>(tokens), seed, ""});
    }
  }
  const std::string model_path = a.at("model");
  if (!model_path.empty() && !std::filesystem::exists(model_path)) {
    std::fprintf(stderr, "model %s not found: real-model workloads skipped\n", model_path.c_str());
  } else if (!model_path.empty()) {
    for (double tokens : Numbers(a.at("model-tokens"))) {
      for (uint64_t seed : Seeds(a)) out.push_back({"stories260K", static_cast<uint64_t>(tokens), seed, ""});
    }
  }
  for (const std::string& path : Split(a.at("trace"), ';')) out.push_back({"trace", 0, 0, path});
  return out;
}

Workload MakeSynthetic(const Args& a, const WorkloadPlan& plan) {
  auto preset = SyntheticPreset(plan.kind);
  if (!preset.ok()) Die("generator", preset.status());
  SyntheticParams p = *preset;
  if (!a.at("salience-sharing").empty()) p.salience_sharing = std::stof(a.at("salience-sharing"));
  if (!a.at("streaming-heads").empty()) p.streaming_heads = std::stof(a.at("streaming-heads"));
  p.seed = plan.seed;
  p.num_tokens = plan.tokens;
  p.num_layers = static_cast<uint32_t>(U(a, "layers"));
  p.num_q_heads = static_cast<uint32_t>(U(a, "q-heads"));
  p.num_kv_heads = static_cast<uint32_t>(U(a, "kv-heads"));
  p.head_dim = static_cast<uint32_t>(U(a, "head-dim"));
  p.num_steps = U(a, "steps") + U(a, "calibration-steps");
  Workload w;
  auto gen = SyntheticGenerator::Create(p);
  if (!gen.ok()) Die("synthetic generator", gen.status());
  Progress("synthetic: generating %s tokens\n", std::to_string(p.num_tokens));
  auto trace = (*gen)->GenerateAll();
  if (!trace.ok()) Die("synthetic generator", trace.status());
  w.trace = std::make_unique<Trace>(std::move(trace).value());
  if (p.streaming_heads > 0.f) {
    for (uint32_t l = 0; l < p.num_layers; ++l) {
      for (uint32_t h = 0; h < p.num_q_heads; ++h) {
        w.streaming.push_back((*gen)->IsStreamingGroup(l, h / (p.num_q_heads / p.num_kv_heads)));
      }
    }
  }
  w.group = "synthetic " + plan.kind + " " + std::to_string(p.num_tokens);
  w.source = "synthetic";
  char note[160];
  std::snprintf(note, sizeof(note), "generator preset %s: salience_sharing %g, streaming_heads %g, seed %llu",
                plan.kind.c_str(), p.salience_sharing, p.streaming_heads, static_cast<unsigned long long>(p.seed));
  w.note = note;
  return w;
}

Workload MakeNeedles(const Args& a, const WorkloadPlan& plan) {
  NeedleWorkloadParams p;
  p.seed = plan.seed;
  p.num_tokens = plan.tokens;
  p.num_layers = static_cast<uint32_t>(U(a, "layers"));
  p.num_q_heads = static_cast<uint32_t>(U(a, "q-heads"));
  p.num_kv_heads = static_cast<uint32_t>(U(a, "kv-heads"));
  p.head_dim = static_cast<uint32_t>(U(a, "head-dim"));
  p.num_steps = U(a, "steps") + U(a, "calibration-steps");
  auto gen = NeedleWorkload::Create(p);
  if (!gen.ok()) Die("needle workload", gen.status());
  Progress("needles: generating %s tokens\n", std::to_string(p.num_tokens));
  auto trace = (*gen)->GenerateAll();
  if (!trace.ok()) Die("needle workload", trace.status());
  Workload w;
  w.trace = std::make_unique<Trace>(std::move(trace).value());
  w.group = "needles " + std::to_string(p.num_tokens);
  w.source = "needles";
  w.note = w.trace->info.description;
  return w;
}

Workload MakeStories(const Args& a, const WorkloadPlan& plan) {
  const std::string model_path = a.at("model");
  auto model = TinyLlama::Load(model_path, kStories260KChecksum);
  if (!model.ok()) Die("load " + model_path, model.status());
  GenerateOptions g;
  g.num_tokens = plan.tokens;
  g.num_query_steps = U(a, "model-steps") + U(a, "calibration-steps");
  g.seed = plan.seed;
  g.allow_untrained_positions = true;  // labelled below and in the trace description
  Progress("stories260K: generating %s tokens\n", std::to_string(g.num_tokens));
  auto trace = GenerateTrace(model->get(), g);
  if (!trace.ok()) Die("stories260K trace", trace.status());
  Workload w;
  w.trace = std::make_unique<Trace>(std::move(trace).value());
  w.group = "stories260K " + std::to_string(g.num_tokens);
  w.source = "stories260K";
  w.note = w.trace->info.description;
  if (g.num_tokens > (*model)->config().seq_len) w.group += " (untrained positions)";
  // 512 tokens are 32 blocks of 16: smaller blocks and window keep the
  // always-kept share of a 10% budget reasonable.
  w.options.block_tokens = static_cast<uint32_t>(U(a, "model-block-tokens"));
  w.options.recent_tokens = U(a, "model-recent-tokens");
  return w;
}

Workload MakeWorkload(const Args& a, const WorkloadPlan& plan) {
  Workload w;
  if (plan.kind == "trace") {
    auto r = TraceReader::Open(plan.path);
    if (!r.ok()) Die("trace " + plan.path, r.status());
    w.reader = std::move(r).value();
    w.name = w.group = "trace " + std::filesystem::path(plan.path).filename().string();
    w.source = "trace";
    w.note = w.reader->info().description;
  } else {
    w = plan.kind == "needles" ? MakeNeedles(a, plan) : plan.kind == "stories260K" ? MakeStories(a, plan)
                                                                                  : MakeSynthetic(a, plan);
    w.mem = std::make_unique<InMemoryTraceSource>(w.trace.get());
    w.name = w.group + " seed " + std::to_string(plan.seed);
    if (!a.at("save-traces").empty()) {
      std::string file = w.name;
      for (char& c : file) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      const std::string path = a.at("save-traces") + "/" + file + ".trace";
      std::filesystem::create_directories(a.at("save-traces"));
      if (Status s = WriteTrace(path, *w.trace, TraceDType::kF32); !s.ok()) Die("write " + path, s);
      Progress("wrote %s\n", path);
    }
  }
  if (w.source != "stories260K") {
    w.options.block_tokens = static_cast<uint32_t>(U(a, "block-tokens"));
    w.options.recent_tokens = U(a, "recent-tokens");
  }
  w.options.sink_tokens = U(a, "sink-tokens");
  w.options.budgets = Budgets(a);
  w.options.calibration_steps = static_cast<uint32_t>(U(a, "calibration-steps"));
  return w;
}

std::vector<Granularity> Granularities(const Args& a) {
  std::vector<Granularity> out;
  for (const std::string& g : Split(a.at("granularity"), ',')) {
    auto r = ParseGranularity(g);
    if (!r.ok()) Die("--granularity", r.status());
    out.push_back(*r);
  }
  if (out.empty()) out.push_back(Granularity::kLayer);
  return out;
}

// Mean of the per-head mass recall over the heads whose role is `streaming`.
double RoleRecall(const BudgetMetrics& b, const std::vector<bool>& streaming, bool role) {
  double sum = 0;
  int n = 0;
  for (size_t i = 0; i < b.head_mass_recall.size() && i < streaming.size(); ++i) {
    if (streaming[i] == role) sum += b.head_mass_recall[i], ++n;
  }
  return n > 0 ? sum / n : 0.0;
}

// Section 1: every method on every workload.
// Workloads are made one at a time (a 32K-token layer of 8 KV heads is 400 MB).
nlohmann::json RunQuality(const Args& a, bench::EvalSummary* summary) {
  nlohmann::json out = nlohmann::json::array();
  const std::vector<std::string> methods = Split(a.at("methods"), ';');
  for (const WorkloadPlan& plan : PlanWorkloads(a)) {
    Workload w = MakeWorkload(a, plan);
    Progress("== %s: oracle concentration\n", w.name);
    ExactAttentionCache exact_cache;  // every method is scored against the same exact attention
    auto conc = MeasureConcentration(w.src(), w.options, &exact_cache);
    if (!conc.ok()) Die(w.name, conc.status());
    nlohmann::json wj = {{"name", w.name}, {"group", w.group}, {"source", w.source}, {"note", w.note},
                         {"concentration", ConcentrationToJson(*conc)}, {"runs", nlohmann::json::array()}};
    std::vector<EvalReport> reports;
    for (const std::string& m : methods) {
     for (Granularity gran : Granularities(a)) {
      auto r = MakeRetriever(m, gran);
      if (!r.ok()) Die("retriever " + m, r.status());
      const auto t0 = std::chrono::steady_clock::now();
      auto rep = RunEval(w.src(), r->get(), w.options, &exact_cache);
      if (!rep.ok()) Die(w.name + " " + m, rep.status());
      std::fprintf(stderr, "   %-28s build %6.2f s, select %6.2f s, total %6.1f s\n", (*r)->Name().c_str(),
                   rep->build_seconds, rep->select_seconds, bench::SecondsSince(t0));
      nlohmann::json rj = EvalReportToJson(*rep);
      rj["spec"] = m;
      if (!w.streaming.empty()) {
        for (size_t b = 0; b < rep->budgets.size(); ++b) {
          rj["budgets"][b]["retrieval_heads_mass_recall"] = RoleRecall(rep->budgets[b], w.streaming, false);
          rj["budgets"][b]["streaming_heads_mass_recall"] = RoleRecall(rep->budgets[b], w.streaming, true);
        }
      }
      wj["runs"].push_back(rj);
      summary->Add(w.group, *rep);
      reports.push_back(std::move(rep).value());
     }
    }
    std::printf("\n== %s (%s)\n", w.name.c_str(), w.note.c_str());
    std::printf("oracle concentration: 90%% of a head's mass in %.2f%% of tokens (median %.2f%%), %.2f%% of blocks;"
                " one selection per layer needs %.2f%% of blocks; sinks hold %.3f, the recent window %.3f;"
                " tokens >= 1%% of the head's max: %.2f%%; cross-KV-group correlation of log attention"
                " received: %.3f\n",
                100 * conc->tokens_for_90, 100 * conc->tokens_for_90_median, 100 * conc->blocks_for_90_head,
                100 * conc->blocks_for_90_layer, conc->sink_mass, conc->recent_mass, 100 * conc->h2o_share,
                conc->cross_group_correlation);
    std::printf("%s", FormatEvalTable(reports).c_str());
    if (!w.streaming.empty()) {
      std::printf("mass recall by head role (retrieval heads / streaming heads):\n");
      std::vector<std::vector<std::string>> rows;
      for (const EvalReport& r : reports) {
        std::vector<std::string> row = {r.retriever};
        for (const BudgetMetrics& b : r.budgets) {
          row.push_back(Fmt(RoleRecall(b, w.streaming, false), 3) + " / " + Fmt(RoleRecall(b, w.streaming, true), 3));
        }
        rows.push_back(row);
      }
      std::vector<std::string> header = {"retriever"};
      for (const EvalBudget& b : w.options.budgets) header.push_back(b.ToString());
      bench::PrintTable(header, rows);
    }
    out.push_back(wj);
  }
  return out;
}

// Section 2: triggers at a 10% budget on the first workload.
nlohmann::json RunTriggers(const Args& a) {
  nlohmann::json out = nlohmann::json::array();
  const std::vector<std::string> triggers = Split(a.at("triggers"), ';');
  const std::vector<WorkloadPlan> plans = PlanWorkloads(a);
  if (triggers.empty() || plans.empty()) return out;
  Workload first = MakeWorkload(a, plans[0]);
  Workload* w = &first;
  std::vector<std::vector<std::string>> rows;
  for (const std::string& m : Split(a.at("trigger-methods"), ';')) {
   for (Granularity gran : Granularities(a)) {
    for (const std::string& t : triggers) {
      auto cfg = TriggerConfig::Parse(t);
      if (!cfg.ok()) Die("trigger " + t, cfg.status());
      auto r = MakeRetriever(m, gran);
      if (!r.ok()) Die("retriever " + m, r.status());
      EvalOptions o = w->options;
      o.budgets = {EvalBudget::Fraction(0.1)};
      o.trigger = *cfg;
      Progress("== triggers: %s\n", m + " " + t);
      auto rep = RunEval(w->src(), r->get(), o);
      if (!rep.ok()) Die("trigger run", rep.status());
      const BudgetMetrics& b = rep->budgets[0];
      rows.push_back({(*r)->Name(), cfg->ToString(), Fmt(b.mass_recall, 4), Fmt(b.topk_recall, 4),
                      Fmt(b.output_rel_error, 4), std::to_string(b.triggers_taken),
                      std::to_string(b.triggers_skipped)});
      nlohmann::json j = EvalReportToJson(*rep);
      j["spec"] = m;
      j["workload"] = w->name;
      out.push_back(j);
    }
   }
  }
  std::printf("\n== triggers on %s, 10%% budget\n", w->name.c_str());
  bench::PrintTable({"retriever", "trigger", "mass_rec", "topk_rec", "out_err", "taken", "skipped"}, rows);
  return out;
}

// A layer of random keys for timing: shape of the workload, the generator's
// mean offset (norm 8, plus four +-12 channels), uniform noise of variance 1.
struct RandomLayer {
  std::vector<float> keys, queries;
  std::vector<uint64_t> sentences;
  LayerKeys view;
  RandomLayer(uint64_t tokens, uint32_t q_heads, uint32_t kv_heads, uint32_t d, uint32_t steps, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> mu(d);
    for (float& x : mu) x = static_cast<float>(rng.Normal() * 8.0 / std::sqrt(double(d)));
    for (uint32_t i = 0; i < 4 && i < d; ++i) mu[d - 1 - 2 * i] = (i % 2 ? -12.f : 12.f);
    keys.resize(tokens * kv_heads * d);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < keys.size(); ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64: fast enough for 4 GB
      keys[i] = mu[i % d] + (static_cast<float>(x >> 40) * (1.f / 16777216.f) - 0.5f) * 3.4641f;
    }
    queries.resize(size_t{steps} * q_heads * d);
    for (float& q : queries) q = static_cast<float>(rng.Normal());
    for (uint64_t t = 0; t < tokens; t += 24) sentences.push_back(t);
    view.num_kv_heads = kv_heads;
    view.head_dim = d;
    view.num_tokens = tokens;
    view.keys = keys.data();
    view.keys_pre = keys.data();  // contents do not matter for timing
    view.sentence_starts = sentences;
    view.rope_style = RopeStyle::kHalfSplit;
    view.rope_theta = 500000.0;
  }
};

// Multiply-adds (10^9) of one Build on one layer, for the methods that train.
double BuildGmac(const std::string& spec, uint64_t T, uint32_t kv, uint32_t d, uint32_t bt) {
  const double n = double(T), D = d, KV = kv;
  if (spec.rfind("cluster", 0) == 0) {
    const double k = n / 64, train = std::min(n, k * 32);
    return KV * (10 * train * k * D + n * k * D) / 1e9;
  }
  if (spec.rfind("vq", 0) == 0) return KV * (8 * 4096.0 * 256 * D + n * 256 * D) / 1e9;
  if (spec.rfind("spann", 0) == 0) {
    const double v = 2 * n / bt, k = v / 16;
    return KV * (13 * v * k * D) / 1e9;
  }
  return 0.0;
}

// Section 3: Build and Select timings against FAISS IndexFlatIP on the mean keys.
nlohmann::json RunLatency(const Args& a) {
  nlohmann::json out = nlohmann::json::array();
  const uint32_t H = static_cast<uint32_t>(U(a, "q-heads")), KV = static_cast<uint32_t>(U(a, "kv-heads"));
  const uint32_t d = static_cast<uint32_t>(U(a, "head-dim")), bt = static_cast<uint32_t>(U(a, "block-tokens"));
  const double max_gmac = std::stod(a.at("latency-max-gmac"));
  std::vector<std::vector<std::string>> rows;
  for (double tokens_d : Numbers(a.at("latency-tokens"))) {
    const uint64_t T = static_cast<uint64_t>(tokens_d);
    const uint32_t steps = T >= (1u << 20) ? 2 : static_cast<uint32_t>(U(a, "latency-steps"));
    Progress("== latency: %s tokens, random layer\n", std::to_string(T));
    RandomLayer layer(T, H, KV, d, steps + 1, U(a, "seed"));
    RetrieverParams rp;
    rp.block_tokens = bt;
    rp.num_q_heads = H;
    rp.prompt_tokens = T - 64;
    rp.query_sample = {1, layer.queries.data(), layer.queries.data(), nullptr};
    std::vector<uint64_t> positions(steps + 1, T - 1);
    rp.query_sample.positions = positions.data();
    const uint64_t visible = VisibleBlocks(T - 1, bt);
    const uint32_t budget = EvalBudget::Fraction(0.1).Resolve(visible);
    const std::vector<uint32_t> kept = AlwaysKeptBlocks(T - 1, bt, 4, 64);
    auto time_select = [&](const std::function<Status(const QueryView&)>& fn, double* median_us) -> Status {
      std::vector<double> us;
      for (uint32_t s = 0; s <= steps; ++s) {
        QueryView q;
        q.num_q_heads = H;
        q.head_dim = d;
        q.q = q.q_pre = layer.queries.data() + size_t{s} * H * d;
        q.position = T - 1;
        const auto t0 = std::chrono::steady_clock::now();
        RETURN_IF_ERROR(fn(q));
        if (s > 0) us.push_back(1e6 * bench::SecondsSince(t0));  // the first call warms up
      }
      *median_us = bench::Percentile(us, 50);
      return OkStatus();
    };
    // The peer: FAISS IndexFlatIP per KV head over the block mean keys, top-k per query head.
    BlockSummaries sums;
    auto t0 = std::chrono::steady_clock::now();
    if (Status s = BuildBlockSummaries(layer.view, bt, false, true, &sums); !s.ok()) Die("summaries", s);
    std::vector<std::unique_ptr<faiss::IndexFlatIP>> flat;
    std::vector<float> col(sums.num_blocks * d);
    for (uint32_t g = 0; g < KV; ++g) {
      for (uint64_t b = 0; b < sums.num_blocks; ++b) std::copy_n(sums.mean.data() + (b * KV + g) * d, d, col.data() + b * d);
      flat.push_back(std::make_unique<faiss::IndexFlatIP>(d));
      flat.back()->add(static_cast<faiss::Index::idx_t>(sums.num_blocks), col.data());
    }
    const double flat_build = bench::SecondsSince(t0);
    std::vector<float> dist(size_t{H} * budget);
    std::vector<faiss::Index::idx_t> lab(size_t{H} * budget);
    double flat_us = 0;
    Status fs = time_select(
        [&](const QueryView& q) {
          const uint32_t group = H / KV;
          for (uint32_t g = 0; g < KV; ++g) {
            flat[g]->search(group, q.q + size_t{g} * group * d, budget, dist.data() + size_t{g} * group * budget,
                            lab.data() + size_t{g} * group * budget);
          }
          return OkStatus();
        },
        &flat_us);
    if (!fs.ok()) Die("faiss flat", fs);
    rows.push_back({std::to_string(T), "faiss IndexFlatIP (mean keys)", Fmt(flat_build, 2), Fmt(flat_us, 0), "1.00",
                    Fmt(double(sums.Bytes()) / (1 << 20), 1), ""});
    out.push_back({{"tokens", T}, {"method", "faiss_flat_ip"}, {"build_seconds", flat_build},
                   {"select_us_median", flat_us}, {"index_bytes", sums.Bytes()}, {"steps", steps}});
    flat.clear();
    sums = BlockSummaries();
    for (const std::string& m : Split(a.at("methods"), ';')) {
      const double gmac = BuildGmac(m, T, KV, d, bt);
      if (gmac > max_gmac) {
        char why[160];
        std::snprintf(why, sizeof(why), "skipped: Build needs ~%.0f G multiply-adds (> --latency-max-gmac=%g)", gmac,
                      max_gmac);
        rows.push_back({std::to_string(T), m, "-", "-", "-", "-", why});
        out.push_back({{"tokens", T}, {"method", m}, {"skipped", why}});
        continue;
      }
      Progress("   latency: %s\n", m);
      auto r = MakeRetriever(m);
      if (!r.ok()) Die("retriever " + m, r.status());
      t0 = std::chrono::steady_clock::now();
      if (Status s = (*r)->Build(layer.view, rp); !s.ok()) Die("build " + m, s);
      const double build_s = bench::SecondsSince(t0);
      std::vector<uint32_t> sel;
      double us = 0;
      const uint64_t read0 = (*r)->IndexBytesRead();
      Status s = time_select([&](const QueryView& q) { return (*r)->Select(q, budget, kept, &sel); }, &us);
      if (!s.ok()) Die("select " + m, s);
      const double read_per_step = double((*r)->IndexBytesRead() - read0) / (steps + 1);
      rows.push_back({std::to_string(T), (*r)->Name(), Fmt(build_s, 2), Fmt(us, 0), Fmt(us / flat_us, 2),
                      Fmt(double((*r)->IndexBytes()) / (1 << 20), 1),
                      read_per_step > 0 ? "reads " + Fmt(read_per_step / 1024, 0) + " KiB/step" : ""});
      out.push_back({{"tokens", T}, {"method", (*r)->Name()}, {"spec", m}, {"build_seconds", build_s},
                     {"select_us_median", us}, {"vs_faiss_flat", us / flat_us},
                     {"index_bytes", (*r)->IndexBytes()}, {"off_memory_index_bytes", (*r)->OffMemoryIndexBytes()},
                     {"index_bytes_read_per_step", read_per_step}, {"steps", steps}});
    }
  }
  std::printf("\n== CPU scoring latency per layer (q=%s kv=%s d=%s, %s-token blocks, 10%% budget, median; "
              "ratio to FAISS IndexFlatIP top-k over the block mean keys in the same run)\n",
              a.at("q-heads").c_str(), a.at("kv-heads").c_str(), a.at("head-dim").c_str(), a.at("block-tokens").c_str());
  bench::PrintTable({"tokens", "method", "build_s", "select_us", "vs_flat", "index_MiB", "note"}, rows);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = ParseArgs(argc, argv);
  SetFaissThreads(static_cast<int>(U(a, "threads")));
  const auto t0 = std::chrono::steady_clock::now();
  nlohmann::json doc;
  doc["bench"] = "tierkv_bench_eval";
  doc["args"] = a;
  bench::EvalSummary summary;
  doc["workloads"] = RunQuality(a, &summary);
  summary.Print();
  doc["summary"] = summary.ToJson();
  doc["triggers"] = RunTriggers(a);
  doc["latency"] = RunLatency(a);
  doc["seconds"] = bench::SecondsSince(t0);
  const std::string path = a.at("json");
  if (std::filesystem::path(path).has_parent_path()) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  }
  if (!bench::WriteJson(path, doc)) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return 1;
  }
  std::printf("\nJSON: %s (%.0f s in all)\n", path.c_str(), bench::SecondsSince(t0));
  return 0;
}
