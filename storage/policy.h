// Per-namespace tiering policy (DESIGN §3): changeable while the daemon runs
// (control op `set_policy`, `tierkvctl policy set`), validated, persisted in the
// manifest's "policies" column family, exported as gauges.
//
// A bad value is refused with an error naming the field; the old policy stays.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace tierkv::storage {

enum class Eviction : uint8_t {
  kLru = 0,    // least recently accessed first
  kLfu = 1,    // least frequently accessed first
  kScore = 2,  // least often selected by the retrieval index first (then LRU)
};
enum class WritePolicy : uint8_t {
  kWriteBack = 0,     // blocks reach D when demoted from H; G/H contents are volatile
  kWriteThrough = 1,  // every put is written to D (and synced) before it is acknowledged
};
enum class Compression : uint8_t {
  kNone = 0,   // lossless (default)
  kInt8 = 1,   // int8 per group: keys per channel, values per token
  kKivi2 = 2,  // 2-bit, keys per channel, values per token (KIVI)
};
enum class MissMode : uint8_t {
  kWait = 0,   // a retrieve waits until every selected block is on G
  kDefer = 1,  // a retrieve returns what is resident; misses arrive for the next step
  // Not a policy (BlockStore::Acquire only, for the Acquire op, a zero-copy get):
  // blocks are pinned where they are, blocks only on D are read into H first, and
  // nothing moves to G.
  kInPlace = 2,
};

// Which of a namespace's blocks go to R (the remote tier), besides nothing when
// remote_ttl_s is 0.
enum class RemoteBlocks : uint8_t {
  kPrefixes = 0,         // full prefix blocks, after their put (by content hash)
  kClosedSequences = 1,  // those, and every sealed block of a sequence when it is closed
                         // (by sequence id and index; a local Get miss asks R for them)
};

struct Watermarks {
  double high = 0.95;  // demotion starts above this share of a tier's slots
  double low = 0.85;   // ... and stops below this one
  bool operator==(const Watermarks&) const = default;
};

struct Policy {
  Eviction eviction = Eviction::kLru;
  uint32_t sink_blocks = 1;      // first blocks of every sequence and layer, kept on G
  uint32_t recent_window = 4;    // last blocks of every sequence and layer, kept on G
  WritePolicy write = WritePolicy::kWriteBack;
  Compression compression = Compression::kNone;
  uint32_t compression_group = 32;  // quantization group size (elements)
  uint32_t prefetch_depth = 0;   // blocks after a miss to bring up with it
  MissMode miss_mode = MissMode::kWait;
  Watermarks gpu;
  Watermarks host;
  // Lifetime in R (the remote tier) of the full prefix blocks this namespace writes
  // there; 0 keeps the namespace off R (no writes, no remote lookups). Redis's own
  // eviction may drop a block sooner. Default: 3600 s
  uint32_t remote_ttl_s = 3600;
  // What goes to R. Default: kPrefixes
  RemoteBlocks remote_blocks = RemoteBlocks::kPrefixes;

  bool operator==(const Policy&) const = default;
  Status Validate() const;
};

std::string_view EvictionName(Eviction e);
std::string_view WritePolicyName(WritePolicy w);
std::string_view CompressionName(Compression c);
std::string_view MissModeName(MissMode m);
std::string_view RemoteBlocksName(RemoteBlocks r);

nlohmann::json PolicyToJson(const Policy& p);
// Applies the fields present in `changes` on top of `base` and validates the result.
// Unknown fields, wrong types and bad values: kInvalidArgument naming the field.
Result<Policy> ApplyPolicyChanges(const Policy& base, const nlohmann::json& changes);

}  // namespace tierkv::storage
