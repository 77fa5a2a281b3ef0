// xxh3-64 compiled for avx512 (this file only is built with -mavx512f); called by
// payload_checksum.cc when the CPU has it.
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX512
#include <xxhash.h>

#include "storage/payload_checksum.h"

namespace tierkv::storage::internal {

uint64_t PayloadChecksumAvx512(const void* data, size_t n) { return XXH3_64bits_withSeed(data, n, 0); }

}  // namespace tierkv::storage::internal
