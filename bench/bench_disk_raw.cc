#include "bench/bench_disk_raw.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <numeric>
#include <random>

#ifdef TIERKV_HAVE_URING
#include <liburing.h>
#endif

namespace tierkv::bench {

double ThreadCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double ProcessCpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

#ifdef TIERKV_HAVE_URING

bool RawUringCompiledIn() { return true; }

struct RawUringFile::Impl {
  std::string path;
  int fd = -1;
  uint64_t blocks = 0;
  uint32_t block = 0, qd = 0;
  std::vector<uint64_t> order;
  uint64_t cursor = 0;
  std::byte* bufs = nullptr;
  io_uring ring{};
  bool ring_ready = false;

  ~Impl() {
    if (ring_ready) io_uring_queue_exit(&ring);
    if (bufs != nullptr) munmap(bufs, size_t{qd} * block);
    if (fd >= 0) close(fd);
    if (!path.empty()) unlink(path.c_str());
  }

  // Queues block order[cursor] on buffer b.
  void Prep(bool read, uint32_t b) {
    const uint64_t blk = order[cursor++ % order.size()];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    std::byte* buf = bufs + size_t{b} * block;
    if (read) {
      io_uring_prep_read_fixed(sqe, 0, buf, block, blk * block, static_cast<int>(b));
    } else {
      io_uring_prep_write_fixed(sqe, 0, buf, block, blk * block, static_cast<int>(b));
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, b);
  }

  // Keeps qd requests in flight until max_ops were started or `seconds` passed
  // (checked at each completion; 0: no time limit); returns the ops completed.
  Result<uint64_t> Loop(bool read, uint64_t max_ops, double seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    auto expired = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= seconds; };
    uint32_t in_flight = 0;
    uint64_t started = 0, done = 0;
    std::vector<uint32_t> freed;
    for (uint32_t b = 0; b < qd && started < max_ops; ++b, ++started, ++in_flight) Prep(read, b);
    while (in_flight > 0) {
      const int ret = io_uring_submit_and_wait(&ring, 1);
      if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) return FromErrno(-ret, "raw io_uring");
      unsigned head, n = 0;
      io_uring_cqe* cqe;
      freed.clear();
      io_uring_for_each_cqe(&ring, head, cqe) {
        if (cqe->res != static_cast<int>(block)) {
          io_uring_cq_advance(&ring, n + 1);
          return cqe->res < 0 ? FromErrno(-cqe->res, "raw io_uring I/O") : IOError("raw io_uring: short transfer");
        }
        freed.push_back(static_cast<uint32_t>(io_uring_cqe_get_data64(cqe)));
        ++n;
      }
      io_uring_cq_advance(&ring, n);
      in_flight -= n;
      done += n;
      const bool stop = started >= max_ops || (seconds > 0 && expired());
      for (uint32_t b : freed) {
        if (stop || started >= max_ops) break;
        Prep(read, b);
        ++started;
        ++in_flight;
      }
    }
    return done;
  }
};

Result<std::unique_ptr<RawUringFile>> RawUringFile::Create(const std::string& path, uint64_t bytes, uint32_t block,
                                                           uint32_t queue_depth, bool sequential) {
  auto impl = std::make_unique<Impl>();
  impl->block = block;
  impl->qd = queue_depth;
  impl->blocks = bytes / block;
  if (impl->blocks == 0) return InvalidArgument("raw file smaller than one block");
  impl->fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (impl->fd < 0) return FromErrno(errno, "open " + path);
  impl->path = path;
  if (fallocate(impl->fd, 0, 0, static_cast<off_t>(impl->blocks * block)) != 0) return FromErrno(errno, "fallocate");
  void* p = mmap(nullptr, size_t{queue_depth} * block, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return FromErrno(errno, "mmap raw buffers");
  impl->bufs = static_cast<std::byte*>(p);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < size_t{queue_depth} * block; ++i) impl->bufs[i] = static_cast<std::byte>(rng());
  int ret = io_uring_queue_init(queue_depth, &impl->ring, 0);
  if (ret < 0) return FromErrno(-ret, "io_uring_queue_init");
  impl->ring_ready = true;
  std::vector<iovec> iov(queue_depth);
  for (uint32_t i = 0; i < queue_depth; ++i) iov[i] = {impl->bufs + size_t{i} * block, block};
  if ((ret = io_uring_register_buffers(&impl->ring, iov.data(), queue_depth)) < 0) {
    return FromErrno(-ret, "io_uring_register_buffers");
  }
  if ((ret = io_uring_register_files(&impl->ring, &impl->fd, 1)) < 0) return FromErrno(-ret, "io_uring_register_files");
  impl->order.resize(impl->blocks);
  std::iota(impl->order.begin(), impl->order.end(), 0);
  if (!sequential) std::shuffle(impl->order.begin(), impl->order.end(), std::mt19937_64(42));
  return std::unique_ptr<RawUringFile>(new RawUringFile(std::move(impl)));
}

Status RawUringFile::Fill() {
  const uint64_t saved = impl_->cursor;
  std::vector<uint64_t> order = impl_->order;
  std::iota(impl_->order.begin(), impl_->order.end(), 0);
  impl_->cursor = 0;
  Result<uint64_t> n = impl_->Loop(false, impl_->blocks, 0);
  impl_->order = std::move(order);
  impl_->cursor = saved;
  if (!n.ok()) return n.status();
  return fdatasync(impl_->fd) == 0 ? OkStatus() : FromErrno(errno, "fdatasync raw file");
}

Result<Sample> RawUringFile::Run(bool read, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = ProcessCpuSeconds();
  ASSIGN_OR_RETURN(uint64_t ops, impl_->Loop(read, UINT64_MAX, seconds));
  Sample s;
  s.cpu_seconds = ProcessCpuSeconds() - cpu0;
  s.ops = ops;
  s.bytes = ops * impl_->block;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

#else  // !TIERKV_HAVE_URING

bool RawUringCompiledIn() { return false; }
struct RawUringFile::Impl {};
Result<std::unique_ptr<RawUringFile>> RawUringFile::Create(const std::string&, uint64_t, uint32_t, uint32_t, bool) {
  return NotSupported("built without liburing: no raw io_uring baseline");
}
Status RawUringFile::Fill() { return NotSupported("no liburing"); }
Result<Sample> RawUringFile::Run(bool, double) { return NotSupported("no liburing"); }

#endif

RawUringFile::RawUringFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RawUringFile::~RawUringFile() = default;

}  // namespace tierkv::bench
