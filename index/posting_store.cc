#include "index/posting_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/checksum.h"

namespace tierkv::index {

Status PostingStore::WriteAll(const std::vector<std::vector<uint8_t>>& postings) {
  if (postings.size() > UINT32_MAX) return InvalidArgument("more than 2^32 postings");
  for (size_t i = 0; i < postings.size(); ++i) {
    if (postings[i].size() > kMaxPostingBytes) {
      return InvalidArgument("posting " + std::to_string(i) + " has " + std::to_string(postings[i].size()) +
                             " bytes, more than " + std::to_string(kMaxPostingBytes));
    }
  }
  num_postings_ = 0;
  RETURN_IF_ERROR(WriteAllImpl(postings));
  num_postings_ = static_cast<uint32_t>(postings.size());
  return OkStatus();
}

Status PostingStore::Rewrite(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents) {
  if (ids.size() != contents.size()) return InvalidArgument("Rewrite: ids and contents differ in size");
  std::vector<uint32_t> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return InvalidArgument("Rewrite: a posting appears twice");
  }
  if (!sorted.empty() && sorted.back() >= num_postings_) {
    return InvalidArgument("posting " + std::to_string(sorted.back()) + " out of range (" +
                           std::to_string(num_postings_) + " postings)");
  }
  for (size_t i = 0; i < contents.size(); ++i) {
    if (contents[i].size() > kMaxPostingBytes) {
      return InvalidArgument("posting " + std::to_string(ids[i]) + " would have more than " +
                             std::to_string(kMaxPostingBytes) + " bytes");
    }
  }
  if (ids.empty()) return OkStatus();
  return RewriteImpl(ids, contents);
}

Status PostingStore::ReadBatch(std::span<const uint32_t> ids, std::vector<std::span<const uint8_t>>* out) {
  for (uint32_t id : ids) {
    if (id >= num_postings_) {
      return InvalidArgument("posting " + std::to_string(id) + " out of range (" + std::to_string(num_postings_) +
                             " postings)");
    }
  }
  out->clear();
  if (ids.empty()) return OkStatus();
  uint64_t bytes = 0;
  Status s = ReadBatchImpl(ids, out, &bytes);
  bytes_read_ += bytes;
  ++batches_;
  if (!s.ok()) out->clear();  // never a partial batch
  return s;
}

namespace {

class MemoryPostingStore final : public PostingStore {
 public:
  std::string Name() const override { return "memory"; }
  uint64_t StoredBytes() const override { return bytes_; }
  uint64_t MemoryBytes() const override { return bytes_ + postings_.size() * sizeof(postings_[0]); }

 protected:
  Status WriteAllImpl(const std::vector<std::vector<uint8_t>>& postings) override {
    postings_ = postings;
    bytes_ = 0;
    for (const auto& p : postings_) bytes_ += p.size();
    return OkStatus();
  }
  Status RewriteImpl(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents) override {
    for (size_t i = 0; i < ids.size(); ++i) {
      bytes_ = bytes_ - postings_[ids[i]].size() + contents[i].size();
      postings_[ids[i]] = contents[i];
    }
    return OkStatus();
  }
  Status ReadBatchImpl(std::span<const uint32_t> ids, std::vector<std::span<const uint8_t>>* out,
                       uint64_t* bytes) override {
    for (uint32_t id : ids) {
      out->emplace_back(postings_[id].data(), postings_[id].size());
      *bytes += postings_[id].size();
    }
    return OkStatus();
  }

 private:
  std::vector<std::vector<uint8_t>> postings_;
  uint64_t bytes_ = 0;
};

// File record: header, payload, zero padding to a multiple of kAlign.
constexpr uint64_t kAlign = 4096;
constexpr uint32_t kRecordMagic = 0x504b5654;  // "TVKP"
struct RecordHeader {
  uint32_t magic;
  uint32_t id;
  uint64_t length;
  uint64_t checksum;  // Checksum64 of the payload
};
static_assert(sizeof(RecordHeader) == 24);

uint64_t RoundUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The engine's file table: the O_DIRECT (or buffered) read descriptor, the write one.
constexpr uint32_t kReadFile = 0, kWriteFile = 1;
// Records staged per round of writes, and bytes per write request.
constexpr uint64_t kWriteChunk = uint64_t{8} << 20;
constexpr uint64_t kWritePiece = uint64_t{1} << 20;

struct AlignedFree {
  void operator()(uint8_t* p) const { std::free(p); }
};

class FilePostingStore final : public PostingStore {
 public:
  ~FilePostingStore() override {
    if (read_fd_ >= 0) close(read_fd_);
    if (write_fd_ >= 0) close(write_fd_);
  }

