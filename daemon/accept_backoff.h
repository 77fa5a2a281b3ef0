// What both accept loops (control socket, metrics endpoint) do when accept fails:
// back off when the process is out of descriptors instead of spinning, and log at
// most one line per interval with a count of the lines suppressed since.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <boost/system/error_code.hpp>

#include "common/mutex.h"

namespace tierkv::daemon {

// At most one line per interval. Thread-safe.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::seconds interval) : interval_(interval) {}
  // Logs `line` at WARNING unless a line went out less than an interval ago; a line
  // that goes out says how many were suppressed before it. True when it logged.
  bool Warn(const std::string& line);
  uint64_t suppressed_total() const;

 private:
  const std::chrono::seconds interval_;
  mutable Mutex mu_;
  std::chrono::steady_clock::time_point last_ GUARDED_BY(mu_) {};
  bool logged_ GUARDED_BY(mu_) = false;
  uint64_t suppressed_ GUARDED_BY(mu_) = 0;
  uint64_t suppressed_total_ GUARDED_BY(mu_) = 0;
};

// EMFILE, ENFILE, ENOBUFS, ENOMEM: accepting again at once would fail again.
bool IsResourceExhaustion(const boost::system::error_code& ec);
// "EMFILE", "ENFILE", ... or "other": the label of tierkv_accept_errors_total.
std::string AcceptErrorLabel(const boost::system::error_code& ec);

}  // namespace tierkv::daemon
