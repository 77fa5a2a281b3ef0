// The D tier's payload checksum: xxh3-64, exactly Checksum64 (common/checksum.h),
// computed with the widest vector unit the CPU has (AVX-512, AVX2, else the build's
// baseline SSE2), chosen once at run time. xxh3's value does not depend on the
// vector width, so slabs written by either path verify with the other.
//
// Why: the payload checksum is the D tier's main per-byte CPU cost (every write and
// every read touches each byte once); the baseline build compiles xxh3 for SSE2,
// which runs at about half the speed of the AVX2 path (BENCHMARKS.md, D tier).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tierkv::storage {

// == Checksum64(data, n, 0).
uint64_t PayloadChecksum(const void* data, size_t n);

// "avx512", "avx2" or "baseline": the path PayloadChecksum takes on this CPU.
std::string_view PayloadChecksumPath();

namespace internal {
// Defined in payload_checksum_avx2.cc / _avx512.cc (x86-64 builds only).
uint64_t PayloadChecksumAvx2(const void* data, size_t n);
uint64_t PayloadChecksumAvx512(const void* data, size_t n);
}  // namespace internal

}  // namespace tierkv::storage
