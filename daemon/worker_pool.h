// WorkerPool: a fixed set of threads that run the independent parts of one request
// in parallel — the per-sequence selections of a batched Retrieve.
//
// ParallelFor runs fn(0..n-1) on the pool's threads and on the calling thread, and
// returns when every call has returned. Several callers (channel threads) may use
// one pool at once: their items share the threads, each caller always works on its
// own items too, so a busy pool slows a batch down but never stalls it.
// Thread-safe. fn must not throw.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"

namespace tierkv::daemon {

class WorkerPool {
 public:
  // threads: helper threads besides each caller (0: ParallelFor runs inline).
  explicit WorkerPool(size_t threads);
  ~WorkerPool();  // joins the threads; REQUIRES: no ParallelFor in flight
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);
  size_t threads() const { return threads_.size(); }

  // The helper threads for a `retrieval.workers` value: 0 = one per core, minus the
  // caller's (at least 1); otherwise workers - 1.
  static size_t HelpersFor(uint32_t workers);

 private:
  struct Job;  // one ParallelFor: its items and how many are left
  void Run();

  Mutex mu_;
  CondVar cv_;
  std::deque<std::shared_ptr<Job>> jobs_ GUARDED_BY(mu_);  // jobs with items not yet claimed
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tierkv::daemon
