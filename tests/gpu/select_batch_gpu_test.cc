// SelectBatch on CUDA (four launches for the whole batch) against the CPU
// reference (ScoreBlocks + TopK item by item), for both summary modes, both head
// combinations, f32 and f16 summaries, items of different sizes in one batch (one
// beyond the top-k kernel's shared-memory key cache) and a batch of 64.
//
// The scores differ between backends only by f32 summation order (score_gpu_test's
// tolerances), so a selection may differ only where the CPU's scores tie with its
// k-th within that tolerance; everything else must match exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/half.h"
#include "kernels/select_batch.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::PoisonedDevice;
using testing::RandomFloats;
using testing::ToDevice;

constexpr uint32_t kQ = 32, kKv = 8, kD = 128;

struct HostItem {
  std::vector<float> query;
  std::vector<uint8_t> lo, hi;  // summary bytes of the batch's dtype
  std::vector<uint8_t> always;
  uint32_t blocks = 0, k = 0;
};

std::vector<uint8_t> AsBytes(const std::vector<float>& v, DType dtype, Rounding rounding) {
  std::vector<uint8_t> out(v.size() * DTypeBytes(dtype));
  for (size_t i = 0; i < v.size(); ++i) StoreFromFloat(out.data(), dtype, i, v[i], rounding);
  return out;
}

HostItem MakeItem(std::mt19937_64& rng, uint32_t blocks, uint32_t k, DType dtype) {
  HostItem it;
  it.blocks = blocks;
  it.k = k;
  it.query = RandomFloats(rng, size_t{kQ} * kD, -2.f, 2.f);
  std::vector<float> lo = RandomFloats(rng, size_t{blocks} * kKv * kD, -1.f, 1.f), hi = lo;
  for (float& x : hi) x += static_cast<float>(rng() % 100) / 50.f;
  it.lo = AsBytes(lo, dtype, Rounding::kDown);
  it.hi = AsBytes(hi, dtype, Rounding::kUp);
  it.always.assign(blocks, 0);
  it.always[0] = 1;
  for (uint32_t b = blocks > 4 ? blocks - 4 : 0; b < blocks; ++b) it.always[b] = 1;
  return it;
}

