// On-disk format of the D tier's slab files (DESIGN §3), version 1.
//
// A slab file:
//   [0, 4096)                          SlabSuperblock, rest zero
//   [4096 + i * stride, ... + stride)  slot i of the file (global slot first_slot + i)
// A slot, stride = 4096 + RoundUpIo(slot_capacity):
//   [0, 4096)                          SlotHeader, rest zero
//   [4096, 4096 + payload_length)      payload; up to the next 4 KiB boundary zero
// A slot whose header block reads as all zeros was never written (fallocate'd
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

inline constexpr size_t kSlotHeaderBytes = 4096;     // header block of each slot
inline constexpr size_t kSlabHeaderBytes = 4096;     // superblock of each slab file
inline constexpr uint32_t kSlotMagic = 0x53564B54;   // "TKVS"
inline constexpr uint64_t kSlabMagic = 0x0042414C53564B54ull;  // "TKVSLAB\0"
inline constexpr uint16_t kSlabFormatVersion = 1;
inline constexpr uint32_t kMaxDiskSlotCapacity = 1u << 30;  // 1 GiB payload per slot

struct SlotHeader {
  uint32_t magic;             // kSlotMagic
  uint16_t version;           // kSlabFormatVersion
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
  uint16_t version;        // kSlabFormatVersion
  uint16_t reserved0;
  uint32_t header_bytes;   // kSlotHeaderBytes
  uint64_t tier_id;        // random at creation, shared by every slab of one tier
  uint32_t slab_index;
  uint32_t slab_count;
  uint32_t first_slot;     // global id of the slab's slot 0
  uint32_t slots_in_slab;
  uint32_t total_slots;    // of the whole tier
  uint32_t slot_capacity;  // payload bytes per slot
  uint64_t slot_stride;
  uint64_t reserved1;
  uint64_t checksum;       // Checksum64 of the 64 bytes above
};
static_assert(sizeof(SlabSuperblock) == 72 && std::is_trivially_copyable_v<SlabSuperblock>);

// kSlotHeaderBytes + RoundUpIo(slot_capacity).
uint64_t DiskSlotStride(uint32_t slot_capacity);

// Writes the header of `info` for global slot `slot` into out[0, 64); the caller
// keeps out[64, kSlotHeaderBytes) zero.
void EncodeSlotHeader(SlotId slot, const SlotInfo& info, uint64_t payload_checksum, std::byte* out);

// Verifies a header block in[0, kSlotHeaderBytes):
// kNotFound when the block is all zeros (never written); kCorruption for a bad
// magic, version, header checksum, nonzero padding, a slot id other than `slot`,
// or a length over `slot_capacity`. Messages name the slot ("slot 12: ...").
Status DecodeSlotHeader(const std::byte* in, SlotId slot, uint32_t slot_capacity, SlotHeader* out);

// Verifies the payload against the header: kCorruption on a checksum mismatch or
// nonzero padding. REQUIRES: payload[0, RoundUpIo(header.payload_length)) readable.
Status VerifyPayload(const SlotHeader& header, const std::byte* payload);

SlotInfo InfoOf(const SlotHeader& header);

// Seals (computes the checksum) and writes a superblock into out[0, 72).
void EncodeSlabSuperblock(SlabSuperblock sb, std::byte* out);
// Verifies a superblock: kCorruption on a bad magic, version, checksum or
// inconsistent geometry.
Status DecodeSlabSuperblock(const std::byte* in, std::string_view what, SlabSuperblock* out);

}  // namespace tierkv::storage
