// The batch and concurrency modes of tierkv_bench_retrieve (bench_retrieve.cc
// parses the flags): batched Retrieve vs B separate calls per layer, and the
// aggregate Retrieve throughput of several client processes at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tierkv::bench {

struct BatchOptions {
  uint64_t tokens = 32768;                     // per sequence
  std::vector<uint64_t> batches = {1, 8, 32, 64};  // --batch LIST
  std::vector<uint64_t> clients;               // --clients LIST (e.g. 1,2,4)
  int steps = 30;                              // timed layers per point (--steps)
  double seconds = 4;                          // per clients point (--seconds)
  uint32_t workers = 0;                        // the daemon's retrieval.workers (--workers)
  std::string json_path;
};

// Each prints its table and writes JSON when json_path is set; 0 on success.
int RunBatchMode(const BatchOptions& o);
int RunClientsMode(const BatchOptions& o);

}  // namespace tierkv::bench
