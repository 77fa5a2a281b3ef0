// IoEngine: batched reads and writes of aligned buffers at file offsets: the one I/O
// layer of tierkv (io/, library tierkv_io; decision 0025), under the D tier (DESIGN
// §3, storage/disk_tier.h) and the SPANN posting store (index/posting_store.h).
// Two implementations, chosen in ONE place (io_engine_factory.cc):
//   io_uring  liburing, when compiled in (TIERKV_HAVE_URING) and io_uring_queue_init
//             succeeds at run time: batched submissions, registered (fixed) buffers
//             and files, a completion loop.
//   psync     pread/pwrite/fdatasync, executed when the caller reaps (the fallback).
// A fault-injecting wrapper (fault_injection_engine.h) wraps either.
//
// Requests read, write, or sync a file (IoOp).
// Use: Prepare() up to queue_depth() requests, then Reap() to submit them and collect
// completions; prepare more as completions free room. RunIoBatch() does this for a
// plain array of requests.
//
// Thread-safety: an engine is used by one thread at a time (the D tier keeps a pool
// of engines, one per concurrent batch; a posting store owns one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tierkv::io {

// Smallest alignment of offsets, lengths and buffer addresses an engine accepts:
// the smallest logical block size of a device (O_DIRECT). A file system may demand
// more (4096 on 4Kn devices); the D tier probes it (storage/disk_tier.h).
inline constexpr size_t kIoAlign = 512;
// Page size: buffer pools are page-aligned.
inline constexpr size_t kPageBytes = 4096;
// The largest buffer io_uring registers as one (the kernel's limit): regions are
// registered in pieces of this size.
inline constexpr size_t kMaxRegisteredBytes = size_t{1} << 30;

constexpr size_t RoundUpTo(size_t n, size_t align) { return (n + align - 1) / align * align; }
constexpr size_t RoundUpIo(size_t n) { return RoundUpTo(n, kIoAlign); }

// kSync: fdatasync of the request's file (data written before it was prepared and
// completed; an engine does not order it after requests still in flight, so reap
// the writes first). Only `file` and `user_data` count; length, buffers and offset
// must be zero. Result 0 or -errno.
enum class IoOp : uint8_t { kRead = 0, kWrite = 1, kSync = 2 };

struct IoRequest {
  IoOp op = IoOp::kRead;
  uint32_t file = 0;        // index into the table given to RegisterFiles
  uint64_t offset = 0;      // REQUIRES: multiple of kIoAlign
  uint32_t length = 0;      // REQUIRES: > 0, multiple of kIoAlign
  std::byte* buf = nullptr; // REQUIRES: kIoAlign-aligned, `length` bytes
  // Index of the engine buffer (buffers()) that contains [buf, buf + length), or of
  // the registered region that does (RegionIndex(buf, length); a single segment
  // only), which lets io_uring use fixed-buffer I/O; -1 for any other aligned memory.
  int32_t buf_index = -1;
  uint64_t user_data = 0;   // returned in the completion; unique among in-flight requests
  // Optional second segment (vectored I/O): the transfer continues into
  // [buf2, buf2 + length2) after [buf, buf + length). Fixed-buffer I/O applies only
  // to single-segment requests. REQUIRES when length2 > 0: buf2 kIoAlign-aligned,
  // length2 a multiple of kIoAlign.
  std::byte* buf2 = nullptr;
  uint32_t length2 = 0;
  // The engine's registered region buffer (IoEngine::RegionIndex) that holds the
  // second segment, or -1. When both segments are registered (buf_index >= 0 too),
  // io_uring runs the request as two fixed-buffer transfers (no page pinning per
  // request) and completes it once, with both results summed (or the first error).
  // Engines without registered regions ignore it.
  int32_t buf2_index = -1;

  uint64_t total_length() const { return uint64_t{length} + length2; }
};

struct IoCompletion {
  uint64_t user_data = 0;
  int32_t result = 0;  // bytes transferred over both segments (may be short), or -errno
};

// `count` buffers of `buffer_bytes` each (rounded up to kPageBytes), page-aligned,
// pre-faulted, contiguous. Owned by an engine, registered with the kernel when
// the engine can.
class IoBufferPool {
 public:
  static Result<std::unique_ptr<IoBufferPool>> Create(uint32_t count, size_t buffer_bytes);
  ~IoBufferPool();
  IoBufferPool(const IoBufferPool&) = delete;
  IoBufferPool& operator=(const IoBufferPool&) = delete;

