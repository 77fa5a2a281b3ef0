// MetricsHttp: serves GET /metrics (Prometheus text format 0.0.4) on a TCP address
// from a thread of its own, with Boost.Asio.
//
// Why not prometheus-cpp's Exposer: it runs civetweb, whose worker threads get a
// fixed 100 KB stack; glibc carves static TLS out of it, and OpenBLAS (linked with
// FAISS for the index/ retrievers) alone holds 60 KB of TLS, so the workers
// overflowed their stacks on the first scrape. This server also stops at once
// (civetweb took ~1 s). Serialization is still prometheus-cpp's TextSerializer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/metric_family.h>

#include "common/status.h"

namespace tierkv::daemon {

class MetricsHttp {
 public:
  using Collector = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit MetricsHttp(Collector collect);
  ~MetricsHttp();  // stops the server

  // Listens on host:port (port 0 picks a free one) and starts serving.
  Status Start(const std::string& listen);
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace tierkv::daemon
