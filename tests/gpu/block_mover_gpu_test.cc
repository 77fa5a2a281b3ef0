// BlockMover's device path: H (pinned, mapped) -> real G in one gather launch.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "storage/arena_tier.h"
#include "storage/block_mover.h"
#include "tests/gpu/gpu_test_util.h"

namespace tierkv::storage {
namespace {

TEST(BlockMoverGpuTest, PinnedHostToDeviceGatherLandsEveryBlockInItsSlot) {
  SKIP_WITHOUT_GPU();
  constexpr uint32_t kSlots = 64;
  for (uint32_t capacity : {64u * 1024, 128u * 1024 + 48}) {
    bool emulated = true;
    ASSERT_OK_AND_ASSIGN(auto g, CreateGpuTier({"G", kSlots, capacity, 0}, &emulated));
    ASSERT_FALSE(emulated);
    ASSERT_OK_AND_ASSIGN(auto h, CreateHostTier({"H", kSlots, capacity, PinMode::kRequired}));
    std::mt19937 rng(capacity);
    for (uint32_t s = 0; s < kSlots; ++s) {
      for (uint32_t i = 0; i < capacity; ++i) h->SlotAddress(s)[i] = std::byte(rng() & 0xff);
    }
    // Poison all of G first: bytes not copied must keep it.
    ASSERT_OK(kernels::Copy(g->memory().base(), std::vector<std::byte>(g->memory().bytes(), std::byte{0xa5}).data(),
                            g->memory().bytes(), kernels::CopyKind::kHostToDevice));
    BlockMover mover(*g, *h);
    ASSERT_EQ(mover.path(), BlockMover::Path::kDeviceGather);
    std::vector<SlotId> from, to;
    for (uint32_t i = 0; i < kSlots / 2; ++i) {
      from.push_back((i * 7 + 3) % kSlots);
      to.push_back((i * 5 + 1) % kSlots);
    }
    ASSERT_OK(mover.Gather(from, to, capacity));
    std::vector<std::byte> got(g->memory().bytes());
    ASSERT_OK(kernels::Copy(got.data(), g->memory().base(), got.size(), kernels::CopyKind::kDeviceToHost));
    std::vector<std::byte> expect(got.size(), std::byte{0xa5});
    for (size_t i = 0; i < from.size(); ++i) {
      std::memcpy(expect.data() + g->SlotOffset(to[i]), h->SlotAddress(from[i]), capacity);
    }
    EXPECT_EQ(std::memcmp(got.data(), expect.data(), got.size()), 0) << "capacity " << capacity;
  }
}

}  // namespace
}  // namespace tierkv::storage
