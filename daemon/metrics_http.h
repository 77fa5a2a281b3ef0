// MetricsHttp: serves GET /metrics (Prometheus text format 0.0.4) on a TCP address
// from a thread of its own, with Boost.Asio.
//
// Why not prometheus-cpp's Exposer: it runs civetweb, whose worker threads get a
// fixed 100 KB stack; glibc carves static TLS out of it, and OpenBLAS (linked with
// FAISS for the index/ retrievers) alone holds 60 KB of TLS, so the workers
// overflowed their stacks on the first scrape. This server also stops at once
// (civetweb took ~1 s). Serialization is still prometheus-cpp's TextSerializer.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <prometheus/metric_family.h>

#include "common/status.h"

namespace tierkv::daemon {

// Limits (docs/security.md): at most max_connections at once; at the cap a new
// connection closes the oldest one still sending its request (or is refused when
// every one is being answered); each connection has `timeout` to send its request
// and `timeout` to take the reply. Accept failures for want of descriptors back off.
class MetricsHttp {
 public:
  using Collector = std::function<std::vector<prometheus::MetricFamily>()>;
  struct Options {
    uint32_t max_connections = 64;
    std::chrono::milliseconds timeout{5000};
    std::chrono::milliseconds accept_backoff{100};
    std::chrono::seconds log_interval{10};
    std::function<void(std::string_view reason)> on_refused;       // max_connections
    std::function<void(std::string_view reason)> on_dropped;       // timeout, evicted
    std::function<void(std::string_view error)> on_accept_error;   // EMFILE, ENFILE, ...
  };
  MetricsHttp(Options options, Collector collect);
  ~MetricsHttp();  // stops the server

  // Listens on host:port (port 0 picks a free one) and starts serving.
  Status Start(const std::string& listen);
  uint16_t port() const { return port_; }

  struct Impl;  // public so that the connections in metrics_http.cc reach it

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace tierkv::daemon
