// Shared memory regions backed by memfd: created by the daemon, passed to clients
// over the control socket with SCM_RIGHTS, mapped by both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace tierkv {

class ShmRegion {
 public:
  ShmRegion() = default;
  ~ShmRegion();
  ShmRegion(ShmRegion&& o) noexcept;
  ShmRegion& operator=(ShmRegion&& o) noexcept;
  ShmRegion(const ShmRegion&) = delete;
  ShmRegion& operator=(const ShmRegion&) = delete;

  // A new zero-filled memfd region of `bytes`, mapped read-write. The file can grow
  // no further (F_SEAL_GROW|F_SEAL_SHRINK) so a peer cannot make the mapping fault;
  // mode 0600, so only the daemon's uid (and root) can reopen it through /proc: the
  // peer that is handed the fd is the only other writer.
  static Result<ShmRegion> Create(const std::string& name, size_t bytes);
  // Maps an fd received from a peer. Takes ownership of fd (closed on failure too).
  // kInvalidArgument when the file is smaller than `bytes`.
  static Result<ShmRegion> Map(int fd, size_t bytes, bool writable);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  int fd() const { return fd_; }
  // A new read-only descriptor of the same memory (for peers that must not write).
  Result<int> ReadOnlyFd() const;

 private:
  void Reset();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
};

// True when the kernel supports F_SEAL_FUTURE_WRITE (Linux >= 5.1): a memfd sealed
// with it keeps the mappings that exist, but no descriptor can write to it or map it
// writable any more. Probed once (a tiny memfd), then cached.
bool KernelSupportsFutureWriteSeal();
// Seals a memfd the daemon has mapped already so that peers can only read it:
// F_SEAL_FUTURE_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL, mode 0400.
// The daemon's own existing mappings stay writable. kNotSupported when the kernel
// lacks F_SEAL_FUTURE_WRITE (the fd is then left unchanged).
Status SealForReaders(int fd);

// Sends `payload` with file descriptors attached (SCM_RIGHTS) on a Unix socket.
Status SendWithFds(int socket_fd, const void* payload, size_t n, const int* fds, size_t nfds);
// Receives up to `n` bytes and up to `max_fds` descriptors; *got_fds is set to how
// many arrived (the caller owns them).
Result<size_t> RecvWithFds(int socket_fd, void* payload, size_t n, int* fds, size_t max_fds, size_t* got_fds);

}  // namespace tierkv
