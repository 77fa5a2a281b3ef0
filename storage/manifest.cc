#include "storage/manifest.h"

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>

#include "common/log.h"

namespace tierkv::storage {
namespace {
constexpr std::string_view kCfNames[kNumCfs] = {"blocks", "sequences", "namespaces", "policies", "postings", "meta"};
// Memtables of 16 MiB (RocksDB's default is 64): the manifest's records are small.
constexpr uint64_t kWriteBufferBytes = 16ull << 20;
// Free space a write needs to leave (at most a tenth of the file system): the WAL's
// appends and memtable flushes of several column families.
constexpr uint64_t kFreeReserveBytes = 4 * kWriteBufferBytes;

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return OkStatus();
  std::string m = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return NotFound(std::move(m));
  if (s.IsCorruption()) return Corruption(std::move(m));
  if (s.IsNoSpace()) return ResourceExhausted(std::move(m));
  if (s.IsBusy() || s.IsTryAgain()) return Busy(std::move(m));
  if (s.IsInvalidArgument()) return InvalidArgument(std::move(m));
  return IOError(std::move(m));
}

// RocksDB's own recovery from a full disk (an SstFileManager thread calling Resume)
// writes to the WAL that failed, which RocksDB 7.8 answers with an assertion that
// aborts the process (facebook/rocksdb#12448): a restart recovers instead.
class NoAutoRecovery : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status, bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// Opens the DB in dir with every column family; *cfs gets tierkv's (not the default).
rocksdb::Status OpenDb(const std::string& dir, rocksdb::DB** db, std::vector<rocksdb::ColumnFamilyHandle*>* cfs) {
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  options.max_open_files = kMaxOpenTableFiles;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  options.max_bgerror_resume_count = 0;  // no recovery touching a failed WAL (see NoAutoRecovery)
  options.listeners.push_back(std::make_shared<NoAutoRecovery>());
  rocksdb::ColumnFamilyOptions cf;
  cf.write_buffer_size = kWriteBufferBytes;  // a memtable flush fits the free-space reserve
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, cf);
  for (std::string_view name : kCfNames) descs.emplace_back(std::string(name), cf);
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, descs, &handles, db);
  if (!s.ok()) return s;
  // handles[0] is the default family, which tierkv does not use.
  (*db)->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
  handles.erase(handles.begin());
  *cfs = std::move(handles);
  return s;
}
}  // namespace

std::string_view CfName(Cf cf) { return kCfNames[static_cast<int>(cf)]; }

Manifest::Batch::Batch() = default;
Manifest::Batch::~Batch() = default;
Manifest::Batch::Batch(Batch&&) noexcept = default;
void Manifest::Batch::Put(Cf cf, std::string_view key, std::string_view value) {
  ops_.push_back({cf, false, std::string(key), std::string(value)});
}
void Manifest::Batch::Delete(Cf cf, std::string_view key) { ops_.push_back({cf, true, std::string(key), {}}); }
size_t Manifest::Batch::Count() const { return ops_.size(); }


Result<std::unique_ptr<Manifest>> Manifest::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IOError("create manifest directory " + dir + ": " + ec.message());
  // Block records, owners and namespaces are the daemon's business alone: 0700.
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
  if (ec) return IOError("set mode 0700 on manifest directory " + dir + ": " + ec.message());

  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  rocksdb::Status s = OpenDb(dir, &db, &cfs);
  if (!s.ok()) return FromRocks(s, "open manifest " + dir);
  return std::unique_ptr<Manifest>(new Manifest(dir, db, std::move(cfs)));
}

Manifest::Manifest(std::string dir, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs)
    : dir_(std::move(dir)), db_(db), cfs_(std::move(cfs)) {}

Manifest::~Manifest() {
  if (writes_stopped()) {  // closing would touch the failed WAL: RocksDB 7.8 aborts (see Mutate)
    LOG(WARNING) << "manifest " << dir_ << ": left for the next start to recover (a write failed)";
    return;  // the DB object is leaked on purpose; the process is ending
  }
  Status st = Flush();
  if (!st.ok()) LOG(WARNING) << "manifest flush at close: " << st.ToString();
  for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
  delete db_;
}

bool Manifest::writes_stopped() const {
  MutexLock lock(&write_mu_);
  return !write_error_.empty();
}

Status Manifest::CheckFreeSpace(std::string_view what) const {
  struct statvfs fs {};
  if (::statvfs(dir_.c_str(), &fs) != 0) return OkStatus();  // cannot tell: let RocksDB try
  const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  const uint64_t reserve = std::min<uint64_t>(kFreeReserveBytes, uint64_t{fs.f_blocks} * fs.f_frsize / 10);
  if (free_bytes >= reserve) return OkStatus();
  return ResourceExhausted(std::string(what) + ": the file system of " + dir_ + " has " +
                           std::to_string(free_bytes >> 10) + " KiB free, below the manifest's reserve of " +
                           std::to_string(reserve >> 10) + " KiB");
}

Status Manifest::Mutate(std::string_view what, const std::function<rocksdb::Status(rocksdb::DB*)>& op) {
  MutexLock lock(&write_mu_);
  if (!write_error_.empty()) {
    return ResourceExhausted(std::string(what) + ": manifest writes stopped after a failed write (" + write_error_ +
                             "); free space and restart tierkvd");
  }
  RETURN_IF_ERROR(CheckFreeSpace(what));
  const rocksdb::Status s = op(db_);
  if (s.ok()) return OkStatus();
  const Status st = FromRocks(s, what);
  if (s.IsIOError() || s.IsNoSpace() || s.IsCorruption()) {
    write_error_ = st.message();
    LOG(ERROR) << "manifest: " << st.ToString() << ": no more manifest writes until tierkvd restarts (durable "
               << "puts fail; blocks stay in G and H)";
  }
  return st;
}

Status Manifest::Put(Cf cf, std::string_view key, std::string_view value, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return Mutate("manifest put", [&](rocksdb::DB* db) { return db->Put(wo, Handle(cf), key, value); });
}

Status Manifest::Delete(Cf cf, std::string_view key, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return Mutate("manifest delete", [&](rocksdb::DB* db) { return db->Delete(wo, Handle(cf), key); });
}

Result<std::string> Manifest::Get(Cf cf, std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Handle(cf), key, &value);
  if (!s.ok()) return FromRocks(s, "manifest get in " + std::string(CfName(cf)));
  return value;
}

Status Manifest::Write(const Batch& batch, bool sync) {
  rocksdb::WriteBatch wb;
  for (const auto& op : batch.ops_) {
    rocksdb::Status s = op.del ? wb.Delete(Handle(op.cf), op.key) : wb.Put(Handle(op.cf), op.key, op.value);
    if (!s.ok()) return FromRocks(s, "manifest batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return Mutate("manifest write batch", [&](rocksdb::DB* db) { return db->Write(wo, &wb); });
}

Status Manifest::Scan(Cf cf, std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Handle(cf)));
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) break;
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(it->value().data(), it->value().size()))) break;
  }
  return FromRocks(it->status(), "manifest scan");
}

Status Manifest::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return Mutate("manifest flush", [&](rocksdb::DB* db) { return db->Flush(fo, cfs_); });
}

void AppendBigEndian32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t ReadBigEndian32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}
uint64_t ReadBigEndian64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace tierkv::storage
