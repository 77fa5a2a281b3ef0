// Keys and values of blocks in R (the remote tier on a Redis Cluster).
//
// Keys: a full prefix block (by content)   "tkv1:{<fingerprint 32 hex><block hash 16 hex>}:<layer>"
//       a block of a closed sequence       "tkv1s:{<fingerprint 32 hex><sequence 16 hex>.<index hex>}:<layer>"
//        The fingerprint (NamespaceFingerprint) names the namespace, the model
//        identity and the model shape: two models never share a key. The hash tag
//        puts every layer of one block position in one cluster slot (one node).
// Value: the D tier's 64-byte SlotHeader (storage/slot_format.h: magic, version,
//        encoding, key, generation, length, xxh3 of the payload, xxh3 of the
//        header) with slot = kRemoteSlot (prefix) or kRemoteSequenceSlot, key =
//        {ns 0, layer, seq = block hash or sequence id, index (sequence blocks)},
//        generation = the fingerprint's low half, then the payload: the raw block
//        (encoding kRaw) or, compressed, kRemoteZstd | element bytes: the block's
//        bytes split into byte planes (byte 0 of every element, then byte 1, ...)
//        and compressed with zstd (a frame with its own content checksum). A fetched
//        value is served only when every field matches what was asked, both
//        checksums verify and a compressed payload decodes to exactly the block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/model_spec.h"
#include "common/status.h"

namespace tierkv::storage::remote {

inline constexpr uint32_t kRemoteSlot = 0xFFFFFFF0u;          // marks an R prefix value (never a D slot id)
inline constexpr uint32_t kRemoteSequenceSlot = 0xFFFFFFF1u;  // marks an R sequence-block value
// Header encoding of a compressed R value: kRemoteZstd | element bytes (1, 2 or 4).
// Never used in a D slot (PayloadEncoding stops well below).
inline constexpr uint8_t kRemoteZstd = 0x40;

// How R values are written. Default: kNone (raw blocks).
enum class RemoteCodec : uint8_t {
  kNone = 0,  // the raw block
  kZstd = 1,  // lossless: byte planes + zstd level 1 (kept raw when not smaller)
};

struct Fingerprint {
  uint64_t hi = 0, lo = 0;
  bool operator==(const Fingerprint&) const = default;
};

// 128-bit xxh3 of (format version, namespace name, model identity, model shape).
Fingerprint NamespaceFingerprint(std::string_view ns_name, std::string_view model_id, const ModelSpec& model);

enum class RemoteKind : uint8_t {
  kPrefix = 0,    // a full prefix block, by (scoped) content hash
  kSequence = 1,  // a block of a closed sequence, by (sequence id, block index)
};

struct RemoteBlockKey {
  Fingerprint fp;
  uint64_t hash = 0;   // kPrefix: the block's prefix hash (non-zero); kSequence: the sequence id
  uint32_t layer = 0;
  uint32_t index = 0;  // kSequence: the block index in the sequence (kPrefix: 0)
  RemoteKind kind = RemoteKind::kPrefix;
};
inline RemoteBlockKey SequenceBlockKey(const Fingerprint& fp, uint64_t seq, uint32_t layer, uint32_t index) {
  return {fp, seq, layer, index, RemoteKind::kSequence};
}

std::string RedisKey(const RemoteBlockKey& key);
// Header + payload (block: the raw block bytes). kZstd: compressed as described
// above with elements of elem_bytes (1, 2 or 4: the model's dtype), or raw when
// that is not smaller.
std::string EncodeRemoteValue(const RemoteBlockKey& key, std::span<const std::byte> block,
                              RemoteCodec codec = RemoteCodec::kNone, uint32_t elem_bytes = 1);
// Verifies value against key: every header field as asked, both checksums, and a
// raw payload of exactly block_bytes (a compressed one is checked when decoded).
// kCorruption naming the first field that disagrees.
Status VerifyRemoteValue(const RemoteBlockKey& key, std::string_view value, size_t block_bytes);
// Turns a verified value into header + raw block in place (a raw one stays as it
// is). kCorruption when a compressed payload does not decode to exactly block_bytes.
Status InflateRemoteValue(std::string* value, size_t block_bytes);
// The payload of a verified, inflated value (no copy).
std::span<const std::byte> RemotePayload(std::string_view value);
// VerifyRemoteValue and InflateRemoteValue, then copies the block into out
// (out.size() = block bytes).
Status DecodeRemoteValue(const RemoteBlockKey& key, std::string_view value, std::span<std::byte> out);

}  // namespace tierkv::storage::remote
