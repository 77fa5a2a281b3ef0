#include "daemon/worker_pool.h"

#include <algorithm>
#include <atomic>

#include "common/mutex.h"

namespace tierkv::daemon {

struct WorkerPool::Job {
  const std::function<void(size_t)>* fn;
  size_t n;
  std::atomic<size_t> next{0};  // the next item to claim
  Mutex mu;
  CondVar done_cv;
  size_t done GUARDED_BY(mu) = 0;

  // Claims and runs items until none is left; true when this call ran the last one.
  void Drain() {
    size_t ran = 0;
    for (size_t i; (i = next.fetch_add(1)) < n; ++ran) (*fn)(i);
    if (ran == 0) return;
    MutexLock lock(&mu);
    done += ran;
    if (done == n) done_cv.NotifyAll();
  }
};

WorkerPool::WorkerPool(size_t threads) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.NotifyAll();
  for (auto& t : threads_) t.join();
}

size_t WorkerPool::HelpersFor(uint32_t workers) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  return workers - 1;
}

void WorkerPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (n == 1 || threads_.empty()) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    MutexLock lock(&mu_);
    jobs_.push_back(job);
  }
  cv_.NotifyAll();
  job->Drain();  // the caller works too
  {
    MutexLock lock(&mu_);  // no helper picks it up from now on
    jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), job), jobs_.end());
  }
  MutexLock lock(&job->mu);
  while (job->done != job->n) job->done_cv.Wait(&job->mu);
}

void WorkerPool::Run() {
  MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && jobs_.empty()) cv_.Wait(&mu_);
    if (stop_) return;
    std::shared_ptr<Job> job = jobs_.front();
    // Rotate: several callers' jobs share the helpers.
    jobs_.pop_front();
    jobs_.push_back(job);
    lock.Unlock();
    job->Drain();
    lock.Lock();
    if (job->next.load() >= job->n) jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), job), jobs_.end());
  }
}

}  // namespace tierkv::daemon
