// Keys and values of blocks in R (the remote tier on a Redis Cluster).
//
// Key:   "tkv1:{<fingerprint 32 hex><block hash 16 hex>}:<layer>"
//        The fingerprint (NamespaceFingerprint) names the namespace, the model
//        identity and the model shape: two models never share a key. The hash tag
//        puts every layer of one prefix block in one cluster slot (one node).
// Value: the D tier's 64-byte SlotHeader (storage/slot_format.h: magic, version,
//        encoding, key, generation, length, xxh3 of the payload, xxh3 of the
//        header) with slot = kRemoteSlot, key = {ns 0, layer, seq = block hash},
//        generation = the fingerprint's low half, then the payload. A fetched value
//        is served only when every field matches what was asked and both checksums
//        verify.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/model_spec.h"
#include "common/status.h"

namespace tierkv::storage::remote {

inline constexpr uint32_t kRemoteSlot = 0xFFFFFFF0u;  // marks an R value (never a D slot id)

struct Fingerprint {
  uint64_t hi = 0, lo = 0;
  bool operator==(const Fingerprint&) const = default;
};

// 128-bit xxh3 of (format version, namespace name, model identity, model shape).
Fingerprint NamespaceFingerprint(std::string_view ns_name, std::string_view model_id, const ModelSpec& model);

struct RemoteBlockKey {
  Fingerprint fp;
  uint64_t hash = 0;  // the block's prefix hash (non-zero)
  uint32_t layer = 0;
};

std::string RedisKey(const RemoteBlockKey& key);
// Header + payload (block: the raw block bytes).
std::string EncodeRemoteValue(const RemoteBlockKey& key, std::span<const std::byte> block);
// Verifies value against key: a raw payload of exactly block_bytes, every header
// field as asked, both checksums. kCorruption naming the first field that disagrees.
Status VerifyRemoteValue(const RemoteBlockKey& key, std::string_view value, size_t block_bytes);
// The payload of a verified value (no copy).
std::span<const std::byte> RemotePayload(std::string_view value);
// VerifyRemoteValue, then copies the payload into out (out.size() = block bytes).
Status DecodeRemoteValue(const RemoteBlockKey& key, std::string_view value, std::span<std::byte> out);

}  // namespace tierkv::storage::remote
