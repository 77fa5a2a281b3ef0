// common/mutex.h: the annotated wrappers behave as the std types they forward to.
#include "common/mutex.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace tierkv {
namespace {

using namespace std::chrono_literals;

struct Counter {
  Mutex mu;
  CondVar cv;
  int n GUARDED_BY(mu) = 0;
};

TEST(MutexTest, GuardsACounterAcrossThreads) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 10000; ++i) {
        MutexLock lock(&c.mu);
        ++c.n;
      }
    });
  }
  for (auto& t : threads) t.join();
  MutexLock lock(&c.mu);
  EXPECT_EQ(c.n, 40000);
}

TEST(MutexTest, LockCanBeDroppedAndRetakenInItsScope) {
  Counter c;
  MutexLock lock(&c.mu);
  lock.Unlock();
  if (c.mu.TryLock()) {  // really released
    c.mu.Unlock();
  } else {
    ADD_FAILURE() << "the lock is still held after Unlock()";
  }
  lock.Lock();
  std::thread other([&c] {
    if (c.mu.TryLock()) {  // really held again
      c.mu.Unlock();
      ADD_FAILURE() << "the lock is free after Lock()";
    }
  });
  other.join();
}

TEST(MutexTest, WaitForTimesOutWhenNobodySignals) {
  Counter c;
  MutexLock lock(&c.mu);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.cv.WaitFor(&c.mu, 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  ++c.n;  // held again after the wait
}

TEST(MutexTest, WaitWakesOnNotifyWithTheLockHeld) {
  Counter c;
  std::thread producer([&c] {
    std::this_thread::sleep_for(10ms);
    MutexLock lock(&c.mu);
    c.n = 7;
    c.cv.NotifyAll();
  });
  {
    MutexLock lock(&c.mu);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (c.n == 0 && c.cv.WaitUntil(&c.mu, deadline)) {
    }
    EXPECT_EQ(c.n, 7);
  }
  producer.join();
}

TEST(MutexTest, ReadersShareWritersExclude) {
  SharedMutex mu;
  std::atomic<int> readers{0}, most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      ReaderLock lock(&mu);
      const int now = ++readers;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(30ms);
      --readers;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(most.load(), 2);  // at least two readers overlapped
  WriterLock lock(&mu);
  EXPECT_EQ(readers.load(), 0);
}

}  // namespace
}  // namespace tierkv
