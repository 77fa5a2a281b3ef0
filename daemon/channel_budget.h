// ChannelBudget: the global and per-uid caps on data-plane channels (limits.*).
// A channel costs a worker thread and a memfd (rings + staging, + an emulated GPU
// exchange); without these caps 60 connections held 240 threads and 64 GiB of
// mapped staging. Admins are exempt from the per-uid caps only. Thread-safe.
#pragma once

#include <cstdint>
#include <map>

#include "common/config.h"
#include "common/mutex.h"
#include "common/status.h"

namespace tierkv::daemon {

class ChannelBudget {
 public:
  explicit ChannelBudget(const LimitsSection& limits) : limits_(limits) {}

  // Charges one channel of `bytes` to `uid`, or kResourceExhausted naming the limit.
  Status Reserve(uint32_t uid, bool admin, uint64_t bytes);
  // Gives back `channels` channels of `bytes` in all.
  void Release(uint32_t uid, size_t channels, uint64_t bytes);

  size_t channels() const;
  uint64_t bytes() const;

 private:
  struct Use {
    size_t channels = 0;
    uint64_t bytes = 0;
  };
  const LimitsSection limits_;
  mutable Mutex mu_;
  Use total_ GUARDED_BY(mu_);
  std::map<uint32_t, Use> uids_ GUARDED_BY(mu_);
};

}  // namespace tierkv::daemon
