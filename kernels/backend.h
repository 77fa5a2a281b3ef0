// Which implementation a kernel call runs on. Every kernel in kernels/ has a CPU
// reference (kCpu: host pointers, runs synchronously on the calling thread) and a
// CUDA implementation (kCuda: device-accessible pointers, queued on a GpuStream,
// asynchronous) with the same signature:
//   Status Kernel(Backend backend, const KernelArgs& args, GpuStream* stream);
// kCuda returns kNotSupported when CUDA is not compiled in or no device exists.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace tierkv::kernels {

enum class Backend : uint8_t { kCpu = 0, kCuda = 1 };

std::string_view BackendName(Backend backend);  // "cpu" | "cuda"
// kCuda when a CUDA device is visible, else kCpu.
Backend DefaultBackend();
// OK for kCpu; for kCuda OK when a device exists, else kNotSupported naming `what`.
Status CheckBackend(Backend backend, std::string_view what);

// The vector unit kCpu's scoring loops run on in this process: "avx512", "avx2"
// or "portable" — the widest this CPU has, or the one the environment variable
// TIERKV_CPU_SIMD names (portable | avx2 | avx512; one the CPU lacks is ignored
// with a warning on stderr). Chosen once, at the first call of any kCpu scoring.
std::string_view CpuVectorUnit();

}  // namespace tierkv::kernels
