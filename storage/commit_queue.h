// CommitQueue: group commit, as LevelDB's and RocksDB's writer queue do it, in two
// pipelined stages. Each thread with a commit to make (D writes to sync and record)
// joins the queue and waits. The thread at its head, when no group is in its first
// stage, becomes the leader: it takes every commit queued at that moment (up to
// max_group) and runs them together through `lead` (the D writes and one fdatasync
// for all). It then hands the head of the queue to the next leader, whose group's
// `lead` may run while this one runs `finish` (one manifest batch for all), and only
// then marks its commits done and wakes their owners. A commit returns only once
// both stages of its group have run: its owner acknowledges nothing before the syncs
// that cover it.
//
// Thread-safe. Called with no lock of the queue held: `lead` by one thread at a
// time, in queue order; `finish` of a group after its `lead`, possibly while the
// next group's `lead` runs (and, rarely, while an earlier group's `finish` still runs).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

namespace tierkv::storage {

template <typename T>
class CommitQueue {
 public:
  using RunFn = std::function<void(std::span<T* const> group)>;

  CommitQueue(RunFn lead, RunFn finish, size_t max_group = 64)
      : lead_(std::move(lead)), finish_(std::move(finish)), max_group_(max_group) {}
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Runs `item` in a group, on this thread (as the leader) or on another's; returns
  // when that group has run.
  void Commit(T* item) {
    Waiter self{item};
    std::unique_lock lock(mu_);
    queue_.push_back(&self);
    cv_.wait(lock, [&] { return self.done || (!leading_ && queue_.front() == &self); });
    if (self.done) return;
    leading_ = true;
    std::vector<Waiter*> group;
    std::vector<T*> items;
    while (!queue_.empty() && group.size() < max_group_) {
      group.push_back(queue_.front());
      items.push_back(queue_.front()->item);
      queue_.pop_front();
    }
    lock.unlock();
    lead_(items);
    lock.lock();
    leading_ = false;
    ++groups_;
    commits_ += group.size();
    if (!queue_.empty()) cv_.notify_all();  // the next head of the queue leads
    lock.unlock();
    if (finish_) finish_(items);
    lock.lock();
    for (Waiter* w : group) w->done = true;
    cv_.notify_all();  // the followers just committed
  }

  uint64_t groups() const {
    std::lock_guard lock(mu_);
    return groups_;
  }
  uint64_t commits() const {
    std::lock_guard lock(mu_);
    return commits_;
  }

 private:
  struct Waiter {
    T* item;
    bool done = false;
  };

  const RunFn lead_, finish_;
  const size_t max_group_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Waiter*> queue_;  // GUARDED_BY(mu_)
  bool leading_ = false;       // a group is in its first stage; GUARDED_BY(mu_)
  uint64_t groups_ = 0, commits_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace tierkv::storage
