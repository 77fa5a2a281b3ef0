// PostingStore: where the SPANN retriever keeps its posting lists (DESIGN §4
// "placement"): written once per Build, read in batches at each step. index/
// does not depend on storage/ (DESIGN §9): this small interface is what the
// daemon's D tier will implement later; here there are two implementations:
//
//   memory   postings in RAM (tests, and contexts whose postings fit).
//   file     one file of 4 KiB-aligned records, read with O_DIRECT into aligned
//            buffers through an io::IoEngine (io/io_engine.h, the I/O layer the D
//            tier uses too; decision 0025): all reads of a batch submitted at once
//            through io_uring (when the build found liburing and the kernel allows
//            it) or, as the fallback, pread. A file system without O_DIRECT
//            (tmpfs) falls back to buffered reads. Writes (buffered) and their
//            fdatasync go through the same engine, so a test's fault injection
//            reaches them too. Each record carries a header (magic, id, length,
//            xxh3 of the payload) checked on every read: a bad record is
//            kCorruption, never returned.
//
// The public Read/Write check arguments and count bytes (non-virtual, as in
// CacheLib's device classes); implementations override *Impl.
// Thread-safety: not thread-safe; one user at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "io/io_engine.h"

namespace tierkv::index {

class PostingStore {
 public:
  virtual ~PostingStore() = default;
  // "memory" | "file+io_uring" | "file+psync" (the engine's name, e.g. "file+fault(psync)"
  // under a test's fault injection) (+ ",buffered")
  virtual std::string Name() const = 0;

  // Replaces the content with postings 0..postings.size()-1 (each at most
  // kMaxPostingBytes; empty postings are allowed). kInvalidArgument when one is
  // too large; kIOError (EIO, a write that stops short) / kResourceExhausted
  // (ENOSPC) from the medium, on a write or on the sync. On an error the store
  // holds no postings (num_postings() == 0): nothing half-written is readable.
  Status WriteAll(const std::vector<std::vector<uint8_t>>& postings);

  // Replaces postings ids[i] (each < num_postings(), no repeats) with contents[i]
  // (the incremental path: an Extend appends entries to a few postings). The
  // file store writes the new records at the end of its file (the old ones are
  // dead space until the next WriteAll). Views from an earlier ReadBatch may be
  // invalidated. kInvalidArgument: a bad id, a repeat, sizes that differ, a
  // posting too large; medium errors as WriteAll. The file store points at the
  // new records only once all are written and synced: on an error every posting
  // still reads as before the call.
  Status Rewrite(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents);

  // Reads the postings `ids` (any order, repeats allowed): (*out)[i] views the
  // payload of ids[i] and stays valid until the next ReadBatch or WriteAll.
  // kInvalidArgument for an id >= num_postings(); kIOError on a failed or short
  // read; kCorruption when a record's header or checksum is wrong. On an error
  // *out holds nothing of the batch.
  Status ReadBatch(std::span<const uint32_t> ids, std::vector<std::span<const uint8_t>>* out);

  uint32_t num_postings() const { return num_postings_; }
  // Bytes the postings occupy on the medium (records with headers and padding).
  virtual uint64_t StoredBytes() const = 0;
  // Bytes of RAM the store holds outside the medium (directory; for the memory
  // store, the postings too).
  virtual uint64_t MemoryBytes() const = 0;
  // Bytes read from the medium by ReadBatch since construction, and batches.
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t batches_read() const { return batches_; }

  static constexpr uint64_t kMaxPostingBytes = uint64_t{1} << 30;

 protected:
  virtual Status WriteAllImpl(const std::vector<std::vector<uint8_t>>& postings) = 0;
  // REQUIRES: arguments checked by Rewrite.
  virtual Status RewriteImpl(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents) = 0;
  // REQUIRES: every id < num_postings(). Adds the medium bytes it read to *bytes.
  virtual Status ReadBatchImpl(std::span<const uint32_t> ids, std::vector<std::span<const uint8_t>>* out,
                               uint64_t* bytes) = 0;

 private:
  uint32_t num_postings_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t batches_ = 0;
};

std::unique_ptr<PostingStore> NewMemoryPostingStore();

struct FilePostingStoreOptions {
  // Folder of the postings file; the file is created with a unique name and
  // unlinked at once (it disappears with the store, even after a crash).
  std::string dir = "/tmp";
  // Keep the file (named in *kept_path) instead of unlinking it: for tests that
  // damage it. Default: null (unlink)
  std::string* kept_path = nullptr;
  bool use_io_uring = true;   // Default: true (falls back to pread when unavailable)
  bool direct = true;         // O_DIRECT. Default: true (falls back to buffered when refused)
  uint32_t queue_depth = 64;  // reads in flight (io_uring queue entries), in [1, 4096]. Default: 64
  // Makes the read engine (io::CreateIoEngine when empty); tests wrap it to inject
  // faults (io/fault_injection_engine.h). Default: empty
  io::IoEngineFactory engine_factory;
};

// kInvalidArgument for a bad option; errors of open/io_uring setup otherwise.
Result<std::unique_ptr<PostingStore>> NewFilePostingStore(const FilePostingStoreOptions& options);

}  // namespace tierkv::index
