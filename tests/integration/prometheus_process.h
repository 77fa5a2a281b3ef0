// A real Prometheus server (Debian's `prometheus`) for integration tests: runs on
// loopback with a copy of the shipped deploy/prometheus/prometheus.yml whose target
// and intervals are replaced, and the shipped alert rules; answers PromQL queries
// through its HTTP API. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace tierkv::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int FreeLoopbackPort();

// "prometheus" found on PATH (or /usr/bin/prometheus), "" when absent; same for promtool.
std::string FindProgram(const std::string& name);

// "%XX"-escapes everything but unreserved characters (RFC 3986), for query strings.
std::string UrlEncode(const std::string& s);

class PrometheusProcess {
 public:
  // dir: an existing empty directory for the config, the rules, the TSDB and the log.
  // deploy_dir: the repository's deploy/ folder (prometheus/prometheus.yml and
  // prometheus/tierkv-alerts.yml are read from it).
  PrometheusProcess(std::string dir, std::string deploy_dir);
  ~PrometheusProcess();  // SIGKILLs a server still running

  // Writes the config: the shipped one with its target replaced by `target`
  // ("127.0.0.1:PORT") and every interval set to `interval_s` seconds. False (and
  // error()) when the shipped file no longer has what is replaced.
  bool Configure(const std::string& target, int interval_s);
  // Starts the server and waits (up to `timeout`) until /-/ready answers.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Stop();

  // GET /api/v1/<path> (path includes the query string); the parsed reply, or a
  // null json when the request failed or the status is not "success".
  nlohmann::json Api(const std::string& path) const;
  // Instant query: the "result" array of a vector reply (empty when none).
  nlohmann::json Query(const std::string& promql) const;
  // The value of the only sample of `promql`, or NaN when there is not exactly one.
  double Scalar(const std::string& promql) const;
  // Polls `pred` every 100 ms until it holds or `timeout` passes; returns whether it held.
  static bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

  const std::string& config_path() const { return config_; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string Log() const;

 private:
  std::string dir_, deploy_dir_, config_, error_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace tierkv::testing
