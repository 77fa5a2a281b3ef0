// The cases of tierkv_bench_store (bench/tierkv_bench_store.cc): the BlockStore's
// metadata memory and lookup times as the store grows, promotion D->H->G against
// the raw device measured in the same run, and H-tier put/get through the store
// against memcpy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tierkv::bench {

struct StoreBenchConfig {
  std::string dir;                                     // scratch space accepting O_DIRECT
  std::vector<uint64_t> blocks = {1000000, 10000000};  // store sizes of the lookup case
  uint64_t blocks_per_sequence = 1000;
  uint64_t disk_blocks = 200000;                       // D-resident metadata case (0: skip)
  uint64_t lookups = 2000000;                          // Gets per measurement
  uint32_t acquire_blocks = 16;                        // blocks per Acquire
  uint64_t promote_mib = 512;                          // data set of the promotion case
  uint32_t promote_batch = 64;                         // blocks per Acquire there
  uint32_t block_kib = 128;                            // block size of the promotion and H cases
  uint32_t queue_depth = 32;                           // D tier and raw loop
  bool zero_copy = true;                               // D tier transfers straight from/to H slots
  uint32_t h_blocks = 1024;                            // H case
  double seconds = 0.5;                                // per timed measurement
  int rounds = 3;                                      // alternations; medians reported
  bool run_lookup = true, run_promote = true, run_host = true;
  bool run_threads = true;
};

// Stores of c.blocks tiny (64-byte) blocks: memory per size (each in a child
// process, so that its RSS delta starts from a clean heap), then lookup times of
// every size side by side in one child (paired ratios to the first size).
nlohmann::json RunLookupCase(const StoreBenchConfig& c);
// D -> H -> G promotion through Acquire(wait) vs a raw io_uring read loop.
nlohmann::json RunPromoteCase(const StoreBenchConfig& c);
// H-tier put/get of whole blocks through the BlockStore vs memcpy.
nlohmann::json RunHostCase(const StoreBenchConfig& c);
// Put/get of whole blocks from 1 and 4 threads at once (each its own sequence)
// through one BlockStore: copies with the mutex dropped (the default, decision 0020)
// vs under it (unlocked_copy_bytes = SIZE_MAX, the behaviour before), alternated.
nlohmann::json RunThreadsCase(const StoreBenchConfig& c);

}  // namespace tierkv::bench
