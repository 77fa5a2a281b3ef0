// Status and Result<T>: how every call of libtierkv reports errors (no exceptions).
//
// A Status is a code plus a message naming what was wrong. Result<T> is a T or a
// non-OK Status. In an engine's code:
//
//   tierkv::Status Step(tierkv::DataChannel& ch) {
//     TIERKV_ASSIGN_OR_RETURN(auto r, ch.Retrieve(seq, layer, query, budget));
//     ...
//     TIERKV_RETURN_IF_ERROR(ch.Release(r.lease));
//     return tierkv::Status();
//   }
//
// Self-contained: needs only the C++ standard library (C++20).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "tierkv/export.h"

namespace tierkv {

// Same values as tierkv_status of the C ABI (tierkv.h).
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
  // The daemon is gone (its process exited or closed this connection): pending and
  // later calls fail at once. Client::Reconnect dials again. Appended: values never change.
  kUnavailable,
};

// Stable names ("InvalidArgument", ...) used on the wire and in metrics labels.
TIERKV_EXPORT std::string_view StatusCodeName(StatusCode code);
// Inverse of StatusCodeName; nullopt for an unknown name.
TIERKV_EXPORT std::optional<StatusCode> StatusCodeFromName(std::string_view name);

class [[nodiscard]] TIERKV_EXPORT Status {
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
#define TIERKV_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    ::tierkv::Status _tierkv_st = (expr);              \
    if (!_tierkv_st.ok()) return _tierkv_st;           \
  } while (0)

// TIERKV_ASSIGN_OR_RETURN(auto x, MakeX()); declares/assigns from a Result<T> or
// returns its Status.
#define TIERKV_ASSIGN_OR_RETURN(lhs, expr) \
  TIERKV_ASSIGN_OR_RETURN_IMPL(TIERKV_CONCAT(_tierkv_result_, __LINE__), lhs, expr)
#define TIERKV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
