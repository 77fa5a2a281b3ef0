#include "index/posting_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/checksum.h"
#include "index/uring_reader.h"

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
    if (o.use_io_uring) {
      auto r = UringReader::Create(o.queue_depth);
      if (r.ok()) uring_ = std::move(r).value();
    }
    return OkStatus();
  }

  std::string Name() const override {
    return std::string("file+") + (uring_ ? "io_uring" : "pread") + (direct_ ? "" : ",buffered");
  }
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
    std::vector<ReadOp> ops(unique.size());
    for (size_t i = 0; i < unique.size(); ++i) ops[i] = {offsets_[unique[i]], records_[unique[i]], buf_.get() + at[i]};
    if (uring_) {
      RETURN_IF_ERROR(uring_->ReadAll(read_fd_, ops));
    } else {
      for (const ReadOp& op : ops) RETURN_IF_ERROR(PreadAll(op));
    }
    *bytes += total;
    for (uint32_t id : ids) {
      const size_t i = std::lower_bound(unique.begin(), unique.end(), id) - unique.begin();
      const uint8_t* rec = buf_.get() + at[i];
      RecordHeader h;
      std::memcpy(&h, rec, sizeof(h));
      if (h.magic != kRecordMagic || h.id != id || sizeof(h) + h.length > records_[id] ||
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
  Status PreadAll(const ReadOp& op) {
    uint32_t done = 0;
    while (done < op.length) {
      const ssize_t r = pread(read_fd_, static_cast<char*>(op.buf) + done, op.length - done,
                              static_cast<off_t>(op.offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return FromErrno(errno, "pread postings at " + std::to_string(op.offset));
      if (r == 0) return IOError("pread postings at " + std::to_string(op.offset) + ": end of file");
      done += static_cast<uint32_t>(r);
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
  std::unique_ptr<UringReader> uring_;
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
