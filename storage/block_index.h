// BlockIndex: the BlockStore's placement map, without any I/O (DESIGN §3).
//
//   layers:     (seq, layer) -> a dense array of BlockRef (block i of the layer)
//   sequences:  seq -> how many of its layers have an array
//   metas:      BlockRef -> BlockMeta (where the bytes are, leases, heat)
//   prefix:     (content hash, layer) -> BlockRef, for full prefix blocks shared by
//               every sequence that has them (owners counts the sharers)
//   owner maps: per memory tier (G, H), slot -> BlockRef (victim sampling); D needs
//               none (a block's D slot is in its meta; recovery detects a slot
//               claimed twice with Tier::Adopt)
//
// Memory per stored block: sizeof(BlockMeta) + 4 (sequence array) + 4 while it is in
// G or H (owner map), plus the prefix map entry of shared blocks. MetadataBytes()
// adds it up for the RAM-per-block benchmark (target <= 64 bytes).
//
// Not thread-safe: the BlockStore's mutex guards it.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "storage/tier.h"

namespace tierkv::storage {

using BlockRef = uint32_t;
inline constexpr BlockRef kNoBlock = UINT32_MAX;

// Where the memory copy of a block is (at most one of G and H).
enum class Where : uint8_t { kNone = 0, kGpu = 1, kHost = 2 };

enum BlockFlags : uint8_t {
  kDiskCurrent = 1 << 0,  // the D copy holds the current generation
  kPrefix = 1 << 1,       // a shared prefix block (key.seq is its content hash)
  kDropped = 1 << 2,      // no owner left; freed when the last lease goes
  kLive = 1 << 3,         // the meta is in use (else on the free list)
  kIoPending = 1 << 4,    // a D transfer of this block is in flight (lock dropped): its
                          // memory copy must not move, change or be freed, and its D
                          // slot must not change; always held with a lease
  kPublished = 1 << 5,    // a lease was handed the block's memory location: it must not
                          // move until the block is unpinned (cleared when leases hit 0)
  kDiskWrite = 1 << 6,    // a D write of this block is in flight (with kIoPending): its
                          // record lands when the write is synced. kIoPending alone may
                          // also be a put placing the block in memory (no record coming)
  kPlacing = 1 << 7,      // a put is copying the block's new version into its memory slot
                          // with the lock dropped (with kIoPending and the put's lease):
                          // readers of memory copies (Get, Acquire) wait until it clears
};

struct BlockMeta {
  uint64_t seq = 0;        // sequence id, or content hash for prefix blocks
  uint32_t index = 0;      // block index in the sequence (prefix blocks: their position)
  SlotId mem_slot = kInvalidSlot;   // in G or H per `where`
  SlotId disk_slot = kInvalidSlot;  // in D, or kInvalidSlot
  uint32_t generation = 0;          // bumped on every rewrite
  uint32_t last_access = 0;         // logical clock (LRU)
  uint16_t hits = 0;                // saturating access count (LFU)
  uint16_t selections = 0;          // saturating count of retrieval selections (score-aware)
  uint16_t leases = 0;              // pins: a leased block is never moved or freed
  uint16_t owners = 0;              // sequences referencing it
  uint16_t layer = 0;               // < ModelLimits::kMaxLayers
  Where where = Where::kNone;
  uint8_t flags = 0;

  bool on_disk() const { return disk_slot != kInvalidSlot; }
  bool in_memory() const { return where != Where::kNone; }
};
static_assert(sizeof(BlockMeta) == 40);

class BlockIndex {
 public:
  BlockIndex(uint32_t num_layers, uint32_t gpu_slots, uint32_t host_slots);

  // The block at (seq, layer, index), or kNoBlock.
  BlockRef Find(SequenceId seq, uint32_t layer, uint32_t index) const;
  // The shared prefix block (hash, layer), or kNoBlock.
  BlockRef FindPrefix(uint64_t hash, uint32_t layer) const;
  // Blocks of (seq, layer) so far (index of the last one + 1), 0 for an unknown sequence.
  uint32_t SequenceBlocks(SequenceId seq, uint32_t layer) const;
  bool HasSequence(SequenceId seq) const { return sequences_.count(seq) != 0; }
  // Calls f(seq, layer, index, ref) for every block place of every sequence that holds
  // a block (a shared prefix block once per sequence that links it).
  template <class F>
  void ForEachPlace(F&& f) const {
    for (const auto& [key, refs] : layers_) {
      for (uint32_t i = 0; i < refs.size(); ++i) {
        if (refs[i] != kNoBlock) f(key.seq, key.layer, i, refs[i]);
      }
    }
  }
  size_t num_sequences() const { return sequences_.size(); }
  // Calls f(hash, layer, ref) for every shared prefix block.
  template <class F>
  void ForEachPrefix(F&& f) const {
    for (const auto& [key, ref] : prefix_) f(key.hash, key.layer, ref);
  }

