// The io_uring IoEngine (liburing >= 2.3). Compiled only when TIERKV_HAVE_URING.
//
// One ring of queue_depth entries. The buffer pool is registered once
// (io_uring_register_buffers) so reads and writes into it use the fixed-buffer
// opcodes (no page pinning per request); the file table is registered too
// (IOSQE_FIXED_FILE). When either registration is refused (RLIMIT_MEMLOCK for a
// non-root daemon, old kernels), the engine logs it once and uses the plain opcodes.
//
// Caller regions (IoEngineOptions::regions, the H arena) are registered after the
// pool, in pieces of at most kMaxRegisteredBytes. A two-segment request whose both
// segments are registered (header sector in the pool, payload in a region) runs as
// two fixed-buffer transfers on adjacent file ranges, and completes once: the kernel
// pins nothing per request. (IORING_OP_READV_FIXED, kernel 6.15, would take both in
// one SQE only when they lie in one registered buffer; ours never do.)
#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <vector>

#include "common/log.h"
#include "io/io_engine_internal.h"

namespace tierkv::io::internal {
namespace {

class UringEngine final : public IoEngine {
 public:
  UringEngine(uint32_t queue_depth, std::unique_ptr<IoBufferPool> pool, std::vector<std::span<std::byte>> regions)
      : queue_depth_(queue_depth), pool_(std::move(pool)), region_spans_(std::move(regions)), slots_(queue_depth) {
    for (uint32_t i = queue_depth; i-- > 0;) free_slots_.push_back(i);
  }
  ~UringEngine() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  // Sets up the ring and registers the buffer pool. Returns -errno of
  // io_uring_queue_init, or 0.
  int Init() {
    // COOP_TASKRUN: completions are processed when this thread enters the kernel
    // anyway, instead of interrupting it (kernel >= 5.19; retried without).
    // A request split over two fixed buffers takes two submission entries.
    const uint32_t entries = region_spans_.empty() ? queue_depth_ : 2 * queue_depth_;
    int ret = io_uring_queue_init(entries, &ring_, IORING_SETUP_COOP_TASKRUN);
    if (ret == -EINVAL) ret = io_uring_queue_init(entries, &ring_, 0);
    if (ret < 0) return ret;
    ring_ready_ = true;
    RegisterPool();
    return 0;
  }

  std::string_view name() const override { return "io_uring"; }
  uint32_t queue_depth() const override { return queue_depth_; }
  uint32_t in_flight() const override { return in_flight_; }
  IoBufferPool* buffers() override { return pool_.get(); }

  int32_t RegionIndex(const std::byte* p, size_t n) const override {
    if (n == 0) return -1;
    for (const Region& r : regions_) {
      if (p < r.base || n > r.bytes || static_cast<size_t>(p - r.base) > r.bytes - n) continue;
      const size_t first = static_cast<size_t>(p - r.base) / kMaxRegisteredBytes;
      const size_t last = (static_cast<size_t>(p - r.base) + n - 1) / kMaxRegisteredBytes;
      return first == last ? static_cast<int32_t>(r.first_index + first) : -1;
    }
    return -1;
  }

  Status RegisterFiles(std::span<const int> fds) override {
    if (in_flight_ != 0) return InvalidArgument("RegisterFiles with requests in flight");
    if (files_registered_) {
      io_uring_unregister_files(&ring_);
      files_registered_ = false;
    }
    fds_.assign(fds.begin(), fds.end());
    if (fds_.empty()) return OkStatus();
    const int ret = io_uring_register_files(&ring_, fds_.data(), static_cast<unsigned>(fds_.size()));
    if (ret == 0) {
      files_registered_ = true;
    } else {
      LOG(DEBUG) << "io_uring: registering " << fds_.size() << " files refused (" << FromErrno(-ret, "").message()
                 << "), using plain file descriptors";
    }
    return OkStatus();
  }

