// Liveness of the daemon behind a control connection: the socket's hang-up and,
// where the kernel has pidfd_open, the daemon process's exit.
#include "client/client_internal.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same on every Linux architecture
#endif

namespace tierkv::internal {

Liveness::Liveness(int control_fd, int daemon_pid) : control_fd_(control_fd), daemon_pid_(daemon_pid) {
  if (daemon_pid > 0) {
    const long fd = ::syscall(SYS_pidfd_open, daemon_pid, 0);
    pidfd_ = fd >= 0 ? static_cast<int>(fd) : -1;  // ENOSYS, EPERM, ...: the socket alone tells
  }
}

Liveness::~Liveness() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

Status Liveness::Verdict() const {
  if (!dead()) return OkStatus();
  MutexLock lock(&mu_);
  return Unavailable(why_);
}

void Liveness::MarkDead(const std::string& why) {
  MutexLock lock(&mu_);
  if (dead_.load(std::memory_order_relaxed)) return;
  why_ = why;
  dead_.store(true, std::memory_order_release);
}

void Liveness::Detach(const std::string& why) {
  MarkDead(why);
  MutexLock lock(&mu_);
  control_fd_ = -1;
}

Status Liveness::Check() {
  if (dead()) return Verdict();
  std::string why;
  {
    MutexLock lock(&mu_);
    pollfd p[2];
    nfds_t n = 0;
    if (control_fd_ >= 0) p[n++] = {control_fd_, POLLRDHUP, 0};
    if (pidfd_ >= 0) p[n++] = {pidfd_, POLLIN, 0};
    if (n > 0 && ::poll(p, n, 0) > 0) {
      for (nfds_t i = 0; i < n; ++i) {
        if (p[i].fd == pidfd_ && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          why = "tierkvd (pid " + std::to_string(daemon_pid_) + ") exited";
        } else if (p[i].fd == control_fd_ && (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
          why = "tierkvd closed the connection (the daemon died or dropped this client)";
        }
        if (!why.empty()) break;
      }
    }
  }
  if (why.empty()) return OkStatus();
  MarkDead(why + "; call Client::Reconnect and reopen the channels");
  return Verdict();
}

}  // namespace tierkv::internal
