// Rotary position embedding (RoPE) on one head vector, in either pairing style.
// Pair i (0 <= i < head_dim/2) turns by the angle pos * theta^(-2i/head_dim):
// kInterleaved pairs channels (2i, 2i+1), kHalfSplit pairs (i, i + head_dim/2).
// Rotations compose: R(a) R(b) = R(a + b), so R(-pos) undoes R(pos).
#pragma once

#include <cstdint>
#include <vector>

namespace tierkv::index {

// How RoPE pairs channels. kInterleaved: (2i, 2i+1), as llama2.c and GPT-J;
// kHalfSplit: (i, i + head_dim/2), as GPT-NeoX and Hugging Face Llama. The
// values are those of a trace file's rope_style field (docs/trace-format.md).
enum class RopeStyle : uint32_t { kUnknown = 0, kInterleaved = 1, kHalfSplit = 2 };

// theta^(-2 pair / head_dim): the angular speed of one pair, radians per token.
double RopeFrequency(uint32_t pair, uint32_t head_dim, double theta);

// cos/sin of every pair for one position, computed once and applied to many heads.
class RopeAngles {
 public:
  // REQUIRES: head_dim even, theta > 0. pos may be negative (inverse rotation).
  RopeAngles(uint32_t head_dim, double theta);
  void SetPosition(double pos);
  // Rotates vec [head_dim] in place. REQUIRES: style is kInterleaved or kHalfSplit.
  void Apply(float* vec, RopeStyle style) const;

 private:
  uint32_t head_dim_;
  std::vector<double> freq_;  // [head_dim/2]
  std::vector<float> cos_, sin_;
};

}  // namespace tierkv::index
