// Vector helpers shared by the synthetic workload generators (synthetic.cc: v1/v2,
// needle_workload.cc: the needles family): random unit vectors on chosen channels,
// the channels of RoPE pairs, y += a * x.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "index/rng.h"
#include "index/rope.h"

namespace tierkv::index::workload {

// The two channels of RoPE pair `pair`.
inline void PairChannels(RopeStyle style, uint32_t head_dim, uint32_t pair, uint32_t* a, uint32_t* b) {
  if (style == RopeStyle::kInterleaved) {
    *a = 2 * pair, *b = 2 * pair + 1;
  } else {
    *a = pair, *b = pair + head_dim / 2;
  }
}

// The channels of RoPE pairs [first, last), two per pair.
inline std::vector<uint32_t> PairsChannels(RopeStyle style, uint32_t head_dim, uint32_t first, uint32_t last) {
  std::vector<uint32_t> c;
  for (uint32_t i = first; i < last; ++i) {
    uint32_t a = 0, b = 0;
    PairChannels(style, head_dim, i, &a, &b);
    c.push_back(a);
    c.push_back(b);
  }
  return c;
}

// A random unit vector supported on the given channels.
inline std::vector<float> UnitOn(const std::vector<uint32_t>& channels, uint32_t dim, Rng* rng) {
  std::vector<float> v(dim, 0.f);
  double n2 = 0.0;
  for (uint32_t c : channels) {
    v[c] = static_cast<float>(rng->Normal());
    n2 += double(v[c]) * v[c];
  }
  const float inv = static_cast<float>(1.0 / std::sqrt(std::max(n2, 1e-30)));
  for (float& x : v) x *= inv;
  return v;
}

inline void Axpy(float a, const std::vector<float>& x, float* y) {
  for (size_t i = 0; i < x.size(); ++i) y[i] += a * x[i];
}

}  // namespace tierkv::index::workload
