// Checksums and hashes (xxh3, 64 bits). Used for slot headers on the D tier,
// content hashes of prefix blocks, and anywhere bytes must be verified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tierkv {

// xxh3-64 of n bytes at data, with the given seed.
uint64_t Checksum64(const void* data, size_t n, uint64_t seed = 0);

// Content hash of a full prefix block: chain of the parent block's hash and the
// block's token ids, so equal prefixes give equal hashes (DESIGN §1, block key).
uint64_t PrefixBlockHash(uint64_t parent_hash, std::span<const int32_t> token_ids);

// The content hashes of the full blocks of `tokens` (block_tokens each), chained from
// the first block. Never 0 (0 means "not a prefix block" on the wire).
std::vector<uint64_t> PrefixBlockHashes(std::span<const int32_t> tokens, uint32_t block_tokens);

}  // namespace tierkv
