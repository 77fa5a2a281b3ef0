// ProcessMetrics: the daemon's own process at scrape time, under the names every
// Prometheus client library uses (process_resident_memory_bytes, ...), so that the
// usual dashboards and alerts work: RSS, virtual memory, CPU seconds, open and
// maximum descriptors, threads and start time, read from /proc/self.
#pragma once

#include <prometheus/collectable.h>

namespace tierkv::daemon {

class ProcessMetrics : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace tierkv::daemon
