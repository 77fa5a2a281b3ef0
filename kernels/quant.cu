// CUDA Quantize/Dequantize (quant.h). Quantize runs two kernels on one stream:
// group statistics (one thread per group; per-channel groups are coalesced across
// threads), then codes (one thread per int8 element, or per 2-bit byte of four
// elements, so no two threads write the same byte). The arithmetic is
// quant_math.h's, shared with the CPU reference, so codes match exactly.
#include <algorithm>

#include "kernels/cuda_util.cuh"
#include "kernels/launch.h"
#include "kernels/quant_math.h"

namespace tierkv::kernels::internal {
namespace {

constexpr int kThreads = 256;

struct Dims {
  uint32_t rows, tokens, channels;
};

__device__ __forceinline__ void StoreRn(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreRn(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void StoreRn(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    QuantStatsKernel(QuantSpec spec, Dims d, uint64_t num_groups, const T* __restrict__ in,
                     float* __restrict__ scales, float* __restrict__ mins) {
  const uint32_t G = spec.group_size;
  for (uint64_t g = uint64_t{blockIdx.x} * kThreads + threadIdx.x; g < num_groups;
       g += uint64_t{gridDim.x} * kThreads) {
    uint64_t first, step;
    uint32_t count;
    if (spec.axis == QuantAxis::kPerToken) {
      const uint64_t per_row = (d.channels + G - 1) / G;
      const uint64_t rt = g / per_row;
      const uint32_t c0 = static_cast<uint32_t>(g - rt * per_row) * G;
      first = rt * d.channels + c0;
      step = 1;
      count = min(G, d.channels - c0);
    } else {
      const uint64_t per_col = (d.tokens + G - 1) / G;
      const uint64_t rc = g / d.channels;
      const uint32_t c = static_cast<uint32_t>(g - rc * d.channels);
      const uint64_t r = rc / per_col;
      const uint32_t t0 = static_cast<uint32_t>(rc - r * per_col) * G;
      first = (r * d.tokens + t0) * d.channels + c;
      step = d.channels;
      count = min(G, d.tokens - t0);
    }
    float lo = INFINITY, hi = spec.symmetric ? 0.f : -INFINITY;
    for (uint32_t j = 0; j < count; ++j) {
      const float x = ToFloat(in[first + j * step]);
      if (spec.symmetric) {
        hi = fmaxf(hi, fabsf(x));
      } else {
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
      }
    }
    scales[g] = QScale(spec.symmetric, spec.bits, lo, hi);
    if (!spec.symmetric) mins[g] = lo;
  }
}

template <typename T>
__device__ __forceinline__ int EncodeElement(const QuantSpec& spec, const Dims& d, const T* in,
                                             const float* scales, const float* mins, uint64_t e) {
  const uint32_t c = static_cast<uint32_t>(e % d.channels);
  const uint64_t rt = e / d.channels;
  const uint32_t t = static_cast<uint32_t>(rt % d.tokens);
  const uint32_t r = static_cast<uint32_t>(rt / d.tokens);
  const uint64_t g = QGroup(spec, d.tokens, d.channels, r, t, c);
  const float inv = QInverse(scales[g]);
  return QEncode(ToFloat(in[e]), spec.symmetric ? 0.f : mins[g], inv, spec.symmetric, spec.bits);
}

// One thread per output byte: an int8 element, or four 2-bit elements.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    QuantCodesKernel(QuantSpec spec, Dims d, uint64_t elements, uint64_t code_bytes, const T* __restrict__ in,
                     const float* __restrict__ scales, const float* __restrict__ mins, uint8_t* __restrict__ out) {
  for (uint64_t j = uint64_t{blockIdx.x} * kThreads + threadIdx.x; j < code_bytes;
       j += uint64_t{gridDim.x} * kThreads) {
    if (spec.bits == QuantBits::kInt8) {
      out[j] = static_cast<uint8_t>(EncodeElement(spec, d, in, scales, mins, j));
    } else {
      uint32_t byte = 0;
      for (uint32_t k = 0; k < 4; ++k) {
        const uint64_t e = 4 * j + k;
        if (e < elements) byte |= static_cast<uint32_t>(EncodeElement(spec, d, in, scales, mins, e)) << (2 * k);
      }
      out[j] = static_cast<uint8_t>(byte);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    DequantKernel(QuantSpec spec, Dims d, uint64_t elements, const uint8_t* __restrict__ codes,
                  const float* __restrict__ scales, const float* __restrict__ mins, T* __restrict__ out) {
  for (uint64_t e = uint64_t{blockIdx.x} * kThreads + threadIdx.x; e < elements;
       e += uint64_t{gridDim.x} * kThreads) {
    const uint32_t c = static_cast<uint32_t>(e % d.channels);
    const uint64_t rt = e / d.channels;
    const uint32_t t = static_cast<uint32_t>(rt % d.tokens);
    const uint32_t r = static_cast<uint32_t>(rt / d.tokens);
    const uint64_t g = QGroup(spec, d.tokens, d.channels, r, t, c);
    int q;
    if (spec.bits == QuantBits::kInt8) {
      q = spec.symmetric ? static_cast<int>(static_cast<int8_t>(codes[e])) : static_cast<int>(codes[e]);
    } else {
      q = (codes[e / 4] >> (2 * (e % 4))) & 3;
    }
    StoreRn(out + e, QDecode(q, spec.symmetric ? 0.f : mins[g], scales[g]));
  }
}

unsigned GridFor(uint64_t work) {
  const uint64_t cap = uint64_t{32} * static_cast<uint64_t>(CurrentDeviceSmCount());
  return static_cast<unsigned>(std::max<uint64_t>(1, std::min<uint64_t>((work + kThreads - 1) / kThreads, cap)));
}

}  // namespace

Status QuantizeCuda(const QuantizeArgs& a, const QuantLayout& l, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.input, "Quantize input"));
  RETURN_IF_ERROR(CheckDeviceAccessible(a.packed, "Quantize packed"));
  const Dims d{a.shape.rows, a.shape.tokens, a.shape.channels};
  auto* out = static_cast<uint8_t*>(a.packed);
  auto* scales = reinterpret_cast<float*>(out + l.scales_offset);
  auto* mins = reinterpret_cast<float*>(out + l.mins_offset);  // unused when symmetric
  const cudaStream_t st = NativeStream(stream);
  // The alignment padding between codes and scales is zeroed like on the CPU.
  if (l.scales_offset > l.code_bytes)
    RETURN_IF_CUDA_ERROR(cudaMemsetAsync(out + l.code_bytes, 0, l.scales_offset - l.code_bytes, st));
  DispatchDType(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(a.input);
    QuantStatsKernel<T><<<GridFor(l.num_groups), kThreads, 0, st>>>(a.spec, d, l.num_groups, in, scales, mins);
    QuantCodesKernel<T><<<GridFor(l.code_bytes), kThreads, 0, st>>>(a.spec, d, l.elements, l.code_bytes, in,
                                                                    scales, mins, out);
  });
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

Status DequantizeCuda(const DequantizeArgs& a, const QuantLayout& l, GpuStream* stream) {
  RETURN_IF_ERROR(CheckDeviceAccessible(a.packed, "Dequantize packed"));
  RETURN_IF_ERROR(CheckDeviceAccessible(a.output, "Dequantize output"));
  const Dims d{a.shape.rows, a.shape.tokens, a.shape.channels};
  const auto* in = static_cast<const uint8_t*>(a.packed);
  const auto* scales = reinterpret_cast<const float*>(in + l.scales_offset);
  const auto* mins = reinterpret_cast<const float*>(in + l.mins_offset);
  DispatchDType(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    DequantKernel<T><<<GridFor(l.elements), kThreads, 0, NativeStream(stream)>>>(a.spec, d, l.elements, in, scales,
                                                                                  mins, static_cast<T*>(a.output));
  });
  RETURN_IF_CUDA_ERROR(cudaGetLastError());
  return OkStatus();
}

}  // namespace tierkv::kernels::internal
