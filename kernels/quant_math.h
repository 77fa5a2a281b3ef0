// PRIVATE to kernels/: the per-element arithmetic of quant.h, shared by the CPU
// reference and the CUDA kernels so that both produce identical codes. Device
// code uses the _rn intrinsics so that nvcc cannot contract into FMAs.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/hd.h"
#include "kernels/quant.h"

namespace tierkv::kernels::internal {

TIERKV_HD float QSub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
TIERKV_HD float QMul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TIERKV_HD float QAdd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
TIERKV_HD float QDiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// Round half to even. REQUIRES: |v| < 2^22 (codes are clamped to +-255 anyway).
// On the host, adding and subtracting 1.5 * 2^23 rounds in the FPU's default
// mode without a libm call (valid because the project never builds with
// -ffast-math, which would fold the expression away).
TIERKV_HD float QRint(float v) {
#ifdef __CUDA_ARCH__
  return rintf(v);
#else
  constexpr float kBig = 12582912.f;  // 1.5 * 2^23
  return (v + kBig) - kBig;
#endif
}

// Largest code of a spec (asymmetric: codes are 0..L; symmetric int8: -127..127).
TIERKV_HD int QLevels(QuantBits bits) { return bits == QuantBits::kInt2 ? 3 : 255; }

// Scale of a group from its statistics: lo/hi are min/max (asymmetric) or
// hi = max |x| (symmetric, lo unused).
TIERKV_HD float QScale(bool symmetric, QuantBits bits, float lo, float hi) {
  return symmetric ? QDiv(hi, 127.f) : QDiv(QSub(hi, lo), static_cast<float>(QLevels(bits)));
}

TIERKV_HD float QInverse(float scale) { return scale > 0.f ? QDiv(1.f, scale) : 0.f; }

// Code of x in a group (mn = 0 when symmetric).
TIERKV_HD int QEncode(float x, float mn, float inv, bool symmetric, QuantBits bits) {
  const float q = QRint(QMul(QSub(x, mn), inv));
  const float lo = symmetric ? -127.f : 0.f, hi = symmetric ? 127.f : static_cast<float>(QLevels(bits));
  return static_cast<int>(q < lo ? lo : (q > hi ? hi : q));
}

TIERKV_HD float QDecode(int q, float mn, float scale) { return QAdd(mn, QMul(static_cast<float>(q), scale)); }

// Group of element (r, t, c) is QRowGroupBase(r, t) + c / G (kPerToken) or
// QRowGroupBase(r, t) + c (kPerChannel).
TIERKV_HD uint64_t QRowGroupBase(const QuantSpec& s, uint32_t tokens, uint32_t channels, uint32_t r, uint32_t t) {
  const uint32_t G = s.group_size;
  if (s.axis == QuantAxis::kPerToken) return (uint64_t{r} * tokens + t) * ((channels + G - 1) / G);
  return (uint64_t{r} * ((tokens + G - 1) / G) + t / G) * channels;
}

// Group of element (r, t, c); see quant.h.
TIERKV_HD uint64_t QGroup(const QuantSpec& s, uint32_t tokens, uint32_t channels, uint32_t r, uint32_t t,
                          uint32_t c) {
  const uint32_t G = s.group_size;
  if (s.axis == QuantAxis::kPerToken) {
    const uint64_t per_row = (channels + G - 1) / G;
    return (uint64_t{r} * tokens + t) * per_row + c / G;
  }
  const uint64_t per_col = (tokens + G - 1) / G;
  return (uint64_t{r} * per_col + t / G) * channels + c;
}

}  // namespace tierkv::kernels::internal
