// The one gate for the I/O engine choice: io_uring when compiled in
// (TIERKV_HAVE_URING, set by CMake when liburing is found) and accepted by the
// kernel at run time, else pread/pwrite. No other file tests TIERKV_HAVE_URING.
#include <mutex>

#include "common/log.h"
#include "io/io_engine.h"
#include "io/io_engine_internal.h"

namespace tierkv::io {
namespace {
constexpr uint32_t kMaxQueueDepth = 4096;

#ifdef TIERKV_HAVE_URING
bool ProbeUring() {
  IoEngineOptions probe;
  probe.queue_depth = 2;
  Result<std::unique_ptr<IoEngine>> engine = internal::NewUringEngine(probe);
  if (!engine.ok()) {
    LOG(INFO) << "io_uring is compiled in but unusable here (" << engine.status().ToString()
              << "): I/O engines use pread/pwrite";
  }
  return engine.ok();
}
#endif
}  // namespace

bool IoUringAvailable() {
#ifdef TIERKV_HAVE_URING
  static const bool available = ProbeUring();
  return available;
#else
  return false;
#endif
}

Result<std::unique_ptr<IoEngine>> CreateIoEngine(const IoEngineOptions& options) {
  if (options.queue_depth == 0 || options.queue_depth > kMaxQueueDepth) {
    return InvalidArgument("I/O queue depth must be in [1, " + std::to_string(kMaxQueueDepth) + "], got " +
                           std::to_string(options.queue_depth));
  }
  if (options.num_buffers > 0 && options.buffer_bytes == 0) {
    return InvalidArgument("I/O buffer pool with buffers of 0 bytes");
  }
  switch (options.kind) {
    case IoEngineKind::kPsync: return internal::NewPsyncEngine(options);
    case IoEngineKind::kUring:
#ifdef TIERKV_HAVE_URING
      return internal::NewUringEngine(options);
#else
      return NotSupported("io_uring engine requested but tierkv was built without liburing");
#endif
    case IoEngineKind::kAuto:
      if (IoUringAvailable()) {
#ifdef TIERKV_HAVE_URING
        return internal::NewUringEngine(options);
#endif
      }
      return internal::NewPsyncEngine(options);
  }
  return InvalidArgument("unknown I/O engine kind");
}

}  // namespace tierkv::io
