#include "daemon/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>

#include "daemon/metrics_http.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::daemon {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  using namespace prometheus;
  BuildGauge()
      .Name("tierkv_build_info")
      .Help("Build information; the value is always 1")
      .Register(*registry_)
      .Add({{"version", TIERKV_VERSION},
            {"cuda", kernels::CudaCompiledIn() ? "true" : "false"},
            {"gpus", std::to_string(kernels::GpuCount())}})
      .Set(1);
  BuildGauge()
      .Name("tierkv_start_time_seconds")
      .Help("Unix time at which the daemon started")
      .Register(*registry_)
      .Add({})
      .Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  requests_ = &BuildCounter()
                   .Name("tierkv_control_requests_total")
                   .Help("Control requests received, by op (unknown ops count as op=\"unknown\")")
                   .Register(*registry_);
  errors_ = &BuildCounter()
                 .Name("tierkv_control_errors_total")
                 .Help("Control requests answered with an error, by status code")
                 .Register(*registry_);
  disconnects_ = &BuildCounter()
                      .Name("tierkv_control_disconnects_total")
                      .Help("Control connections closed by the daemon, by reason")
                      .Register(*registry_);
  refused_ = &BuildCounter()
                  .Name("tierkv_connections_refused_total")
                  .Help("Connections refused at accept, by listener (control, metrics) and reason (max_clients, "
                        "uid_clients, max_connections)")
                  .Register(*registry_);
  dropped_ = &BuildCounter()
                  .Name("tierkv_connections_dropped_total")
                  .Help("Metrics connections closed before they were served, by reason (timeout, evicted)")
                  .Register(*registry_);
  accept_errors_ = &BuildCounter()
                        .Name("tierkv_accept_errors_total")
                        .Help("Failed accepts, by listener and error (EMFILE, ENFILE, ...): the daemon backs off")
                        .Register(*registry_);
  channels_ = &BuildGauge()
                   .Name("tierkv_channels")
                   .Help("Data-plane channels open (one worker thread each)")
                   .Register(*registry_)
                   .Add({});
  channel_bytes_ = &BuildGauge()
                        .Name("tierkv_channel_bytes")
                        .Help("Bytes of the open channels' memfds (rings, staging, emulated GPU exchanges)")
                        .Register(*registry_)
                        .Add({});
  connections_ = &BuildGauge()
                      .Name("tierkv_control_connections")
                      .Help("Open control connections")
                      .Register(*registry_)
                      .Add({});
  attached_ = &BuildGauge()
                   .Name("tierkv_clients_attached")
                   .Help("Connections attached to at least one namespace")
                   .Register(*registry_)
                   .Add({});
  latency_ = &BuildHistogram()
                  .Name("tierkv_retrieval_latency_seconds")
                  .Help("Retrieve latency inside the daemon, by phase (select: trigger + scoring + top-k; acquire: "
                        "pinning and bringing blocks to G; total)")
                  .Register(*registry_);
  namespaces_ = &BuildGauge().Name("tierkv_namespaces").Help("Namespaces served").Register(*registry_).Add({});
  CreateKnownSeries();
}

