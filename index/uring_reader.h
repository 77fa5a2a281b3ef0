// PRIVATE to index/: batched positional reads through io_uring. The one gate of
// the io_uring choice in index/: uring_reader.cc is compiled with liburing,
// uring_reader_none.cc without (Create returns kNotSupported).
// Thread-safety: one user at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "common/status.h"

namespace tierkv::index {

struct ReadOp {
  uint64_t offset = 0;   // file offset
  uint32_t length = 0;   // bytes
  void* buf = nullptr;   // destination, at least length bytes
};

class UringReader {
 public:
  // kNotSupported without liburing or when the kernel refuses io_uring_setup.
  static Result<std::unique_ptr<UringReader>> Create(uint32_t queue_depth);
  virtual ~UringReader() = default;
  // Reads every op from fd, submitting up to queue_depth at a time and
  // completing short reads. kIOError naming the op on an error or end of file.
  virtual Status ReadAll(int fd, std::span<const ReadOp> ops) = 0;
};

}  // namespace tierkv::index