  Status Prepare(const IoRequest& r) override {
    if (in_flight_ >= queue_depth_) return InvalidArgument("io_uring engine: queue full");
    IoRequest checked = r;
    if (r.buf_index >= 0 && static_cast<uint32_t>(r.buf_index) >= pool_->count()) {  // a single segment in a region
      if (r.length2 > 0 || r.buf_index != RegionIndex(r.buf, r.length)) {
        return InvalidArgument("I/O request buffer is not inside registered buffer " + std::to_string(r.buf_index));
      }
      checked.buf_index = -1;
    }
    RETURN_IF_ERROR(ValidateIoRequest(checked, static_cast<uint32_t>(fds_.size()), pool_.get()));
    const bool split = r.length2 > 0 && r.buf_index >= 0 && r.buf2_index >= 0 && buffers_registered_;
    if (r.buf2_index >= 0 && r.buf2_index != RegionIndex(r.buf2, r.length2)) {
      return InvalidArgument("I/O request second segment is not inside registered buffer " +
                             std::to_string(r.buf2_index));
    }
    if (io_uring_sq_space_left(&ring_) < (split ? 2u : 1u)) {
      return Internal("io_uring: no free submission entry below the queue depth");
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    const int fd = files_registered_ ? static_cast<int>(r.file) : fds_[r.file];
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    InFlight& f = slots_[slot];
    f.user_data = r.user_data;
    f.parts = 1;
    f.result = 0;
    if (split) {
      // Header sector from the pool, payload in a region: two fixed transfers.
      io_uring_sqe* sqe2 = io_uring_get_sqe(&ring_);
      if (r.op == IoOp::kRead) {
        io_uring_prep_read_fixed(sqe, fd, r.buf, r.length, r.offset, r.buf_index);
        io_uring_prep_read_fixed(sqe2, fd, r.buf2, r.length2, r.offset + r.length, r.buf2_index);
      } else {
        io_uring_prep_write_fixed(sqe, fd, r.buf, r.length, r.offset, r.buf_index);
        io_uring_prep_write_fixed(sqe2, fd, r.buf2, r.length2, r.offset + r.length, r.buf2_index);
      }
      if (files_registered_) sqe2->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe2, slot);
      f.parts = 2;
    } else if (r.op == IoOp::kSync) {
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    } else if (r.length2 > 0) {
      // Vectored: the iovecs must live until the request completes.
      f.iov[0] = {r.buf, r.length};
      f.iov[1] = {r.buf2, r.length2};
      if (r.op == IoOp::kRead) {
        io_uring_prep_readv(sqe, fd, f.iov, 2, r.offset);
      } else {
        io_uring_prep_writev(sqe, fd, f.iov, 2, r.offset);
      }
    } else if (r.buf_index >= 0 && buffers_registered_) {
      if (r.op == IoOp::kRead) {
        io_uring_prep_read_fixed(sqe, fd, r.buf, r.length, r.offset, r.buf_index);
      } else {
        io_uring_prep_write_fixed(sqe, fd, r.buf, r.length, r.offset, r.buf_index);
      }
    } else if (r.op == IoOp::kRead) {
      io_uring_prep_read(sqe, fd, r.buf, r.length, r.offset);
    } else {
      io_uring_prep_write(sqe, fd, r.buf, r.length, r.offset);
    }
    if (files_registered_) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, slot);
    ++in_flight_;
    return OkStatus();
  }

  Result<uint32_t> Reap(uint32_t min_complete,
                        const std::function<void(const IoCompletion&)>& on_complete) override {
    const uint32_t want = std::min(min_complete, in_flight_);
    uint32_t reaped = 0;
    for (;;) {
      reaped += Drain(on_complete);
      if (reaped >= want && io_uring_sq_ready(&ring_) == 0) return reaped;
      const int ret = io_uring_submit_and_wait(&ring_, reaped >= want ? 0 : 1);
      if (ret >= 0 || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) continue;
      return FromErrno(-ret, "io_uring_submit_and_wait").WithContext("io_uring engine failed");
    }
  }

 private:
  // Calls on_complete for every completion ready now; returns how many.
  uint32_t Drain(const std::function<void(const IoCompletion&)>& on_complete) {
    uint32_t n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    // Copy the completions out before calling back: the callback may prepare new
    // requests, which must not race with advancing the completion queue.
    completions_.clear();
    unsigned cqes = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++cqes;
      const auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      InFlight& f = slots_[slot];
      // The parts of a split request: the first error, else the bytes of both.
      if (f.result >= 0) f.result = cqe->res < 0 ? cqe->res : f.result + cqe->res;
      if (--f.parts > 0) continue;
      completions_.push_back({f.user_data, f.result});
      free_slots_.push_back(slot);
      ++n;
    }
    io_uring_cq_advance(&ring_, cqes);
    in_flight_ -= n;
    for (const IoCompletion& c : completions_) on_complete(c);
    return n;
  }

