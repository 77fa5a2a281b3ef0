#include "storage/slab_scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <memory>

#include "io/io_engine.h"

namespace tierkv::storage {
namespace {

constexpr size_t kChunkBytes = 8 << 20;  // read several slots per pread when verifying payloads

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly n bytes at off; kIOError on a short read.
Status ReadFully(int fd, std::byte* buf, size_t n, uint64_t off, const std::string& what) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, buf + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return FromErrno(errno, what);
    if (r == 0) return IOError(what + ": short read at offset " + std::to_string(off + done));
    done += static_cast<size_t>(r);
  }
  return OkStatus();
}

// Classifies one slot whose bytes (header sector, then payload when verify) are at p.
void ClassifySlot(const std::byte* p, SlotId slot, const SlabSuperblock& sb, bool verify, SlabScan* scan) {
  SlotHeader header;
  const SlotLayout layout = LayoutOf(sb);
  Status st = DecodeSlotHeader(layout, p, slot, sb.slot_capacity, &header);
  if (st.code() == StatusCode::kNotFound) {
    ++scan->empty;
    return;
  }
  if (st.ok() && verify) st = VerifyPayload(layout, header, p + layout.header_bytes);
  if (st.ok()) {
    scan->valid.push_back({slot, InfoOf(header)});
  } else {
    scan->damaged.push_back({slot, st});
  }
}

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

}  // namespace

Result<SlabScan> ScanSlabFile(const std::string& path, const SlabScanOptions& options) {
  // O_DIRECT keeps a scan of a large disk out of the page cache; buffered where the
  // file system refuses it.
  int raw = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (raw < 0 && errno == EINVAL) raw = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) return FromErrno(errno, "open slab " + path);
  ScopedFd fd(raw);

  SlabScan scan;
  std::unique_ptr<std::byte, FreeDeleter> sb_buf(
      static_cast<std::byte*>(std::aligned_alloc(io::kPageBytes, kSlabHeaderBytes)));
  RETURN_IF_ERROR(ReadFully(fd.get(), sb_buf.get(), kSlabHeaderBytes, 0, "read superblock of " + path));
  RETURN_IF_ERROR(DecodeSlabSuperblock(sb_buf.get(), path, &scan.superblock));
  const SlabSuperblock& sb = scan.superblock;

  struct stat st;
  if (fstat(fd.get(), &st) != 0) return FromErrno(errno, "stat " + path);
  const uint64_t expect_size = kSlabHeaderBytes + uint64_t{sb.slots_in_slab} * sb.slot_stride;
  if (static_cast<uint64_t>(st.st_size) != expect_size) {
    return Corruption(path + ": file is " + std::to_string(st.st_size) + " bytes, its superblock says " +
                      std::to_string(expect_size));
  }

  const bool verify = options.verify_payload;
  const size_t per_slot = verify ? sb.slot_stride : sb.header_bytes;
  const uint32_t chunk_slots = verify ? static_cast<uint32_t>(std::max<size_t>(1, kChunkBytes / per_slot)) : 1;
  std::unique_ptr<std::byte, FreeDeleter> buf(static_cast<std::byte*>(
      std::aligned_alloc(io::kPageBytes, io::RoundUpTo(per_slot * chunk_slots, io::kPageBytes))));
  if (buf == nullptr) return ResourceExhausted("scan buffer of " + std::to_string(per_slot * chunk_slots));

  for (uint32_t i = 0; i < sb.slots_in_slab; i += chunk_slots) {
    const uint32_t n = std::min(chunk_slots, sb.slots_in_slab - i);
    const uint64_t off = kSlabHeaderBytes + uint64_t{i} * sb.slot_stride;
    // Verifying: slots are contiguous (per_slot == stride), one read covers n slots.
    Status rs = ReadFully(fd.get(), buf.get(), per_slot * n, off, "read " + path);
    if (!rs.ok()) {
      for (uint32_t j = 0; j < n; ++j) scan.damaged.push_back({GlobalSlot(sb, i + j), rs});
      continue;
    }
    for (uint32_t j = 0; j < n; ++j) ClassifySlot(buf.get() + size_t{j} * per_slot, GlobalSlot(sb, i + j), sb, verify, &scan);
  }
  return scan;
}

}  // namespace tierkv::storage
