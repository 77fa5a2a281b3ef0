// ScoreBlocks: CUDA against the CPU reference for every mode, summary dtype and
// head combination, on shapes with head_dim not a multiple of 32, GQA groups of
// 1..8, partial last VQ blocks and block counts beyond one grid wave.
//
// Tolerances (the inputs are bit-identical; only f32 summation order differs, so
// they are the same for every summary dtype):
//   per-head scores  |gpu - cpu| <= 1e-5 * sum_d |term| + 1e-5
//   combined scores  |gpu - cpu| <= 1e-4 * |cpu| + 1e-6 * num_q_heads
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "kernels/score.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::RandomBytes;
using testing::RandomFloats;
using testing::ToDevice;
using testing::TypedArray;

// One input array of ScoreArgs: its host bytes and how to point the args at a copy.
struct Input {
  std::vector<uint8_t> bytes;
  std::function<void(ScoreArgs&, const void*)> set;
};

std::vector<uint8_t> Bytes(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return std::vector<uint8_t>(b, b + n);
}

// Runs `a` on kCpu (inputs on the host) and on kCuda (inputs copied to the
// device), and compares. magnitude[h * B + b] bounds the summed |terms| of each
// head score.
void CompareBackends(ScoreArgs a, const std::vector<Input>& inputs, const std::vector<double>& magnitude,
                     bool use_workspace) {
  const size_t B = a.num_blocks, H = a.num_q_heads;
  std::vector<float> cpu_scores(B), cpu_head(H * B);
  for (const Input& in : inputs) in.set(a, in.bytes.data());
  a.scores = cpu_scores.data();
  a.head_scores = cpu_head.data();
  ASSERT_OK(ScoreBlocks(Backend::kCpu, a));

  std::vector<DeviceBuffer> keep;
  for (const Input& in : inputs) {
    ASSERT_OK_AND_ASSIGN(DeviceBuffer d, ToDevice(in.bytes));
    in.set(a, d.data());
    keep.push_back(std::move(d));
  }
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dscores, testing::PoisonedDevice((B + 64) * sizeof(float)));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dhead, testing::PoisonedDevice(H * B * sizeof(float)));
  DeviceBuffer ws;
  if (use_workspace) {
    ASSERT_OK_AND_ASSIGN(ws, DeviceBuffer::Allocate(ScoreWorkspaceBytes(a)));
    a.workspace = ws.data();
    a.workspace_bytes = ws.size();
  }
  a.scores = static_cast<float*>(dscores.data());
  a.head_scores = static_cast<float*>(dhead.data());
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  ASSERT_OK(ScoreBlocks(Backend::kCuda, a, &stream));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> gpu_head, FromDevice<float>(dhead.data(), H * B));
  ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> raw, FromDevice<uint32_t>(dscores.data(), B + 64));
  for (size_t i = 0; i < H * B; ++i)
    ASSERT_NEAR(gpu_head[i], cpu_head[i], 1e-5 * magnitude[i] + 1e-5) << "head score " << i;
  for (size_t b = 0; b < B; ++b)
    ASSERT_NEAR(BitsFloat(raw[b]), cpu_scores[b], 1e-4 * std::fabs(cpu_scores[b]) + 1e-6 * H) << "score " << b;
  for (size_t b = B; b < B + 64; ++b) ASSERT_EQ(raw[b], 0x7f7f7f7fu) << "wrote past scores[num_blocks]";

  // Without head_scores the kernel keeps them in scratch: the scores must not change.
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dscores2, testing::PoisonedDevice(B * sizeof(float)));
  a.scores = static_cast<float*>(dscores2.data());
  a.head_scores = nullptr;
  ASSERT_OK(ScoreBlocks(Backend::kCuda, a, &stream));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> again, FromDevice<float>(dscores2.data(), B));
  for (size_t b = 0; b < B; ++b) ASSERT_EQ(again[b], BitsFloat(raw[b])) << "scores differ without head_scores";
}

struct Shape {
  uint32_t q_heads, kv_heads, head_dim, num_blocks;
};