  Status Open(const FilePostingStoreOptions& o) {
    static std::atomic<uint64_t> counter{0};
    std::string path = o.dir + "/tierkv-postings-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    write_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (write_fd_ < 0) return FromErrno(errno, "create " + path);
    direct_ = o.direct;
    read_fd_ = direct_ ? open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
    if (read_fd_ < 0) {  // O_DIRECT refused (tmpfs) or not asked for
      direct_ = false;
      read_fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    }
    const int saved = errno;
    if (o.kept_path != nullptr) {
      *o.kept_path = path;
    } else {
      unlink(path.c_str());  // the file lives as long as the descriptors
    }
    if (read_fd_ < 0) return FromErrno(saved, "open " + path);
    engine_options_.kind = o.use_io_uring ? io::IoEngineKind::kAuto : io::IoEngineKind::kPsync;
    engine_options_.queue_depth = o.queue_depth;
    engine_factory_ = o.engine_factory;
    return OpenEngine();
  }

  std::string Name() const override { return std::string("file+") + engine_name_ + (direct_ ? "" : ",buffered"); }
  uint64_t StoredBytes() const override { return file_bytes_; }
  uint64_t MemoryBytes() const override {
    return offsets_.size() * sizeof(uint64_t) + records_.size() * sizeof(uint32_t);
  }

 protected:
  // Records from offset 0, then a sync. On an error the directory is empty (the
  // base class reports no postings): nothing half-written is ever pointed at.
  Status WriteAllImpl(const std::vector<std::vector<uint8_t>>& postings) override {
    offsets_.clear();
    records_.clear();
    file_bytes_ = 0;
    std::vector<uint32_t> ids(postings.size());
    for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
    std::vector<uint32_t> bytes;
    RETURN_IF_ERROR(WriteRecords(ids, postings, 0, &bytes));
    uint64_t off = 0;
    for (uint32_t b : bytes) {
      offsets_.push_back(off);
      records_.push_back(b);
      off += b;
    }
    // Drops the tail of an earlier, longer content (metadata only, not through the engine).
    if (ftruncate(write_fd_, static_cast<off_t>(off)) != 0) {
      offsets_.clear();
      records_.clear();
      return FromErrno(errno, "truncate postings file");
    }
    file_bytes_ = off;
    return OkStatus();
  }

  // New records at the end of the file; the directory points at them once all are
  // written and synced. On an error it still points at the old records (a later
  // Rewrite writes over the abandoned tail).
  Status RewriteImpl(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents) override {
    std::vector<uint32_t> bytes;
    RETURN_IF_ERROR(WriteRecords(ids, contents, file_bytes_, &bytes));
    for (size_t i = 0; i < ids.size(); ++i) {
      offsets_[ids[i]] = file_bytes_;
      records_[ids[i]] = bytes[i];
      file_bytes_ += bytes[i];
    }
    return OkStatus();
  }

  Status ReadBatchImpl(std::span<const uint32_t> ids, std::vector<std::span<const uint8_t>>* out,
                       uint64_t* bytes) override {
    std::vector<uint32_t> unique(ids.begin(), ids.end());
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    uint64_t total = 0;
    std::vector<uint64_t> at(unique.size());
    for (size_t i = 0; i < unique.size(); ++i) {
      at[i] = total;
      total += records_[unique[i]];
    }
    RETURN_IF_ERROR(Reserve(total));
    RETURN_IF_ERROR(ReadRecords(unique, at));
    *bytes += total;
    for (uint32_t id : ids) {
      const size_t i = std::lower_bound(unique.begin(), unique.end(), id) - unique.begin();
      const uint8_t* rec = buf_.get() + at[i];
      RecordHeader h;
      std::memcpy(&h, rec, sizeof(h));
      // The length is checked before it is used (a damaged one may be near 2^64).
      if (h.magic != kRecordMagic || h.id != id || h.length > records_[id] - sizeof(h) ||
          Checksum64(rec + sizeof(h), h.length) != h.checksum) {
        return Corruption("posting " + std::to_string(id) + ": bad record header or checksum");
      }
      out->emplace_back(rec + sizeof(h), h.length);
    }
    return OkStatus();
  }

