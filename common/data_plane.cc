#include "common/data_plane.h"

namespace tierkv::dp {

const char* DetailName(Detail d) {
  switch (d) {
    case Detail::kNone: return "none";
    case Detail::kVersion: return "descriptor version";
    case Detail::kOp: return "unknown op";
    case Detail::kFlags: return "unknown flags";
    case Detail::kRange: return "offset/length outside the staging area";
    case Detail::kLength: return "payload length does not match the block size";
    case Detail::kLayer: return "layer out of range";
    case Detail::kBlock: return "block index out of range";
    case Detail::kCount: return "count out of range";
    case Detail::kSequence: return "unknown sequence";
    case Detail::kLease: return "unknown lease";
    case Detail::kNotFound: return "block not found";
    case Detail::kNoSpace: return "no space in any tier";
    case Detail::kInternal: return "internal error";
    case Detail::kOwner: return "the sequence belongs to another uid (only its owner or an admin may change it)";
    case Detail::kBusy: return "the block is pinned by a lease (busy); release it first";
    case Detail::kCorruption: return "a stored copy of the block failed its checksum (corruption)";
    case Detail::kQuery:
      return "the query must be num_q_heads * head_dim finite f32 values, followed by room for `count` table entries";
    case Detail::kNoBlocks: return "no blocks stored for this sequence and layer";
    case Detail::kNamespaceDeleted:
      return "the channel's namespace was deleted (delete-namespace): close this channel";
    case Detail::kBudget:
      return "the budget is below the sink and recent-window blocks the retrieval policy always keeps "
             "(raise the budget or lower the policy's sink_blocks or recent_window)";
    case Detail::kGap:
      return "the append does not continue where the sequence's layer ends (gaps and overlaps are refused)";
  }
  return "?";
}

ChannelHeader Layout(uint32_t request_capacity, uint32_t completion_capacity, uint64_t staging_bytes) {
  auto align = [](uint64_t v) { return (v + 4095) & ~uint64_t{4095}; };
  ChannelHeader h{};
  h.magic = kChannelMagic;
  h.version = kVersion;
  h.request_capacity = request_capacity;
  h.completion_capacity = completion_capacity;
  h.request_offset = kHeaderBytes;
  h.completion_offset = align(h.request_offset + RingBytes<RingRequest>(request_capacity));
  h.staging_offset = align(h.completion_offset + RingBytes<RingCompletion>(completion_capacity));
  h.staging_bytes = staging_bytes;
  h.total_bytes = align(h.staging_offset + staging_bytes);
  return h;
}

}  // namespace tierkv::dp
