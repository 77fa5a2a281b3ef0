#include "storage/disk_tier_verify.h"

#include <algorithm>

namespace tierkv::storage {

VerifyPool::VerifyPool(uint32_t threads) {
  threads_.reserve(threads);
  for (uint32_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

VerifyPool::~VerifyPool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  work_cv_.NotifyAll();
  for (std::thread& t : threads_) t.join();
}

uint32_t VerifyPool::DefaultThreads(uint32_t devices) {
  const uint32_t cpus = std::max(1u, std::thread::hardware_concurrency());
  return std::clamp(cpus / 4, 1u, std::max(1u, 2 * devices));
}

void VerifyPool::Done(Group* group) {
  group->pool_->mu_.AssertHeld();  // mu_ itself: group->pool_ == this
  if (--group->pending_ == 0) done_cv_.NotifyAll();
}

void VerifyPool::Work() {
  MutexLock lock(&mu_);
  for (;;) {
    while (!stopping_ && queue_.empty()) work_cv_.Wait(&mu_);
    if (queue_.empty()) return;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    lock.Unlock();
    task.fn();
    lock.Lock();
    Done(task.group);
  }
}

void VerifyPool::Group::Run(std::function<void()> task) {
  {
    MutexLock lock(&pool_->mu_);
    ++pending_;
    pool_->queue_.push_back(Task{this, std::move(task)});
  }
  pool_->work_cv_.NotifyOne();
}

void VerifyPool::Group::Wait() {
  MutexLock lock(&pool_->mu_);
  while (pending_ > 0) {
    auto& q = pool_->queue_;
    auto it = std::find_if(q.begin(), q.end(), [&](const Task& t) { return t.group == this; });
    if (it == q.end()) {
      pool_->done_cv_.Wait(&pool_->mu_);
      continue;
    }
    std::function<void()> fn = std::move(it->fn);
    q.erase(it);
    lock.Unlock();
    fn();
    lock.Lock();
    pool_->Done(this);
  }
}

}  // namespace tierkv::storage
