#include "storage/slot_format.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "common/checksum.h"
#include "io/io_engine.h"
#include "storage/payload_checksum.h"

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

Status CheckSlotLayout(const SlotLayout& l) {
  const bool v1 = l.version == 1 && l.header_bytes == kV1HeaderBytes;
  const bool v2 = l.version == 2 && l.header_bytes >= 512 && l.header_bytes <= 4096 &&
                  std::has_single_bit(l.header_bytes);
  if (v1 || v2) return OkStatus();
  return InvalidArgument("slab format version " + std::to_string(l.version) + " with " +
                         std::to_string(l.header_bytes) + "-byte slot headers is not a valid layout");
}

uint64_t DiskSlotStride(uint32_t slot_capacity, const SlotLayout& layout) { return layout.Stride(slot_capacity); }

void EncodeSlotHeader(const SlotLayout& layout, SlotId slot, const SlotInfo& info, uint64_t payload_checksum,
                      std::byte* out) {
  SlotHeader h{};
  h.magic = kSlotMagic;
  h.version = layout.version;
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

Status DecodeSlotHeader(const SlotLayout& layout, const std::byte* in, SlotId slot, uint32_t slot_capacity,
                        SlotHeader* out) {
  SlotHeader h;
  std::memcpy(&h, in, sizeof(h));
  auto corrupt = [&](const std::string& why) { return Corruption(SlotText(slot) + ": " + why); };
  if (h.magic != kSlotMagic) {
    if (AllZero(in, layout.header_bytes)) return NotFound(SlotText(slot) + ": never written");
    return corrupt("bad header magic");
  }
  if (Checksum64(&h, kHeaderSealed) != h.header_checksum) return corrupt("header checksum mismatch");
  if (!AllZero(in + sizeof(h), layout.header_bytes - sizeof(h))) return corrupt("nonzero bytes after the header");
  if (h.version != layout.version) {
    return corrupt("header of format version " + std::to_string(h.version) + " in a version " +
                   std::to_string(layout.version) + " slab");
  }
  if (h.slot != slot) return corrupt("header belongs to slot " + std::to_string(h.slot));
  if (h.payload_length > slot_capacity) {
    return corrupt("payload length " + std::to_string(h.payload_length) + " exceeds the slot capacity");
  }
  *out = h;
  return OkStatus();
}

Status VerifyPayload(const SlotLayout& layout, const SlotHeader& header, const std::byte* payload) {
  if (PayloadChecksum(payload, header.payload_length) != header.payload_checksum) {
    return Corruption(SlotText(header.slot) + ": payload checksum mismatch (torn or damaged write)");
  }
  const size_t padded = layout.PaddedPayload(header.payload_length);
  if (!AllZero(payload + header.payload_length, padded - header.payload_length)) {
    return Corruption(SlotText(header.slot) + ": nonzero bytes after the payload");
  }
  return OkStatus();
}

SlotInfo InfoOf(const SlotHeader& h) {
  return SlotInfo{SlotTag{h.key, h.generation}, h.payload_length, static_cast<PayloadEncoding>(h.encoding)};
}

SlotLayout LayoutOf(const SlabSuperblock& sb) { return SlotLayout{sb.version, sb.header_bytes}; }

uint32_t DeviceCount(const SlabSuperblock& sb) { return sb.version == 1 ? 1 : sb.device_count; }

void EncodeSlabSuperblock(SlabSuperblock sb, std::byte* out) {
  sb.magic = kSlabMagic;
  sb.checksum = Checksum64(&sb, kSuperSealed);
  std::memcpy(out, &sb, sizeof(sb));
}

Status DecodeSlabSuperblock(const std::byte* in, std::string_view what, SlabSuperblock* out) {
  SlabSuperblock sb;
  std::memcpy(&sb, in, sizeof(sb));
  auto corrupt = [&](const std::string& why) { return Corruption(std::string(what) + ": " + why); };
  if (sb.magic != kSlabMagic) return corrupt("not a tierkv slab file (bad magic)");
  if (Checksum64(&sb, kSuperSealed) != sb.checksum) return corrupt("superblock checksum mismatch");
  if (sb.version > kSlabFormatVersion || sb.version < kOldestSlabFormatVersion) {
    return NotSupported(std::string(what) + ": slab format version " + std::to_string(sb.version) +
                        "; this build reads versions " + std::to_string(kOldestSlabFormatVersion) + " to " +
                        std::to_string(kSlabFormatVersion) + " (written by a newer tierkv? keep that version, or "
                        "delete the D tier's directory to start it empty)");
  }
  if (!CheckSlotLayout(LayoutOf(sb)).ok() || sb.slot_capacity == 0 ||
      sb.slot_capacity > kMaxDiskSlotCapacity || sb.slot_stride != DiskSlotStride(sb.slot_capacity, LayoutOf(sb)) ||
      sb.slots_in_slab == 0 || sb.slab_index >= sb.slab_count ||
      (sb.version == 1 && (sb.device_index != 0 || sb.device_count != 0)) ||
      (sb.version >= 2 && (sb.device_count == 0 || sb.device_index >= sb.device_count ||
                           sb.device_count > sb.total_slots)) ||
      uint64_t{sb.first_slot} + sb.slots_in_slab >
          SlotsOnDevice(sb.total_slots, std::max<uint32_t>(1, DeviceCount(sb)), sb.device_index)) {
    return corrupt("inconsistent geometry in the superblock");
  }
  *out = sb;
  return OkStatus();
}

}  // namespace tierkv::storage
