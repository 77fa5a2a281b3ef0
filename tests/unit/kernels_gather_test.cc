// The CPU reference of Gather/Scatter: exact copies, nothing outside the
// destination blocks touched, and argument checks.
#include <gtest/gtest.h>

#include <random>

#include "kernels/gather.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::RandomBytes;

constexpr uint8_t kPoison = 0xA5;

// n source blocks and a destination arena with gaps between blocks (to catch
// overruns), destinations in a shuffled order.
struct Layout {
  std::vector<std::vector<uint8_t>> sources;
  std::vector<uint8_t> arena;
  std::vector<size_t> dst_offset;
  std::vector<const void*> src_ptrs;
  std::vector<void*> dst_ptrs;
};

Layout MakeLayout(std::mt19937_64& rng, uint32_t n, size_t block_bytes, size_t misalign) {
  Layout l;
  const size_t gap = 64 + misalign;
  const size_t stride = block_bytes + gap;
  l.arena.assign(gap + size_t{n} * stride, kPoison);
  std::vector<size_t> slots(n);
  for (uint32_t i = 0; i < n; ++i) slots[i] = i;
  std::shuffle(slots.begin(), slots.end(), rng);
  for (uint32_t i = 0; i < n; ++i) {
    l.sources.push_back(RandomBytes(rng, block_bytes + misalign));
    l.dst_offset.push_back(gap + slots[i] * stride);
  }
  for (uint32_t i = 0; i < n; ++i) {
    l.src_ptrs.push_back(l.sources[i].data() + misalign);
    l.dst_ptrs.push_back(l.arena.data() + l.dst_offset[i]);
  }
  return l;
}

std::vector<uint8_t> Expected(const Layout& l, size_t block_bytes, size_t misalign) {
  std::vector<uint8_t> want(l.arena.size(), kPoison);
  for (size_t i = 0; i < l.sources.size(); ++i)
    std::memcpy(want.data() + l.dst_offset[i], l.sources[i].data() + misalign, block_bytes);
  return want;
}

TEST(KernelsGatherCpuTest, CopiesEveryBlockAndNothingElse) {
  std::mt19937_64 rng(1);
  for (size_t block_bytes : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{4096}, size_t{16385},
                             size_t{65536 + 7}}) {
    for (uint32_t n : {1u, 3u, 33u}) {
      for (size_t misalign : {size_t{0}, size_t{3}}) {
        Layout l = MakeLayout(rng, n, block_bytes, misalign);
        ASSERT_TRUE(Gather(Backend::kCpu, {l.src_ptrs.data(), l.dst_ptrs.data(), n, block_bytes}).ok());
        ASSERT_EQ(l.arena, Expected(l, block_bytes, misalign)) << block_bytes << " " << n;
      }
    }
  }
}

TEST(KernelsGatherCpuTest, ScatterIsTheReverseCopy) {
  std::mt19937_64 rng(2);
  const size_t bytes = 4096 + 5;
  std::vector<uint8_t> arena = RandomBytes(rng, 4 * bytes);
  std::vector<std::vector<uint8_t>> host(4, std::vector<uint8_t>(bytes, kPoison));
  const void* src[4];
  void* dst[4];
  for (int i = 0; i < 4; ++i) {
    src[i] = arena.data() + (3 - i) * bytes;
    dst[i] = host[i].data();
  }
  ASSERT_TRUE(Scatter(Backend::kCpu, {src, dst, 4, bytes}).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(0, std::memcmp(host[i].data(), arena.data() + (3 - i) * bytes, bytes));
}

TEST(KernelsGatherCpuTest, RejectsBadArguments) {
  std::vector<uint8_t> a(64, 1), b(64, 2);
  const void* src[] = {a.data(), nullptr};
  void* dst[] = {b.data(), b.data()};
  auto code = [](const Status& s) { return s.code(); };
  EXPECT_EQ(code(Gather(Backend::kCpu, {nullptr, dst, 1, 64})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Gather(Backend::kCpu, {src, nullptr, 1, 64})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Gather(Backend::kCpu, {src, dst, 1, 0})), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Gather(Backend::kCpu, {src, dst, 1, kMaxBlockCopyBytes + 1})), StatusCode::kInvalidArgument);
  // A null entry is refused before anything is copied.
  EXPECT_EQ(code(Scatter(Backend::kCpu, {src, dst, 2, 64})), StatusCode::kInvalidArgument);
  EXPECT_EQ(b[0], 2);
  // n == 0 is a no-op, even with null arrays.
  EXPECT_TRUE(Gather(Backend::kCpu, {nullptr, nullptr, 0, 0}).ok());
}

}  // namespace
}  // namespace tierkv::kernels
