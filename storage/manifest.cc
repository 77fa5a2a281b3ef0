#include "storage/manifest.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <filesystem>

#include "common/log.h"

namespace tierkv::storage {
namespace {
constexpr std::string_view kCfNames[kNumCfs] = {"blocks", "sequences", "namespaces", "policies", "postings", "meta"};

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

  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (std::string_view name : kCfNames) descs.emplace_back(std::string(name), rocksdb::ColumnFamilyOptions());

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, descs, &handles, &db);
  if (!s.ok()) return FromRocks(s, "open manifest " + dir);
  // handles[0] is the default family, which tierkv does not use.
  db->DestroyColumnFamilyHandle(handles[0]).PermitUncheckedError();
  handles.erase(handles.begin());
  return std::unique_ptr<Manifest>(new Manifest(dir, db, std::move(handles)));
}

Manifest::Manifest(std::string dir, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs)
    : dir_(std::move(dir)), db_(db), cfs_(std::move(cfs)) {}

Manifest::~Manifest() {
  Status st = Flush();
  if (!st.ok()) LOG(WARNING) << "manifest flush at close: " << st.ToString();
  for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
  delete db_;
}

Status Manifest::Put(Cf cf, std::string_view key, std::string_view value, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Put(wo, Handle(cf), key, value), "manifest put");
}

Status Manifest::Delete(Cf cf, std::string_view key, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Delete(wo, Handle(cf), key), "manifest delete");
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
  return FromRocks(db_->Write(wo, &wb), "manifest write batch");
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
  return FromRocks(db_->Flush(fo, cfs_), "manifest flush");
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
