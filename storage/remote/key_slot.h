// Redis Cluster key slots: CRC16 (XMODEM: poly 0x1021, init 0) of the key, or of
// its hash tag, modulo 16384 — the documented cluster specification. A hash tag is
// the part between the first '{' and the next '}' when it is not empty; keys that
// share a tag share a slot (and a node).
#pragma once

#include <cstdint>
#include <string_view>

namespace tierkv::storage::remote {

inline constexpr uint32_t kClusterSlots = 16384;

// CRC16-XMODEM of data (the spec's test vector: "123456789" -> 0x31C3).
uint16_t Crc16(std::string_view data);

// The cluster slot of a key, hash tags honoured. In [0, kClusterSlots).
uint16_t KeySlot(std::string_view key);

}  // namespace tierkv::storage::remote
