#include "index/rope.h"

#include <cmath>

#include "common/status.h"

namespace tierkv::index {

double RopeFrequency(uint32_t pair, uint32_t head_dim, double theta) {
  return std::pow(theta, -2.0 * static_cast<double>(pair) / static_cast<double>(head_dim));
}

RopeAngles::RopeAngles(uint32_t head_dim, double theta)
    : head_dim_(head_dim), freq_(head_dim / 2), cos_(head_dim / 2, 1.f), sin_(head_dim / 2, 0.f) {
  TIERKV_CHECK(head_dim % 2 == 0 && theta > 0);
  for (uint32_t i = 0; i < head_dim / 2; ++i) freq_[i] = RopeFrequency(i, head_dim, theta);
}

void RopeAngles::SetPosition(double pos) {
  for (size_t i = 0; i < freq_.size(); ++i) {
    const double a = pos * freq_[i];  // in double: positions reach 1e6 and more
    cos_[i] = static_cast<float>(std::cos(a));
    sin_[i] = static_cast<float>(std::sin(a));
  }
}

void RopeAngles::Apply(float* vec, RopeStyle style) const {
  TIERKV_CHECK(style == RopeStyle::kInterleaved || style == RopeStyle::kHalfSplit);
  const uint32_t half = head_dim_ / 2;
  for (uint32_t i = 0; i < half; ++i) {
    float* a = style == RopeStyle::kInterleaved ? &vec[2 * i] : &vec[i];
    float* b = style == RopeStyle::kInterleaved ? &vec[2 * i + 1] : &vec[i + half];
    const float x = *a, y = *b;
    *a = x * cos_[i] - y * sin_[i];
    *b = x * sin_[i] + y * cos_[i];
  }
}

}  // namespace tierkv::index
