// H-tier pinning on a GPU machine (label gpu; skips without a device): the arena
// is registered with cudaHostRegister through storage/host_pinning.cc, device
// copies from and to its slots work, and the registration ends with the tier.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/gpu_runtime.h"
#include "storage/arena_tier.h"

namespace tierkv::storage {
namespace {

constexpr uint32_t kSlots = 16;
constexpr uint32_t kCapacity = 64 * 1024;

TEST(HostPinningGpu, AutoAndRequiredPinTheArena) {
  if (kernels::GpuCount() == 0) GTEST_SKIP() << "no GPU: " << kernels::DescribeGpus();
  for (PinMode mode : {PinMode::kAuto, PinMode::kRequired}) {
    auto tier = CreateHostTier({"H", kSlots, kCapacity, mode});
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    EXPECT_TRUE((*tier)->pinned());
    // A block goes H -> device -> H through the registered memory.
    std::mt19937_64 rng(static_cast<int>(mode));
    std::vector<std::byte> block(kCapacity);
    for (auto& b : block) b = static_cast<std::byte>(rng());
    const SlotId a = *(*tier)->Allocate(), b = *(*tier)->Allocate();
    std::memcpy((*tier)->SlotAddress(a), block.data(), kCapacity);
    auto dev = kernels::DeviceBuffer::Allocate(kCapacity);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    ASSERT_TRUE(kernels::Copy(dev->data(), (*tier)->SlotAddress(a), kCapacity, kernels::CopyKind::kHostToDevice).ok());
    ASSERT_TRUE(kernels::Copy((*tier)->SlotAddress(b), dev->data(), kCapacity, kernels::CopyKind::kDeviceToHost).ok());
    EXPECT_EQ(std::memcmp((*tier)->SlotAddress(b), block.data(), kCapacity), 0);
  }
  // Off: never pinned.
  auto off = CreateHostTier({"H", kSlots, kCapacity, PinMode::kOff});
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE((*off)->pinned());
}

// Without a GPU the same calls behave as documented: kAuto unpinned, kRequired refused.
TEST(HostPinningGpu, WithoutAGpuRequiredFailsClearly) {
  if (kernels::GpuCount() > 0) GTEST_SKIP() << "a GPU is present";
  auto automatic = CreateHostTier({"H", kSlots, kCapacity, PinMode::kAuto});
  ASSERT_TRUE(automatic.ok());
  EXPECT_FALSE((*automatic)->pinned());
  auto required = CreateHostTier({"H", kSlots, kCapacity, PinMode::kRequired});
  ASSERT_EQ(required.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(required.status().message().find("no GPU"), std::string::npos) << required.status().ToString();
}

}  // namespace
}  // namespace tierkv::storage
