#include "storage/block_mover.h"

#include <string>

#include "kernels/gather.h"

namespace tierkv::storage {
namespace {

BlockMover::Path ChoosePath(const ArenaTier& g, const ArenaTier& h) {
  if (g.memory().host_accessible() && h.memory().host_accessible()) return BlockMover::Path::kHostGather;
  if (g.device_base() != nullptr && h.device_base() != nullptr) return BlockMover::Path::kDeviceGather;
  return BlockMover::Path::kPerBlockCopy;
}

}  // namespace

BlockMover::BlockMover(ArenaTier& g, const ArenaTier& h) : g_(g), h_(h), path_(ChoosePath(g, h)) {}

std::string_view BlockMover::PathName(Path path) {
  switch (path) {
    case Path::kDeviceGather: return "device-gather";
    case Path::kHostGather: return "host-gather";
    case Path::kPerBlockCopy: return "per-block-copy";
  }
  return "?";
}

Status BlockMover::Gather(std::span<const SlotId> h_slots, std::span<const SlotId> g_slots, size_t bytes) {
  if (h_slots.size() != g_slots.size()) {
    return InvalidArgument("BlockMover: " + std::to_string(h_slots.size()) + " sources for " +
                           std::to_string(g_slots.size()) + " destinations");
  }
  if (bytes == 0 || bytes > h_.slot_capacity() || bytes > g_.slot_capacity()) {
    return InvalidArgument("BlockMover: " + std::to_string(bytes) + " bytes do not fit a slot");
  }
  for (size_t i = 0; i < h_slots.size(); ++i) {
    if (h_slots[i] >= h_.num_slots() || g_slots[i] >= g_.num_slots()) {
      return InvalidArgument("BlockMover: slot out of range at entry " + std::to_string(i));
    }
  }
  if (h_slots.empty()) return OkStatus();
  if (path_ == Path::kPerBlockCopy) return CopyBlockByBlock(h_slots, g_slots, bytes);
  // Both gather paths address the slots where their backend reads them.
  const bool device = path_ == Path::kDeviceGather;
  std::byte* const h_base = device ? h_.device_base() : h_.memory().base();
  std::byte* const g_base = device ? g_.device_base() : g_.memory().base();
  src_.resize(h_slots.size());
  dst_.resize(g_slots.size());
  for (size_t i = 0; i < h_slots.size(); ++i) {
    src_[i] = h_base + h_.SlotOffset(h_slots[i]);
    dst_[i] = g_base + g_.SlotOffset(g_slots[i]);
  }
  if (device) return GatherOnDevice(bytes);
  kernels::GatherArgs args;
  args.src = src_.data();
  args.dst = dst_.data();
  args.n = static_cast<uint32_t>(src_.size());
  args.block_bytes = bytes;
  return kernels::Gather(kernels::Backend::kCpu, args);
}

Status BlockMover::GatherOnDevice(size_t bytes) {
  const size_t n = src_.size();
  const size_t need = 2 * n * sizeof(void*);
  if (addresses_.size() < need) {
    ASSIGN_OR_RETURN(addresses_, kernels::PinnedHostBuffer::Allocate(std::max<size_t>(need, 4096)));
  }
  if (!stream_ready_) {
    ASSIGN_OR_RETURN(stream_, kernels::GpuStream::Create());
    stream_ready_ = true;
  }
  // The kernel reads both arrays from mapped pinned memory: [n sources][n destinations].
  auto** host = static_cast<const void**>(addresses_.host());
  for (size_t i = 0; i < n; ++i) {
    host[i] = src_[i];
    host[n + i] = dst_[i];
  }
  auto** device = static_cast<void**>(addresses_.device());
  kernels::GatherArgs args;
  args.src = device;  // void** -> const void* const*
  args.dst = device + n;
  args.n = static_cast<uint32_t>(n);
  args.block_bytes = bytes;
  RETURN_IF_ERROR(kernels::Gather(kernels::Backend::kCuda, args, &stream_));
  return stream_.Synchronize();
}

Status BlockMover::CopyBlockByBlock(std::span<const SlotId> h_slots, std::span<const SlotId> g_slots,
                                    size_t bytes) {
  ArenaMemory& g_memory = g_.mutable_memory();
  for (size_t i = 0; i < h_slots.size(); ++i) {
    RETURN_IF_ERROR(g_memory.CopyIn(g_.SlotOffset(g_slots[i]), h_.SlotAddress(h_slots[i]), bytes));
  }
  return OkStatus();
}

}  // namespace tierkv::storage