void CompareBatch(ScoreMode mode, HeadCombine combine, DType dtype, const std::vector<HostItem>& items) {
  SCOPED_TRACE(::testing::Message() << "mode " << int(mode) << " combine " << int(combine) << " dtype "
                                    << DTypeName(dtype) << " items " << items.size());
  // CPU: the reference, with each item's scores kept for the tie check.
  std::vector<std::vector<uint32_t>> cpu_out(items.size());
  std::vector<std::vector<float>> cpu_scores(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const HostItem& it = items[i];
    cpu_out[i].assign(it.k, 0);
    cpu_scores[i].assign(it.blocks, 0.f);
    ScoreArgs s;
    s.mode = mode;
    s.combine = combine;
    s.num_q_heads = kQ;
    s.num_kv_heads = kKv;
    s.head_dim = kD;
    s.num_blocks = it.blocks;
    s.query = it.query.data();
    s.summary_dtype = dtype;
    s.min_keys = s.mean_keys = it.lo.data();
    s.max_keys = it.hi.data();
    s.scores = cpu_scores[i].data();
    ASSERT_OK(ScoreBlocks(Backend::kCpu, s));
  }
  std::vector<SelectBatchItem> host_items;
  for (size_t i = 0; i < items.size(); ++i) {
    SelectBatchItem v;
    v.query = items[i].query.data();
    v.min_keys = v.mean_keys = items[i].lo.data();
    v.max_keys = items[i].hi.data();
    v.num_blocks = items[i].blocks;
    v.k = items[i].k;
    v.always = items[i].always.data();
    v.out_indices = cpu_out[i].data();
    host_items.push_back(v);
  }
  SelectBatchArgs a;
  a.mode = mode;
  a.combine = combine;
  a.num_q_heads = kQ;
  a.num_kv_heads = kKv;
  a.head_dim = kD;
  a.summary_dtype = dtype;
  a.items = host_items.data();
  a.num_items = static_cast<uint32_t>(host_items.size());
  ASSERT_OK(SelectBatch(Backend::kCpu, a));

  // CUDA: every input and scratch array in device memory.
  std::vector<DeviceBuffer> keep;
  std::vector<SelectBatchItem> dev_items(items.size());
  std::vector<void*> outs(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const HostItem& it = items[i];
    ASSERT_OK_AND_ASSIGN(DeviceBuffer q, ToDevice(it.query));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer lo, ToDevice(it.lo));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer hi, ToDevice(it.hi));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer always, ToDevice(it.always));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer out, PoisonedDevice((it.k + 8) * sizeof(uint32_t)));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer scores, PoisonedDevice(it.blocks * sizeof(float)));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer head, PoisonedDevice(size_t{kQ} * it.blocks * sizeof(float)));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer stats, PoisonedDevice(2 * kQ * sizeof(float)));
    SelectBatchItem& v = dev_items[i];
    v.query = static_cast<const float*>(q.data());
    v.min_keys = v.mean_keys = lo.data();
    v.max_keys = hi.data();
    v.num_blocks = it.blocks;
    v.k = it.k;
    v.always = static_cast<const uint8_t*>(always.data());
    v.out_indices = static_cast<uint32_t*>(out.data());
    v.scores = static_cast<float*>(scores.data());
    v.head_scores = static_cast<float*>(head.data());
    v.stats = static_cast<float*>(stats.data());
    outs[i] = out.data();
    for (DeviceBuffer* b : {&q, &lo, &hi, &always, &out, &scores, &head, &stats}) keep.push_back(std::move(*b));
  }
  ASSERT_OK_AND_ASSIGN(DeviceBuffer d_items, ToDevice(dev_items));
  a.items = dev_items.data();
  a.device_items = static_cast<const SelectBatchItem*>(d_items.data());
  ASSERT_OK(SelectBatch(Backend::kCuda, a));

  for (size_t i = 0; i < items.size(); ++i) {
    const HostItem& it = items[i];
    ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> gpu, FromDevice<uint32_t>(outs[i], it.k + 8));
    for (uint32_t j = it.k; j < it.k + 8; ++j) ASSERT_EQ(gpu[j], 0x7f7f7f7fu) << "item " << i << " wrote past k";
    gpu.resize(it.k);
    ASSERT_TRUE(std::is_sorted(gpu.begin(), gpu.end())) << "item " << i;
    if (gpu == cpu_out[i]) continue;
    // Differences only among near-ties with the CPU's k-th selected score.
    const std::vector<float>& s = cpu_scores[i];
    float kth = INFINITY;
    for (uint32_t b : cpu_out[i]) {
      if (!it.always[b]) kth = std::min(kth, s[b]);
    }
    for (uint32_t b : gpu) {
      ASSERT_LT(b, it.blocks) << "item " << i;
      if (std::find(cpu_out[i].begin(), cpu_out[i].end(), b) != cpu_out[i].end()) continue;
      ASSERT_FALSE(it.always[b]) << "item " << i << " block " << b;
      ASSERT_NEAR(s[b], kth, 1e-4 * std::fabs(kth) + 1e-6 * kQ) << "item " << i << " block " << b << " is no tie";
    }
  }
}

TEST(SelectBatchGpuTest, MatchesTheCpuForEveryModeCombinationAndDtype) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(31);
  for (DType dtype : {DType::kF32, DType::kF16}) {
    std::vector<HostItem> items;
    // Sizes around the grids' and the key cache's edges (5632 keys), one block alone.
    for (auto [blocks, k] : {std::pair{1024u, 102u}, {1u, 1u}, {37u, 9u}, {6000u, 600u}, {4096u, 410u}})
      items.push_back(MakeItem(rng, blocks, k, dtype));
    for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean})
      for (HeadCombine combine : {HeadCombine::kSum, HeadCombine::kMax}) CompareBatch(mode, combine, dtype, items);
  }
}

TEST(SelectBatchGpuTest, ABatchOf64) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(32);
  std::vector<HostItem> items;
  for (int i = 0; i < 64; ++i) items.push_back(MakeItem(rng, 256 + 17 * i, 26 + i % 7, DType::kF16));
  CompareBatch(ScoreMode::kMean, HeadCombine::kSum, DType::kF16, items);
}

}  // namespace
}  // namespace tierkv::kernels
