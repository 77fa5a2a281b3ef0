#include "eval/eval_driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "eval/eval_metrics.h"

namespace tierkv::index {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Running sums for one budget.
struct Accumulator {
  double visible = 0, selected = 0, topk = 0, mass = 0, min_mass = 1, min_head = 1, err = 0, max_err = 0, kl = 0,
         bytes_sel = 0, bytes_ret = 0, layer_mass = 0, index_read = 0;
  uint64_t n = 0, layer_n = 0;
  std::vector<double> per_layer;
  std::vector<double> per_head, layer_head;  // [heads] of all layers / of this layer

  void Add(uint64_t visible_blocks, const SelectionMetrics& m, uint64_t index_bytes_read) {
    index_read += static_cast<double>(index_bytes_read);
    layer_head.resize(m.head_mass_recall.size(), 0.0);
    for (size_t h = 0; h < layer_head.size(); ++h) layer_head[h] += m.head_mass_recall[h];
    visible += static_cast<double>(visible_blocks);
    selected += static_cast<double>(m.selected_blocks);
    topk += m.topk_recall;
    mass += m.mass_recall;
    min_mass = std::min(min_mass, m.mass_recall);
    min_head = std::min(min_head, m.min_head_mass_recall);
    err += m.output_rel_error;
    max_err = std::max(max_err, m.output_rel_error);
    kl += m.kl_divergence;
    bytes_sel += static_cast<double>(m.bytes_selected);
    bytes_ret += static_cast<double>(m.bytes_retrieved);
    layer_mass += m.mass_recall;
    ++n;
    ++layer_n;
  }
  void EndLayer() {
    per_layer.push_back(layer_n > 0 ? layer_mass / static_cast<double>(layer_n) : 0.0);
    for (double x : layer_head) per_head.push_back(layer_n > 0 ? x / static_cast<double>(layer_n) : 0.0);
    layer_head.clear();
    layer_mass = 0;
    layer_n = 0;
  }
  BudgetMetrics Finish(const EvalBudget& budget) const {
    const double k = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
    BudgetMetrics b;
    b.budget = budget;
    b.evaluations = n;
    b.visible_blocks = visible * k;
    b.selected_blocks = selected * k;
    b.topk_recall = topk * k;
    b.mass_recall = mass * k;
    b.min_mass_recall = n > 0 ? min_mass : 0.0;
    b.min_head_mass_recall = n > 0 ? min_head : 0.0;
    b.output_rel_error = err * k;
    b.max_output_rel_error = max_err;
    b.kl_divergence = kl * k;
    b.bytes_selected = bytes_sel * k;
    b.bytes_retrieved = bytes_ret * k;
    b.index_bytes_read = index_read * k;
    b.layer_mass_recall = per_layer;
    b.head_mass_recall = per_head;
    return b;
  }
};

}  // namespace

uint32_t EvalBudget::Resolve(uint64_t visible_blocks) const {
  double want = kind == Kind::kFraction ? std::ceil(value * static_cast<double>(visible_blocks) - 1e-9) : value;
  want = std::clamp(want, 1.0, static_cast<double>(visible_blocks));
  return static_cast<uint32_t>(want);
}

