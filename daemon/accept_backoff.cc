#include "daemon/accept_backoff.h"

#include <cerrno>

#include "common/log.h"

namespace tierkv::daemon {

bool RateLimitedLog::Warn(const std::string& line) {
  uint64_t suppressed = 0;
  {
    MutexLock lock(&mu_);
    const auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < interval_) {
      ++suppressed_;
      ++suppressed_total_;
      return false;
    }
    logged_ = true;
    last_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
  }
  if (suppressed > 0) {
    LOG(WARNING) << line << " (" << suppressed << " similar line(s) suppressed in the last " << interval_.count()
                 << " s)";
  } else {
    LOG(WARNING) << line;
  }
  return true;
}

uint64_t RateLimitedLog::suppressed_total() const {
  MutexLock lock(&mu_);
  return suppressed_total_;
}

bool IsResourceExhaustion(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
}

std::string AcceptErrorLabel(const boost::system::error_code& ec) {
  if (ec.category() == boost::system::system_category()) {
    switch (ec.value()) {
      case EMFILE: return "EMFILE";
      case ENFILE: return "ENFILE";
      case ENOBUFS: return "ENOBUFS";
      case ENOMEM: return "ENOMEM";
      case ECONNABORTED: return "ECONNABORTED";
      default: break;
    }
  }
  return "other";
}

}  // namespace tierkv::daemon
