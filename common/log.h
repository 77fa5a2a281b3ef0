// Leveled logging to stderr: one line per message, with UTC time, level and source.
//   LOG(INFO) << "listening on " << path;
// Thread-safe (each line is written with one write call). The level is global and
// set once at start from the config (daemon.log_level).
#pragma once

#include <sstream>
#include <string_view>

namespace tierkv {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug" | "info" | "warning" | "error"; false for anything else.
bool ParseLogLevel(std::string_view name, LogLevel* out);

namespace internal {
// Turns the streamed expression into void so LOG works in an unbraced if/else.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return os_; }

 private:
  std::ostringstream os_;
};
}  // namespace internal
}  // namespace tierkv

#define TIERKV_LOG_DEBUG ::tierkv::LogLevel::kDebug
#define TIERKV_LOG_INFO ::tierkv::LogLevel::kInfo
#define TIERKV_LOG_WARNING ::tierkv::LogLevel::kWarning
#define TIERKV_LOG_ERROR ::tierkv::LogLevel::kError

#define LOG(severity)                                    \
  (TIERKV_LOG_##severity < ::tierkv::GetLogLevel())      \
      ? (void)0                                          \
      : ::tierkv::internal::LogVoidify() &               \
            ::tierkv::internal::LogMessage(TIERKV_LOG_##severity, __FILE__, __LINE__).stream()
