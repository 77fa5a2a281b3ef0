// Runs the real tierkvd binary for integration tests: writes a config into a
// temporary directory, starts the daemon, waits until its socket answers, and stops
// it with SIGTERM. The daemon's log goes to <dir>/tierkvd.log.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace tierkv::testing {

// The tierkvd to run: $TIERKVD when set (a bundle copied to another machine, where
// the build's path does not exist), else `built` (the build's TIERKVD_PATH).
// DaemonProcess applies it to the binary it is given.
std::string DaemonBinary(const char* built);

class DaemonProcess {
 public:
  // Writes a config that puts the socket, the data and the log under dir, the
  // metrics on a free loopback port, and small tiers (4 MiB G, 8 MiB H, 16 MiB D
  // per namespace) unless `sections` has its own [storage]. `daemon_keys` are extra lines of [daemon];
  // (a socket_path there replaces the default one; socket_path() still names the
  // default); `sections` are whole extra sections (a [metrics] there replaces the default one).
  DaemonProcess(std::string binary, std::string dir, std::string daemon_keys = "", std::string sections = "");
  ~DaemonProcess();  // SIGKILLs a daemon still running

  // Starts and waits (up to `timeout`) for the control socket to accept. False on failure.
  bool Start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // SIGTERM and wait; returns the exit status (-1 if it did not exit in time, 128+sig if killed).
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // SIGKILL and reap.
  void Kill();
  // Polls whether the process is still running (reaps it if it exited).
  bool Running();

  const std::string& socket_path() const { return socket_; }
  const std::string& config_path() const { return config_; }
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  std::string binary_, dir_, socket_, config_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

// Runs a program to completion with arguments; returns its exit status and
// captures stdout+stderr into *output.
int RunProgram(const std::string& binary, const std::vector<std::string>& args, std::string* output);

// HTTP/1.0 GET of http://host:port/path; returns the body, or "" on failure.
std::string HttpGet(const std::string& url);

// Value of the first sample in Prometheus text `exposition` whose name is `name`
// and whose labels contain every `label="value"` pair given; -1 if absent.
double MetricValue(const std::string& exposition, const std::string& name,
                   const std::vector<std::string>& label_pairs = {});

// What a process holds, from /proc/PID: threads, open descriptors (and of them the
// manifest's RocksDB table files, which flushes add and compactions remove, at most
// storage/manifest.h's kMaxOpenTableFiles), resident memory.
struct Footprint {
  size_t threads = 0, fds = 0, table_fds = 0;
  uint64_t rss_kib = 0;
};
Footprint Measure(pid_t pid);

}  // namespace tierkv::testing
