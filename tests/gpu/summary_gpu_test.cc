// BuildSummaries: CUDA against the CPU reference. Both sum in f32 over tokens in
// order and round the same way, so the results must be equal (tolerance 0) for
// every key/summary dtype pair.
#include <gtest/gtest.h>

#include <random>

#include "kernels/summary.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::RandomTyped;
using testing::ToDevice;
using testing::TypedArray;

struct Shape {
  uint32_t kv_heads, block_tokens, head_dim, num_blocks;
  bool with_counts, with_values;
};

void RunShape(const Shape& s, DType kd, DType sd, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "kd=" << DTypeName(kd) << " sd=" << DTypeName(sd) << " heads=" << s.kv_heads
                                    << " T=" << s.block_tokens << " D=" << s.head_dim << " B=" << s.num_blocks);
  const size_t key_elems = size_t{s.kv_heads} * s.block_tokens * s.head_dim;
  const size_t block_elems = s.with_values ? 2 * key_elems : key_elems;
  TypedArray keys = RandomTyped(rng, block_elems * s.num_blocks, kd, -4.f, 4.f);
  std::vector<uint32_t> counts(s.num_blocks, s.block_tokens);
  if (s.with_counts) {
    for (auto& c : counts) c = 1 + static_cast<uint32_t>(rng() % s.block_tokens);
  }
  const size_t out_elems = size_t{s.num_blocks} * s.kv_heads * s.head_dim;
  const size_t out_bytes = out_elems * DTypeBytes(sd);
  const size_t guard = 256;  // poisoned bytes after each output must stay untouched
  std::vector<uint8_t> cpu_min(out_bytes), cpu_max(out_bytes), cpu_mean(out_bytes);

  SummaryArgs a;
  a.key_dtype = kd;
  a.summary_dtype = sd;
  a.num_kv_heads = s.kv_heads;
  a.block_tokens = s.block_tokens;
  a.head_dim = s.head_dim;
  a.num_blocks = s.num_blocks;
  a.block_stride_bytes = s.with_values ? block_elems * DTypeBytes(kd) : 0;
  SummaryArgs c = a;
  c.keys = keys.data();
  c.token_counts = s.with_counts ? counts.data() : nullptr;
  c.min_out = cpu_min.data();
  c.max_out = cpu_max.data();
  c.mean_out = cpu_mean.data();
  ASSERT_OK(BuildSummaries(Backend::kCpu, c));

  ASSERT_OK_AND_ASSIGN(DeviceBuffer dkeys, ToDevice(keys.data(), keys.size_bytes()));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dcounts, ToDevice(counts));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dmin, testing::PoisonedDevice(out_bytes + guard));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dmax, testing::PoisonedDevice(out_bytes + guard));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dmean, testing::PoisonedDevice(out_bytes + guard));
  a.keys = dkeys.data();
  a.token_counts = s.with_counts ? static_cast<const uint32_t*>(dcounts.data()) : nullptr;
  a.min_out = dmin.data();
  a.max_out = dmax.data();
  a.mean_out = dmean.data();
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  ASSERT_OK(BuildSummaries(Backend::kCuda, a, &stream));
  ASSERT_OK(stream.Synchronize());

  const std::pair<const DeviceBuffer*, const std::vector<uint8_t>*> outs[] = {
      {&dmin, &cpu_min}, {&dmax, &cpu_max}, {&dmean, &cpu_mean}};
  const char* names[] = {"min", "max", "mean"};
  for (int o = 0; o < 3; ++o) {
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> got, FromDevice<uint8_t>(outs[o].first->data(), out_bytes + guard));
    for (size_t i = 0; i < out_elems; ++i) {
      const float g = LoadAsFloat(got.data(), sd, i), w = LoadAsFloat(outs[o].second->data(), sd, i);
      ASSERT_EQ(g, w) << names[o] << " element " << i;
    }
    for (size_t i = out_bytes; i < out_bytes + guard; ++i) ASSERT_EQ(got[i], 0x7f) << names[o] << " overrun at " << i;
  }
}

TEST(SummaryGpuTest, MatchesCpuExactly) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(100);
  const Shape shapes[] = {{1, 1, 1, 1, false, false},       {2, 5, 7, 3, true, true},
                          {8, 32, 128, 64, true, true},     {4, 17, 300, 5, true, false},
                          {8, 64, 64, 300, false, true},   {1, 4096, 33, 2, true, false}};
  for (const Shape& s : shapes) {
    for (DType kd : testing::kAllDTypes) {
      for (DType sd : testing::kAllDTypes) {
        RunShape(s, kd, sd, rng);
        if (HasFatalFailure()) return;
      }
    }
  }
}

}  // namespace
}  // namespace tierkv::kernels
