// SideThread: runs one task at a time on a thread of its own, so that its caller
// overlaps it with work of its own (a commit group's synced manifest write beside
// its D data sync, decision 0016). The thread starts at the first Run and stops with
// the object.
//
// Not thread-safe: one owner calls Run, then Wait, before its next Run.
#pragma once

#include <functional>
#include <thread>

#include "common/mutex.h"

namespace tierkv::storage {

class SideThread {
 public:
  SideThread() = default;
  SideThread(const SideThread&) = delete;
  SideThread& operator=(const SideThread&) = delete;
  ~SideThread() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
      cv_.NotifyAll();
    }
    if (thread_.joinable()) thread_.join();
  }

  // Starts `task` on the side thread. REQUIRES: no task started and not waited for.
  void Run(std::function<void()> task) {
    MutexLock lock(&mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
    task_ = std::move(task);
    done_ = false;
    cv_.NotifyAll();
  }

  // Returns once the task started by Run has returned.
  void Wait() {
    MutexLock lock(&mu_);
    while (!done_) cv_.Wait(&mu_);
  }

 private:
  void Loop() {
    MutexLock lock(&mu_);
    for (;;) {
      while (!task_ && !stop_) cv_.Wait(&mu_);
      if (!task_) return;  // stopped with nothing to run
      std::function<void()> task = std::move(task_);
      task_ = nullptr;
      lock.Unlock();
      task();
      lock.Lock();
      done_ = true;
      cv_.NotifyAll();
    }
  }

  Mutex mu_;
  CondVar cv_;
  std::function<void()> task_ GUARDED_BY(mu_);
  bool done_ GUARDED_BY(mu_) = true;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tierkv::storage
