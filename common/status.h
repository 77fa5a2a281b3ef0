// Status and Result<T>: the only error convention in tierkv.
//
// A Status is a code plus a human-readable message naming what was wrong.
// No exception crosses a module boundary; errors from CUDA, io_uring (-errno),
// RocksDB and the OS become a Status at the boundary, with file and line where
// that helps (see FromErrno).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tierkv {

enum class StatusCode : uint8_t {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kAlreadyExists,
  kResourceExhausted,
  kBusy,
  kIOError,
  kDeviceError,
  kCorruption,
  kNotSupported,
  kPermissionDenied,
  kShutdown,
  kInternal,
};

// Stable names ("InvalidArgument", ...) used on the wire and in metrics labels.
std::string_view StatusCodeName(StatusCode code);
// Inverse of StatusCodeName; nullopt for an unknown name.
std::optional<StatusCode> StatusCodeFromName(std::string_view name);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: model.head_dim must be in [1, 1024], got 0"
  std::string ToString() const;
  // Returns a copy with "context: " prefixed to the message.
  Status WithContext(std::string_view context) const;
  // Explicitly discards the status (for best-effort cleanup paths).
  void IgnoreError() const {}

  bool operator==(const Status& o) const { return code_ == o.code_ && message_ == o.message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Busy(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
inline Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
inline Status DeviceError(std::string m) { return {StatusCode::kDeviceError, std::move(m)}; }
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status NotSupported(std::string m) { return {StatusCode::kNotSupported, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status ShutdownStatus(std::string m) { return {StatusCode::kShutdown, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// An errno value (positive, or io_uring's negative res) as a Status naming the
// operation, e.g. FromErrno(-res, "read slab 3") -> "IOError: read slab 3: Input/output error".
// ENOSPC maps to kResourceExhausted, EACCES/EPERM to kPermissionDenied, ENOENT to
// kNotFound, everything else to kIOError.
Status FromErrno(int err, std::string_view what);

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                      // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {                // NOLINT(implicit)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result built from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tierkv

#define TIERKV_CONCAT_INNER(a, b) a##b
#define TIERKV_CONCAT(a, b) TIERKV_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::tierkv::Status _st = (expr);                     \
    if (!_st.ok()) return _st;                         \
  } while (0)

// ASSIGN_OR_RETURN(auto x, MakeX()); declares/assigns from a Result<T> or returns its Status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(TIERKV_CONCAT(_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

// Aborts with a message when an internal invariant is broken. Never for input errors.
#define TIERKV_CHECK(cond)                                                   \
  do {                                                                       \
    if (!(cond)) ::tierkv::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace tierkv::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}
