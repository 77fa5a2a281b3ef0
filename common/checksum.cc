#include "common/checksum.h"

// xxHash compiled in (header-only): libtierkv.a and .so need no libxxhash at link time.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace tierkv {

uint64_t Checksum64(const void* data, size_t n, uint64_t seed) {
  return XXH3_64bits_withSeed(data, n, seed);
}

uint64_t PrefixBlockHash(uint64_t parent_hash, std::span<const int32_t> token_ids) {
  return XXH3_64bits_withSeed(token_ids.data(), token_ids.size_bytes(), parent_hash);
}

std::vector<uint64_t> PrefixBlockHashes(std::span<const int32_t> tokens, uint32_t block_tokens) {
  std::vector<uint64_t> out;
  if (block_tokens == 0) return out;
  uint64_t h = 0;
  for (size_t b = 0; (b + 1) * block_tokens <= tokens.size(); ++b) {
    h = PrefixBlockHash(h, tokens.subspan(b * block_tokens, block_tokens));
    if (h == 0) h = 1;
    out.push_back(h);
  }
  return out;
}

}  // namespace tierkv
