#include "common/shm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace tierkv {

ShmRegion::~ShmRegion() { Reset(); }

ShmRegion::ShmRegion(ShmRegion&& o) noexcept : data_(o.data_), size_(o.size_), fd_(o.fd_) {
  o.data_ = nullptr;
  o.size_ = 0;
  o.fd_ = -1;
}

ShmRegion& ShmRegion::operator=(ShmRegion&& o) noexcept {
  if (this != &o) {
    Reset();
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(fd_, o.fd_);
  }
  return *this;
}

void ShmRegion::Reset() {
  if (data_) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

Result<ShmRegion> ShmRegion::Create(const std::string& name, size_t bytes) {
  if (bytes == 0) return InvalidArgument("shared region " + name + " of 0 bytes");
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return FromErrno(errno, "memfd_create " + name);
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno(err, "size shared region " + name);
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0 || ::fchmod(fd, 0600) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno(err, "seal shared region " + name);
  }
  return Map(fd, bytes, /*writable=*/true);
}

Result<ShmRegion> ShmRegion::Map(int fd, size_t bytes, bool writable) {
  ShmRegion r;
  r.fd_ = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FromErrno(errno, "fstat shared region");
  if (st.st_size < 0 || static_cast<size_t>(st.st_size) < bytes || bytes == 0) {
    return InvalidArgument("shared region holds " + std::to_string(st.st_size) + " bytes, expected " +
                           std::to_string(bytes));
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return FromErrno(errno, "mmap shared region");
  r.data_ = static_cast<uint8_t*>(p);
  r.size_ = bytes;
  return r;
}

Result<int> ShmRegion::ReadOnlyFd() const {
  const std::string path = "/proc/self/fd/" + std::to_string(fd_);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FromErrno(errno, "reopen shared region read-only");
  return fd;
}

bool KernelSupportsFutureWriteSeal() {
  static const bool supported = [] {
    const int fd = ::memfd_create("tierkv-seal-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return false;
    const bool ok = ::fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0;
    ::close(fd);
    return ok;
  }();
  return supported;
}

Status SealForReaders(int fd) {
  if (!KernelSupportsFutureWriteSeal()) {
    return NotSupported("the kernel lacks F_SEAL_FUTURE_WRITE (Linux >= 5.1 needed): shared arenas cannot be made "
                        "read-only for clients");
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return FromErrno(errno, "seal memfd against writes");
  }
  if (::fchmod(fd, 0400) != 0) return FromErrno(errno, "fchmod memfd 0400");
  return OkStatus();
}

Status SendWithFds(int sock, const void* payload, size_t n, const int* fds, size_t nfds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * nfds));
  iovec iov{const_cast<void*>(payload), n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t sent;
  do {
    sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return FromErrno(errno, "sendmsg with descriptors");
  if (static_cast<size_t>(sent) != n) return IOError("sendmsg sent " + std::to_string(sent) + " of " + std::to_string(n));
  return OkStatus();
}

Result<size_t> RecvWithFds(int sock, void* payload, size_t n, int* fds, size_t max_fds, size_t* got_fds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * max_fds));
  iovec iov{payload, n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t got;
  do {
    got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return FromErrno(errno, "recvmsg");
  *got_fds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*got_fds < max_fds) fds[(*got_fds)++] = fd;
      else ::close(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (size_t i = 0; i < *got_fds; ++i) ::close(fds[i]);
    *got_fds = 0;
    return IOError("descriptors were truncated");
  }
  return static_cast<size_t>(got);
}

}  // namespace tierkv