// Every series docs/operations.md lists exists from the first scrape (at 0), so
// that rate() and alerts see the first event (a series born at 1 has no increase).
void Metrics::CreateKnownSeries() {
  for (int code = static_cast<int>(StatusCode::kNotFound); code <= static_cast<int>(StatusCode::kUnavailable);
       ++code) {
    errors_->Add({{"code", std::string(StatusCodeName(static_cast<StatusCode>(code)))}});
  }
  for (const char* reason : {"bad_frame", "too_many_errors", "hello_timeout", "frame_timeout", "write_timeout"}) {
    disconnects_->Add({{"reason", reason}});
  }
  for (const auto& [listener, reason] : std::initializer_list<std::pair<const char*, const char*>>{
           {"control", "max_clients"}, {"control", "uid_clients"}, {"metrics", "max_connections"}}) {
    refused_->Add({{"listener", listener}, {"reason", reason}});
  }
  for (const char* reason : {"timeout", "evicted"}) dropped_->Add({{"listener", "metrics"}, {"reason", reason}});
  for (const char* listener : {"control", "metrics"}) {
    for (const char* error : {"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "ECONNABORTED", "other"}) {
      accept_errors_->Add({{"listener", listener}, {"error", error}});
    }
  }
  for (const char* op : {"invalid", "unknown"}) requests_->Add({{"op", op}});
}

void Metrics::CreateRequestSeries(std::string_view op) { requests_->Add({{"op", std::string(op)}}); }

namespace {
constexpr const char* kRetrievalPhases[] = {"select", "acquire", "total", "gpu_query", "gpu_table"};
}  // namespace

void Metrics::CreateNamespaceSeries(const std::string& ns) {
  for (const char* phase : kRetrievalPhases) RetrievalLatency(ns, phase);
}

Metrics::~Metrics() { http_.reset(); }  // stop serving before the registry goes

Status Metrics::Serve(const std::string& listen, const LimitsSection& limits) {
  MetricsHttp::Options options{
      .max_connections = limits.metrics_max_connections,
      .timeout = std::chrono::milliseconds(limits.metrics_timeout_ms),
      .accept_backoff = std::chrono::milliseconds(limits.accept_backoff_ms),
      .log_interval = std::chrono::seconds(limits.log_interval_s),
      .on_refused = [this](std::string_view reason) { CountRefused("metrics", reason); },
      .on_dropped = [this](std::string_view reason) { CountDropped("metrics", reason); },
      .on_accept_error = [this](std::string_view error) { CountAcceptError("metrics", error); },
  };
  http_ = std::make_unique<MetricsHttp>(std::move(options), [this] {
    std::vector<prometheus::MetricFamily> all = registry_->Collect();
    MutexLock lock(&collectables_mu_);
    for (const auto& c : collectables_) {
      auto more = c->Collect();
      all.insert(all.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
    return all;
  });
  Status st = http_->Start(listen);
  if (!st.ok()) {
    http_.reset();
    return st;
  }
  url_ = "http://" + listen.substr(0, listen.rfind(':')) + ":" + std::to_string(http_->port()) + "/metrics";
  return OkStatus();
}

void Metrics::Register(const std::shared_ptr<prometheus::Collectable>& c) {
  MutexLock lock(&collectables_mu_);
  collectables_.push_back(c);
}

prometheus::Histogram& Metrics::RetrievalLatency(const std::string& ns, const std::string& phase) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {2e-6,   5e-6,   10e-6, 20e-6, 50e-6, 100e-6,
                                                                   200e-6, 500e-6, 1e-3,  5e-3,  20e-3, 100e-3};
  return latency_->Add({{"namespace", ns}, {"phase", phase}}, kBuckets);
}

void Metrics::ForgetNamespace(const std::string& ns) {
  for (const char* phase : kRetrievalPhases) {
    const prometheus::Labels labels{{"namespace", ns}, {"phase", phase}};
    if (latency_->Has(labels)) latency_->Remove(&latency_->Add(labels, prometheus::Histogram::BucketBoundaries{}));
  }
}

void Metrics::CountRequest(std::string_view op) { requests_->Add({{"op", std::string(op)}}).Increment(); }
void Metrics::CountError(std::string_view code) { errors_->Add({{"code", std::string(code)}}).Increment(); }
void Metrics::CountDisconnect(std::string_view reason) {
  disconnects_->Add({{"reason", std::string(reason)}}).Increment();
}
void Metrics::CountRefused(std::string_view listener, std::string_view reason) {
  refused_->Add({{"listener", std::string(listener)}, {"reason", std::string(reason)}}).Increment();
}
void Metrics::CountDropped(std::string_view listener, std::string_view reason) {
  dropped_->Add({{"listener", std::string(listener)}, {"reason", std::string(reason)}}).Increment();
}
void Metrics::CountAcceptError(std::string_view listener, std::string_view error) {
  accept_errors_->Add({{"listener", std::string(listener)}, {"error", std::string(error)}}).Increment();
}
void Metrics::SetChannels(double channels, double bytes) {
  channels_->Set(channels);
  channel_bytes_->Set(bytes);
}
void Metrics::SetConnections(double n) { connections_->Set(n); }
void Metrics::SetAttachedClients(double n) { attached_->Set(n); }
void Metrics::SetNamespaces(double n) { namespaces_->Set(n); }

}  // namespace tierkv::daemon
