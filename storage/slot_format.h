// On-disk format of the D tier's slab files (DESIGN §3), versions 1 and 2.
//
// A slab file:
//   [0, 4096)                          SlabSuperblock, rest zero
//   [4096 + i * stride, ... + stride)  slot i of the file (global slot first_slot + i)
// A slot, with H = the slab's header_bytes (its sector) and stride = H + RoundUp(slot_capacity, H):
//   [0, H)                             SlotHeader (64 bytes), rest zero
//   [H, H + payload_length)            payload; up to the next multiple of H zero
// Version 1 has H = 4096 (a 4 KiB header block per slot). Version 2 (the default for
// new slabs) has H = the smallest O_DIRECT alignment the file system accepts, 512 on
// most devices, so a 16 KiB block moves 16.5 KiB instead of 20 KiB in one I/O
// (docs/decisions/0013-d-tier-io-path.md). Both versions are read and written; a slab
// keeps the version it was created with. A slot header carries the slab's version.
// A slot whose header sector reads as all zeros was never written (fallocate'd
// extents read as zeros). Every field is little-endian; the header carries its own
// checksum and the payload's, so a slab can be verified without the manifest and
// a torn write (new header, old or partial payload) fails its payload checksum.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "common/ids.h"
#include "common/status.h"
#include "storage/tier.h"

namespace tierkv::storage {

static_assert(std::endian::native == std::endian::little, "slab format is little-endian");

inline constexpr size_t kSlabHeaderBytes = 4096;     // superblock of each slab file
inline constexpr uint32_t kV1HeaderBytes = 4096;     // slot header sector of version 1
inline constexpr uint32_t kDefaultHeaderBytes = 512; // version 2 on a 512-byte-sector file system
inline constexpr uint32_t kSlotMagic = 0x53564B54;   // "TKVS"
inline constexpr uint64_t kSlabMagic = 0x0042414C53564B54ull;  // "TKVSLAB\0"
inline constexpr uint16_t kSlabFormatVersion = 2;     // what new slabs get
inline constexpr uint16_t kOldestSlabFormatVersion = 1;  // oldest still read and written
inline constexpr uint32_t kMaxDiskSlotCapacity = 1u << 30;  // 1 GiB payload per slot

struct SlotHeader {
  uint32_t magic;             // kSlotMagic
  uint16_t version;           // the slab's format version
  uint8_t encoding;           // PayloadEncoding
  uint8_t flags;              // 0 (reserved)
  BlockKey key;
  uint64_t generation;
  uint32_t payload_length;
  uint32_t slot;              // global slot id: catches misdirected writes
  uint64_t payload_checksum;  // Checksum64 of the payload bytes
  uint64_t header_checksum;   // Checksum64 of the 56 bytes above
};
static_assert(sizeof(SlotHeader) == 64 && std::is_trivially_copyable_v<SlotHeader>);

struct SlabSuperblock {
  uint64_t magic;          // kSlabMagic
  uint16_t version;        // 1 or 2
  uint16_t device_index;   // v2: this slab's device among device_count (0 in v1)
  uint32_t header_bytes;   // slot header sector: 4096 (v1); 512, 1024, 2048 or 4096 (v2)
  uint64_t tier_id;        // random at creation, shared by every slab of one tier
  uint32_t slab_index;     // among the device's slabs
  uint32_t slab_count;     // of the device
  uint32_t first_slot;     // device-local id of the slab's slot 0
  uint32_t slots_in_slab;
  uint32_t total_slots;    // of the whole tier (all devices)
  uint32_t slot_capacity;  // payload bytes per slot
  uint64_t slot_stride;
  uint32_t device_count;   // v2: devices the tier stripes over, >= 1 (0 in v1: one)
  uint32_t reserved1;
  uint64_t checksum;       // Checksum64 of the 64 bytes above
};
static_assert(sizeof(SlabSuperblock) == 72 && std::is_trivially_copyable_v<SlabSuperblock>);

// The layout of one slab's slots: its format version and header sector.
struct SlotLayout {
  uint16_t version = kSlabFormatVersion;
  uint32_t header_bytes = kDefaultHeaderBytes;
  uint64_t PaddedPayload(uint32_t length) const { return (uint64_t{length} + header_bytes - 1) / header_bytes * header_bytes; }
  uint64_t Stride(uint32_t slot_capacity) const { return header_bytes + PaddedPayload(slot_capacity); }
};
// kInvalidArgument unless version is 1 with header_bytes 4096, or 2 with header_bytes
// a power of two in [512, 4096].
Status CheckSlotLayout(const SlotLayout& layout);

// Bytes per slot (header sector + padded payload). The one-argument form is the
// version-2 layout with 512-byte sectors (what a new tier gets on most file systems).
uint64_t DiskSlotStride(uint32_t slot_capacity, const SlotLayout& layout = SlotLayout{});

// Writes the header of `info` for global slot `slot` into out[0, 64); the caller
// keeps out[64, layout.header_bytes) zero.
void EncodeSlotHeader(const SlotLayout& layout, SlotId slot, const SlotInfo& info, uint64_t payload_checksum,
                      std::byte* out);

// Verifies a header sector in[0, layout.header_bytes):
// kNotFound when the sector is all zeros (never written); kCorruption for a bad
// magic, a version other than the slab's, a bad header checksum, nonzero padding, a
// slot id other than `slot`, or a length over `slot_capacity`. Messages name the
// slot ("slot 12: ...").
Status DecodeSlotHeader(const SlotLayout& layout, const std::byte* in, SlotId slot, uint32_t slot_capacity,
                        SlotHeader* out);

// Verifies the payload against the header: kCorruption on a checksum mismatch or
// nonzero padding. REQUIRES: payload[0, layout.PaddedPayload(header.payload_length)) readable.
Status VerifyPayload(const SlotLayout& layout, const SlotHeader& header, const std::byte* payload);

SlotInfo InfoOf(const SlotHeader& header);
SlotLayout LayoutOf(const SlabSuperblock& sb);
// Devices of the tier (1 for version 1) and slots on device d: a tier of `total`
// slots over `count` devices puts global slot s on device s % count, at device-local
// id s / count.
uint32_t DeviceCount(const SlabSuperblock& sb);
constexpr uint32_t SlotsOnDevice(uint32_t total, uint32_t count, uint32_t d) {
  return total / count + (d < total % count ? 1 : 0);
}
// Global id of a slab's i-th slot.
inline SlotId GlobalSlot(const SlabSuperblock& sb, uint32_t i) {
  return (sb.first_slot + i) * DeviceCount(sb) + sb.device_index;
}

// Seals (computes the checksum) and writes a superblock into out[0, 72); the
// caller sets version and header_bytes (a valid SlotLayout).
void EncodeSlabSuperblock(SlabSuperblock sb, std::byte* out);
// Verifies a superblock: kCorruption on a bad magic, checksum or inconsistent
// geometry; kNotSupported for a version this build does not know (newer than
// kSlabFormatVersion), with a message that says so.
Status DecodeSlabSuperblock(const std::byte* in, std::string_view what, SlabSuperblock* out);

}  // namespace tierkv::storage
