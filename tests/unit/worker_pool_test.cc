// WorkerPool (daemon/worker_pool.h): every item runs exactly once, items run on
// several threads at once, several callers share one pool, no helpers = inline.
#include "daemon/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace tierkv::daemon {
namespace {

TEST(WorkerPoolTest, EveryItemRunsExactlyOnce) {
  WorkerPool pool(3);
  for (size_t n : {0, 1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> runs(n);
    pool.ParallelFor(n, [&](size_t i) { runs[i]++; });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(runs[i].load(), 1) << n << " " << i;
  }
}

// Two items that each wait for the other finish only if they run at the same time:
// with one helper, the caller and the helper take one each.
TEST(WorkerPoolTest, ItemsRunInParallel) {
  WorkerPool pool(1);
  std::atomic<int> arrived{0};
  std::atomic<bool> both{true};
  pool.ParallelFor(2, [&](size_t) {
    arrived++;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) {
        both = false;
        return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_TRUE(both.load());
}

TEST(WorkerPoolTest, SeveralCallersShareOnePool) {
  WorkerPool pool(2);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) pool.ParallelFor(16, [&](size_t i) { sum += static_cast<long>(i); });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 4L * 50 * (15 * 16 / 2));
}

TEST(WorkerPoolTest, NoHelpersRunsInlineAndHelpersForFollowsTheConfig) {
  WorkerPool pool(0);
  const auto self = std::this_thread::get_id();
  bool inline_only = true;
  pool.ParallelFor(5, [&](size_t) { inline_only = inline_only && std::this_thread::get_id() == self; });
  EXPECT_TRUE(inline_only);
  EXPECT_EQ(WorkerPool::HelpersFor(1), 0u);
  EXPECT_EQ(WorkerPool::HelpersFor(4), 3u);
  EXPECT_EQ(WorkerPool::HelpersFor(0), std::max(1u, std::thread::hardware_concurrency()) - 1);
}

}  // namespace
}  // namespace tierkv::daemon
