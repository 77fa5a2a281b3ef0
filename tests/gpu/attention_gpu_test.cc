// DecodeAttention: CUDA against the CPU reference, over pointer and slot tables,
// partial blocks, GQA groups 1..64 (the largest needs > 48 KiB of shared memory),
// head_dim not a multiple of 32, blocks longer than one 64-token chunk, and a
// 10%-of-1M-token selection in the benchmark shape.
//
// Tolerances (bit-identical inputs, f32 accumulation in both, different order;
// the same for every K/V dtype since both sides convert the same stored values):
//   out  |gpu - cpu| <= 1e-4 + 1e-4 * |cpu|   (V uniform in [-1, 1])
//   lse  |gpu - cpu| <= 1e-4 + 1e-5 * |cpu|
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/attention.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::ToDevice;
using testing::TypedArray;

struct Shape {
  uint32_t q_heads, kv_heads, head_dim, block_tokens, slots, entries;
};

struct Table {
  std::vector<uint32_t> slots;   // slot of each entry (may be >= num_slots to test skipping)
  std::vector<uint32_t> counts;  // tokens of each entry
};

void Compare(const std::vector<float>& gpu, const std::vector<float>& cpu, const std::vector<float>& glse,
             const std::vector<float>& clse) {
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_NEAR(gpu[i], cpu[i], 1e-4 + 1e-4 * std::fabs(cpu[i])) << "out " << i;
  for (size_t h = 0; h < clse.size(); ++h) ASSERT_NEAR(glse[h], clse[h], 1e-4 + 1e-5 * std::fabs(clse[h])) << "lse " << h;
}

// Runs the table on kCpu and kCuda (pointer or slot mode) and compares.
// cpu_table is what the CPU must see to match what the GPU does with gpu_table
// (skipped or clamped entries removed or fixed).
void RunCase(const Shape& s, DType dt, bool by_slot, const Table& gpu_table, const Table& cpu_table,
             std::mt19937_64& rng, bool use_workspace) {
  SCOPED_TRACE(::testing::Message() << "H=" << s.q_heads << " KVH=" << s.kv_heads << " D=" << s.head_dim << " T="
                                    << s.block_tokens << " entries=" << gpu_table.slots.size()
                                    << " dtype=" << DTypeName(dt) << " by_slot=" << by_slot);
  const size_t slot_elems = 2 * size_t{s.kv_heads} * s.block_tokens * s.head_dim;
  const size_t slot_bytes = slot_elems * DTypeBytes(dt);
  TypedArray arena = testing::RandomTyped(rng, slot_elems * s.slots, dt, -1.f, 1.f);
  std::vector<float> q = testing::RandomFloats(rng, size_t{s.q_heads} * s.head_dim, -2.f, 2.f);
  AttentionArgs base;
  base.kv_dtype = dt;
  base.num_q_heads = s.q_heads;
  base.num_kv_heads = s.kv_heads;
  base.head_dim = s.head_dim;
  base.block_tokens = s.block_tokens;

  // CPU, slot mode (any table works for the reference).
  std::vector<float> cpu_out(size_t{s.q_heads} * s.head_dim), cpu_lse(s.q_heads);
  AttentionArgs c = base;
  c.query = q.data();
  c.num_blocks = static_cast<uint32_t>(cpu_table.slots.size());
  c.slot_base = arena.data();
  c.slot_bytes = slot_bytes;
  c.num_slots = s.slots;
  c.slot_indices = cpu_table.slots.data();
  c.token_counts = cpu_table.counts.data();
  c.out = cpu_out.data();
  c.lse = cpu_lse.data();
  ASSERT_OK(DecodeAttention(Backend::kCpu, c));

  ASSERT_OK_AND_ASSIGN(DeviceBuffer darena, ToDevice(arena.data(), arena.size_bytes()));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dq, ToDevice(q));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dslots, ToDevice(gpu_table.slots));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dcounts, ToDevice(gpu_table.counts));
  std::vector<const void*> ptrs;
  for (uint32_t sl : gpu_table.slots)
    ptrs.push_back(sl < s.slots ? static_cast<const char*>(darena.data()) + sl * slot_bytes : nullptr);
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dptrs, ToDevice(ptrs));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dout, testing::PoisonedDevice((cpu_out.size() + 16) * 4));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dlse, testing::PoisonedDevice((s.q_heads + 16) * 4));
  AttentionArgs g = base;
  g.query = static_cast<const float*>(dq.data());
  g.num_blocks = static_cast<uint32_t>(gpu_table.slots.size());
  if (by_slot) {
    g.slot_base = darena.data();
    g.slot_bytes = slot_bytes;
    g.num_slots = s.slots;
    g.slot_indices = static_cast<const uint32_t*>(dslots.data());
  } else {
    g.block_ptrs = static_cast<const void* const*>(dptrs.data());
  }
  g.token_counts = static_cast<const uint32_t*>(dcounts.data());
  g.out = static_cast<float*>(dout.data());
  g.lse = static_cast<float*>(dlse.data());
  DeviceBuffer ws;
  if (use_workspace) {
    ASSERT_OK_AND_ASSIGN(ws, DeviceBuffer::Allocate(AttentionWorkspaceBytes(g)));
    g.workspace = ws.data();
    g.workspace_bytes = ws.size();
  }
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  ASSERT_OK(DecodeAttention(Backend::kCuda, g, &stream));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> out, FromDevice<float>(dout.data(), cpu_out.size() + 16));
  ASSERT_OK_AND_ASSIGN(std::vector<float> lse, FromDevice<float>(dlse.data(), s.q_heads + 16));
  for (size_t i = cpu_out.size(); i < out.size(); ++i) ASSERT_EQ(FloatBits(out[i]), 0x7f7f7f7fu) << "overrun";
  for (size_t i = s.q_heads; i < lse.size(); ++i) ASSERT_EQ(FloatBits(lse[i]), 0x7f7f7f7fu) << "overrun";
  out.resize(cpu_out.size());
  lse.resize(s.q_heads);
  Compare(out, cpu_out, lse, cpu_lse);
}