  uint32_t count() const { return count_; }
  size_t buffer_bytes() const { return buffer_bytes_; }
  // REQUIRES: i < count().
  std::byte* buffer(uint32_t i) const { return base_ + size_t{i} * buffer_bytes_; }
  // True when [p, p + n) lies inside buffer i.
  bool Contains(uint32_t i, const std::byte* p, size_t n) const;

 private:
  IoBufferPool(std::byte* base, uint32_t count, size_t buffer_bytes)
      : base_(base), count_(count), buffer_bytes_(buffer_bytes) {}
  std::byte* const base_;
  const uint32_t count_;
  const size_t buffer_bytes_;
};

enum class IoEngineKind : uint8_t {
  kAuto = 0,  // io_uring when available, else psync
  kUring,     // io_uring or kNotSupported
  kPsync,
};
// "auto", "io_uring", "psync".
std::string_view IoEngineKindName(IoEngineKind kind);
Result<IoEngineKind> ParseIoEngineKind(std::string_view name);

struct IoEngineOptions {
  IoEngineKind kind = IoEngineKind::kAuto;  // Default: kAuto
  uint32_t queue_depth = 32;  // requests in flight at most; REQUIRES: [1, 4096]. Default: 32
  uint32_t num_buffers = 0;   // size of the buffer pool (0: no pool). Default: 0
  size_t buffer_bytes = 0;    // bytes per pool buffer. Default: 0
  uint32_t device = 0;        // for engine factories: which device of a D tier (0 for one). Default: 0
  // Caller memory registered with the kernel besides the buffer pool (the H arena
  // that D-tier reads land in and writes leave from), so that transfers there skip
  // the per-request page pinning (IoRequest::buf2_index). Registration pins (and so
  // commits) every page: pass memory that is resident anyway. Refused registrations
  // (RLIMIT_MEMLOCK) are logged once and the engine works without. It must stay
  // mapped while the engine lives. Default: none
  std::vector<std::span<std::byte>> regions;
};

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  // "io_uring", "psync", or a wrapper's name around its inner engine's.
  virtual std::string_view name() const = 0;
  virtual uint32_t queue_depth() const = 0;
  // Requests prepared and not yet reaped.
  virtual uint32_t in_flight() const = 0;
  // The engine's buffer pool, or nullptr when created without one.
  virtual IoBufferPool* buffers() = 0;
  // The registered buffer index for [p, p + n) inside a registered region
  // (IoEngineOptions::regions; io_uring registers them in pieces of at most
  // kMaxRegisteredBytes), or -1 when it is not inside one piece or the engine
  // registers none.
  virtual int32_t RegionIndex(const std::byte* /*p*/, size_t /*n*/) const { return -1; }
  // Sets the file table that IoRequest::file indexes. The fds stay owned by the
  // caller and must stay open while requests use them. REQUIRES: in_flight() == 0.
  virtual Status RegisterFiles(std::span<const int> fds) = 0;
  // Queues one request. kInvalidArgument when misaligned, when the file index or
  // buffer index is out of range, or when in_flight() == queue_depth().
  virtual Status Prepare(const IoRequest& request) = 0;
  // Submits what is prepared, waits until at least min(min_complete, in_flight())
  // requests have completed, and calls on_complete once for each completion reaped
  // (possibly more than min_complete). Returns the number reaped. An error means the
  // engine itself failed (not one request): the caller should drop the engine.
  virtual Result<uint32_t> Reap(uint32_t min_complete,
                                const std::function<void(const IoCompletion&)>& on_complete) = 0;
};

// Checks a request against the engine's limits (alignment, file and buffer index).
Status ValidateIoRequest(const IoRequest& request, uint32_t num_files, const IoBufferPool* buffers);

// ---- io_engine_factory.cc: the one gate for the io_uring / psync choice. ----
// kNotSupported when kind == kUring and io_uring is not compiled in or is refused
// by the kernel; other errors from setup (e.g. kResourceExhausted).
Result<std::unique_ptr<IoEngine>> CreateIoEngine(const IoEngineOptions& options);
// What a user of engines (the D tier, the posting store) calls instead of
// CreateIoEngine when given one: tests wrap CreateIoEngine to inject faults
// (fault_injection_engine.h).
using IoEngineFactory = std::function<Result<std::unique_ptr<IoEngine>>(const IoEngineOptions&)>;
// True when io_uring is compiled in and a ring can be set up on this machine.
bool IoUringAvailable();

// Runs requests[i] for every i with up to engine.queue_depth() in flight and stores
// each result (bytes or -errno) in results[i]. REQUIRES: engine.in_flight() == 0,
// results.size() == requests.size(). Returns an error only when the engine fails.
Status RunIoBatch(IoEngine& engine, std::span<const IoRequest> requests, std::span<int32_t> results);

}  // namespace tierkv::io
