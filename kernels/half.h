// IEEE binary16 (f16) and bfloat16 (bf16) stored as uint16_t, and their
// conversions to and from float. Round-to-nearest-even conversions are bit-exact
// with CUDA's __float2half_rn / __float2bfloat16_rn; the directed ones (Down:
// toward -inf, Up: toward +inf) with the _rd / _ru intrinsics. Usable on host and
// device (TIERKV_HD); no CUDA types.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/model_spec.h"
#include "kernels/hd.h"

namespace tierkv::kernels {

TIERKV_HD uint32_t FloatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

TIERKV_HD float BitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

TIERKV_HD float Bf16ToFloat(uint16_t h) { return BitsFloat(static_cast<uint32_t>(h) << 16); }

TIERKV_HD uint16_t FloatToBf16(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

TIERKV_HD float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return BitsFloat(sign | FloatBits(v));
  }
  return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

TIERKV_HD uint16_t FloatToF16(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN / inf
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (ax >= 0x38800000u) {                       // normal f16 (>= 2^-14)
    uint32_t r = ax - 0x38000000u;               // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return sign | static_cast<uint16_t>(r >> 13);
  }
  const uint32_t exp = ax >> 23;
  if (exp < 102) return sign;  // below 2^-25: rounds to zero
  // Subnormal f16: value in units of 2^-24 is mant >> shift, rounded to nearest even.
  const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exp;  // in [14, 24]
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return sign | static_cast<uint16_t>(q);
}

// The neighbouring 16-bit float toward -inf / +inf (sign-magnitude stepping).
// REQUIRES: h is not NaN and not already the extreme (-inf for Down, +inf for Up).
TIERKV_HD uint16_t Half16NextDown(uint16_t h) {
  if (h == 0x0000u) return 0x8001u;
  return (h & 0x8000u) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h - 1);
}
TIERKV_HD uint16_t Half16NextUp(uint16_t h) {
  if (h == 0x8000u) return 0x0001u;
  return (h & 0x8000u) ? static_cast<uint16_t>(h - 1) : static_cast<uint16_t>(h + 1);
}

// Largest bf16/f16 <= f, and smallest >= f (f not NaN).
TIERKV_HD uint16_t FloatToBf16Down(float f) {
  const uint16_t r = FloatToBf16(f);
  return Bf16ToFloat(r) > f ? Half16NextDown(r) : r;
}
TIERKV_HD uint16_t FloatToBf16Up(float f) {
  const uint16_t r = FloatToBf16(f);
  return Bf16ToFloat(r) < f ? Half16NextUp(r) : r;
}
TIERKV_HD uint16_t FloatToF16Down(float f) {
  const uint16_t r = FloatToF16(f);
  return F16ToFloat(r) > f ? Half16NextDown(r) : r;
}
TIERKV_HD uint16_t FloatToF16Up(float f) {
  const uint16_t r = FloatToF16(f);
  return F16ToFloat(r) < f ? Half16NextUp(r) : r;
}

// Element i of an array of `dtype` as float. REQUIRES: data holds > i elements.
inline float LoadAsFloat(const void* data, DType dtype, size_t i) {
  switch (dtype) {
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF32:
      break;
  }
  return static_cast<const float*>(data)[i];
}

// out[0, n) = elements [offset, offset + n) of an array of `dtype`, as floats.
// The type switch sits outside the loop so that the loops vectorize.
inline void LoadRowAsFloat(const void* data, DType dtype, size_t offset, size_t n, float* out) {
  switch (dtype) {
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + offset;
      for (size_t i = 0; i < n; ++i) out[i] = F16ToFloat(p[i]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(data) + offset;
      for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(p[i]);
      return;
    }
    case DType::kF32:
      break;
  }
  memcpy(out, static_cast<const float*>(data) + offset, n * sizeof(float));
}

// Rounding used when a float is stored into a narrower dtype.
enum class Rounding : uint8_t { kNearest, kDown, kUp };

// Stores v as element i of an array of `dtype` with the given rounding.
inline void StoreFromFloat(void* data, DType dtype, size_t i, float v, Rounding rounding = Rounding::kNearest) {
  uint16_t h = 0;
  switch (dtype) {
    case DType::kF16:
      h = rounding == Rounding::kDown ? FloatToF16Down(v) : rounding == Rounding::kUp ? FloatToF16Up(v) : FloatToF16(v);
      break;
    case DType::kBF16:
      h = rounding == Rounding::kDown   ? FloatToBf16Down(v)
          : rounding == Rounding::kUp ? FloatToBf16Up(v)
                                      : FloatToBf16(v);
      break;
    case DType::kF32:
      static_cast<float*>(data)[i] = v;
      return;
  }
  static_cast<uint16_t*>(data)[i] = h;
}

// Elements [offset, offset + n) of an array of `dtype` = in[0, n), rounded to nearest.
inline void StoreRowFromFloat(void* data, DType dtype, size_t offset, size_t n, const float* in) {
  switch (dtype) {
    case DType::kF16: {
      uint16_t* p = static_cast<uint16_t*>(data) + offset;
      for (size_t i = 0; i < n; ++i) p[i] = FloatToF16(in[i]);
      return;
    }
    case DType::kBF16: {
      uint16_t* p = static_cast<uint16_t*>(data) + offset;
      for (size_t i = 0; i < n; ++i) p[i] = FloatToBf16(in[i]);
      return;
    }
    case DType::kF32:
      break;
  }
  memcpy(static_cast<float*>(data) + offset, in, n * sizeof(float));
}

}  // namespace tierkv::kernels
