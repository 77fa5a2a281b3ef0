// Self-describing block contents of the daemon crash and soak tests
// (daemon_crash_test.cc, soak_client.cc): a block says which key and which version it
// holds, and the rest of its bytes follow from those two, so that any block read
// back can be checked byte for byte without knowing what was written last.
//
// The acknowledgement log: one line per event, written by the client with one
// write() (O_APPEND) each, so that a client killed at any moment leaves whole lines:
//   P seq layer first count version   a put is about to be sent
//   A seq layer first count version   that put was acknowledged durable
//   C seq                             a close of the sequence is about to be sent
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <tuple>

namespace tierkv::soak {

inline constexpr uint64_t kMagic = 0x54494552'4B56534Bull;  // "TIERKVSK"

inline uint64_t KeyOf(uint64_t seq, uint32_t layer, uint32_t block) {
  return (seq << 32) ^ (uint64_t{layer} << 24) ^ block;
}

inline uint64_t SplitMix(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// out.size() a multiple of 8, at least 24.
inline void Fill(std::span<std::byte> out, uint64_t key, uint64_t version) {
  const uint64_t head[3] = {kMagic, key, version};
  std::memcpy(out.data(), head, sizeof(head));
  uint64_t s = key * 0x100000001B3ull ^ version;
  for (size_t at = sizeof(head); at + 8 <= out.size(); at += 8) {
    const uint64_t v = SplitMix(&s);
    std::memcpy(out.data() + at, &v, 8);
  }
}

// True when `in` is a whole block written by Fill; *key and *version say which.
inline bool Check(std::span<const std::byte> in, uint64_t* key, uint64_t* version) {
  uint64_t head[3];
  if (in.size() < sizeof(head)) return false;
  std::memcpy(head, in.data(), sizeof(head));
  if (head[0] != kMagic) return false;
  *key = head[1];
  *version = head[2];
  uint64_t s = head[1] * 0x100000001B3ull ^ head[2];
  for (size_t at = sizeof(head); at + 8 <= in.size(); at += 8) {
    uint64_t v;
    std::memcpy(&v, in.data() + at, 8);
    if (v != SplitMix(&s)) return false;
  }
  return true;
}

// What the logs say about one block: the last version acknowledged durable and the
// last version sent, and whether a close of its sequence was sent after that ack.
struct KeyState {
  uint64_t acked = 0;      // 0: none
  uint64_t attempted = 0;
  bool closed_after = false;
};
using BlockId = std::tuple<uint64_t, uint32_t, uint32_t>;  // seq, layer, block

// Reads one acknowledgement log into *state (logs of several clients may be merged:
// each client writes its own sequences).
inline void ReadLog(const std::string& path, std::map<BlockId, KeyState>* state) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    char kind = 0;
    ls >> kind;
    if (kind == 'C') {
      uint64_t seq = 0;
      if (!(ls >> seq)) continue;
      for (auto it = state->lower_bound({seq, 0, 0}); it != state->end() && std::get<0>(it->first) == seq; ++it) {
        it->second.closed_after = true;
      }
      continue;
    }
    uint64_t seq = 0, version = 0;
    uint32_t layer = 0, first = 0, count = 0;
    if (!(ls >> seq >> layer >> first >> count >> version)) continue;  // a torn last line
    for (uint32_t i = 0; i < count; ++i) {
      KeyState& k = (*state)[{seq, layer, first + i}];
      if (kind == 'P') k.attempted = std::max(k.attempted, version);
      if (kind == 'A') {
        k.acked = std::max(k.acked, version);
        k.closed_after = false;
      }
    }
  }
}

}  // namespace tierkv::soak
