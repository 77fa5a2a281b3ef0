// f16 / bf16 conversions of kernels/half.h, checked against the compiler's
// _Float16 (IEEE binary16) and against exhaustive properties.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/half.h"

namespace tierkv::kernels {
namespace {

float NextFloat(float f) { return std::nextafter(f, std::numeric_limits<float>::infinity()); }

TEST(KernelsHalfTest, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(h & 0x7c00u, 0x7c00u);
      continue;
    }
    EXPECT_EQ(FloatToF16(f), h) << std::hex << h;
    EXPECT_EQ(FloatToF16Down(f), h);
    EXPECT_EQ(FloatToF16Up(f), h);
  }
}

TEST(KernelsHalfTest, Bf16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToBf16(f), h) << std::hex << h;
    EXPECT_EQ(FloatToBf16Down(f), h);
    EXPECT_EQ(FloatToBf16Up(f), h);
  }
}

#if defined(__FLT16_MAX__)
TEST(KernelsHalfTest, F16MatchesCompilerFloat16) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    // Random bit patterns cover subnormals, ties, overflow and every exponent.
    const float f = BitsFloat(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    ASSERT_EQ(FloatToF16(f), ref_bits) << f;
    ASSERT_EQ(F16ToFloat(ref_bits), static_cast<float>(ref));
  }
  // Exact ties around the subnormal and overflow boundaries.
  for (float f : {65504.f, 65519.f, 65520.f, 5.9604645e-8f, 2.9802322e-8f, 8.940697e-8f, 6.1035156e-5f}) {
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    EXPECT_EQ(FloatToF16(f), ref_bits) << f;
  }
}
#endif

TEST(KernelsHalfTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3f80);
  EXPECT_EQ(FloatToBf16(NextFloat(1.00390625f)), 0x3f81);
  // 1 + 3*2^-8 is halfway between 0x3f81 and 0x3f82: ties to even (0x3f82).
  EXPECT_EQ(FloatToBf16(1.01171875f), 0x3f82);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
}

TEST(KernelsHalfTest, DirectedRoundingBracketsTheValue) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 200000; ++i) {
    const float f = i % 2 ? d(rng) : d(rng) * 1e-6f;
    const float bd = Bf16ToFloat(FloatToBf16Down(f)), bu = Bf16ToFloat(FloatToBf16Up(f));
    ASSERT_LE(bd, f);
    ASSERT_GE(bu, f);
    ASSERT_TRUE(bd == bu || Half16NextUp(FloatToBf16Down(f)) == FloatToBf16Up(f)) << f;
    const float hd = F16ToFloat(FloatToF16Down(f)), hu = F16ToFloat(FloatToF16Up(f));
    ASSERT_LE(hd, f);
    ASSERT_GE(hu, f);
    ASSERT_TRUE(hd == hu || Half16NextUp(FloatToF16Down(f)) == FloatToF16Up(f)) << f;
  }
  // Beyond the f16 range: down saturates to the largest finite, up to infinity.
  EXPECT_EQ(FloatToF16Down(1e6f), 0x7bff);
  EXPECT_EQ(FloatToF16Up(1e6f), 0x7c00);
  EXPECT_EQ(FloatToF16Up(-1e6f), 0xfbff);
  // Around zero.
  EXPECT_EQ(FloatToF16Down(-1e-30f), 0x8001);
  EXPECT_EQ(FloatToF16Up(1e-30f), 0x0001);
  EXPECT_EQ(FloatToBf16Down(-1e-45f), 0x8001);
}

TEST(KernelsHalfTest, LoadAndStoreEveryDType) {
  float f32[2];
  uint16_t h16[2];
  StoreFromFloat(f32, DType::kF32, 1, 3.25f);
  EXPECT_EQ(LoadAsFloat(f32, DType::kF32, 1), 3.25f);
  StoreFromFloat(h16, DType::kF16, 1, 3.25f);
  EXPECT_EQ(LoadAsFloat(h16, DType::kF16, 1), 3.25f);
  StoreFromFloat(h16, DType::kBF16, 0, 3.25f);
  EXPECT_EQ(LoadAsFloat(h16, DType::kBF16, 0), 3.25f);
  StoreFromFloat(h16, DType::kBF16, 0, 0.1f, Rounding::kDown);
  EXPECT_LE(LoadAsFloat(h16, DType::kBF16, 0), 0.1f);
  StoreFromFloat(h16, DType::kBF16, 0, 0.1f, Rounding::kUp);
  EXPECT_GE(LoadAsFloat(h16, DType::kBF16, 0), 0.1f);
}

}  // namespace
}  // namespace tierkv::kernels
