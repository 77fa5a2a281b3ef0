// Status and Result<T>: the only error convention in tierkv.
//
// A Status is a code plus a human-readable message naming what was wrong.
// No exception crosses a module boundary; errors from CUDA, io_uring (-errno),
// RocksDB and the OS become a Status at the boundary, with file and line where
// that helps (see FromErrno).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

// Status, Result<T>, StatusCode and the TIERKV_ macros are public API.
#include "tierkv/status.h"

namespace tierkv {

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
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }

// An errno value (positive, or io_uring's negative res) as a Status naming the
// operation, e.g. FromErrno(-res, "read slab 3") -> "IOError: read slab 3: Input/output error".
// ENOSPC maps to kResourceExhausted, EACCES/EPERM to kPermissionDenied, ENOENT to
// kNotFound, everything else to kIOError.
Status FromErrno(int err, std::string_view what);

}  // namespace tierkv

// Internal shorthands for TIERKV_RETURN_IF_ERROR / TIERKV_ASSIGN_OR_RETURN (the
// public headers never define unprefixed macros into engines' code).
#define RETURN_IF_ERROR(expr) TIERKV_RETURN_IF_ERROR(expr)
#define ASSIGN_OR_RETURN(lhs, expr) TIERKV_ASSIGN_OR_RETURN(lhs, expr)

// Aborts with a message when an internal invariant is broken. Never for input errors.
#define TIERKV_CHECK(cond)                                                   \
  do {                                                                       \
    if (!(cond)) ::tierkv::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace tierkv::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}
