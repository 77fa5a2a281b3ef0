// StorageMetrics: a prometheus-cpp Collectable that reads every namespace's tier,
// BlockStore, retrieval and policy counters at scrape time (DESIGN §8), so that
// storage/ and index/ keep plain atomics and never depend on prometheus-cpp.
#pragma once

#include <prometheus/collectable.h>

#include "daemon/channel.h"
#include "daemon/runtimes.h"

namespace tierkv::daemon {

class StorageMetrics : public prometheus::Collectable {
 public:
  // REQUIRES: runtimes and channel_stats outlive this collector's registration.
  StorageMetrics(const Runtimes* runtimes, const ChannelStats* channel_stats)
      : runtimes_(runtimes), channel_stats_(channel_stats) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Runtimes* const runtimes_;
  const ChannelStats* const channel_stats_;
};

}  // namespace tierkv::daemon
