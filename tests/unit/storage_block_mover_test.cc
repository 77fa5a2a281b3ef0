// BlockMover on the emulated G tier (the host gather path CI runs); the device
// gather path is tests/gpu/block_mover_gpu_test.cc.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "storage/arena_tier.h"
#include "storage/block_mover.h"

namespace tierkv::storage {
namespace {

constexpr uint32_t kSlots = 16;
constexpr uint32_t kCapacity = 4096 + 100;  // not a multiple of the copy width

struct Tiers {
  std::unique_ptr<ArenaTier> g, h;
};

Tiers MakeTiers() {
  Tiers t;
  t.g = std::move(CreateEmulatedGpuTier({"G", kSlots, kCapacity, 0})).value();
  t.h = std::move(CreateHostTier({"H", kSlots, kCapacity, PinMode::kOff})).value();
  return t;
}

void Fill(ArenaTier& tier, uint32_t seed) {
  std::mt19937 rng(seed);
  for (uint32_t s = 0; s < tier.num_slots(); ++s) {
    std::byte* p = tier.SlotAddress(s);
    for (uint32_t i = 0; i < tier.slot_capacity(); ++i) p[i] = std::byte(rng() & 0xff);
  }
}

TEST(BlockMoverTest, EmulatedGGathersScatteredSlotsAndTouchesNothingElse) {
  Tiers t = MakeTiers();
  Fill(*t.h, 1);
  Fill(*t.g, 2);  // poison: every byte not copied must keep it
  std::vector<std::byte> before(t.g->memory().base(), t.g->memory().base() + t.g->memory().bytes());
  BlockMover mover(*t.g, *t.h);
  EXPECT_EQ(mover.path(), BlockMover::Path::kHostGather);
  const std::vector<SlotId> from = {3, 15, 0, 7, 9};
  const std::vector<SlotId> to = {11, 1, 4, 0, 12};
  const size_t bytes = kCapacity - 3;
  ASSERT_TRUE(mover.Gather(from, to, bytes).ok());
  std::vector<std::byte> expect = before;
  for (size_t i = 0; i < from.size(); ++i) {
    std::memcpy(expect.data() + t.g->SlotOffset(to[i]), t.h->SlotAddress(from[i]), bytes);
  }
  EXPECT_EQ(std::memcmp(expect.data(), t.g->memory().base(), expect.size()), 0);
}

TEST(BlockMoverTest, RefusesBadArgumentsWithoutCopying) {
  Tiers t = MakeTiers();
  Fill(*t.h, 3);
  Fill(*t.g, 4);
  std::vector<std::byte> before(t.g->memory().base(), t.g->memory().base() + t.g->memory().bytes());
  BlockMover mover(*t.g, *t.h);
  const std::vector<SlotId> two = {0, 1}, one = {2}, out_of_range = {0, kSlots};
  EXPECT_EQ(mover.Gather(two, one, 64).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mover.Gather(two, out_of_range, 64).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mover.Gather(out_of_range, two, 64).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mover.Gather(two, two, kCapacity + 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(mover.Gather(two, two, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(std::memcmp(before.data(), t.g->memory().base(), before.size()), 0);
  EXPECT_TRUE(mover.Gather({}, {}, 64).ok());
}

}  // namespace
}  // namespace tierkv::storage
