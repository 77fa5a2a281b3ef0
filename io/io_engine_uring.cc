// The io_uring IoEngine (liburing >= 2.3). Compiled only when TIERKV_HAVE_URING.
//
// One ring of queue_depth entries. The buffer pool is registered once
// (io_uring_register_buffers) so reads and writes into it use the fixed-buffer
// opcodes (no page pinning per request); the file table is registered too
// (IOSQE_FIXED_FILE). When either registration is refused (RLIMIT_MEMLOCK for a
// non-root daemon, old kernels), the engine logs it once and uses the plain opcodes.
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
  UringEngine(uint32_t queue_depth, std::unique_ptr<IoBufferPool> pool)
      : queue_depth_(queue_depth), pool_(std::move(pool)), slots_(queue_depth) {
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
    int ret = io_uring_queue_init(queue_depth_, &ring_, IORING_SETUP_COOP_TASKRUN);
    if (ret == -EINVAL) ret = io_uring_queue_init(queue_depth_, &ring_, 0);
    if (ret < 0) return ret;
    ring_ready_ = true;
    RegisterPool();
    return 0;
  }

  std::string_view name() const override { return "io_uring"; }
  uint32_t queue_depth() const override { return queue_depth_; }
  uint32_t in_flight() const override { return in_flight_; }
  IoBufferPool* buffers() override { return pool_.get(); }

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
    RETURN_IF_ERROR(ValidateIoRequest(r, static_cast<uint32_t>(fds_.size()), pool_.get()));
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return Internal("io_uring: no free submission entry below the queue depth");
    const int fd = files_registered_ ? static_cast<int>(r.file) : fds_[r.file];
    const uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    InFlight& f = slots_[slot];
    f.user_data = r.user_data;
    if (r.op == IoOp::kSync) {
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
    io_uring_for_each_cqe(&ring_, head, cqe) {
      const auto slot = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      completions_.push_back({slots_[slot].user_data, cqe->res});
      free_slots_.push_back(slot);
      ++n;
    }
    io_uring_cq_advance(&ring_, n);
    in_flight_ -= n;
    for (const IoCompletion& c : completions_) on_complete(c);
    return n;
  }

  void RegisterPool() {
    if (pool_ == nullptr) return;
    std::vector<iovec> iov(pool_->count());
    for (uint32_t i = 0; i < pool_->count(); ++i) iov[i] = {pool_->buffer(i), pool_->buffer_bytes()};
    const int ret = io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size()));
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
  };

  io_uring ring_{};
  bool ring_ready_ = false;
  const uint32_t queue_depth_;
  std::unique_ptr<IoBufferPool> pool_;
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
  auto engine = std::make_unique<UringEngine>(options.queue_depth, std::move(pool));
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