  // A new meta (owners = 0, no placement).
  BlockRef NewBlock(uint64_t seq, uint32_t layer, uint32_t index, bool prefix);
  // Makes (seq, layer, index) refer to ref (owners++). REQUIRES: the place is empty.
  void Link(SequenceId seq, uint32_t layer, uint32_t index, BlockRef ref);
  // Clears (seq, layer, index) (owners--) and returns what it held, or kNoBlock.
  BlockRef Unlink(SequenceId seq, uint32_t layer, uint32_t index);
  // Removes the sequence; returns every ref it held (owners already decremented).
  std::vector<BlockRef> RemoveSequence(SequenceId seq);
  void RegisterPrefix(uint64_t hash, uint32_t layer, BlockRef ref);
  // Releases a meta (and its prefix entry). REQUIRES: no owners, no leases, no placement.
  void FreeBlock(BlockRef ref);

  BlockMeta& meta(BlockRef ref) { return chunks_[ref >> kChunkBits][ref & kChunkMask]; }
  const BlockMeta& meta(BlockRef ref) const { return chunks_[ref >> kChunkBits][ref & kChunkMask]; }

  // Owner maps: which block holds a slot of a memory tier. REQUIRES: tier is kGpu or kHost.
  void SetOwner(TierKind tier, SlotId slot, BlockRef ref) { owners(tier)[slot] = ref; }
  BlockRef Owner(TierKind tier, SlotId slot) const { return owner_maps_[static_cast<int>(tier)][slot]; }
  uint32_t num_slots(TierKind tier) const { return static_cast<uint32_t>(owner_maps_[static_cast<int>(tier)].size()); }

  size_t live_blocks() const { return live_; }
  // Daemon memory held by the index, in bytes (capacity, not size).
  size_t MetadataBytes() const;
  uint32_t Tick() { return ++clock_; }

 private:
  // Blocks of one (sequence, layer), keyed flat: a lookup is one hash probe and one
  // array access (then the meta), whatever the number of layers.
  struct LayerKey {
    SequenceId seq;
    uint32_t layer;
    bool operator==(const LayerKey&) const = default;
  };
  struct LayerKeyHash {
    size_t operator()(const LayerKey& k) const noexcept {
      const uint64_t h = k.seq * 0x9E3779B97F4A7C15ull ^ (uint64_t{k.layer} * 0xC2B2AE3D27D4EB4Full);
      return h ^ (h >> 29);
    }
  };
  struct PrefixKey {
    uint64_t hash;
    uint32_t layer;
    bool operator==(const PrefixKey&) const = default;
  };
  struct PrefixHash {
    size_t operator()(const PrefixKey& k) const noexcept { return k.hash ^ (uint64_t{k.layer} * 0x9E3779B97F4A7C15ull); }
  };
  std::vector<BlockRef>& owners(TierKind t) { return owner_maps_[static_cast<int>(t)]; }

  // Metas live in fixed chunks so that growth never copies them nor doubles memory.
  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kChunkMask = (1u << kChunkBits) - 1;

  const uint32_t num_layers_;
  std::vector<std::unique_ptr<BlockMeta[]>> chunks_;
  uint32_t num_metas_ = 0;  // metas handed out so far (live or free)
  std::vector<BlockRef> free_metas_;
  size_t live_ = 0;
  std::unordered_map<LayerKey, std::vector<BlockRef>, LayerKeyHash> layers_;
  std::unordered_map<SequenceId, uint32_t> sequences_;  // (sequence, layer) entries per sequence
  std::unordered_map<PrefixKey, BlockRef, PrefixHash> prefix_;
  std::vector<BlockRef> owner_maps_[2];  // indexed by TierKind (kGpu, kHost)
  uint32_t clock_ = 0;
};

}  // namespace tierkv::storage
