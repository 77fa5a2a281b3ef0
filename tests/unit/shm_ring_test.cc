#include "common/shm_ring.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/data_plane.h"
#include "common/shm.h"

namespace tierkv {
namespace {

struct Item {
  uint64_t seq;
  uint64_t check;
};

TEST(ShmRingTest, FifoAcrossThreadsWithWakeups) {
  constexpr uint32_t kCap = 8;
  std::vector<uint8_t> mem(RingBytes<Item>(kCap) + 64);
  void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t{63});
  auto ring = SpscRing<Item>::Create(base, kCap);
  ASSERT_TRUE(ring.ok());
  auto consumer_view = SpscRing<Item>::Attach(base, kCap);
  ASSERT_TRUE(consumer_view.ok());
  constexpr uint64_t kN = 200000;
  std::thread consumer([&] {
    SpscRing<Item>& r = *consumer_view;
    for (uint64_t want = 0; want < kN;) {
      Item it;
      if (r.TryPop(&it)) {
        ASSERT_EQ(it.seq, want);
        ASSERT_EQ(it.check, want * 31 + 7);
        ++want;
      } else {
        r.WaitNotEmpty(std::chrono::microseconds(want % 2 ? 0 : 5), std::chrono::milliseconds(50));
      }
    }
  });
  for (uint64_t i = 0; i < kN;) {
    if (ring->TryPush({i, i * 31 + 7})) ++i;
    else std::this_thread::yield();
  }
  consumer.join();
  EXPECT_TRUE(ring->Empty());
}

// A worker stopped (flag set, then Kick) while it spins in WaitNotEmpty must not
// sleep out its timeout: the Kick bumps the doorbell before the worker reads it.
TEST(ShmRingTest, AStopKickedWhileTheConsumerSpinsEndsItsWait) {
  constexpr uint32_t kCap = 8;
  std::vector<uint8_t> mem(RingBytes<Item>(kCap) + 64);
  void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t{63});
  auto ring = SpscRing<Item>::Create(base, kCap);
  ASSERT_TRUE(ring.ok());
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> stop{false}, waiting{false};
    std::thread worker([&] {
      waiting = true;
      while (!stop.load()) ring->WaitNotEmpty(std::chrono::milliseconds(5), std::chrono::seconds(2), &stop);
    });
    while (!waiting) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(300));  // inside the worker's 5 ms spin
    const auto t0 = std::chrono::steady_clock::now();
    stop = true;
    ring->Kick();
    worker.join();
    slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
  }
  // Without the stop flag in the wait, each round took the 2 s timeout.
  EXPECT_LT(slowest, std::chrono::milliseconds(500));
}

TEST(ShmRingTest, FullAndEmpty) {
  std::vector<uint8_t> mem(RingBytes<Item>(4));
  auto ring = SpscRing<Item>::Create(mem.data(), 4);
  ASSERT_TRUE(ring.ok());
  Item it;
  EXPECT_FALSE(ring->TryPop(&it));
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(ring->TryPush({i, 0}));
  EXPECT_FALSE(ring->TryPush({9, 0}));
  EXPECT_TRUE(ring->TryPop(&it));
  EXPECT_EQ(it.seq, 0u);
  EXPECT_TRUE(ring->TryPush({4, 0}));
  EXPECT_FALSE(SpscRing<Item>::Create(mem.data(), 3).ok());
}

TEST(ShmRingTest, ImpossiblePeerIndicesAreReportedNotTrusted) {
  std::vector<uint8_t> mem(RingBytes<Item>(4));
  auto ring = SpscRing<Item>::Create(mem.data(), 4);
  ASSERT_TRUE(ring.ok());
  auto* control = reinterpret_cast<RingControl*>(mem.data());
  control->head.store(1000);  // a producer claiming 1000 entries in a ring of 4
  Item it;
  bool corrupt = false;
  EXPECT_FALSE(ring->TryPop(&it, &corrupt));
  EXPECT_TRUE(corrupt);
  control->head.store(0);
  control->tail.store(50);  // a consumer ahead of the producer
  corrupt = false;
  EXPECT_FALSE(ring->TryPush({1, 1}, &corrupt));
  EXPECT_TRUE(corrupt);
}

