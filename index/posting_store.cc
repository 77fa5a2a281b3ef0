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
  Status WriteAllImpl(const std::vector<std::vector<uint8_t>>& postings) override {
    offsets_.clear();
    records_.clear();
    uint64_t off = 0;
    for (size_t i = 0; i < postings.size(); ++i) {
      uint32_t bytes = 0;
      RETURN_IF_ERROR(WriteRecord(static_cast<uint32_t>(i), postings[i], off, &bytes));
      offsets_.push_back(off);
      records_.push_back(bytes);
      off += bytes;
    }
    if (ftruncate(write_fd_, static_cast<off_t>(off)) != 0) return FromErrno(errno, "truncate postings file");
    if (fdatasync(write_fd_) != 0) return FromErrno(errno, "fdatasync postings file");
    file_bytes_ = off;
    return OkStatus();
  }

  // New records at the end of the file; the directory points at them once all are written.
  Status RewriteImpl(std::span<const uint32_t> ids, const std::vector<std::vector<uint8_t>>& contents) override {
    uint64_t off = file_bytes_;
    std::vector<uint32_t> bytes(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      RETURN_IF_ERROR(WriteRecord(ids[i], contents[i], off, &bytes[i]));
      off += bytes[i];
    }
    if (fdatasync(write_fd_) != 0) return FromErrno(errno, "fdatasync postings file");
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
  // One record (header, payload, padding) at `off`; *bytes: its size on the medium.
  Status WriteRecord(uint32_t id, const std::vector<uint8_t>& p, uint64_t off, uint32_t* bytes) {
    RecordHeader h{kRecordMagic, id, p.size(), Checksum64(p.data(), p.size())};
    rec_.assign(RoundUp(sizeof(h) + p.size()), 0);
    std::memcpy(rec_.data(), &h, sizeof(h));
    if (!p.empty()) std::memcpy(rec_.data() + sizeof(h), p.data(), p.size());
    RETURN_IF_ERROR(PwriteAll(rec_.data(), rec_.size(), off));
    *bytes = static_cast<uint32_t>(rec_.size());
    return OkStatus();
  }
  Status PwriteAll(const uint8_t* data, size_t n, uint64_t off) {
    while (n > 0) {
      const ssize_t w = pwrite(write_fd_, data, n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return FromErrno(w < 0 ? errno : EIO, "write postings file");
      data += w, n -= static_cast<size_t>(w), off += static_cast<uint64_t>(w);
    }
    return OkStatus();
  }
  Status OpenEngine() {
    Result<std::unique_ptr<io::IoEngine>> e =
        engine_factory_ ? engine_factory_(engine_options_) : io::CreateIoEngine(engine_options_);
    if (!e.ok()) return e.status().WithContext("postings read engine");
    const int fds[] = {read_fd_};
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
        r.offset = offsets_[id] + done[i];
        r.length = records_[id] - done[i];
        r.buf = reinterpret_cast<std::byte*>(buf_.get() + at[i] + done[i]);
        reqs.push_back(r);
      }
      results.assign(reqs.size(), 0);
      Status st = io::RunIoBatch(*engine_, reqs, results);
      if (!st.ok()) {
        engine_.reset();  // a failed engine is dropped; the next batch makes another
        return st.WithContext("read postings");
      }
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
  std::unique_ptr<io::IoEngine> engine_;  // reads; null after it failed
  std::string engine_name_;
  std::vector<uint64_t> offsets_;  // [postings] record offset
  std::vector<uint32_t> records_;  // [postings] record bytes (multiple of kAlign)
  uint64_t file_bytes_ = 0;
  std::vector<uint8_t> rec_;  // the record being written
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
