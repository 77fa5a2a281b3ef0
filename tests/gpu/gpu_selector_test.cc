// RetrievalIndex scoring on the GPU (GpuSelector over device summaries) against the
// same index scoring on the CPU, on fresh random blocks, through growth and rewrites.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <random>
#include <vector>

#include "daemon/retrieval.h"
#include "kernels/half.h"
#include "tests/gpu/gpu_test_util.h"

namespace tierkv::daemon {
namespace {

const ModelSpec kModel{1, 8, 2, 64, 16, DType::kBF16};

std::vector<std::byte> RandomBlock(std::mt19937& rng) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<std::byte> b(kModel.BlockBytes());
  for (size_t i = 0; i + 1 < b.size(); i += 2) {
    const uint16_t h = kernels::FloatToBf16(n(rng));
    std::memcpy(&b[i], &h, 2);
  }
  return b;
}

// Overlap of two selections (both ascending).
size_t Overlap(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  std::vector<uint32_t> both;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
  return both.size();
}

// Every block was put: nothing to read back.
Status NoReads(std::span<const uint32_t>, std::span<std::byte>, std::vector<bool>* found) {
  found->clear();
  return OkStatus();
}

// minmax and mean, each in its own pair of indexes (the retriever is per policy):
// one scoring on the CPU, one with every selection on the GPU.
class GpuSelectorTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (kernels::GpuCount() == 0) return;  // the tests skip
    p.retriever = GetParam();
    cpu.SetPolicy(p);
    gpu.SetPolicy(p);
    ASSERT_OK(gpu.EnableGpuScoring(/*min_work=*/0));
    ASSERT_TRUE(gpu.gpu_scoring());
  }
  RetrievalPolicy p;
  RetrievalIndex cpu{kModel}, gpu{kModel};
};

TEST_P(GpuSelectorTest, GpuSelectionsMatchTheCpuThroughGrowthAndRewrites) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(42);
  auto put = [&](uint32_t index) {
    const auto block = RandomBlock(rng);
    ASSERT_OK(cpu.OnPut(1, 0, index, block));
    ASSERT_OK(gpu.OnPut(1, 0, index, block));
  };
  std::normal_distribution<float> n(0.f, 1.f);
  size_t compared = 0, matched = 0;
  auto compare = [&](uint32_t k) {
    std::vector<float> query(size_t{kModel.num_q_heads} * kModel.head_dim);
    for (float& q : query) q = n(rng);
    auto a = cpu.Select(1, 0, query, k, 1, 4, p, 0, NoReads);
    auto b = gpu.Select(1, 0, query, k, 1, 4, p, 0, NoReads);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->blocks.size(), b->blocks.size());
    // Sums run in different orders (~1e-6 relative): a near-tie may swap one block.
    EXPECT_GE(Overlap(a->blocks, b->blocks) + 1, a->blocks.size());
    ++compared;
    matched += a->blocks == b->blocks;
  };
  for (uint32_t i = 0; i < 50; ++i) put(i);
  compare(8);
  for (uint32_t i = 50; i < 700; ++i) put(i);  // past the first device capacity (64), twice
  compare(70);
  for (uint32_t i : {3u, 100u, 699u}) put(i);  // rewrites below the uploaded rows
  compare(70);
  for (uint32_t i = 700; i < 701; ++i) put(i);  // decode: one more block
  compare(700);  // k close to n
  EXPECT_GE(matched + 1, compared) << "at most one near-tie swap in " << compared << " comparisons";
  // Capacity at each selection: 50 blocks -> 64 rows, 700 -> 700, 701 -> 1400 (doubling).
  // (f16 rows: the retrievers keep their summaries in f16, decision 0029.)
  EXPECT_EQ(gpu.DeviceSummaryBytes(), 3u * 1400 * kModel.num_kv_heads * kModel.head_dim * sizeof(uint16_t));
  EXPECT_EQ(cpu.DeviceSummaryBytes(), 0u);
  EXPECT_EQ(gpu.gpu_selections(), compared);
  EXPECT_EQ(gpu.gpu_fallbacks(), 0u);
  EXPECT_EQ(cpu.cpu_selections(), compared);
}

// Selections of different sequences arriving together (a batched Retrieve's, on
// the worker pool) are scored in shared runs (GpuSelector::SelectBatch), each
// getting what the CPU gives it.
TEST_P(GpuSelectorTest, ConcurrentSelectionsShareARunAndMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  constexpr int kSeqs = 12, kRounds = 20;
  std::mt19937 rng(43);
  for (int seq = 1; seq <= kSeqs; ++seq) {
    for (uint32_t i = 0; i < 200u + 37u * seq; ++i) {
      const auto block = RandomBlock(rng);
      ASSERT_OK(cpu.OnPut(seq, 0, i, block));
      ASSERT_OK(gpu.OnPut(seq, 0, i, block));
    }
  }
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<std::vector<float>> queries(kSeqs * kRounds, std::vector<float>(size_t{kModel.num_q_heads} * kModel.head_dim));
  for (auto& q : queries)
    for (float& x : q) x = n(rng);
  std::vector<std::vector<uint32_t>> want(queries.size()), got(queries.size());
  for (int r = 0; r < kRounds; ++r) {
    for (int seq = 1; seq <= kSeqs; ++seq) {
      auto a = cpu.Select(seq, 0, queries[r * kSeqs + seq - 1], 24, 1, 4, p, 0, NoReads);
      ASSERT_TRUE(a.ok());
      want[r * kSeqs + seq - 1] = a->blocks;
    }
  }
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int seq = 1; seq <= kSeqs; ++seq) {
    threads.emplace_back([&, seq] {
      for (int r = 0; r < kRounds; ++r) {
        auto b = gpu.Select(seq, 0, queries[r * kSeqs + seq - 1], 24, 1, 4, p, 0, NoReads);
        if (!b.ok()) failed = true;
        if (b.ok()) got[r * kSeqs + seq - 1] = b->blocks;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_FALSE(failed.load());
  size_t swaps = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].size(), got[i].size()) << i;
    EXPECT_GE(Overlap(want[i], got[i]) + 1, want[i].size()) << i;
    swaps += want[i] != got[i];
  }
  EXPECT_LE(swaps, 2u) << "near-tie swaps in " << want.size() << " selections";
  EXPECT_EQ(gpu.gpu_selections(), want.size());
  EXPECT_EQ(gpu.gpu_fallbacks(), 0u);
  EXPECT_LT(gpu.gpu_batches(), gpu.gpu_selections()) << "no two selections shared a run";
  std::printf("%llu selections in %llu GPU runs\n", static_cast<unsigned long long>(gpu.gpu_selections()),
              static_cast<unsigned long long>(gpu.gpu_batches()));
}

INSTANTIATE_TEST_SUITE_P(Summaries, GpuSelectorTest, ::testing::Values("minmax", "mean"));

}  // namespace
}  // namespace tierkv::daemon
