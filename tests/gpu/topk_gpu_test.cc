// TopK: CUDA against the CPU reference. The selection is unique (see topk.h), so
// indices and scores must be equal exactly, for block counts around the
// 1024-thread tile, k from 1 to num_blocks, heavy ties, NaN/inf/signed zeros and
// always-kept masks (including more always-kept blocks than k).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/topk.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::ToDevice;

std::vector<float> MakeScores(std::mt19937_64& rng, uint32_t n, int kind) {
  std::vector<float> s(n);
  std::uniform_real_distribution<float> u(-5.f, 5.f);
  for (auto& x : s) {
    switch (kind) {
      case 0:
        x = u(rng);
        break;
      case 1:
        x = static_cast<float>(rng() % 4);
        break;
      case 2:
        x = 1.5f;
        break;
      case 3:  // scores like softmax sums: tiny positive values
        x = std::exp(u(rng) * 4.f) * 1e-6f;
        break;
      default: {
        const float specials[] = {NAN, -0.f, 0.f, INFINITY, -INFINITY, 1.f, -1.f};
        x = rng() % 2 ? specials[rng() % 7] : u(rng);
      }
    }
  }
  return s;
}

void RunCase(uint32_t n, uint32_t k, const std::vector<float>& s, const std::vector<uint8_t>& always) {
  SCOPED_TRACE(::testing::Message() << "n=" << n << " k=" << k << " always=" << !always.empty());
  std::vector<uint32_t> cpu_idx(k);
  std::vector<float> cpu_sc(k);
  TopKArgs a;
  a.scores = s.data();
  a.num_blocks = n;
  a.k = k;
  a.always = always.empty() ? nullptr : always.data();
  a.out_indices = cpu_idx.data();
  a.out_scores = cpu_sc.data();
  ASSERT_OK(TopK(Backend::kCpu, a));

  ASSERT_OK_AND_ASSIGN(DeviceBuffer ds, ToDevice(s));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dm, ToDevice(always));
  const size_t guard = 32;
  ASSERT_OK_AND_ASSIGN(DeviceBuffer di, testing::PoisonedDevice((k + guard) * 4));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dsc, testing::PoisonedDevice((k + guard) * 4));
  a.scores = static_cast<const float*>(ds.data());
  a.always = always.empty() ? nullptr : static_cast<const uint8_t*>(dm.data());
  a.out_indices = static_cast<uint32_t*>(di.data());
  a.out_scores = static_cast<float*>(dsc.data());
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  ASSERT_OK(TopK(Backend::kCuda, a, &stream));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> idx, FromDevice<uint32_t>(di.data(), k + guard));
  ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sc, FromDevice<uint32_t>(dsc.data(), k + guard));
  for (uint32_t i = 0; i < k; ++i) {
    ASSERT_EQ(idx[i], cpu_idx[i]) << "position " << i;
    uint32_t want;
    std::memcpy(&want, &cpu_sc[i], 4);
    ASSERT_EQ(sc[i], want) << "score at position " << i;  // bitwise: NaN payloads are copied as-is
  }
  for (uint32_t i = k; i < k + guard; ++i) {
    ASSERT_EQ(idx[i], 0x7f7f7f7fu) << "wrote past out_indices[k]";
    ASSERT_EQ(sc[i], 0x7f7f7f7fu) << "wrote past out_scores[k]";
  }
}

TEST(TopKGpuTest, MatchesCpuExactly) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(300);
  const uint32_t sizes[] = {1, 2, 31, 1023, 1024, 1025, 4096, 4099, 5632, 5633, 32773};  // 5632: shared-memory key cache limit
  for (uint32_t n : sizes) {
    for (int kind = 0; kind < 5; ++kind) {
      const std::vector<float> s = MakeScores(rng, n, kind);
      for (int mask_kind = 0; mask_kind < 3; ++mask_kind) {
        std::vector<uint8_t> always;
        if (mask_kind == 1) {  // 4 sinks + a recent window of 16
          always.assign(n, 0);
          for (uint32_t i = 0; i < n; ++i) always[i] = i < 4 || i + 16 >= n;
        } else if (mask_kind == 2) {
          always.resize(n);
          for (auto& a : always) a = rng() % 3 == 0 ? 1 : 0;
        }
        for (uint32_t k : {1u, std::max(1u, n / 10), std::min(n, 4096u), n - n / 3, n}) {
          RunCase(n, k, s, always);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(TopKGpuTest, LargeInputs) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(301);
  for (uint32_t n : {(1u << 20) + 3, 100000u}) {
    for (int kind : {0, 1, 3}) {
      const std::vector<float> s = MakeScores(rng, n, kind);
      RunCase(n, 4096, s, {});
      RunCase(n, n / 10, s, {});
      if (HasFatalFailure()) return;
    }
  }
}

TEST(TopKGpuTest, KZeroIsANoOp) {
  SKIP_WITHOUT_GPU();
  std::vector<float> s = {1, 2, 3};
  ASSERT_OK_AND_ASSIGN(DeviceBuffer ds, ToDevice(s));
  TopKArgs a;
  a.scores = static_cast<const float*>(ds.data());
  a.num_blocks = 3;
  a.k = 0;
  ASSERT_OK(TopK(Backend::kCuda, a));
  a.k = 4;
  EXPECT_EQ(TopK(Backend::kCuda, a).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::kernels
