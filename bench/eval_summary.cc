#include "bench/eval_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "bench/bench_util.h"

namespace tierkv::bench {
namespace {

void AddOnce(std::vector<std::string>* v, const std::string& s) {
  if (std::find(v->begin(), v->end(), s) == v->end()) v->push_back(s);
}

std::string MeanSd(const Spread& s) {
  if (s.n == 0) return "-";
  return Fmt(s.mean, 4) + (s.n > 1 ? " ±" + Fmt(s.sd, 4) : "");
}

}  // namespace

Spread SpreadOf(const std::vector<double>& v) {
  Spread s;
  s.n = v.size();
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x / static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

void EvalSummary::Add(const std::string& group, const index::EvalReport& report) {
  AddOnce(&groups_, group);
  AddOnce(&retrievers_[group], report.retriever);
  for (const index::BudgetMetrics& b : report.budgets) {
    AddOnce(&budgets_[group], b.budget.ToString());
    cells_[{group, report.retriever, b.budget.ToString()}].mass.push_back(b.mass_recall);
  }
}

void EvalSummary::Print() const {
  for (const std::string& g : groups_) {
    const std::vector<std::string>& budgets = budgets_.at(g);
    size_t seeds = 0;
    std::vector<std::vector<std::string>> rows;
    for (const std::string& r : retrievers_.at(g)) {
      std::vector<std::string> row = {r};
      for (const std::string& b : budgets) {
        auto it = cells_.find({g, r, b});
        const Spread s = SpreadOf(it == cells_.end() ? std::vector<double>() : it->second.mass);
        seeds = std::max(seeds, s.n);
        row.push_back(MeanSd(s));
      }
      rows.push_back(row);
    }
    std::printf("\n== summary: %s, mass recall, mean ±sd over %zu seed(s)\n", g.c_str(), seeds);
    std::vector<std::string> header = {"retriever"};
    header.insert(header.end(), budgets.begin(), budgets.end());
    PrintTable(header, rows);
    // Ratios at 10% (else the first budget).
    const std::string b10 = std::find(budgets.begin(), budgets.end(), "10%") != budgets.end() ? "10%" : budgets[0];
    auto mean_of = [&](const std::string& r) {
      auto it = cells_.find({g, r, b10});
      return it == cells_.end() ? std::nan("") : SpreadOf(it->second.mass).mean;
    };
    const double layer_oracle = mean_of("exact"), head_oracle = mean_of("exact/head");
    rows.clear();
    for (const std::string& r : retrievers_.at(g)) {
      const double m = mean_of(r);
      const bool per_head = r.size() > 5 && r.compare(r.size() - 5, 5, "/head") == 0;
      const double own = per_head ? head_oracle : layer_oracle;
      rows.push_back({r, Fmt(m, 4), std::isnan(layer_oracle) ? "-" : Fmt(m / layer_oracle, 3),
                      std::isnan(own) ? "-" : Fmt(m / own, 3),
                      std::isnan(layer_oracle) ? "-" : (m > layer_oracle ? "yes" : "no")});
    }
    std::printf("-- %s at %s: ratio to the per-layer oracle (exact) and to the oracle of the same granularity\n",
                g.c_str(), b10.c_str());
    PrintTable({"retriever", "mass_rec", "/layer_oracle", "/own_oracle", "above layer oracle"}, rows);
  }
}

nlohmann::json EvalSummary::ToJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& g : groups_) {
    for (const std::string& r : retrievers_.at(g)) {
      for (const std::string& b : budgets_.at(g)) {
        auto it = cells_.find({g, r, b});
        if (it == cells_.end()) continue;
        const Spread s = SpreadOf(it->second.mass);
        out.push_back({{"workload", g}, {"retriever", r}, {"budget", b}, {"seeds", s.n},
                       {"mass_recall_mean", s.mean}, {"mass_recall_sd", s.sd}, {"mass_recall_min", s.min},
                       {"mass_recall_max", s.max}, {"mass_recall", it->second.mass}});
      }
    }
  }
  return out;
}

}  // namespace tierkv::bench
