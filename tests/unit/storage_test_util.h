// Helpers shared by the storage tests (unit and fault): scratch directories on a
// file system that accepts O_DIRECT, random payloads, block keys.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <span>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "common/ids.h"
#include "storage/tier.h"

#ifndef TIERKV_TEST_SCRATCH_DIR
#define TIERKV_TEST_SCRATCH_DIR "."
#endif

namespace tierkv::storage::testing {

// Allocates page-aligned (4 KiB) storage, as H slots are, so D-tier reads and
// writes can take the zero-copy path.
template <class T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) {}  // NOLINT(implicit)
  T* allocate(size_t n) {
    const size_t bytes = (n * sizeof(T) + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(4096, bytes == 0 ? 4096 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const PageAllocator<U>&) const { return true; }
};

// Byte buffers of the storage tests: page-aligned.
using Bytes = std::vector<std::byte, PageAllocator<std::byte>>;

// True when out holds no payload bytes: each byte is the sentinel or zero (what a
// failed read may leave).
inline bool HoldsNoData(const Bytes& out, std::byte sentinel) {
  for (std::byte b : out) {
    if (b != sentinel && b != std::byte{0}) return false;
  }
  return true;
}

// True when files under `dir` can be written with O_DIRECT.
inline bool DirectIoWorks(const std::string& dir) {
  const std::string probe = dir + "/.odirect-probe";
  const int fd = open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  void* buf = std::aligned_alloc(4096, 4096);
  bool ok = buf != nullptr && pwrite(fd, buf, 4096, 0) == 4096;
  std::free(buf);
  close(fd);
  unlink(probe.c_str());
  return ok;
}

// A fresh directory, removed with its contents on destruction. Made under
// $TMPDIR (or /tmp) when O_DIRECT works there, else under the build tree.
class ScratchDir {
 public:
  ScratchDir() {
    for (std::string base : {Env("TMPDIR", "/tmp"), std::string(TIERKV_TEST_SCRATCH_DIR)}) {
      std::filesystem::create_directories(base);
      std::string tmpl = base + "/tierkv-storage-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) continue;
      if (DirectIoWorks(tmpl)) {
        path_ = tmpl;
        return;
      }
      std::filesystem::remove_all(tmpl);
    }
  }
  ~ScratchDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Empty when no candidate accepts O_DIRECT.
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  static std::string Env(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : fallback;
  }
  std::string path_;
};

inline Bytes RandomBytes(size_t n, std::mt19937_64& rng) {
  Bytes v(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<std::byte>(rng());
  return v;
}

inline SlotTag TagFor(uint64_t seq, uint32_t index, uint64_t generation) {
  BlockKey key;
  key.ns = 7;
  key.layer = index % 32;
  key.seq = seq;
  key.index = index;
  return SlotTag{key, generation};
}

// Self-checking block contents: a block of key (seq, layer, index) at version v
// holds v in bytes [0, 8), a key code in [8, 16) and a pseudo-random stream seeded
// by (key, v) after that, so bytes read back either name exactly one version of
// that key or are corrupt (or another key's).
inline uint64_t KeyCode(uint64_t seq, uint32_t layer, uint32_t index) {
  return (seq << 32) ^ (uint64_t{layer} << 20) ^ index;
}

inline uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// REQUIRES: out.size() >= 16.
inline void FillBlock(uint64_t seq, uint32_t layer, uint32_t index, uint64_t version, std::span<std::byte> out) {
  const uint64_t code = KeyCode(seq, layer, index);
  std::memcpy(out.data(), &version, 8);
  std::memcpy(out.data() + 8, &code, 8);
  uint64_t s = code * 0x100000001B3ull ^ version;
  for (size_t i = 16; i < out.size(); i += 8) {
    const uint64_t x = SplitMix(s);
    std::memcpy(out.data() + i, &x, std::min<size_t>(8, out.size() - i));
  }
}

// The version the bytes hold when they are exactly a block of this key, else nullopt.
inline std::optional<uint64_t> CheckBlock(uint64_t seq, uint32_t layer, uint32_t index,
                                          std::span<const std::byte> in) {
  uint64_t version, code;
  std::memcpy(&version, in.data(), 8);
  std::memcpy(&code, in.data() + 8, 8);
  if (code != KeyCode(seq, layer, index)) return std::nullopt;
  uint64_t s = code * 0x100000001B3ull ^ version;
  for (size_t i = 16; i < in.size(); i += 8) {
    const uint64_t x = SplitMix(s);
    if (std::memcmp(in.data() + i, &x, std::min<size_t>(8, in.size() - i)) != 0) return std::nullopt;
  }
  return version;
}

}  // namespace tierkv::storage::testing
