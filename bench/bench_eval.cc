// bench_eval: retrieval-quality evaluation of the exact oracle on synthetic traces
// (up to 128K tokens and more, generated one layer at a time) and on a real-model
// trace (stories260K), plus the generator's cost per layer. Prints a table and
// writes JSON (DESIGN §4, BENCHMARKS.md). Other retrievers join through
// index/eval_driver.h; `tierkv-bench eval` will print the same reports.
//
//   bench_eval [--tokens=4096,32768,131072] [--layers=2] [--q-heads=32] [--kv-heads=8]
//              [--head-dim=128] [--steps=8] [--block-tokens=16] [--budgets=0.05,0.1,0.2]
//              [--model=../shared/data/stories260K.bin] [--model-tokens=512] [--seed=1]
//              [--json=bench/out/bench_eval.json]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "index/eval_driver.h"
#include "index/exact_retriever.h"
#include "index/synthetic.h"
#include "index/tiny_llama.h"

using namespace tierkv;
using namespace tierkv::index;

namespace {

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> args = {
      {"tokens", "4096,32768,131072"}, {"layers", "2"},         {"q-heads", "32"},
      {"kv-heads", "8"},               {"head-dim", "128"},     {"steps", "8"},
      {"block-tokens", "16"},          {"budgets", "0.05,0.1,0.2"},
      {"model", "../shared/data/stories260K.bin"}, {"model-tokens", "512"}, {"seed", "1"},
      {"json", "bench/out/bench_eval.json"}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const size_t eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos || !args.count(a.substr(2, eq - 2))) {
      std::fprintf(stderr, "unknown argument %s (see the header of bench/bench_eval.cc)\n", a.c_str());
      std::exit(2);
    }
    args[a.substr(2, eq - 2)] = a.substr(eq + 1);
  }
  return args;
}

std::vector<double> ParseList(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stod(item));
  return out;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times the generation of every layer once (the cost a benchmark pays per layer).
nlohmann::json TimeGenerator(SyntheticGenerator* gen) {
  TraceLayer layer;
  double total = 0.0;
  for (uint32_t l = 0; l < gen->info().num_layers; ++l) {
    auto t0 = std::chrono::steady_clock::now();
    Status s = gen->LoadLayer(l, &layer);
    total += Seconds(t0);
    if (!s.ok()) return {{"error", s.ToString()}};
  }
  const double bytes = 4.0 * (3.0 * double(gen->info().KeyElems()) + 2.0 * double(gen->info().QueryElems()));
  return {{"seconds_per_layer", total / gen->info().num_layers}, {"bytes_per_layer", bytes}};
}

}  // namespace

int main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  EvalOptions options;
  options.block_tokens = static_cast<uint32_t>(std::stoul(args["block-tokens"]));
  options.budgets.clear();
  for (double f : ParseList(args["budgets"])) options.budgets.push_back(EvalBudget::Fraction(f));

  nlohmann::json out;
  out["bench"] = "bench_eval";
  out["runs"] = nlohmann::json::array();
  std::vector<EvalReport> reports;
  std::vector<std::string> labels;
  for (double tokens : ParseList(args["tokens"])) {
    SyntheticParams p;
    p.seed = std::stoull(args["seed"]);
    p.num_tokens = static_cast<uint64_t>(tokens);
    p.num_layers = static_cast<uint32_t>(std::stoul(args["layers"]));
    p.num_q_heads = static_cast<uint32_t>(std::stoul(args["q-heads"]));
    p.num_kv_heads = static_cast<uint32_t>(std::stoul(args["kv-heads"]));
    p.head_dim = static_cast<uint32_t>(std::stoul(args["head-dim"]));
    p.num_steps = std::stoull(args["steps"]);
    auto gen = SyntheticGenerator::Create(p);
    if (!gen.ok()) {
      std::fprintf(stderr, "synthetic %g tokens: %s\n", tokens, gen.status().ToString().c_str());
      return 1;
    }
    nlohmann::json gen_cost = TimeGenerator(gen->get());
    ExactRetriever exact;
    auto t0 = std::chrono::steady_clock::now();
    auto report = RunEval(gen->get(), &exact, options);
    if (!report.ok()) {
      std::fprintf(stderr, "eval %g tokens: %s\n", tokens, report.status().ToString().c_str());
      return 1;
    }
    const double eval_seconds = Seconds(t0);
    std::printf("synthetic %llu tokens (layers=%u q=%u kv=%u d=%u steps=%llu): generator %.2f s/layer, "
                "%.0f MiB/layer; eval %.1f s\n",
                static_cast<unsigned long long>(p.num_tokens), p.num_layers, p.num_q_heads, p.num_kv_heads,
                p.head_dim, static_cast<unsigned long long>(p.num_steps), gen_cost.value("seconds_per_layer", 0.0),
                gen_cost.value("bytes_per_layer", 0.0) / (1 << 20), eval_seconds);
    nlohmann::json run = EvalReportToJson(*report);
    run["source"] = "synthetic";
    run["generator"] = gen_cost;
    run["eval_seconds"] = eval_seconds;
    out["runs"].push_back(run);
    reports.push_back(std::move(report).value());
    labels.push_back("synthetic " + std::to_string(p.num_tokens));
  }

  const std::string model_path = args["model"];
  if (!model_path.empty() && std::filesystem::exists(model_path)) {
    auto model = TinyLlama::Load(model_path, kStories260KChecksum);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    GenerateOptions g;
    g.num_tokens = std::stoull(args["model-tokens"]);
    g.num_query_steps = 64;
    g.seed = std::stoull(args["seed"]);
    g.allow_untrained_positions = true;  // said in the trace description and below
    auto trace = GenerateTrace(model->get(), g);
    if (!trace.ok()) {
      std::fprintf(stderr, "%s\n", trace.status().ToString().c_str());
      return 1;
    }
    // 512 tokens are 32 blocks of 16: sinks + a 64-token window would already be
    // ~19% of them, so the tiny model is evaluated with 8-token blocks and a
    // 32-token window (said in the JSON options).
    EvalOptions model_options = options;
    model_options.block_tokens = 8;
    model_options.recent_tokens = 32;
    InMemoryTraceSource source(&*trace);
    ExactRetriever exact;
    auto report = RunEval(&source, &exact, model_options);
    if (!report.ok()) {
      std::fprintf(stderr, "%s\n", report.status().ToString().c_str());
      return 1;
    }
    std::printf("stories260K trace: %s\n", trace->info.description.c_str());
    nlohmann::json run = EvalReportToJson(*report);
    run["source"] = "stories260K";
    out["runs"].push_back(run);
    reports.push_back(std::move(report).value());
    labels.push_back("stories260K " + std::to_string(g.num_tokens));
  } else {
    std::printf("model %s not found: real-model run skipped\n", model_path.c_str());
  }

  for (size_t i = 0; i < reports.size(); ++i) {
    const EvalOptions& o = reports[i].options;
    std::printf("\n== %s (block_tokens=%u, sinks=%llu tokens, recent=%llu tokens)\n%s", labels[i].c_str(),
                o.block_tokens, static_cast<unsigned long long>(o.sink_tokens),
                static_cast<unsigned long long>(o.recent_tokens), FormatEvalTable({reports[i]}).c_str());
  }
  const std::filesystem::path json_path = args["json"];
  if (json_path.has_parent_path()) std::filesystem::create_directories(json_path.parent_path());
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("\nJSON: %s\n", json_path.c_str());
  return 0;
}
