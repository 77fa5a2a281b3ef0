// CommitQueue: group commit, as LevelDB's and RocksDB's writer queue do it. Each
// thread with a commit to make (D writes to sync and record) joins the queue and
// waits. The thread at its head, when no commit is running, becomes the leader: it
// takes every commit queued at that moment (up to max_group), runs them together
// through `run` (one fdatasync, one manifest batch for all), marks them done and
// wakes their owners; the next thread at the head then leads the commits that queued
// meanwhile. A commit returns only once the group that holds it has run: its owner
// acknowledges nothing before the sync that covers it.
//
// Thread-safe. `run` is called with no lock of the queue held, by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <vector>

#include "common/mutex.h"

namespace tierkv::storage {

template <typename T>
class CommitQueue {
 public:
  using RunFn = std::function<void(std::span<T* const> group)>;

  explicit CommitQueue(RunFn run, size_t max_group = 64) : run_(std::move(run)), max_group_(max_group) {}
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Runs `item` in a group, on this thread (as the leader) or on another's; returns
  // when that group has run.
  void Commit(T* item) {
    Waiter self{item};
    MutexLock lock(&mu_);
    queue_.push_back(&self);
    while (!self.done && (leading_ || queue_.front() != &self)) cv_.Wait(&mu_);
    if (self.done) return;
    leading_ = true;
    std::vector<Waiter*> group;
    std::vector<T*> items;
    while (!queue_.empty() && group.size() < max_group_) {
      group.push_back(queue_.front());
      items.push_back(queue_.front()->item);
      queue_.pop_front();
    }
    lock.Unlock();
    run_(items);
    lock.Lock();
    for (Waiter* w : group) w->done = true;
    leading_ = false;
    ++groups_;
    commits_ += group.size();
    cv_.NotifyAll();  // the followers just run, and the next head of the queue
  }

  uint64_t groups() const {
    MutexLock lock(&mu_);
    return groups_;
  }
  uint64_t commits() const {
    MutexLock lock(&mu_);
    return commits_;
  }

 private:
  struct Waiter {
    T* item;
    bool done = false;
  };

  const RunFn run_;
  const size_t max_group_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Waiter*> queue_ GUARDED_BY(mu_);
  bool leading_ GUARDED_BY(mu_) = false;  // a group is running
  uint64_t groups_ GUARDED_BY(mu_) = 0;
  uint64_t commits_ GUARDED_BY(mu_) = 0;
};

}  // namespace tierkv::storage
