// Batched block copies H -> G (DESIGN §5 step 2: a retrieval's misses come in with
// the gather kernel, one launch for the whole selection).
//
//   G device memory, H pinned and mapped  -> kernels::Gather on kCuda: one launch
//                                            reads every H slot over PCIe (zero-copy)
//   G emulated in host memory             -> kernels::Gather on kCpu (its reference:
//                                            one memcpy per block)
//   G device memory, H not pinned         -> one ArenaMemory::CopyIn per block
//                                            (pageable cudaMemcpy, the slow path)
//
// A copy is complete when Gather returns: the mover waits on its own stream only
// (the daemon's host thread, never a client's stream), so the slots can be committed
// and handed out right after.
//
// Not thread-safe: the user serializes calls (the BlockStore's mutex).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kernels/gpu_runtime.h"
#include "storage/arena_tier.h"

namespace tierkv::storage {

class BlockMover {
 public:
  enum class Path : uint8_t { kDeviceGather, kHostGather, kPerBlockCopy };

  // The tiers must outlive the mover.
  BlockMover(ArenaTier& g, const ArenaTier& h);

  // Copies `bytes` from H slot h_slots[i] to G slot g_slots[i], for every i.
  // kInvalidArgument when the spans differ in length, a slot is out of range or
  // bytes exceeds a slot. REQUIRES: the G slots are distinct. On error the G slots'
  // contents are unspecified (the caller frees them).
  Status Gather(std::span<const SlotId> h_slots, std::span<const SlotId> g_slots, size_t bytes);

  Path path() const { return path_; }
  static std::string_view PathName(Path path);

 private:
  Status GatherOnDevice(size_t bytes);
  Status CopyBlockByBlock(std::span<const SlotId> h_slots, std::span<const SlotId> g_slots, size_t bytes);

  ArenaTier& g_;
  const ArenaTier& h_;
  const Path path_;
  std::vector<const void*> src_;  // this call's source addresses (host gather)
  std::vector<void*> dst_;
  // Device gather: the address arrays in mapped pinned memory (the kernel reads
  // them there), grown on demand, and the mover's own stream. Created on first use.
  kernels::PinnedHostBuffer addresses_;
  kernels::GpuStream stream_;
  bool stream_ready_ = false;
};

}  // namespace tierkv::storage
