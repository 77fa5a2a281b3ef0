// The pread/pwrite/fdatasync IoEngine: requests queue on Prepare and run, one after the other,
// when the caller reaps. The fallback where io_uring is absent.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "io/io_engine_internal.h"

namespace tierkv::io::internal {
namespace {

class PsyncEngine final : public IoEngine {
 public:
  PsyncEngine(uint32_t queue_depth, std::unique_ptr<IoBufferPool> pool)
      : queue_depth_(queue_depth), pool_(std::move(pool)) {
    pending_.reserve(queue_depth);
  }

  std::string_view name() const override { return "psync"; }
  uint32_t queue_depth() const override { return queue_depth_; }
  uint32_t in_flight() const override { return static_cast<uint32_t>(pending_.size()); }
  IoBufferPool* buffers() override { return pool_.get(); }

  Status RegisterFiles(std::span<const int> fds) override {
    if (!pending_.empty()) return InvalidArgument("RegisterFiles with requests in flight");
    fds_.assign(fds.begin(), fds.end());
    return OkStatus();
  }

  Status Prepare(const IoRequest& request) override {
    if (pending_.size() >= queue_depth_) return InvalidArgument("psync engine: queue full");
    RETURN_IF_ERROR(ValidateIoRequest(request, static_cast<uint32_t>(fds_.size()), pool_.get()));
    pending_.push_back(request);
    return OkStatus();
  }

  Result<uint32_t> Reap(uint32_t, const std::function<void(const IoCompletion&)>& on_complete) override {
    // Move the queue out first: on_complete may Prepare the next requests.
    std::vector<IoRequest> batch;
    batch.swap(pending_);
    pending_.reserve(queue_depth_);
    for (const IoRequest& r : batch) on_complete({r.user_data, Run(r)});
    return static_cast<uint32_t>(batch.size());
  }

 private:
  int32_t Run(const IoRequest& r) const {
    const int fd = fds_[r.file];
    if (r.op == IoOp::kSync) return fdatasync(fd) == 0 ? 0 : -errno;
    const iovec iov[2] = {{r.buf, r.length}, {r.buf2, r.length2}};
    const int n_iov = r.length2 > 0 ? 2 : 1;
    const off_t off = static_cast<off_t>(r.offset);
    for (;;) {
      const ssize_t n = r.op == IoOp::kRead ? preadv(fd, iov, n_iov, off) : pwritev(fd, iov, n_iov, off);
      if (n >= 0) return static_cast<int32_t>(n);
      if (errno != EINTR) return -errno;
    }
  }

  const uint32_t queue_depth_;
  std::unique_ptr<IoBufferPool> pool_;
  std::vector<int> fds_;
  std::vector<IoRequest> pending_;
};

}  // namespace

Result<std::unique_ptr<IoEngine>> NewPsyncEngine(const IoEngineOptions& options) {
  std::unique_ptr<IoBufferPool> pool;
  if (options.num_buffers > 0) {
    ASSIGN_OR_RETURN(pool, IoBufferPool::Create(options.num_buffers, options.buffer_bytes));
  }
  return std::unique_ptr<IoEngine>(new PsyncEngine(options.queue_depth, std::move(pool)));
}

}  // namespace tierkv::io::internal
