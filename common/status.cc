#include "common/status.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tierkv {
namespace {
constexpr std::array<std::string_view, 14> kNames = {
    "Ok",         "NotFound",     "InvalidArgument",  "AlreadyExists", "ResourceExhausted",
    "Busy",       "IOError",      "DeviceError",      "Corruption",    "NotSupported",
    "PermissionDenied", "Shutdown", "Internal",  "Unavailable",
};
}  // namespace

std::string_view StatusCodeName(StatusCode code) {
  auto i = static_cast<size_t>(code);
  return i < kNames.size() ? kNames[i] : "Unknown";
}

std::optional<StatusCode> StatusCodeFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<StatusCode>(i);
  }
  return std::nullopt;
}

std::string Status::ToString() const {
  if (ok()) return "Ok";
  std::string s(StatusCodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return Status(code_, std::move(m));
}

Status FromErrno(int err, std::string_view what) {
  if (err < 0) err = -err;
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  switch (err) {
    case 0: return Status();
    case ENOSPC:
    case EDQUOT: return ResourceExhausted(std::move(m));
    case EACCES:
    case EPERM: return PermissionDenied(std::move(m));
    case ENOENT: return NotFound(std::move(m));
    case EINVAL: return InvalidArgument(std::move(m));
    default: return IOError(std::move(m));
  }
}

namespace internal {
void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "CHECK failed: %s at %s:%d\n", cond, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace internal
}  // namespace tierkv
