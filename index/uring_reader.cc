// io_uring implementation of uring_reader.h (compiled when liburing is found).
#include <liburing.h>

#include <cstring>
#include <string>
#include <vector>

#include "index/uring_reader.h"

namespace tierkv::index {
namespace {

class LiburingReader final : public UringReader {
 public:
  explicit LiburingReader(uint32_t depth) : depth_(depth) {}
  ~LiburingReader() override {
    if (initialized_) io_uring_queue_exit(&ring_);
  }

  Status Init() {
    const int rc = io_uring_queue_init(depth_, &ring_, 0);
    if (rc < 0) return Status(StatusCode::kNotSupported, "io_uring_queue_init: " + std::string(strerror(-rc)));
    initialized_ = true;
    return OkStatus();
  }

  Status ReadAll(int fd, std::span<const ReadOp> ops) override {
    // done[i]: bytes of op i read so far; an op is (re)submitted until complete.
    std::vector<uint32_t> done(ops.size(), 0);
    size_t next = 0, inflight = 0, complete = 0;
    std::vector<size_t> pending;  // ops to resubmit after a short read
    while (complete < ops.size()) {
      while (inflight < depth_ && (next < ops.size() || !pending.empty())) {
        size_t i;
        if (!pending.empty()) {
          i = pending.back();
          pending.pop_back();
        } else {
          i = next++;
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
          pending.push_back(i);
          break;
        }
        io_uring_prep_read(sqe, fd, static_cast<char*>(ops[i].buf) + done[i], ops[i].length - done[i],
                           ops[i].offset + done[i]);
        io_uring_sqe_set_data64(sqe, i);
        ++inflight;
      }
      const int sub = io_uring_submit(&ring_);
      if (sub < 0) return FromErrno(-sub, "io_uring_submit");
      io_uring_cqe* cqe = nullptr;
      const int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc < 0) return FromErrno(-rc, "io_uring_wait_cqe");
      // Drain every completion that is ready.
      do {
        const size_t i = io_uring_cqe_get_data64(cqe);
        const int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        --inflight;
        if (res < 0) return FromErrno(-res, "io_uring read at offset " + std::to_string(ops[i].offset));
        if (res == 0) return IOError("io_uring read at offset " + std::to_string(ops[i].offset) + ": end of file");
        done[i] += static_cast<uint32_t>(res);
        if (done[i] < ops[i].length) {
          pending.push_back(i);
        } else {
          ++complete;
        }
      } while (io_uring_peek_cqe(&ring_, &cqe) == 0);
    }
    return OkStatus();
  }

 private:
  uint32_t depth_;
  io_uring ring_{};
  bool initialized_ = false;
};

}  // namespace

Result<std::unique_ptr<UringReader>> UringReader::Create(uint32_t queue_depth) {
  auto r = std::make_unique<LiburingReader>(queue_depth);
  RETURN_IF_ERROR(r->Init());
  return std::unique_ptr<UringReader>(std::move(r));
}

}  // namespace tierkv::index