  // Registers the pool's buffers, then the regions' pieces; without the regions
  // when registering them too is refused.
  void RegisterPool() {
    std::vector<iovec> iov;
    if (pool_ != nullptr) {
      for (uint32_t i = 0; i < pool_->count(); ++i) iov.push_back({pool_->buffer(i), pool_->buffer_bytes()});
    }
    const size_t pool_count = iov.size();
    std::vector<Region> regions;
    for (std::span<std::byte> s : region_spans_) {
      if (s.empty()) continue;
      regions.push_back({s.data(), s.size(), static_cast<uint32_t>(iov.size())});
      for (size_t off = 0; off < s.size(); off += kMaxRegisteredBytes) {
        iov.push_back({s.data() + off, std::min(kMaxRegisteredBytes, s.size() - off)});
      }
    }
    if (iov.empty()) return;
    int ret = io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size()));
    if (ret == 0) {
      regions_ = std::move(regions);
    } else if (!regions.empty()) {
      static std::once_flag once;
      std::call_once(once, [&] {
        LOG(WARNING) << "io_uring: registering " << (iov.size() - pool_count) << " region piece(s) for fixed-buffer "
                     << "transfers refused (" << FromErrno(-ret, "io_uring_register_buffers").message()
                     << "; raise RLIMIT_MEMLOCK): the kernel pins pages per transfer";
      });
      ret = pool_count == 0 ? -EINVAL : io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(pool_count));
      if (pool_count == 0) return;
    }
    buffers_registered_ = ret == 0;
    if (ret != 0) {
      static std::once_flag once;
      std::call_once(once, [&] {
        LOG(WARNING) << "io_uring: registering " << pool_->count() << " buffers of " << pool_->buffer_bytes()
                     << " bytes refused (" << FromErrno(-ret, "io_uring_register_buffers").message()
                     << "; raise RLIMIT_MEMLOCK), using unregistered buffers";
      });
    }
  }

  // A request between Prepare and its completion; the sqe carries its index.
  struct InFlight {
    uint64_t user_data = 0;
    iovec iov[2] = {};
    int32_t result = 0;  // what the parts completed so far add up to
    uint8_t parts = 1;   // submission entries not yet completed
  };
  // A registered caller region: its pieces are buffers first_index, first_index + 1, ...
  struct Region {
    std::byte* base;
    size_t bytes;
    uint32_t first_index;
  };

  io_uring ring_{};
  bool ring_ready_ = false;
  const uint32_t queue_depth_;
  std::unique_ptr<IoBufferPool> pool_;
  const std::vector<std::span<std::byte>> region_spans_;  // as given
  std::vector<Region> regions_;                           // as registered (empty when refused)
  std::vector<InFlight> slots_;        // queue_depth entries
  std::vector<uint32_t> free_slots_;   // indexes of slots_ not in flight
  std::vector<int> fds_;
  std::vector<IoCompletion> completions_;
  uint32_t in_flight_ = 0;
  bool files_registered_ = false;
  bool buffers_registered_ = false;
};

}  // namespace

Result<std::unique_ptr<IoEngine>> NewUringEngine(const IoEngineOptions& options) {
  std::unique_ptr<IoBufferPool> pool;
  if (options.num_buffers > 0) {
    ASSIGN_OR_RETURN(pool, IoBufferPool::Create(options.num_buffers, options.buffer_bytes));
  }
  auto engine = std::make_unique<UringEngine>(options.queue_depth, std::move(pool), options.regions);
  const int ret = engine->Init();
  if (ret < 0) {
    if (ret == -ENOSYS || ret == -EPERM || ret == -EINVAL) {
      return NotSupported("io_uring_queue_init: " + FromErrno(-ret, "").message());
    }
    return FromErrno(-ret, "io_uring_queue_init");
  }
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace tierkv::io::internal
