// Quantize/Dequantize: CUDA against the CPU reference. Both use quant_math.h's
// non-contracted f32 arithmetic, so the packed bytes (codes, scales, minimums)
// and the dequantized values must be identical (tolerance 0) for every spec and
// dtype, including group sizes that do not divide the shape and 2-bit tails.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/quant.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::ToDevice;
using testing::TypedArray;

void RunCase(const QuantSpec& spec, const QuantShape& sh, DType dt, std::mt19937_64& rng) {
  SCOPED_TRACE(::testing::Message() << "bits=" << int(spec.bits) << " sym=" << spec.symmetric << " axis="
                                    << int(spec.axis) << " G=" << spec.group_size << " shape=" << sh.rows << "x"
                                    << sh.tokens << "x" << sh.channels << " dtype=" << DTypeName(dt));
  auto layout = GetQuantLayout(spec, sh);
  ASSERT_OK(layout.status());
  const QuantLayout l = *layout;
  // Values with a shared offset and an outlier channel, like real keys.
  std::vector<float> v = testing::RandomFloats(rng, l.elements, -2.f, 2.f);
  for (size_t i = 0; i < v.size(); i += sh.channels) v[i] += 20.f;
  TypedArray x = testing::ToTyped(v, dt);
  std::vector<uint32_t> cpu_words((l.total_bytes + 3) / 4, 0);
  auto* cpu_packed = reinterpret_cast<uint8_t*>(cpu_words.data());
  ASSERT_OK(Quantize(Backend::kCpu, {spec, sh, dt, x.data(), cpu_packed}));
  TypedArray cpu_y = testing::RandomTyped(rng, l.elements, dt);
  ASSERT_OK(Dequantize(Backend::kCpu, {spec, sh, dt, cpu_packed, cpu_y.data()}));

  const size_t guard = 64;
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dx, ToDevice(x.data(), x.size_bytes()));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dp, testing::PoisonedDevice(l.total_bytes + guard));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dy, testing::PoisonedDevice(x.size_bytes() + guard));
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  ASSERT_OK(Quantize(Backend::kCuda, {spec, sh, dt, dx.data(), dp.data()}, &stream));
  ASSERT_OK(Dequantize(Backend::kCuda, {spec, sh, dt, dp.data(), dy.data()}, &stream));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> packed, FromDevice<uint8_t>(dp.data(), l.total_bytes + guard));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> y, FromDevice<uint8_t>(dy.data(), x.size_bytes() + guard));
  for (size_t i = 0; i < l.total_bytes; ++i) {
    ASSERT_EQ(packed[i], cpu_packed[i]) << "packed byte " << i << (i < l.code_bytes ? " (codes)" : " (scales/mins)");
  }
  for (size_t i = l.total_bytes; i < l.total_bytes + guard; ++i) ASSERT_EQ(packed[i], 0x7f) << "overrun " << i;
  for (size_t i = 0; i < l.elements; ++i)
    ASSERT_EQ(LoadAsFloat(y.data(), dt, i), cpu_y.at(i)) << "dequantized element " << i;
  for (size_t i = x.size_bytes(); i < x.size_bytes() + guard; ++i) ASSERT_EQ(y[i], 0x7f) << "overrun " << i;
}

TEST(QuantGpuTest, MatchesCpuExactly) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(400);
  const QuantShape shapes[] = {{1, 1, 1}, {3, 5, 7}, {2, 37, 100}, {8, 32, 128}, {32, 128, 64}};
  for (const QuantShape& sh : shapes) {
    for (uint32_t g : {1u, 3u, 32u, 128u}) {
      for (QuantAxis axis : {QuantAxis::kPerToken, QuantAxis::kPerChannel}) {
        for (DType dt : testing::kAllDTypes) {
          RunCase({QuantBits::kInt8, true, axis, g}, sh, dt, rng);
          RunCase({QuantBits::kInt8, false, axis, g}, sh, dt, rng);
          RunCase({QuantBits::kInt2, false, axis, g}, sh, dt, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(QuantGpuTest, ConstantGroupsDecodeExactly) {
  SKIP_WITHOUT_GPU();
  // scale == 0 groups (all equal values) must not divide by zero.
  std::mt19937_64 rng(401);
  const QuantShape sh{2, 16, 32};
  std::vector<float> v(size_t{2} * 16 * 32, 0.75f);
  TypedArray x = testing::ToTyped(v, DType::kF32);
  for (const QuantSpec& spec : {KiviKeySpec(16), KiviValueSpec(16), QuantSpec{QuantBits::kInt8, true}}) {
    auto l = GetQuantLayout(spec, sh);
    ASSERT_OK_AND_ASSIGN(DeviceBuffer dx, ToDevice(x.data(), x.size_bytes()));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer dp, DeviceBuffer::Allocate(l->total_bytes));
    ASSERT_OK_AND_ASSIGN(DeviceBuffer dy, DeviceBuffer::Allocate(x.size_bytes()));
    ASSERT_OK(Quantize(Backend::kCuda, {spec, sh, DType::kF32, dx.data(), dp.data()}));
    ASSERT_OK(Dequantize(Backend::kCuda, {spec, sh, DType::kF32, dp.data(), dy.data()}));
    ASSERT_OK_AND_ASSIGN(std::vector<float> y, FromDevice<float>(dy.data(), v.size()));
    for (float f : y) ASSERT_NEAR(f, 0.75f, spec.symmetric ? 0.75f / 127 / 2 * 1.001f : 0.f);
  }
}

}  // namespace
}  // namespace tierkv::kernels
