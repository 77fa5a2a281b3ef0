// Shared by the crash test (tests/fault/storage_crash_test.cc) and its child
// process (storage_crash_child.cc): the store both open over the same directory,
// the block contents, and the messages the child sends through its pipe.
//
// Block contents: testing::FillBlock / CheckBlock (a version and the key in the
// first bytes, a stream seeded by both after that).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

#include "storage/block_store.h"
#include "storage/disk_tier.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage::crash {

inline constexpr NamespaceId kNs = 3;
inline constexpr uint32_t kSeqs = 8;      // sequence ids 1..kSeqs
inline constexpr uint32_t kLayers = 2;
inline constexpr uint32_t kIndices = 16;  // blocks per sequence and layer

// f16, 2 KV heads x 16 tokens x 64 channels: 8 KiB blocks (whole pages: the D
// tier's zero-copy O_DIRECT path).
inline ModelSpec Model() { return {kLayers, 4, 2, 64, 16, DType::kF16}; }

enum MsgType : uint8_t {
  kPutIntent = 1,    // a put of (key, version) starts
  kPutDurable = 2,   // ... returned OK with durable = true
  kPutVolatile = 3,  // ... returned OK with durable = false (or failed)
  kDropIntent = 4,   // DropSequence(seq) starts
  kDropDone = 5,     // ... returned
};

// One pipe message; 16 bytes, written with one write(2) (atomic below PIPE_BUF).
struct Msg {
  uint8_t type = 0;
  uint8_t layer = 0;
  uint16_t index = 0;
  uint32_t seq = 0;
  uint64_t version = 0;
};
static_assert(sizeof(Msg) == 16 && std::is_trivially_copyable_v<Msg>);

using testing::CheckBlock;
using testing::FillBlock;

// A write-through store over dir/d (O_DIRECT slabs) and dir/manifest (RocksDB),
// with G and H small enough that blocks move between tiers all the time.
struct Store {
  std::unique_ptr<ArenaTier> g, h;
  std::unique_ptr<DiskTier> d;
  std::unique_ptr<Manifest> manifest;
  std::unique_ptr<BlockStore> store;

  ~Store() { store.reset(); }  // before the tiers and the manifest

  static Result<std::unique_ptr<Store>> Open(const std::string& dir) {
    auto s = std::make_unique<Store>();
    const auto cap = static_cast<uint32_t>(Model().BlockBytes());
    ASSIGN_OR_RETURN(s->g, CreateEmulatedGpuTier({"G", 16, cap}));
    ASSIGN_OR_RETURN(s->h, CreateHostTier({"H", 32, cap, PinMode::kOff}));
    DiskTierOptions o;
    o.dir = dir + "/d";
    o.num_slots = 2 * kSeqs * kLayers * kIndices + 64;  // room for copy-on-write
    o.slot_capacity = cap;
    o.max_slab_bytes = 64 * DiskSlotStride(cap);  // several slab files
    ASSIGN_OR_RETURN(s->d, DiskTier::Open(o));
    ASSIGN_OR_RETURN(s->manifest, Manifest::Open(dir + "/manifest"));
    BlockStoreOptions so;
    so.ns = kNs;
    so.model = Model();
    so.policy.write = WritePolicy::kWriteThrough;
    so.policy.sink_blocks = 1;
    so.policy.recent_window = 2;
    so.put_wait = std::chrono::milliseconds(2000);
    so.migrate_interval = std::chrono::milliseconds(5);
    ASSIGN_OR_RETURN(s->store, BlockStore::Open(so, s->g.get(), s->h.get(), s->d.get(), s->manifest.get()));
    return s;
  }
};

}  // namespace tierkv::storage::crash