std::string EvalBudget::ToString() const {
  char buf[64];
  if (kind == Kind::kFraction) {
    std::snprintf(buf, sizeof(buf), "%g%%", value * 100.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%u blocks", static_cast<uint32_t>(value));
  }
  return buf;
}

Status EvalOptions::Validate(const TraceInfo& info) const {
  if (block_tokens == 0 || block_tokens > ModelLimits::kMaxBlockTokens) {
    return InvalidArgument("eval.block_tokens must be in [1, " + std::to_string(ModelLimits::kMaxBlockTokens) + "]");
  }
  if (budgets.empty()) return InvalidArgument("eval.budgets is empty");
  for (const EvalBudget& b : budgets) {
    const bool ok = b.kind == EvalBudget::Kind::kFraction ? (b.value > 0.0 && b.value <= 1.0)
                                                          : (b.value >= 1.0 && b.value <= 4294967295.0);
    if (!ok) return InvalidArgument("eval budget " + b.ToString() + " is out of range");
  }
  if (step_stride == 0) return InvalidArgument("eval.step_stride must be >= 1");
  if (info.num_steps() == 0) return InvalidArgument("trace has no decode steps to evaluate");
  if (calibration_steps >= info.num_steps()) {
    return InvalidArgument("eval.calibration_steps " + std::to_string(calibration_steps) + " leaves none of the " +
                           std::to_string(info.num_steps()) + " decode steps to score");
  }
  for (uint32_t l : layers) {
    if (l >= info.num_layers) {
      return InvalidArgument("eval layer " + std::to_string(l) + " is not below the trace's " +
                             std::to_string(info.num_layers) + " layers");
    }
  }
  if (kv_dtype != DType::kF16 && kv_dtype != DType::kBF16 && kv_dtype != DType::kF32) {
    return InvalidArgument("eval.kv_dtype is not a known dtype");
  }
  return OkStatus();
}

Result<const ExactAttention*> ExactAttentionCache::Get(uint32_t layer, uint64_t step, const LayerKeys& keys,
                                                       const QueryView& query) {
  auto it = kept_.find({layer, step});
  if (it != kept_.end()) {
    ++hits_;
    return &it->second;
  }
  ++misses_;
  RETURN_IF_ERROR(ComputeExactAttention(keys, query, &scratch_));
  const uint64_t bytes = (scratch_.probs.size() + scratch_.output.size()) * sizeof(float);
  if (bytes_ + bytes > max_bytes_) return &scratch_;
  bytes_ += bytes;
  return &(kept_[{layer, step}] = std::move(scratch_));
}

Result<EvalReport> RunEval(TraceSource* source, Retriever* retriever, const EvalOptions& options,
                           ExactAttentionCache* cache) {
  const TraceInfo& info = source->info();
  RETURN_IF_ERROR(options.Validate(info));
  EvalReport report;
  report.retriever = retriever->Name();
  report.granularity = retriever->granularity();
  report.trace_description = info.description;
  report.num_layers = info.num_layers;
  report.num_q_heads = info.num_q_heads;
  report.num_kv_heads = info.num_kv_heads;
  report.head_dim = info.head_dim;
  report.num_tokens = info.num_tokens;
  report.num_steps = info.num_steps();
  report.options = options;
  report.layers = options.layers;
  if (report.layers.empty()) {
    for (uint32_t l = 0; l < info.num_layers; ++l) report.layers.push_back(l);
  }
  const uint64_t block_bytes = uint64_t{2} * info.num_kv_heads * options.block_tokens * info.head_dim *
                               DTypeBytes(options.kv_dtype);
  RetrieverParams params;
  params.block_tokens = options.block_tokens;
  params.num_q_heads = info.num_q_heads;
  params.head_combine = options.head_combine;
  params.prompt_tokens = info.step_positions[0];

  std::vector<Accumulator> acc(options.budgets.size());
  std::vector<TriggerBank> triggers(options.budgets.size(), TriggerBank(options.trigger));
  TraceLayer layer;
  ExactAttention exact;
  std::vector<std::vector<uint32_t>> selected;
  for (uint32_t l : report.layers) {
    Status s = source->LoadLayer(l, &layer);
    if (!s.ok()) return s.WithContext("load layer " + std::to_string(l));
    const LayerKeys view = LayerKeysOf(info, layer);
    params.query_sample = QuerySample();
    if (options.calibration_steps > 0) {
      params.query_sample.count = options.calibration_steps;
      params.query_sample.q = layer.queries.data();
      params.query_sample.q_pre = layer.queries_pre.empty() ? nullptr : layer.queries_pre.data();
      params.query_sample.positions = info.step_positions.data();
    }
    auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(retriever->Build(view, params));
    report.build_seconds += SecondsSince(start);
    report.index_bytes += retriever->IndexBytes();
    report.off_memory_index_bytes += retriever->OffMemoryIndexBytes();
    for (uint64_t step = options.calibration_steps; step < info.num_steps(); step += options.step_stride) {
      const QueryView query = StepQuery(info, layer, step);
      const ExactAttention* ex = &exact;
      if (cache != nullptr) {
        ASSIGN_OR_RETURN(ex, cache->Get(l, step, view, query));
      } else {
        RETURN_IF_ERROR(ComputeExactAttention(view, query, &exact));
      }
      const std::vector<uint32_t> kept =
          AlwaysKeptBlocks(query.position, options.block_tokens, options.sink_tokens, options.recent_tokens);
      const uint64_t visible = VisibleBlocks(query.position, options.block_tokens);
      for (size_t b = 0; b < options.budgets.size(); ++b) {
        const uint64_t read_before = retriever->IndexBytesRead();
        bool retrieved = false;
        start = std::chrono::steady_clock::now();
        RETURN_IF_ERROR(triggers[b].SelectHeads(0, l, retriever, query, options.budgets[b].Resolve(visible), kept,
                                                &selected, &retrieved));
        report.select_seconds += SecondsSince(start);
        SelectionMetrics m;
        RETURN_IF_ERROR(
            EvaluateHeadSelection(view, query, *ex, options.block_tokens, selected, kept, block_bytes, &m));
        acc[b].Add(visible, m, retriever->IndexBytesRead() - read_before);
      }
    }
    for (Accumulator& a : acc) a.EndLayer();
  }
  for (size_t b = 0; b < options.budgets.size(); ++b) {
    report.budgets.push_back(acc[b].Finish(options.budgets[b]));
    report.budgets.back().triggers_taken = triggers[b].stats().taken;
    report.budgets.back().triggers_skipped = triggers[b].stats().skipped;
  }
  return report;
}

namespace {

double Pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= static_cast<double>(a.size());
  mb /= static_cast<double>(b.size());
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) * (a[i] - ma);
    bb += (b[i] - mb) * (b[i] - mb);
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

// Mean pairwise Pearson correlation of log(received[g][t]) over t in [begin, end).
double CrossGroupCorrelation(const std::vector<std::vector<double>>& received, uint64_t begin, uint64_t end) {
  if (received.size() < 2 || end <= begin + 2) return 0.0;
  std::vector<std::vector<double>> lg(received.size());
  for (size_t g = 0; g < received.size(); ++g) {
    for (uint64_t t = begin; t < end; ++t) lg[g].push_back(std::log(received[g][t] + 1e-30));
  }
  double sum = 0.0;
  int pairs = 0;
  for (size_t a = 0; a < lg.size(); ++a) {
    for (size_t b = a + 1; b < lg.size(); ++b) sum += Pearson(lg[a], lg[b]), ++pairs;
  }
  return sum / pairs;
}

// Smallest share of `mass` (any order) whose largest entries sum to >= 90% of it.
double ShareFor90(std::vector<double> mass) {
  double total = 0.0;
  for (double m : mass) total += m;
  std::sort(mass.begin(), mass.end(), std::greater<double>());
  double c = 0.0;
  for (size_t i = 0; i < mass.size(); ++i) {
    c += mass[i];
    if (c >= 0.9 * total) return static_cast<double>(i + 1) / static_cast<double>(mass.size());
  }
  return 1.0;
}

}  // namespace

