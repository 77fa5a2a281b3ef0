// The peer of the D tier in tierkv_bench_disk: a plain io_uring loop over one
// O_DIRECT file (registered buffers and file, queue kept full, no headers, no
// checksums, no copies): what the device and kernel give to a program that does
// nothing else.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace tierkv::bench {

// One measurement: payload bytes and ops over elapsed seconds.
struct Sample {
  uint64_t ops = 0, bytes = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system time of the process (getrusage RUSAGE_SELF)
  // D tier only: wall time of its batches per stage (DiskTier::StageNanos).
  uint64_t prepare_ns = 0, reap_ns = 0, finish_ns = 0;
  double cpu_us_per_op() const { return ops > 0 ? cpu_seconds * 1e6 / static_cast<double>(ops) : 0; }
  // CPU-seconds per GB (1e9 bytes) of payload moved.
  double cpu_s_per_gb() const { return bytes > 0 ? cpu_seconds * 1e9 / static_cast<double>(bytes) : 0; }
  double gbps() const { return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0; }
  double iops() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

// User + system CPU seconds used by the whole process so far (getrusage
// RUSAGE_SELF: every thread, the D tier's device workers and io_uring's io-wq
// workers included). The benchmark runs one side at a time, nothing else.
double ProcessCpuSeconds();
// User + system CPU seconds of the calling thread (RUSAGE_THREAD).
double ThreadCpuSeconds();

// False when the bench was built without liburing (no raw baseline then).
bool RawUringCompiledIn();

class RawUringFile {
 public:
  // Creates `path` of `bytes` bytes (rounded down to whole blocks), preallocated.
  // Blocks are visited in order (sequential) or in a fixed shuffled order.
  static Result<std::unique_ptr<RawUringFile>> Create(const std::string& path, uint64_t bytes, uint32_t block,
                                                      uint32_t queue_depth, bool sequential);
  ~RawUringFile();

  // Writes every block once (untimed), then fdatasync.
  Status Fill();
  // Reads or writes blocks, queue_depth in flight, for `seconds`.
  Result<Sample> Run(bool read, double seconds);

  struct Impl;

 private:
  explicit RawUringFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tierkv::bench
