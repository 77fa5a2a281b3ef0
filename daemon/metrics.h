// Daemon metrics (prefix tierkv_), served by prometheus-cpp on /metrics (DESIGN §8).
// Thread-safe: prometheus-cpp counters and gauges are atomic.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/mutex.h"
#include "common/status.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
class Collectable;
struct MetricFamily;
template <typename T>
class Family;
}  // namespace prometheus

namespace tierkv::daemon {

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // Serves /metrics over HTTP on host:port (port 0 picks a free one), within
  // limits.metrics_max_connections and limits.metrics_timeout_ms.
  Status Serve(const std::string& listen, const LimitsSection& limits = {});
  // "http://127.0.0.1:9464/metrics", or "" when not serving.
  const std::string& url() const { return url_; }
  prometheus::Registry& registry() { return *registry_; }

  // Adds a collector read at every scrape (kept alive by Metrics).
  void Register(const std::shared_ptr<prometheus::Collectable>& collectable);
  // Retrieval latency histogram of one namespace and phase (select, acquire, total,
  // and on the GPU path gpu_query, gpu_table).
  prometheus::Histogram& RetrievalLatency(const std::string& ns, const std::string& phase);
  // Creates (at 0) the series of a control op, and the latency series of a namespace.
  void CreateRequestSeries(std::string_view op);
  void CreateNamespaceSeries(const std::string& ns);
  // Removes every series labelled with namespace `ns` (delete-namespace).
  void ForgetNamespace(const std::string& ns);

  void CountRequest(std::string_view op);
  void CountError(std::string_view code);
  void CountDisconnect(std::string_view reason);
  // A connection refused at accept (listener: control | metrics), by reason.
  void CountRefused(std::string_view listener, std::string_view reason);
  // A metrics connection the daemon closed before it was served, by reason.
  void CountDropped(std::string_view listener, std::string_view reason);
  // A failed accept (error: EMFILE, ENFILE, ...).
  void CountAcceptError(std::string_view listener, std::string_view error);
  // Channels open and the bytes of their memfds, every client together.
  void SetChannels(double channels, double bytes);
  void SetConnections(double n);
  void SetAttachedClients(double n);
  void SetNamespaces(double n);

 private:
  void CreateKnownSeries();
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<class MetricsHttp> http_;
  Mutex collectables_mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_ GUARDED_BY(collectables_mu_);
  std::string url_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* errors_;
  prometheus::Family<prometheus::Counter>* disconnects_;
  prometheus::Family<prometheus::Counter>* refused_;
  prometheus::Family<prometheus::Counter>* dropped_;
  prometheus::Family<prometheus::Counter>* accept_errors_;
  prometheus::Gauge* channels_;
  prometheus::Gauge* channel_bytes_;
  prometheus::Family<prometheus::Histogram>* latency_;
  prometheus::Gauge* connections_;
  prometheus::Gauge* attached_;
  prometheus::Gauge* namespaces_;
};

}  // namespace tierkv::daemon