Result<ConcentrationReport> MeasureConcentration(TraceSource* source, const EvalOptions& options,
                                                 ExactAttentionCache* cache) {
  const TraceInfo& info = source->info();
  RETURN_IF_ERROR(options.Validate(info));
  std::vector<uint32_t> layers = options.layers;
  if (layers.empty()) {
    for (uint32_t l = 0; l < info.num_layers; ++l) layers.push_back(l);
  }
  ConcentrationReport r;
  std::vector<double> t90;
  uint64_t layer_steps = 0;
  TraceLayer layer;
  ExactAttention computed;
  const uint32_t group = info.num_q_heads / info.num_kv_heads;
  const uint64_t first = info.step_positions[options.calibration_steps];
  const uint64_t corr_end = first > options.recent_tokens ? first - options.recent_tokens : 0;
  for (uint32_t l : layers) {
    RETURN_IF_ERROR(source->LoadLayer(l, &layer));
    const LayerKeys full = LayerKeysOf(info, layer);
    LayerKeys view = full;
    view.values = nullptr;  // probabilities only, unless the cache keeps the entry for RunEval too
    std::vector<std::vector<double>> received(info.num_kv_heads, std::vector<double>(corr_end, 0.0));
    for (uint64_t step = options.calibration_steps; step < info.num_steps(); step += options.step_stride) {
      const ExactAttention* entry = &computed;
      if (cache != nullptr) {
        ASSIGN_OR_RETURN(entry, cache->Get(l, step, full, StepQuery(info, layer, step)));
      } else {
        RETURN_IF_ERROR(ComputeExactAttention(view, StepQuery(info, layer, step), &computed));
      }
      const ExactAttention& ex = *entry;
      for (uint32_t h = 0; h < ex.num_q_heads; ++h) {
        const float* p = ex.probs.data() + size_t{h} * ex.num_visible;
        for (uint64_t t = 0; t < corr_end && t < ex.num_visible; ++t) received[h / group][t] += p[t];
      }
      const uint64_t V = ex.num_visible;
      const uint64_t sinks = std::min<uint64_t>(options.sink_tokens, V);
      const uint64_t recent_from = V > options.recent_tokens ? V - options.recent_tokens : 0;
      const std::vector<double> per_head = BlockMassPerHead(ex, options.block_tokens);
      const size_t B = per_head.size() / ex.num_q_heads;
      for (uint32_t h = 0; h < ex.num_q_heads; ++h) {
        const float* p = ex.probs.data() + size_t{h} * V;
        const float pmax = *std::max_element(p, p + V);
        double sink = 0.0, recent = 0.0;
        uint64_t big = 0;
        for (uint64_t t = 0; t < V; ++t) {
          if (t < sinks) sink += p[t];
          if (t >= recent_from) recent += p[t];
          big += p[t] >= 0.01f * pmax;
        }
        t90.push_back(ShareFor90(std::vector<double>(p, p + V)));
        r.blocks_for_90_head +=
            ShareFor90(std::vector<double>(per_head.begin() + h * B, per_head.begin() + (h + 1) * B));
        r.sink_mass += sink;
        r.recent_mass += recent;
        r.h2o_share += static_cast<double>(big) / static_cast<double>(V);
      }
      r.blocks_for_90_layer += ShareFor90(SummedBlockMass(ex, options.block_tokens));
      ++layer_steps;
    }
    r.cross_group_correlation += CrossGroupCorrelation(received, options.sink_tokens, corr_end) / layers.size();
  }
  r.heads = t90.size();
  if (r.heads == 0) return r;
  const double k = 1.0 / static_cast<double>(r.heads);
  for (double x : t90) r.tokens_for_90 += x * k;
  std::sort(t90.begin(), t90.end());
  r.tokens_for_90_median = t90[t90.size() / 2];
  r.blocks_for_90_head *= k;
  r.sink_mass *= k;
  r.recent_mass *= k;
  r.h2o_share *= k;
  r.blocks_for_90_layer /= static_cast<double>(layer_steps);
  return r;
}

