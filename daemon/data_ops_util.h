// Completion helpers shared by the data-plane operations (data_ops*.cc).
#pragma once

#include <chrono>
#include <cstdint>

#include "common/data_plane.h"
#include "common/status.h"
#include "daemon/channel.h"

namespace tierkv::daemon::ops {

inline dp::RingCompletion Done(uint32_t count = 0, uint64_t value = 0, uint64_t value2 = 0) {
  dp::RingCompletion c{};
  c.count = count;
  c.value = value;
  c.value2 = value2;
  return c;
}

inline dp::RingCompletion Fail(StatusCode code, dp::Detail detail, uint32_t count = 0) {
  dp::RingCompletion c = ErrorCompletion(0, code, detail);
  c.count = count;
  return c;
}

// Maps a storage error to a completion.
inline dp::RingCompletion FromStatus(const Status& st, uint32_t count) {
  dp::Detail d = dp::Detail::kInternal;
  switch (st.code()) {
    case StatusCode::kNotFound: d = dp::Detail::kNotFound; break;
    case StatusCode::kResourceExhausted: d = dp::Detail::kNoSpace; break;
    case StatusCode::kInvalidArgument: d = dp::Detail::kLength; break;
    case StatusCode::kBusy: d = dp::Detail::kBusy; break;
    case StatusCode::kCorruption: d = dp::Detail::kCorruption; break;
    case StatusCode::kPermissionDenied: d = dp::Detail::kOwner; break;
    default: break;
  }
  return Fail(st.code(), d, count);
}

inline bool IsOk(const dp::RingCompletion& c) { return c.status == static_cast<uint8_t>(StatusCode::kOk); }

inline uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace tierkv::daemon::ops