 private:
  // Writes the records of contents[i] (posting ids[i]) back to back from `off`
  // through the engine, then syncs the file through it; (*bytes)[i]: record i's
  // size on the medium. Records are staged kWriteChunk bytes at a time (at least
  // one record) in an aligned buffer; each chunk goes as requests of at most
  // kWritePiece bytes, all in flight at once. kResourceExhausted for ENOSPC,
  // kIOError for EIO or a write that stops making progress.
  Status WriteRecords(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents, uint64_t off,
                      std::vector<uint32_t>* bytes) {
    if (!engine_) RETURN_IF_ERROR(OpenEngine());  // the last one failed
    bytes->assign(ids.size(), 0);
    uint64_t staged = 0, chunk_off = off;
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::vector<uint8_t>& p = contents[i];
      const uint64_t rec = RoundUp(sizeof(RecordHeader) + p.size());
      if (staged > 0 && staged + rec > kWriteChunk) {
        RETURN_IF_ERROR(WriteChunk(staged, chunk_off));
        chunk_off += staged;
        staged = 0;
      }
      RETURN_IF_ERROR(ReserveStage(staged + rec));
      uint8_t* at = stage_.get() + staged;
      const RecordHeader h{kRecordMagic, ids[i], p.size(), Checksum64(p.data(), p.size())};
      std::memcpy(at, &h, sizeof(h));
      if (!p.empty()) std::memcpy(at + sizeof(h), p.data(), p.size());
      std::memset(at + sizeof(h) + p.size(), 0, rec - sizeof(h) - p.size());
      (*bytes)[i] = static_cast<uint32_t>(rec);
      staged += rec;
    }
    if (staged > 0) RETURN_IF_ERROR(WriteChunk(staged, chunk_off));
    return SyncWrites();
  }

  // stage_[0, n) to the file at `off`. A short write is continued from where it
  // stopped while it makes progress (a fault injector's torn write, a signal).
  Status WriteChunk(uint64_t n, uint64_t off) {
    std::vector<io::IoRequest> reqs;
    for (uint64_t at = 0; at < n; at += kWritePiece) {
      io::IoRequest r;
      r.op = io::IoOp::kWrite;
      r.file = kWriteFile;
      r.offset = off + at;
      r.length = static_cast<uint32_t>(std::min(kWritePiece, n - at));
      r.buf = reinterpret_cast<std::byte*>(stage_.get() + at);
      reqs.push_back(r);
    }
    std::vector<int32_t> results;
    while (!reqs.empty()) {
      results.assign(reqs.size(), 0);
      RETURN_IF_ERROR(RunOnEngine(reqs, results, "write postings"));
      std::vector<io::IoRequest> again;
      for (size_t k = 0; k < reqs.size(); ++k) {
        io::IoRequest r = reqs[k];
        const std::string what = "write postings file at " + std::to_string(r.offset);
        if (results[k] < 0) return FromErrno(-results[k], what);
        if (results[k] == 0) return IOError(what + ": no bytes written");
        const uint32_t done = std::min(static_cast<uint32_t>(results[k]), r.length);
        if (done == r.length) continue;
        if (done % io::kIoAlign != 0) return IOError(what + ": short write of " + std::to_string(done) + " bytes");
        r.offset += done;
        r.buf += done;
        r.length -= done;
        again.push_back(r);
      }
      reqs.swap(again);
    }
    return OkStatus();
  }

  // fdatasync of the write descriptor, as an engine request (so faults reach it).
  Status SyncWrites() {
    io::IoRequest r;
    r.op = io::IoOp::kSync;
    r.file = kWriteFile;
    int32_t result = 0;
    RETURN_IF_ERROR(RunOnEngine(std::span(&r, 1), std::span(&result, 1), "sync postings"));
    if (result < 0) return FromErrno(-result, "sync postings file");
    return OkStatus();
  }

  // io::RunIoBatch; an engine failure (not one request's) drops the engine, and the
  // next batch makes another (the D tier does the same with its pool).
  Status RunOnEngine(std::span<const io::IoRequest> reqs, std::span<int32_t> results, const char* what) {
    Status st = io::RunIoBatch(*engine_, reqs, results);
    if (!st.ok()) engine_.reset();
    return st.ok() ? st : st.WithContext(what);
  }