nlohmann::json ConcentrationToJson(const ConcentrationReport& r) {
  return {{"heads", r.heads},
          {"tokens_for_90", r.tokens_for_90},
          {"tokens_for_90_median", r.tokens_for_90_median},
          {"blocks_for_90_head", r.blocks_for_90_head},
          {"blocks_for_90_layer", r.blocks_for_90_layer},
          {"sink_mass", r.sink_mass},
          {"recent_mass", r.recent_mass},
          {"h2o_share", r.h2o_share},
          {"cross_group_correlation", r.cross_group_correlation}};
}

nlohmann::json EvalReportToJson(const EvalReport& r) {
  nlohmann::json j;
  j["retriever"] = r.retriever;
  j["granularity"] = GranularityName(r.granularity);
  j["trace"] = {{"description", r.trace_description}, {"num_layers", r.num_layers},
                {"num_q_heads", r.num_q_heads},       {"num_kv_heads", r.num_kv_heads},
                {"head_dim", r.head_dim},             {"num_tokens", r.num_tokens},
                {"num_steps", r.num_steps}};
  j["options"] = {{"block_tokens", r.options.block_tokens},
                  {"sink_tokens", r.options.sink_tokens},
                  {"recent_tokens", r.options.recent_tokens},
                  {"head_combine", r.options.head_combine == HeadCombine::kSum ? "sum" : "max"},
                  {"kv_dtype", std::string(DTypeName(r.options.kv_dtype))},
                  {"step_stride", r.options.step_stride},
                  {"calibration_steps", r.options.calibration_steps},
                  {"trigger", r.options.trigger.ToString()},
                  {"layers", r.layers}};
  j["index_bytes"] = r.index_bytes;
  j["off_memory_index_bytes"] = r.off_memory_index_bytes;
  j["build_seconds"] = r.build_seconds;
  j["select_seconds"] = r.select_seconds;
  j["budgets"] = nlohmann::json::array();
  for (const BudgetMetrics& b : r.budgets) {
    j["budgets"].push_back({{"budget", b.budget.ToString()},
                            {"kind", b.budget.kind == EvalBudget::Kind::kFraction ? "fraction" : "blocks"},
                            {"value", b.budget.value},
                            {"evaluations", b.evaluations},
                            {"visible_blocks", b.visible_blocks},
                            {"selected_blocks", b.selected_blocks},
                            {"topk_recall", b.topk_recall},
                            {"mass_recall", b.mass_recall},
                            {"min_mass_recall", b.min_mass_recall},
                            {"min_head_mass_recall", b.min_head_mass_recall},
                            {"output_rel_error", b.output_rel_error},
                            {"max_output_rel_error", b.max_output_rel_error},
                            {"kl_divergence", b.kl_divergence},
                            {"bytes_selected", b.bytes_selected},
                            {"bytes_retrieved", b.bytes_retrieved},
                            {"index_bytes_read", b.index_bytes_read},
                            {"triggers_taken", b.triggers_taken},
                            {"triggers_skipped", b.triggers_skipped},
                            {"layer_mass_recall", b.layer_mass_recall},
                            {"head_mass_recall", b.head_mass_recall}});
  }
  return j;
}

std::string FormatEvalTable(const std::vector<EvalReport>& reports) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-24s %-8s %9s %8s %8s %8s %8s %8s %8s %10s %12s %12s\n", "retriever",
                "budget", "blocks", "topk_rec", "mass_rec", "mass_min", "out_err", "kl", "evals", "KiB/step",
                "idx_KiB/step", "index_KiB");
  out += line;
  for (const EvalReport& r : reports) {
    for (const BudgetMetrics& b : r.budgets) {
      std::snprintf(line, sizeof(line), "%-24s %-8s %9.1f %8.4f %8.4f %8.4f %8.4f %8.4f %8llu %10.1f %12.1f %12.1f\n",
                    r.retriever.c_str(), b.budget.ToString().c_str(), b.selected_blocks, b.topk_recall,
                    b.mass_recall, b.min_mass_recall, b.output_rel_error, b.kl_divergence,
                    static_cast<unsigned long long>(b.evaluations), b.bytes_retrieved / 1024.0,
                    b.index_bytes_read / 1024.0, static_cast<double>(r.index_bytes) / 1024.0);
      out += line;
    }
  }
  return out;
}

}  // namespace tierkv::index
