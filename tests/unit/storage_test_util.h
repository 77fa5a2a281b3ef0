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

}  // namespace tierkv::storage::testing
