#include "common/checksum.h"

#include <xxhash.h>

namespace tierkv {

uint64_t Checksum64(const void* data, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(data, n, seed);
}

uint64_t PrefixBlockHash(uint64_t parent_hash, std::span<const int32_t> token_ids) {
  return XXH3_64bits_withSeed(token_ids.data(), token_ids.size_bytes(), parent_hash);
}

}  // namespace tierkv