Table RandomTable(const Shape& s, bool partial, std::mt19937_64& rng) {
  Table t;
  t.slots.resize(s.slots);
  std::iota(t.slots.begin(), t.slots.end(), 0u);
  std::shuffle(t.slots.begin(), t.slots.end(), rng);
  t.slots.resize(s.entries);
  t.counts.assign(s.entries, s.block_tokens);
  if (partial) {
    for (auto& c : t.counts) c = 1 + static_cast<uint32_t>(rng() % s.block_tokens);
  }
  return t;
}

TEST(AttentionGpuTest, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(500);
  const Shape shapes[] = {{1, 1, 1, 1, 1, 1},        {4, 2, 7, 5, 6, 4},         {32, 8, 128, 32, 400, 300},
                          {8, 8, 100, 16, 9, 9},     {6, 1, 64, 200, 5, 3},      {64, 1, 256, 32, 8, 6},
                          {16, 2, 96, 64, 2000, 1500}};
  for (const Shape& s : shapes) {
    for (DType dt : testing::kAllDTypes) {
      for (bool by_slot : {false, true}) {
        const Table t = RandomTable(s, /*partial=*/by_slot, rng);
        RunCase(s, dt, by_slot, t, t, rng, /*use_workspace=*/!by_slot);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(AttentionGpuTest, BenchmarkShapeTenPercentOfOneMillionTokens) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(501);
  // 32 q heads / 8 KV heads / head_dim 128 / bf16 / 32-token blocks; 3277 of 32768 blocks.
  const Shape s{32, 8, 128, 32, 3300, 3277};
  const Table t = RandomTable(s, false, rng);
  RunCase(s, DType::kBF16, true, t, t, rng, true);
}

TEST(AttentionGpuTest, SkipsInvalidEntriesAndClampsCounts) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(502);
  const Shape s{8, 2, 64, 16, 10, 6};
  Table gpu = RandomTable(s, true, rng);
  Table cpu = gpu;
  // Entry 1 points past the arena (skipped on the GPU); entry 3 claims too many
  // tokens (clamped to block_tokens); entry 4 has 0 tokens (skipped).
  gpu.slots[1] = s.slots + 7;
  gpu.counts[3] = s.block_tokens + 100;
  gpu.counts[4] = 0;
  cpu.counts[3] = s.block_tokens;
  cpu.slots.erase(cpu.slots.begin() + 4);
  cpu.counts.erase(cpu.counts.begin() + 4);
  cpu.slots.erase(cpu.slots.begin() + 1);
  cpu.counts.erase(cpu.counts.begin() + 1);
  for (bool by_slot : {true, false}) {
    RunCase(s, DType::kF16, by_slot, gpu, cpu, rng, false);
    if (HasFatalFailure()) return;
  }
}

TEST(AttentionGpuTest, TooLargeGroupIsNotSupported) {
  SKIP_WITHOUT_GPU();
  // 1024 q heads on one KV head with head_dim 1024: 8 MiB of per-block state.
  std::vector<float> q(1024 * 1024, 0.f);
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dq, ToDevice(q));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dout, DeviceBuffer::Allocate(q.size() * 4));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer arena, DeviceBuffer::Allocate(2 * 1024 * 4 * 2));
  std::vector<const void*> ptrs = {arena.data()};
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dptrs, ToDevice(ptrs));
  AttentionArgs a;
  a.kv_dtype = DType::kBF16;
  a.num_q_heads = 1024;
  a.num_kv_heads = 1;
  a.head_dim = 1024;
  a.block_tokens = 1;
  a.query = static_cast<const float*>(dq.data());
  a.num_blocks = 1;
  a.block_ptrs = static_cast<const void* const*>(dptrs.data());
  a.out = static_cast<float*>(dout.data());
  EXPECT_EQ(DecodeAttention(Backend::kCuda, a).code(), StatusCode::kNotSupported);
  ASSERT_OK(DeviceSynchronize());
}

}  // namespace
}  // namespace tierkv::kernels
