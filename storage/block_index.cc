#include "storage/block_index.h"

namespace tierkv::storage {

BlockIndex::BlockIndex(uint32_t num_layers, uint32_t gpu_slots, uint32_t host_slots) : num_layers_(num_layers) {
  static_assert(static_cast<int>(TierKind::kGpu) == 0 && static_cast<int>(TierKind::kHost) == 1);
  owner_maps_[static_cast<int>(TierKind::kGpu)].assign(gpu_slots, kNoBlock);
  owner_maps_[static_cast<int>(TierKind::kHost)].assign(host_slots, kNoBlock);
}

BlockRef BlockIndex::Find(SequenceId seq, uint32_t layer, uint32_t index) const {
  auto it = layers_.find({seq, layer});
  if (it == layers_.end()) return kNoBlock;
  return index < it->second.size() ? it->second[index] : kNoBlock;
}

BlockRef BlockIndex::FindPrefix(uint64_t hash, uint32_t layer) const {
  auto it = prefix_.find({hash, layer});
  return it == prefix_.end() ? kNoBlock : it->second;
}

uint32_t BlockIndex::SequenceBlocks(SequenceId seq, uint32_t layer) const {
  auto it = layers_.find({seq, layer});
  return it == layers_.end() ? 0 : static_cast<uint32_t>(it->second.size());
}

BlockRef BlockIndex::NewBlock(uint64_t seq, uint32_t layer, uint32_t index, bool prefix) {
  BlockRef ref;
  if (!free_metas_.empty()) {
    ref = free_metas_.back();
    free_metas_.pop_back();
  } else {
    ref = num_metas_++;
    if ((ref >> kChunkBits) >= chunks_.size()) chunks_.push_back(std::make_unique<BlockMeta[]>(kChunkMask + 1));
  }
  BlockMeta& m = meta(ref);
  m = BlockMeta{};
  m.seq = seq;
  m.layer = static_cast<uint16_t>(layer);
  m.index = index;
  m.flags = kLive | (prefix ? kPrefix : 0);
  m.last_access = clock_;
  ++live_;
  return ref;
}

void BlockIndex::Link(SequenceId seq, uint32_t layer, uint32_t index, BlockRef ref) {
  auto [it, inserted] = layers_.try_emplace(LayerKey{seq, layer});
  if (inserted) ++sequences_[seq];
  auto& blocks = it->second;
  if (blocks.size() <= index) blocks.resize(index + 1, kNoBlock);
  blocks[index] = ref;
  ++meta(ref).owners;
}

BlockRef BlockIndex::Unlink(SequenceId seq, uint32_t layer, uint32_t index) {
  auto it = layers_.find({seq, layer});
  if (it == layers_.end()) return kNoBlock;
  auto& blocks = it->second;
  if (index >= blocks.size() || blocks[index] == kNoBlock) return kNoBlock;
  BlockRef ref = blocks[index];
  blocks[index] = kNoBlock;
  while (!blocks.empty() && blocks.back() == kNoBlock) blocks.pop_back();
  --meta(ref).owners;
  return ref;
}

std::vector<BlockRef> BlockIndex::RemoveSequence(SequenceId seq) {
  std::vector<BlockRef> out;
  auto s = sequences_.find(seq);
  if (s == sequences_.end()) return out;
  for (uint32_t layer = 0; layer < num_layers_ && s->second > 0; ++layer) {
    auto it = layers_.find({seq, layer});
    if (it == layers_.end()) continue;
    for (BlockRef ref : it->second) {
      if (ref == kNoBlock) continue;
      --meta(ref).owners;
      out.push_back(ref);
    }
    layers_.erase(it);
    --s->second;
  }
  sequences_.erase(s);
  return out;
}

void BlockIndex::RegisterPrefix(uint64_t hash, uint32_t layer, BlockRef ref) { prefix_[{hash, layer}] = ref; }

void BlockIndex::FreeBlock(BlockRef ref) {
  BlockMeta& m = meta(ref);
  if (m.flags & kPrefix) {
    auto it = prefix_.find({m.seq, m.layer});
    if (it != prefix_.end() && it->second == ref) prefix_.erase(it);
  }
  m = BlockMeta{};
  free_metas_.push_back(ref);
  --live_;
}

size_t BlockIndex::MetadataBytes() const {
  size_t bytes = chunks_.size() * (size_t{kChunkMask + 1} * sizeof(BlockMeta) + sizeof(void*)) +
                 free_metas_.capacity() * sizeof(BlockRef);
  for (const auto& map : owner_maps_) bytes += map.capacity() * sizeof(BlockRef);
  // unordered_map nodes: key + value + next pointer + cached hash, plus the bucket array.
  bytes += layers_.bucket_count() * sizeof(void*) +
           layers_.size() * (sizeof(LayerKey) + sizeof(std::vector<BlockRef>) + 2 * sizeof(void*));
  for (const auto& [key, blocks] : layers_) bytes += blocks.capacity() * sizeof(BlockRef);
  bytes += sequences_.bucket_count() * sizeof(void*) +
           sequences_.size() * (sizeof(SequenceId) + sizeof(uint32_t) + 2 * sizeof(void*));
  bytes += prefix_.bucket_count() * sizeof(void*) +
           prefix_.size() * (sizeof(PrefixKey) + sizeof(BlockRef) + 2 * sizeof(void*));
  return bytes;
}

}  // namespace tierkv::storage
