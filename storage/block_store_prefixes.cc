// BlockStore: prefix cache control — list the cached prefix blocks, evict those
// that no open sequence uses (tierkvctl prefixes / evict-prefixes).
#include <map>

#include "storage/block_store.h"

namespace tierkv::storage {
namespace {
using Clock = std::chrono::steady_clock;
}

void BlockStore::NotePrefixUse(uint64_t hash) { prefix_used_[hash] = Clock::now(); }

std::vector<BlockStore::PrefixUsage> BlockStore::ListPrefixes() const {
  MutexLock lock(&mu_);
  const auto now = Clock::now();
  std::map<uint64_t, PrefixUsage> by_hash;
  index_.ForEachPrefix([&](uint64_t hash, uint32_t, BlockRef ref) {
    mu_.AssertHeld();  // ForEachPrefix calls back on this thread, under the lock
    const BlockMeta& m = index_.meta(ref);
    PrefixUsage& u = by_hash[hash];
    u.hash = hash;
    u.position = m.index;
    ++u.blocks;
    u.sequences = std::max<uint32_t>(u.sequences, m.owners);
    u.bytes += block_bytes_;
    u.in_gpu += m.where == Where::kGpu;
    u.in_host += m.where == Where::kHost;
    u.on_disk += m.on_disk();
  });
  std::vector<PrefixUsage> out;
  out.reserve(by_hash.size());
  for (auto& [hash, u] : by_hash) {
    auto it = prefix_used_.find(hash);
    u.idle_s = std::chrono::duration<double>(now - (it == prefix_used_.end() ? opened_ : it->second)).count();
    out.push_back(u);
  }
  return out;
}

BlockStore::PrefixEviction BlockStore::EvictPrefixes(std::chrono::seconds older_than) {
  MutexLock lock(&mu_);
  const auto now = Clock::now();
  // The blocks of each prefix, and whether any is in use.
  struct Group {
    std::vector<BlockRef> refs;
    bool in_use = false;
  };
  std::map<uint64_t, Group> groups;
  index_.ForEachPrefix([&](uint64_t hash, uint32_t, BlockRef ref) {
    mu_.AssertHeld();  // ForEachPrefix calls back on this thread, under the lock
    const BlockMeta& m = index_.meta(ref);
    Group& g = groups[hash];
    g.refs.push_back(ref);
    g.in_use = g.in_use || m.owners > 0 || m.leases > 0 || (m.flags & kIoPending);
  });
  PrefixEviction e;
  std::vector<BlockRef> victims;
  for (auto& [hash, g] : groups) {
    if (g.in_use) {
      ++e.kept_in_use;
      continue;
    }
    auto it = prefix_used_.find(hash);
    if (now - (it == prefix_used_.end() ? opened_ : it->second) < older_than) {
      ++e.kept_young;
      continue;
    }
    ++e.prefixes;
    e.blocks += g.refs.size();
    e.bytes += g.refs.size() * block_bytes_;
    for (BlockRef ref : g.refs) {
      index_.meta(ref).flags |= kDropped;  // no owner, no lease: MaybeFree frees it now
      victims.push_back(ref);
    }
    if (it != prefix_used_.end()) prefix_used_.erase(it);
  }
  MaybeFree(victims);
  // Times of prefixes freed another way (their last sharer dropped them).
  for (auto it = prefix_used_.begin(); it != prefix_used_.end();) {
    it = groups.count(it->first) ? std::next(it) : prefix_used_.erase(it);
  }
  room_cv_.NotifyAll();
  return e;
}

}  // namespace tierkv::storage
