// Validation, dispatch and the CPU reference of score.h.
#include "kernels/score.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cpu_simd.h"
#include "kernels/half.h"
#include "kernels/launch.h"

namespace tierkv::kernels {
namespace {

constexpr size_t Align256(size_t n) { return (n + 255) & ~size_t{255}; }

Status Validate(const ScoreArgs& a) {
  auto bad = [](const std::string& m) { return InvalidArgument("ScoreBlocks: " + m); };
  if (a.num_kv_heads == 0 || a.num_kv_heads > ModelLimits::kMaxHeads) return bad("num_kv_heads out of range");
  if (a.num_q_heads == 0 || a.num_q_heads > ModelLimits::kMaxHeads || a.num_q_heads % a.num_kv_heads != 0)
    return bad("num_q_heads must be in [1, 1024] and a multiple of num_kv_heads");
  if (a.head_dim == 0 || a.head_dim > ModelLimits::kMaxHeadDim) return bad("head_dim out of range");
  if (a.num_blocks == 0 || a.num_blocks > kMaxScoreBlocks) return bad("num_blocks out of range");
  if (uint64_t{a.num_q_heads} * a.num_blocks > (uint64_t{1} << 28))
    return bad("num_q_heads * num_blocks exceeds 2^28 per-head scores");
  if (!(a.softmax_scale >= 0.f) || std::isinf(a.softmax_scale)) return bad("softmax_scale must be finite and >= 0");
  if (a.scores == nullptr) return bad("null scores");
  switch (a.mode) {
    case ScoreMode::kMinMax:
      if (a.query == nullptr || a.min_keys == nullptr || a.max_keys == nullptr)
        return bad("kMinMax needs query, min_keys and max_keys");
      return OkStatus();
    case ScoreMode::kMean:
      if (a.query == nullptr || a.mean_keys == nullptr) return bad("kMean needs query and mean_keys");
      return OkStatus();
    case ScoreMode::kVqLut: {
      if (a.codes == nullptr || a.lut == nullptr) return bad("kVqLut needs codes and lut");
      if (a.block_tokens == 0 || a.block_tokens > ModelLimits::kMaxBlockTokens) return bad("block_tokens out of range");
      if (a.num_subspaces == 0 || a.num_subspaces > kMaxVqSubspaces) return bad("num_subspaces out of range");
      const uint64_t full = uint64_t{a.num_blocks} * a.block_tokens;
      if (a.num_tokens > full || a.num_tokens <= full - a.block_tokens)
        return bad("num_tokens " + std::to_string(a.num_tokens) + " inconsistent with " +
                   std::to_string(a.num_blocks) + " blocks of " + std::to_string(a.block_tokens));
      if (a.vq_reduce != VqReduce::kMax && a.vq_reduce != VqReduce::kLogSumExp) return bad("unknown vq_reduce");
      return OkStatus();
    }
  }
  return bad("unknown mode");
}

// s[h * B + b] for the summary modes: f32 and f16 rows are read in place (scoring is
// bound by reading the summaries), bf16 rows converted a chunk of blocks at a time.
void SummaryScoresCpu(const ScoreArgs& a, float* s) {
  const size_t B = a.num_blocks, per_block = size_t{a.num_kv_heads} * a.head_dim;
  const bool minmax = a.mode == ScoreMode::kMinMax;
  const void* lo = minmax ? a.min_keys : a.mean_keys;
  const void* hi = minmax ? a.max_keys : nullptr;
  internal::SummaryRowsArgs r;
  r.query = a.query;
  r.num_q_heads = a.num_q_heads;
  r.num_kv_heads = a.num_kv_heads;
  r.head_dim = a.head_dim;
  r.s_stride = B;
  if (a.summary_dtype == DType::kF32 || a.summary_dtype == DType::kF16) {
    r.lo = lo;
    r.hi = hi;
    r.f16 = a.summary_dtype == DType::kF16;
    r.num_blocks = B;
    r.s = s;
    internal::SummaryRowScores(r);
    return;
  }
  constexpr size_t kChunk = 64;
  std::vector<float> lo_rows(kChunk * per_block), hi_rows(hi != nullptr ? kChunk * per_block : 0);
  for (size_t b0 = 0; b0 < B; b0 += kChunk) {
    const size_t n = std::min(kChunk, B - b0);
    LoadRowAsFloat(lo, a.summary_dtype, b0 * per_block, n * per_block, lo_rows.data());
    if (hi != nullptr) LoadRowAsFloat(hi, a.summary_dtype, b0 * per_block, n * per_block, hi_rows.data());
    r.lo = lo_rows.data();
    r.hi = hi != nullptr ? hi_rows.data() : nullptr;
    r.num_blocks = n;
    r.s = s + b0;
    internal::SummaryRowScores(r);
  }
}

void VqScoresCpu(const ScoreArgs& a, float scale, float* s) {
  const size_t B = a.num_blocks, T = a.block_tokens, M = a.num_subspaces, G = a.num_q_heads / a.num_kv_heads;
  std::vector<float> tok(T);
  for (size_t b = 0; b < B; ++b) {
    const size_t nt = std::min<size_t>(T, a.num_tokens - b * T);
    for (size_t g = 0; g < a.num_kv_heads; ++g) {
      const uint8_t* codes = a.codes + (b * a.num_kv_heads + g) * T * M;
      for (size_t h = g * G; h < (g + 1) * G; ++h) {
        const float* lut = a.lut + h * M * 256;
        for (size_t t = 0; t < nt; ++t) {
          const uint8_t* c = codes + t * M;
          float v = 0.f;
          for (size_t m = 0; m < M; ++m) v += lut[m * 256 + c[m]];
          tok[t] = v;
        }
        float mx = *std::max_element(tok.begin(), tok.begin() + nt);
        if (a.vq_reduce == VqReduce::kLogSumExp) {
          float l = 0.f;
          for (size_t t = 0; t < nt; ++t) l += std::exp(scale * (tok[t] - mx));
          mx += std::log(l) / scale;
        }
        s[h * B + b] = mx;
      }
    }
  }
}

void CombineCpu(const ScoreArgs& a, float scale, const float* s) {
  const size_t B = a.num_blocks, H = a.num_q_heads;
  float* out = a.scores;
  if (a.combine == HeadCombine::kMax) {
    std::copy(s, s + B, out);
    for (size_t h = 1; h < H; ++h)
      for (size_t b = 0; b < B; ++b) out[b] = std::max(out[b], s[h * B + b]);
    return;
  }
  std::fill(out, out + B, 0.f);
  std::vector<float> p(B);
  for (size_t h = 0; h < H; ++h) {
    const float* sh = s + h * B;
    const float mx = *std::max_element(sh, sh + B);
    const float z = internal::ExpShiftedSum(sh, B, scale, mx, p.data());
    internal::ScaledAdd(1.f / z, p.data(), out, B);
  }
}

Status ScoreCpu(const ScoreArgs& a) {
  const float scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / std::sqrt(static_cast<float>(a.head_dim));
  std::vector<float> local;
  float* s = a.head_scores;
  if (s == nullptr) {
    local.resize(size_t{a.num_q_heads} * a.num_blocks);
    s = local.data();
  }
  if (a.mode == ScoreMode::kVqLut) {
    VqScoresCpu(a, scale, s);
  } else {
    SummaryScoresCpu(a, s);
  }
  CombineCpu(a, scale, s);
  return OkStatus();
}

}  // namespace

size_t ScoreWorkspaceBytes(const ScoreArgs& a) {
  return Align256(size_t{a.num_q_heads} * a.num_blocks * sizeof(float)) +
         Align256(size_t{2} * a.num_q_heads * sizeof(float));
}

Status ScoreBlocks(Backend backend, const ScoreArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "ScoreBlocks"));
  RETURN_IF_ERROR(Validate(args));
  if (backend == Backend::kCuda) return internal::ScoreCuda(args, stream);
  return ScoreCpu(args);
}

}  // namespace tierkv::kernels
