// tierkv_bench_eval's seed summary: the mass recall of each (workload group,
// method, granularity, budget) over the seeds it ran with, as mean, sample
// standard deviation, min and max, printed as tables and returned as JSON.
// A workload group is one family at one length ("synthetic v2 32768"); its
// seeds are separate traces.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/eval_driver.h"

namespace tierkv::bench {

class EvalSummary {
 public:
  // Records every budget of `report` for `group`.
  void Add(const std::string& group, const index::EvalReport& report);
  // Per group: mean ±sd per budget for every method, then the 10% (or the
  // budget nearest it) ratios to the per-layer and per-head oracles
  // ("exact" and "exact/head" of the same group).
  void Print() const;
  nlohmann::json ToJson() const;

 private:
  struct Cell {
    std::vector<double> mass;  // one per seed
  };
  // (group, retriever, budget label) in insertion order of groups / retrievers / budgets.
  std::vector<std::string> groups_;
  std::map<std::string, std::vector<std::string>> retrievers_;  // by group
  std::map<std::string, std::vector<std::string>> budgets_;     // by group
  std::map<std::tuple<std::string, std::string, std::string>, Cell> cells_;
};

// Mean, sample standard deviation (0 for one value), min, max.
struct Spread {
  double mean = 0, sd = 0, min = 0, max = 0;
  size_t n = 0;
};
Spread SpreadOf(const std::vector<double>& v);

}  // namespace tierkv::bench
