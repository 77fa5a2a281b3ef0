// Helpers shared by the kernels unit tests (tests/unit/kernels_*) and the GPU
// tests (tests/gpu/): seeded random inputs in every dtype, and comparisons.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/model_spec.h"
#include "kernels/half.h"

namespace tierkv::kernels::testing {

// Uniform floats in [lo, hi).
inline std::vector<float> RandomFloats(std::mt19937_64& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Values stored in `dtype` (raw bytes, DTypeBytes(dtype) per element).
struct TypedArray {
  DType dtype = DType::kF32;
  size_t n = 0;
  std::vector<uint8_t> bytes;
  const void* data() const { return bytes.data(); }
  void* data() { return bytes.data(); }
  size_t size_bytes() const { return bytes.size(); }
  float at(size_t i) const { return LoadAsFloat(bytes.data(), dtype, i); }
};

// Stores `values` (rounded to nearest) in `dtype`.
inline TypedArray ToTyped(const std::vector<float>& values, DType dtype) {
  TypedArray a;
  a.dtype = dtype;
  a.n = values.size();
  a.bytes.resize(values.size() * DTypeBytes(dtype));
  for (size_t i = 0; i < values.size(); ++i) StoreFromFloat(a.bytes.data(), dtype, i, values[i]);
  return a;
}

inline TypedArray RandomTyped(std::mt19937_64& rng, size_t n, DType dtype, float lo = -1.f, float hi = 1.f) {
  return ToTyped(RandomFloats(rng, n, lo, hi), dtype);
}

// The values actually stored in a typed array, as floats.
inline std::vector<float> ToFloats(const TypedArray& a) {
  std::vector<float> v(a.n);
  for (size_t i = 0; i < a.n; ++i) v[i] = a.at(i);
  return v;
}

inline constexpr DType kAllDTypes[] = {DType::kF16, DType::kBF16, DType::kF32};

}  // namespace tierkv::kernels::testing