TEST(ScoreGpuTest, SummaryModesMatchCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(200);
  const Shape shapes[] = {{1, 1, 1, 1},       {4, 2, 7, 5},     {32, 8, 128, 4099},
                          {8, 8, 100, 300},   {8, 1, 300, 70},  {64, 8, 64, 1000}};
  for (const Shape& s : shapes) {
    for (DType sd : testing::kAllDTypes) {
      for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean}) {
        for (HeadCombine comb : {HeadCombine::kSum, HeadCombine::kMax}) {
          SCOPED_TRACE(::testing::Message() << "H=" << s.q_heads << " KVH=" << s.kv_heads << " D=" << s.head_dim
                                            << " B=" << s.num_blocks << " sd=" << DTypeName(sd)
                                            << " mode=" << int(mode) << " comb=" << int(comb));
          const size_t n = size_t{s.num_blocks} * s.kv_heads * s.head_dim;
          std::vector<float> q = RandomFloats(rng, size_t{s.q_heads} * s.head_dim, -2.f, 2.f);
          std::vector<float> lo_f = RandomFloats(rng, n, -1.f, 1.f), hi_f(n);
          for (size_t i = 0; i < n; ++i) hi_f[i] = lo_f[i] + static_cast<float>(rng() % 1000) / 500.f;
          TypedArray lo = testing::ToTyped(lo_f, sd), hi = testing::ToTyped(hi_f, sd);
          ScoreArgs a;
          a.mode = mode;
          a.combine = comb;
          a.num_q_heads = s.q_heads;
          a.num_kv_heads = s.kv_heads;
          a.head_dim = s.head_dim;
          a.num_blocks = s.num_blocks;
          a.summary_dtype = sd;
          std::vector<double> mag(size_t{s.q_heads} * s.num_blocks);
          const uint32_t G = s.q_heads / s.kv_heads;
          for (uint32_t h = 0; h < s.q_heads; ++h)
            for (uint32_t b = 0; b < s.num_blocks; ++b)
              for (uint32_t d = 0; d < s.head_dim; ++d) {
                const size_t i = (size_t{b} * s.kv_heads + h / G) * s.head_dim + d;
                mag[size_t{h} * s.num_blocks + b] +=
                    std::fabs(q[h * s.head_dim + d]) * std::max(std::fabs(lo.at(i)), std::fabs(hi.at(i)));
              }
          std::vector<Input> inputs;
          inputs.push_back({Bytes(q.data(), q.size() * 4),
                            [](ScoreArgs& x, const void* p) { x.query = static_cast<const float*>(p); }});
          if (mode == ScoreMode::kMinMax) {
            inputs.push_back({lo.bytes, [](ScoreArgs& x, const void* p) { x.min_keys = p; }});
            inputs.push_back({hi.bytes, [](ScoreArgs& x, const void* p) { x.max_keys = p; }});
          } else {
            inputs.push_back({lo.bytes, [](ScoreArgs& x, const void* p) { x.mean_keys = p; }});
          }
          CompareBackends(a, inputs, mag, /*use_workspace=*/s.num_blocks % 2 == 1);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(ScoreGpuTest, VqLutMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(201);
  struct VqShape {
    uint32_t q_heads, kv_heads, block_tokens, m, num_blocks, num_tokens;
  };
  // Blocks with more tokens than a warp's lanes, partial last blocks, M = 1.
  const VqShape shapes[] = {{1, 1, 1, 1, 1, 1},        {4, 2, 8, 4, 3, 19},       {32, 8, 32, 16, 500, 15990},
                            {8, 4, 70, 3, 7, 421},      {8, 8, 128, 32, 33, 4224}, {2, 1, 16, 1, 5, 65}};
  for (const VqShape& v : shapes) {
    for (VqReduce red : {VqReduce::kMax, VqReduce::kLogSumExp}) {
      for (HeadCombine comb : {HeadCombine::kSum, HeadCombine::kMax}) {
        SCOPED_TRACE(::testing::Message() << "H=" << v.q_heads << " T=" << v.block_tokens << " M=" << v.m
                                          << " B=" << v.num_blocks << " tokens=" << v.num_tokens
                                          << " lse=" << int(red) << " comb=" << int(comb));
        std::vector<uint8_t> codes = RandomBytes(rng, size_t{v.num_blocks} * v.kv_heads * v.block_tokens * v.m);
        std::vector<float> lut = RandomFloats(rng, size_t{v.q_heads} * v.m * 256, -3.f, 3.f);
        ScoreArgs a;
        a.mode = ScoreMode::kVqLut;
        a.combine = comb;
        a.num_q_heads = v.q_heads;
        a.num_kv_heads = v.kv_heads;
        a.head_dim = 128;
        a.num_blocks = v.num_blocks;
        a.block_tokens = v.block_tokens;
        a.num_tokens = v.num_tokens;
        a.num_subspaces = v.m;
        a.vq_reduce = red;
        std::vector<Input> inputs;
        inputs.push_back({codes, [](ScoreArgs& x, const void* p) { x.codes = static_cast<const uint8_t*>(p); }});
        inputs.push_back({Bytes(lut.data(), lut.size() * 4),
                          [](ScoreArgs& x, const void* p) { x.lut = static_cast<const float*>(p); }});
        // |term| <= 3 per subspace; LSE adds at most log(T)/scale.
        std::vector<double> mag(size_t{v.q_heads} * v.num_blocks, 3.0 * v.m + 12.0 * std::log(v.block_tokens + 1.0));
        CompareBackends(a, inputs, mag, /*use_workspace=*/true);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(ScoreGpuTest, RefusesHostArrays) {
  SKIP_WITHOUT_GPU();
  std::vector<float> q(8, 1.f), mean(8, 1.f), scores(2);
  ScoreArgs a;
  a.mode = ScoreMode::kMean;
  a.num_q_heads = 2;
  a.num_kv_heads = 1;
  a.head_dim = 4;
  a.num_blocks = 2;
  a.query = q.data();
  a.mean_keys = mean.data();
  a.scores = scores.data();
  EXPECT_EQ(ScoreBlocks(Backend::kCuda, a).code(), StatusCode::kInvalidArgument);
  ASSERT_OK(DeviceSynchronize());
}

}  // namespace
}  // namespace tierkv::kernels