TEST(ShmRingTest, AttachChecksGeometry) {
  std::vector<uint8_t> mem(RingBytes<Item>(8));
  ASSERT_TRUE(SpscRing<Item>::Create(mem.data(), 8).ok());
  EXPECT_FALSE(SpscRing<Item>::Attach(mem.data(), 16).ok());
  EXPECT_FALSE(SpscRing<uint64_t>::Attach(mem.data(), 8).ok());
  mem[0] ^= 1;
  EXPECT_FALSE(SpscRing<Item>::Attach(mem.data(), 8).ok());
}

TEST(ShmRingTest, WorksAcrossProcessesThroughAMemfd) {
  constexpr uint32_t kCap = 16;
  auto region = ShmRegion::Create("ring-test", RingBytes<Item>(kCap));
  ASSERT_TRUE(region.ok());
  auto ring = SpscRing<Item>::Create(region->data(), kCap);
  ASSERT_TRUE(ring.ok());
  constexpr uint64_t kN = 50000;
  pid_t pid = fork();
  if (pid == 0) {
    auto child = ShmRegion::Map(dup(region->fd()), RingBytes<Item>(kCap), true);
    if (!child.ok()) _exit(2);
    auto r = SpscRing<Item>::Attach(child->data(), kCap);
    if (!r.ok()) _exit(3);
    for (uint64_t i = 0; i < kN;) {
      if (r->TryPush({i, ~i})) ++i;
    }
    _exit(0);
  }
  for (uint64_t want = 0; want < kN;) {
    Item it;
    if (ring->TryPop(&it)) {
      ASSERT_EQ(it.seq, want);
      ASSERT_EQ(it.check, ~want);
      ++want;
    } else {
      ring->WaitNotEmpty(std::chrono::microseconds(10), std::chrono::milliseconds(100));
    }
  }
  int status;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(ShmRegionTest, SealedAgainstGrowingAndReadOnlyFdsCannotWrite) {
  auto region = ShmRegion::Create("seal-test", 8192);
  ASSERT_TRUE(region.ok());
  EXPECT_NE(ftruncate(region->fd(), 1 << 20), 0);
  EXPECT_NE(ftruncate(region->fd(), 10), 0);
  auto ro = region->ReadOnlyFd();
  ASSERT_TRUE(ro.ok());
  EXPECT_FALSE(ShmRegion::Map(dup(*ro), 8192, /*writable=*/true).ok());
  auto mapped = ShmRegion::Map(*ro, 8192, /*writable=*/false);
  ASSERT_TRUE(mapped.ok());
  region->data()[100] = 42;
  EXPECT_EQ(mapped->data()[100], 42);
  EXPECT_FALSE(ShmRegion::Map(dup(region->fd()), 1 << 20, false).ok());  // larger than the file
}

TEST(DataPlaneTest, LayoutIsAlignedAndStagingChecksAreOverflowSafe) {
  dp::ChannelHeader h = dp::Layout(256, 128, 1 << 20);
  EXPECT_EQ(h.request_offset % 4096, 0u);
  EXPECT_EQ(h.completion_offset % 4096, 0u);
  EXPECT_EQ(h.staging_offset % 4096, 0u);
  EXPECT_GE(h.completion_offset, h.request_offset + RingBytes<dp::RingRequest>(256));
  EXPECT_GE(h.total_bytes, h.staging_offset + h.staging_bytes);
  EXPECT_TRUE(dp::InStaging(0, 1 << 20, 1 << 20));
  EXPECT_TRUE(dp::InStaging(1 << 20, 0, 1 << 20));
  EXPECT_FALSE(dp::InStaging(1, 1 << 20, 1 << 20));
  EXPECT_FALSE(dp::InStaging(UINT64_MAX, 2, 1 << 20));
  EXPECT_FALSE(dp::InStaging(8, UINT64_MAX - 4, 1 << 20));
}

}  // namespace
}  // namespace tierkv
