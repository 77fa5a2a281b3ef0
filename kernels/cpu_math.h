// PRIVATE to kernels/: small CPU loops shared by the CPU references, written so
// that GCC vectorizes them at -O3 without -ffast-math (eight independent partial
// sums instead of one serial f32 reduction).
#pragma once

#include <algorithm>
#include <cstddef>

namespace tierkv::kernels::internal {

inline float Sum8(const float (&acc)[8]) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// sum_i a[i] * b[i]
inline float DotF32(const float* a, const float* b, size_t n) {
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0.f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return Sum8(acc) + tail;
}

// sum_i max(q[i] * lo[i], q[i] * hi[i])  (the Quest bound of q . k for lo <= k <= hi)
inline float BoundF32(const float* q, const float* lo, const float* hi, size_t n) {
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += std::max(q[i + j] * lo[i + j], q[i + j] * hi[i + j]);
  }
  float tail = 0.f;
  for (; i < n; ++i) tail += std::max(q[i] * lo[i], q[i] * hi[i]);
  return Sum8(acc) + tail;
}

// y[i] += a * x[i]
inline void AxpyF32(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace tierkv::kernels::internal