  Status ReserveStage(uint64_t n) {
    if (n <= stage_bytes_) return OkStatus();
    n = std::max<uint64_t>(n, std::min<uint64_t>(2 * stage_bytes_, kWriteChunk));
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, n) != 0) return ResourceExhausted("postings write buffer of " + std::to_string(n));
    if (stage_bytes_ > 0) std::memcpy(p, stage_.get(), stage_bytes_);
    stage_.reset(static_cast<uint8_t*>(p));
    stage_bytes_ = n;
    return OkStatus();
  }

  Status OpenEngine() {
    Result<std::unique_ptr<io::IoEngine>> e =
        engine_factory_ ? engine_factory_(engine_options_) : io::CreateIoEngine(engine_options_);
    if (!e.ok()) return e.status().WithContext("postings engine");
    const int fds[] = {read_fd_, write_fd_};  // kReadFile, kWriteFile
    RETURN_IF_ERROR((*e)->RegisterFiles(fds));
    engine_ = std::move(e).value();
    engine_name_ = engine_->name();
    return OkStatus();
  }

  // Reads the records `unique` (ascending ids) into buf_ + at[i], all of them
  // submitted through the engine at once (up to its queue depth in flight). A short
  // read is continued from where it stopped while it makes progress (a fault
  // injector's torn read, a signal); an error, or end of file, is kIOError.
  Status ReadRecords(const std::vector<uint32_t>& unique, const std::vector<uint64_t>& at) {
    if (!engine_) RETURN_IF_ERROR(OpenEngine());  // the last one failed
    std::vector<uint32_t> done(unique.size(), 0);
    std::vector<size_t> todo(unique.size());
    for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    std::vector<io::IoRequest> reqs;
    std::vector<int32_t> results;
    while (!todo.empty()) {
      reqs.clear();
      for (size_t i : todo) {
        const uint32_t id = unique[i];
        io::IoRequest r;
        r.op = io::IoOp::kRead;
        r.file = kReadFile;
        r.offset = offsets_[id] + done[i];
        r.length = records_[id] - done[i];
        r.buf = reinterpret_cast<std::byte*>(buf_.get() + at[i] + done[i]);
        reqs.push_back(r);
      }
      results.assign(reqs.size(), 0);
      RETURN_IF_ERROR(RunOnEngine(reqs, results, "read postings"));
      std::vector<size_t> again;
      for (size_t k = 0; k < todo.size(); ++k) {
        const size_t i = todo[k];
        auto what = [&] {  // built on an error only
          return "read posting " + std::to_string(unique[i]) + " at " + std::to_string(reqs[k].offset);
        };
        if (results[k] < 0) return FromErrno(-results[k], what());
        if (results[k] == 0) return IOError(what() + ": end of file");
        done[i] += std::min(static_cast<uint32_t>(results[k]), reqs[k].length);
        if (done[i] == records_[unique[i]]) continue;
        // The rest must stay aligned for O_DIRECT: an unaligned short read is an error.
        if (done[i] % io::kIoAlign != 0) {
          return IOError(what() + ": short read of " + std::to_string(results[k]) + " bytes");
        }
        again.push_back(i);
      }
      todo.swap(again);
    }
    return OkStatus();
  }
  Status Reserve(uint64_t n) {
    if (n <= buf_bytes_) return OkStatus();
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, n) != 0) return ResourceExhausted("postings read buffer of " + std::to_string(n));
    buf_.reset(static_cast<uint8_t*>(p));
    buf_bytes_ = n;
    return OkStatus();
  }

  int write_fd_ = -1, read_fd_ = -1;
  bool direct_ = false;
  io::IoEngineOptions engine_options_;
  io::IoEngineFactory engine_factory_;
  std::unique_ptr<io::IoEngine> engine_;  // reads, writes and syncs; null after it failed
  std::string engine_name_;
  std::vector<uint64_t> offsets_;  // [postings] record offset
  std::vector<uint32_t> records_;  // [postings] record bytes (multiple of kAlign)
  uint64_t file_bytes_ = 0;
  std::unique_ptr<uint8_t, AlignedFree> stage_;  // records being written (kAlign-aligned)
  uint64_t stage_bytes_ = 0;
  std::unique_ptr<uint8_t, AlignedFree> buf_;
  uint64_t buf_bytes_ = 0;
};

}  // namespace

std::unique_ptr<PostingStore> NewMemoryPostingStore() { return std::make_unique<MemoryPostingStore>(); }

Result<std::unique_ptr<PostingStore>> NewFilePostingStore(const FilePostingStoreOptions& options) {
  if (options.dir.empty()) return InvalidArgument("file posting store: empty dir");
  if (options.queue_depth == 0 || options.queue_depth > 4096) {
    return InvalidArgument("file posting store: queue_depth must be in [1, 4096]");
  }
  auto s = std::make_unique<FilePostingStore>();
  RETURN_IF_ERROR(s->Open(options));
  return std::unique_ptr<PostingStore>(std::move(s));
}

}  // namespace tierkv::index
