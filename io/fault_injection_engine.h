// Fault injection under every IoEngine user, the D tier and the SPANN posting store
// (model: RocksDB's FaultInjectionTestFS): an IoEngine wrapper that makes chosen
// requests (reads, writes, syncs) fail with EIO or ENOSPC, transfer short (a truncated request really runs:
// a torn write), or carry a flipped byte (after a read completes, or in the bytes a
// write stores: media corruption; the caller's memory is never changed, a flip in a
// zero-copy payload segment is made in a private copy). One FaultInjector holds the
// rules and counters and can be shared by the wrappers of every engine of a tier or
// store.
//
// Thread-safety: FaultInjector is thread-safe; each wrapper is used like any engine
// (one thread at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "common/mutex.h"
#include "io/io_engine.h"

namespace tierkv::io {

enum class FaultKind : uint8_t {
  kIoError = 0,    // the request fails with -EIO and does not run
  kNoSpace,        // writes and syncs only: fails with -ENOSPC and does not run
  kShortTransfer,  // reads, writes: runs on the first half of its length (kIoAlign-aligned) and reports that
  kFlipByte,       // reads: one byte of the data read is inverted; writes: of the data written
};

// Which requests a rule sees (and counts for at_request): kWrites is writes only,
// kSyncs the IoOp::kSync requests only, kAll every request. A rule skips (does not
// count) requests its kind cannot apply to: kNoSpace on reads, kShortTransfer and
// kFlipByte on syncs.
enum class FaultTarget : uint8_t { kReads = 0, kWrites, kAll, kSyncs };

inline constexpr uint64_t kNoRequest = UINT64_MAX;

struct FaultRule {
  FaultKind kind = FaultKind::kIoError;
  FaultTarget target = FaultTarget::kAll;
  // Each matching request faults with probability 1/one_in (seeded), when > 0.
  uint64_t one_in = 0;
  // The matching request with this 0-based number (counted per rule) faults.
  uint64_t at_request = kNoRequest;
  // The rule stops after this many faults. Default: unlimited.
  uint64_t max_faults = UINT64_MAX;
};

struct FaultCounts {
  uint64_t requests = 0;  // requests seen by all wrappers
  uint64_t io_errors = 0, no_space = 0, short_transfers = 0, flipped_bytes = 0;
  uint64_t total() const { return io_errors + no_space + short_transfers + flipped_bytes; }
};

class FaultInjector {
 public:
  explicit FaultInjector(uint64_t seed = 1) : rng_(seed) {}

  void AddRule(const FaultRule& rule);
  // Removes every rule (counters stay).
  void ClearRules();
  FaultCounts counts() const;

  // For the wrapper: the fault for one request (the first rule that fires), or
  // nullopt; counted.
  std::optional<FaultKind> Decide(IoOp op);
  // A uniformly random position in [0, n). REQUIRES: n > 0.
  uint64_t RandomBelow(uint64_t n);

 private:
  struct Armed {
    FaultRule rule;
    uint64_t seen = 0, fired = 0;
  };
  mutable Mutex mu_;
  std::vector<Armed> rules_ GUARDED_BY(mu_);
  std::mt19937_64 rng_ GUARDED_BY(mu_);
  FaultCounts counts_ GUARDED_BY(mu_);
};

// Wraps `inner`; faults come from `injector`. The wrapper's name is
// "fault(<inner name>)".
std::unique_ptr<IoEngine> WrapWithFaults(std::unique_ptr<IoEngine> inner, std::shared_ptr<FaultInjector> injector);

}  // namespace tierkv::io
