// H and emulated G tier specifics: the memfd shared with clients, zero-copy
// commit/lookup, seals, pinning modes.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/gpu_runtime.h"
#include "storage/arena_tier.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

using testing::Bytes;
using testing::HoldsNoData;
using testing::RandomBytes;
using testing::TagFor;

constexpr uint32_t kSlots = 8;
constexpr uint32_t kCapacity = 5000;

std::unique_ptr<ArenaTier> MakeHost(PinMode pin = PinMode::kAuto) {
  Result<std::unique_ptr<ArenaTier>> t = CreateHostTier({"H", kSlots, kCapacity, pin});
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(HostTier, GeometryAndFd) {
  auto t = MakeHost();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->kind(), TierKind::kHost);
  EXPECT_EQ(t->slot_stride(), 8192u);
  EXPECT_EQ(t->SlotOffset(3), 3u * 8192);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->SlotAddress(1)) % 4096, 0u);
  ASSERT_GE(t->fd(), 0);
  EXPECT_GE(t->memory().bytes(), kSlots * 8192u);
}

// What a client does with the fd it receives over SCM_RIGHTS: map it and see the
// daemon's slots; write a block in place and have the daemon commit it.
TEST(HostTier, ClientMappingSharesSlots) {
  auto t = MakeHost();
  ASSERT_NE(t, nullptr);
  std::mt19937_64 rng(5);
  const int client_fd = dup(t->fd());
  ASSERT_GE(client_fd, 0);
  const size_t bytes = t->memory().bytes();
  // Sealed for readers (issue 14): no writable shared mapping through any descriptor...
  EXPECT_EQ(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, client_fd, 0), MAP_FAILED);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(pwrite(client_fd, "x", 1, 0), -1);
  // ... a read-only one shares the daemon's slots.
  auto* client = static_cast<std::byte*>(mmap(nullptr, bytes, PROT_READ, MAP_SHARED, client_fd, 0));
  ASSERT_NE(client, MAP_FAILED);

  const SlotId a = *t->Allocate();
  const auto payload = RandomBytes(kCapacity, rng);
  ASSERT_TRUE(t->Write(a, TagFor(1, 0, 1), payload).ok());
  EXPECT_EQ(std::memcmp(client + t->SlotOffset(a), payload.data(), payload.size()), 0);

  const SlotId b = *t->Allocate();
  const auto put = RandomBytes(1234, rng);
  std::memcpy(t->SlotAddress(b), put.data(), put.size());  // the daemon's own mapping stays writable
  ASSERT_TRUE(t->Commit(b, TagFor(1, 1, 1), 1234).ok());
  EXPECT_EQ(std::memcmp(client + t->SlotOffset(b), put.data(), put.size()), 0);
  Bytes out(kCapacity);
  Result<SlotInfo> info = t->Read(b, TagFor(1, 1, 1), out);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 1234), put);

  Result<SlotInfo> view = t->Lookup(b, TagFor(1, 1, 1));
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->length, 1234u);
  EXPECT_EQ(std::memcmp(t->SlotAddress(b), put.data(), 1234), 0);
  EXPECT_EQ(t->Lookup(b, TagFor(1, 1, 2)).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(t->Commit(b, TagFor(1, 1, 1), kCapacity + 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Commit(kSlots, TagFor(1, 1, 1), 10).code(), StatusCode::kInvalidArgument);

  // A client cannot shrink or grow the shared file under the daemon.
  EXPECT_NE(ftruncate(client_fd, 4096), 0);
  EXPECT_NE(ftruncate(client_fd, static_cast<off_t>(bytes * 2)), 0);
  munmap(client, bytes);
  close(client_fd);

  const TierStatsSnapshot st = t->stats().Snapshot();
  EXPECT_EQ(st.writes, 2u);        // Write + Commit
  EXPECT_EQ(st.reads, 2u);         // Read + Lookup
  EXPECT_EQ(st.tag_mismatches, 1u);
  EXPECT_EQ(st.rejected, 2u);
}

TEST(HostTier, PinModes) {
  auto off = MakeHost(PinMode::kOff);
  ASSERT_NE(off, nullptr);
  EXPECT_FALSE(off->pinned());
  if (kernels::GpuCount() > 0) GTEST_SKIP() << "a GPU is present; the no-GPU pinning contract does not apply";
  auto automatic = MakeHost(PinMode::kAuto);
  ASSERT_NE(automatic, nullptr);
  EXPECT_FALSE(automatic->pinned());
  EXPECT_EQ(CreateHostTier({"H", kSlots, kCapacity, PinMode::kRequired}).status().code(),
            StatusCode::kNotSupported);
}

TEST(ArenaTiers, BadSizesAreRefused) {
  EXPECT_EQ(CreateHostTier({"H", 0, kCapacity}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateHostTier({"H", kSlots, 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateEmulatedGpuTier({"G", kInvalidSlot, kCapacity}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateEmulatedGpuTier({"G", kSlots, 0}).status().code(), StatusCode::kInvalidArgument);
}

// Emulated G is a memfd like H: clients map it to read their blocks.
TEST(EmulatedGpuTier, SharedMemoryWithFd) {
  Result<std::unique_ptr<ArenaTier>> t = CreateEmulatedGpuTier({"G0", kSlots, kCapacity});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->kind(), TierKind::kGpu);
  EXPECT_GE((*t)->fd(), 0);
  EXPECT_TRUE((*t)->memory().host_accessible());
  EXPECT_EQ((*t)->name(), "G0");
  EXPECT_EQ(TierKindName((*t)->kind()), "G");
}

}  // namespace
}  // namespace tierkv::storage
