// VerifyPool: a few threads that check D read payloads (xxh3 over every byte) off
// the thread that drives a batch's I/O engine, so that it goes back to reaping and
// refilling the device queue at once (issue 15: one completion thread hashing a
// burst of 1 MiB reads left the queue empty meanwhile). The caller of a batch helps
// at its end: Group::Wait runs the group's tasks still queued on its own thread.
//
// Thread-safety: all methods are thread-safe. A Group belongs to one batch (one
// thread); its tasks may run on any pool thread or on the thread calling Wait.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/thread_annotations.h"

namespace tierkv::storage {

class VerifyPool {
 public:
  // Smallest payload handed to the pool: below it the hand-off (a futex wake, a
  // std::function) costs about as much as hashing in place (20 GB/s: 3 us per 64 KiB).
  static constexpr uint32_t kMinBytes = 64 << 10;

  // REQUIRES: threads > 0.
  explicit VerifyPool(uint32_t threads);
  ~VerifyPool();  // runs what is queued, then joins
  VerifyPool(const VerifyPool&) = delete;
  VerifyPool& operator=(const VerifyPool&) = delete;

  uint32_t threads() const { return static_cast<uint32_t>(threads_.size()); }
  // Default pool size: a quarter of the CPUs, at least one, at most two per device.
  static uint32_t DefaultThreads(uint32_t devices);

  // The tasks of one batch.
  class Group {
   public:
    explicit Group(VerifyPool* pool) : pool_(pool) {}
    ~Group() { Wait(); }
    Group(const Group&) = delete;
    Group& operator=(const Group&) = delete;
    // Queues task (runs once, on a pool thread or in Wait).
    void Run(std::function<void()> task);
    // Returns once every task of the group ran; runs the group's queued tasks here.
    void Wait();

   private:
    friend class VerifyPool;
    VerifyPool* const pool_;
    uint32_t pending_ GUARDED_BY(pool_->mu_) = 0;  // queued or running
  };

 private:
  struct Task {
    Group* group;
    std::function<void()> fn;
  };
  void Work() EXCLUDES(mu_);
  void Done(Group* group) REQUIRES(mu_);

  Mutex mu_;
  CondVar work_cv_;  // a task was queued, or stopping
  CondVar done_cv_;  // a group's task finished
  std::deque<Task> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tierkv::storage
