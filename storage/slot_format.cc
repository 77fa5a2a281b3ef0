#include "storage/slot_format.h"

#include <cstring>
#include <string>

#include "common/checksum.h"
#include "storage/io_engine.h"

namespace tierkv::storage {
namespace {
constexpr size_t kHeaderSealed = offsetof(SlotHeader, header_checksum);
constexpr size_t kSuperSealed = offsetof(SlabSuperblock, checksum);

// True when p[0, n) are all zero. Runs on every read: word at a time.
bool AllZero(const std::byte* p, size_t n) {
  size_t i = 0;
  uint64_t acc = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, sizeof(w));
    acc |= w[0] | w[1] | w[2] | w[3];
    if (acc != 0) return false;
  }
  for (; i < n; ++i) acc |= std::to_integer<uint64_t>(p[i]);
  return acc == 0;
}

std::string SlotText(SlotId slot) { return "slot " + std::to_string(slot); }
}  // namespace

uint64_t DiskSlotStride(uint32_t slot_capacity) { return kSlotHeaderBytes + RoundUpIo(slot_capacity); }

void EncodeSlotHeader(SlotId slot, const SlotInfo& info, uint64_t payload_checksum, std::byte* out) {
  SlotHeader h{};
  h.magic = kSlotMagic;
  h.version = kSlabFormatVersion;
  h.encoding = static_cast<uint8_t>(info.encoding);
  h.flags = 0;
  h.key = info.tag.key;
  h.generation = info.tag.generation;
  h.payload_length = info.length;
  h.slot = slot;
  h.payload_checksum = payload_checksum;
  h.header_checksum = Checksum64(&h, kHeaderSealed);
  std::memcpy(out, &h, sizeof(h));
}

Status DecodeSlotHeader(const std::byte* in, SlotId slot, uint32_t slot_capacity, SlotHeader* out) {
  SlotHeader h;
  std::memcpy(&h, in, sizeof(h));
  auto corrupt = [&](const std::string& why) { return Corruption(SlotText(slot) + ": " + why); };
  if (h.magic != kSlotMagic) {
    if (AllZero(in, kSlotHeaderBytes)) return NotFound(SlotText(slot) + ": never written");
    return corrupt("bad header magic");
  }
  if (Checksum64(&h, kHeaderSealed) != h.header_checksum) return corrupt("header checksum mismatch");
  if (!AllZero(in + sizeof(h), kSlotHeaderBytes - sizeof(h))) return corrupt("nonzero bytes after the header");
  if (h.version != kSlabFormatVersion) return corrupt("unknown format version " + std::to_string(h.version));
  if (h.slot != slot) return corrupt("header belongs to slot " + std::to_string(h.slot));
  if (h.payload_length > slot_capacity) {
    return corrupt("payload length " + std::to_string(h.payload_length) + " exceeds the slot capacity");
  }
  *out = h;
  return OkStatus();
}

Status VerifyPayload(const SlotHeader& header, const std::byte* payload) {
  if (Checksum64(payload, header.payload_length) != header.payload_checksum) {
    return Corruption(SlotText(header.slot) + ": payload checksum mismatch (torn or damaged write)");
  }
  const size_t padded = RoundUpIo(header.payload_length);
  if (!AllZero(payload + header.payload_length, padded - header.payload_length)) {
    return Corruption(SlotText(header.slot) + ": nonzero bytes after the payload");
  }
  return OkStatus();
}

SlotInfo InfoOf(const SlotHeader& h) {
  return SlotInfo{SlotTag{h.key, h.generation}, h.payload_length, static_cast<PayloadEncoding>(h.encoding)};
}

void EncodeSlabSuperblock(SlabSuperblock sb, std::byte* out) {
  sb.magic = kSlabMagic;
  sb.version = kSlabFormatVersion;
  sb.header_bytes = kSlotHeaderBytes;
  sb.checksum = Checksum64(&sb, kSuperSealed);
  std::memcpy(out, &sb, sizeof(sb));
}

Status DecodeSlabSuperblock(const std::byte* in, std::string_view what, SlabSuperblock* out) {
  SlabSuperblock sb;
  std::memcpy(&sb, in, sizeof(sb));
  auto corrupt = [&](const std::string& why) { return Corruption(std::string(what) + ": " + why); };
  if (sb.magic != kSlabMagic) return corrupt("not a tierkv slab file (bad magic)");
  if (Checksum64(&sb, kSuperSealed) != sb.checksum) return corrupt("superblock checksum mismatch");
  if (sb.version != kSlabFormatVersion) return corrupt("unknown format version " + std::to_string(sb.version));
  if (sb.header_bytes != kSlotHeaderBytes || sb.slot_capacity == 0 ||
      sb.slot_capacity > kMaxDiskSlotCapacity || sb.slot_stride != DiskSlotStride(sb.slot_capacity) ||
      sb.slots_in_slab == 0 || sb.slab_index >= sb.slab_count ||
      uint64_t{sb.first_slot} + sb.slots_in_slab > sb.total_slots) {
    return corrupt("inconsistent geometry in the superblock");
  }
  *out = sb;
  return OkStatus();
}

}  // namespace tierkv::storage
