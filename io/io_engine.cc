#include "io/io_engine.h"

#include <sys/mman.h>

#include <cerrno>
#include <limits>
#include <string>

namespace tierkv::io {

Result<std::unique_ptr<IoBufferPool>> IoBufferPool::Create(uint32_t count, size_t buffer_bytes) {
  if (count == 0 || buffer_bytes == 0) return InvalidArgument("I/O buffer pool of zero buffers or bytes");
  buffer_bytes = RoundUpTo(buffer_bytes, kPageBytes);
  if (buffer_bytes > std::numeric_limits<size_t>::max() / count) {
    return InvalidArgument("I/O buffer pool size overflows");
  }
  const size_t total = buffer_bytes * count;
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    if (errno == ENOMEM) return ResourceExhausted("I/O buffer pool of " + std::to_string(total) + " bytes");
    return FromErrno(errno, "mmap I/O buffer pool");
  }
  return std::unique_ptr<IoBufferPool>(new IoBufferPool(static_cast<std::byte*>(p), count, buffer_bytes));
}

IoBufferPool::~IoBufferPool() { munmap(base_, buffer_bytes_ * count_); }

bool IoBufferPool::Contains(uint32_t i, const std::byte* p, size_t n) const {
  if (i >= count_) return false;
  const std::byte* b = buffer(i);
  return p >= b && n <= buffer_bytes_ && static_cast<size_t>(p - b) <= buffer_bytes_ - n;
}

std::string_view IoEngineKindName(IoEngineKind kind) {
  switch (kind) {
    case IoEngineKind::kAuto: return "auto";
    case IoEngineKind::kUring: return "io_uring";
    case IoEngineKind::kPsync: return "psync";
  }
  return "?";
}

Result<IoEngineKind> ParseIoEngineKind(std::string_view name) {
  for (IoEngineKind k : {IoEngineKind::kAuto, IoEngineKind::kUring, IoEngineKind::kPsync}) {
    if (IoEngineKindName(k) == name) return k;
  }
  return InvalidArgument("unknown I/O engine \"" + std::string(name) + "\" (auto, io_uring, psync)");
}

Status ValidateIoRequest(const IoRequest& r, uint32_t num_files, const IoBufferPool* buffers) {
  if (r.file >= num_files) {
    return InvalidArgument("I/O request on file " + std::to_string(r.file) + " of " + std::to_string(num_files));
  }
  if (r.op == IoOp::kSync) {
    if (r.length != 0 || r.length2 != 0 || r.offset != 0 || r.buf_index >= 0) {
      return InvalidArgument("sync request with a length, offset or buffer");
    }
    return OkStatus();
  }
  if (r.op != IoOp::kRead && r.op != IoOp::kWrite) return InvalidArgument("I/O request of an unknown op");
  if (r.length == 0 || r.length % kIoAlign != 0 || r.offset % kIoAlign != 0 ||
      reinterpret_cast<uintptr_t>(r.buf) % kIoAlign != 0) {
    return InvalidArgument("I/O request not aligned to " + std::to_string(kIoAlign) + ": offset " +
                           std::to_string(r.offset) + ", length " + std::to_string(r.length));
  }
  if (r.length2 > 0 && (r.buf2 == nullptr || r.length2 % kIoAlign != 0 ||
                        reinterpret_cast<uintptr_t>(r.buf2) % kIoAlign != 0 ||
                        r.total_length() > uint64_t{INT32_MAX})) {
    return InvalidArgument("I/O request second segment not aligned to " + std::to_string(kIoAlign));
  }
  if (r.buf_index >= 0 &&
      (buffers == nullptr || !buffers->Contains(static_cast<uint32_t>(r.buf_index), r.buf, r.length))) {
    return InvalidArgument("I/O request buffer is not inside engine buffer " + std::to_string(r.buf_index));
  }
  return OkStatus();
}

Status RunIoBatch(IoEngine& engine, std::span<const IoRequest> requests, std::span<int32_t> results) {
  TIERKV_CHECK(results.size() == requests.size() && engine.in_flight() == 0);
  size_t next = 0;
  auto on_complete = [&](const IoCompletion& c) { results[c.user_data] = c.result; };
  while (next < requests.size() || engine.in_flight() > 0) {
    while (next < requests.size() && engine.in_flight() < engine.queue_depth()) {
      IoRequest r = requests[next];
      r.user_data = next;
      Status st = engine.Prepare(r);
      if (!st.ok()) {
        results[next] = -EINVAL;
      }
      ++next;
    }
    if (engine.in_flight() == 0) continue;
    ASSIGN_OR_RETURN(uint32_t reaped, engine.Reap(1, on_complete));
    (void)reaped;
  }
  return OkStatus();
}

}  // namespace tierkv::io
