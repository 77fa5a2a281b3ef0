// CommitQueue: group commit, as LevelDB's and RocksDB's writer queue do it. Each
// thread with a commit to make (D writes to sync and record) joins the queue and
// waits. The thread at its head, when no commit is running, becomes the leader: it
// takes every commit queued at that moment (up to max_group), runs them together
// through `run` (one fdatasync, one manifest batch for all), marks them done and
// wakes their owners; the next thread at the head then leads the commits that queued
// meanwhile. A commit returns only once the group that holds it has run: its owner
// acknowledges nothing before the sync that covers it.
//
// Gathering: writers just acknowledged come back with their next commit within
// microseconds, while the group that left without them takes a whole sync. Left
// alone, N busy writers split into two alternating groups of N/2. So a leader that
// finds fewer commits queued than writers were active in the last two groups waits
// up to `window` (and at most half the last group's run time) for them; one writer
// alone never waits, and the wait ends as soon as they are all there.
//
// Thread-safe. `run` is called with no lock of the queue held, by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <chrono>
#include <deque>
#include <functional>
#include <span>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"

namespace tierkv::storage {

template <typename T>
class CommitQueue {
 public:
  using RunFn = std::function<void(std::span<T* const> group)>;

  // window: the longest a leader waits for the active writers (0: never waits).
  explicit CommitQueue(RunFn run, size_t max_group = 64,
                       std::chrono::microseconds window = std::chrono::microseconds(0))
      : run_(std::move(run)), max_group_(max_group), window_(window) {}
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Runs `item` in a group, on this thread (as the leader) or on another's; returns
  // when that group has run.
  void Commit(T* item) {
    Waiter self{item, std::this_thread::get_id()};
    MutexLock lock(&mu_);
    queue_.push_back(&self);
    if (gathering_) cv_.NotifyAll();
    while (!self.done && (leading_ || queue_.front() != &self)) cv_.Wait(&mu_);
    if (self.done) return;
    leading_ = true;
    Gather();
    std::vector<Waiter*> group;
    std::vector<T*> items;
    while (!queue_.empty() && group.size() < max_group_) {
      group.push_back(queue_.front());
      items.push_back(queue_.front()->item);
      queue_.pop_front();
    }
    lock.Unlock();
    const auto t0 = std::chrono::steady_clock::now();
    run_(items);
    const auto ran = std::chrono::steady_clock::now() - t0;
    lock.Lock();
    last_run_ = std::chrono::duration_cast<std::chrono::microseconds>(ran);
    for (Waiter* w : group) w->done = true;
    previous_writers_ = std::move(last_writers_);
    last_writers_.clear();
    for (Waiter* w : group) last_writers_.insert(w->writer);
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
  // Microseconds leaders spent waiting for writers, in all.
  uint64_t gather_us() const {
    MutexLock lock(&mu_);
    return gather_us_;
  }

 private:
  struct Waiter {
    T* item;
    std::thread::id writer;
    bool done = false;
  };

  // The leader waits (briefly) for the writers of the last two groups to queue.
  void Gather() REQUIRES(mu_) {
    if (window_.count() == 0) return;
    std::unordered_set<std::thread::id> active = previous_writers_;
    active.insert(last_writers_.begin(), last_writers_.end());
    const size_t want = std::min(active.size(), max_group_);
    if (queue_.size() >= want) return;
    const auto t0 = std::chrono::steady_clock::now();
    const auto deadline = t0 + std::min(window_, last_run_ / 2);
    gathering_ = true;
    while (queue_.size() < want && cv_.WaitUntil(&mu_, deadline)) {
    }
    gathering_ = false;
    gather_us_ += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  }

  const RunFn run_;
  const size_t max_group_;
  const std::chrono::microseconds window_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Waiter*> queue_ GUARDED_BY(mu_);
  bool leading_ GUARDED_BY(mu_) = false;  // a group is running
  bool gathering_ GUARDED_BY(mu_) = false;  // its leader waits for writers (wake it at each arrival)
  std::chrono::microseconds last_run_ GUARDED_BY(mu_){0};
  std::unordered_set<std::thread::id> last_writers_ GUARDED_BY(mu_), previous_writers_ GUARDED_BY(mu_);
  uint64_t gather_us_ GUARDED_BY(mu_) = 0;
  uint64_t groups_ GUARDED_BY(mu_) = 0;
  uint64_t commits_ GUARDED_BY(mu_) = 0;
};

}  // namespace tierkv::storage
