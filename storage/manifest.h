// Manifest: the daemon's durable metadata in RocksDB (DESIGN §3), one column family
// per kind of record. Values are opaque bytes to the manifest; their owners encode
// them. Writes that must change together go in one Batch (atomic).
//
// Thread-safe. Every write is synced to the WAL unless `sync` is false. Writes run one
// at a time and only while the file system keeps a reserve free (see Mutate).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
class Status;
}  // namespace rocksdb

namespace tierkv::storage {

enum class Cf : int { kBlocks = 0, kSequences, kNamespaces, kPolicies, kPostings, kMeta };
inline constexpr int kNumCfs = 6;
// Table (SST) files RocksDB keeps open at most (its table cache): each memtable flush
// adds one until a compaction merges them, so a long-running daemon's descriptors
// stay bounded (-1, RocksDB's default, keeps every table file open).
inline constexpr int kMaxOpenTableFiles = 64;
std::string_view CfName(Cf cf);

class Manifest {
 public:
  // A set of writes applied atomically by Manifest::Write.
  class Batch {
   public:
    Batch();
    ~Batch();
    Batch(Batch&&) noexcept;
    void Put(Cf cf, std::string_view key, std::string_view value);
    void Delete(Cf cf, std::string_view key);
    size_t Count() const;

   private:
    friend class Manifest;
    struct Op {
      Cf cf;
      bool del;
      std::string key, value;
    };
    std::vector<Op> ops_;
  };

  // Opens (creating if needed) the manifest in `dir` with all column families.
  static Result<std::unique_ptr<Manifest>> Open(const std::string& dir);
  ~Manifest();  // flushes memtables and closes the DB
  Manifest(const Manifest&) = delete;
  Manifest& operator=(const Manifest&) = delete;

  Status Put(Cf cf, std::string_view key, std::string_view value, bool sync = true);
  Status Delete(Cf cf, std::string_view key, bool sync = true);
  // kNotFound when the key is absent.
  Result<std::string> Get(Cf cf, std::string_view key) const;
  Status Write(const Batch& batch, bool sync = true);
  // Calls fn(key, value) for every record of cf whose key starts with prefix, in key
  // order; stops early when fn returns false.
  Status Scan(Cf cf, std::string_view prefix,
              const std::function<bool(std::string_view key, std::string_view value)>& fn) const;
  // Flushes memtables to SST files (used at shutdown; the WAL already makes writes durable).
  Status Flush();
  const std::string& dir() const { return dir_; }
  // Whether writes stopped for good after one failed (the daemon must restart).
  bool writes_stopped() const EXCLUDES(write_mu_);

 private:
  Manifest(std::string dir, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs);
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const { return cfs_[static_cast<int>(cf)]; }

  // Runs one write. RocksDB 7.8 aborts the process (an assertion) on any later use
  // of a WAL file whose write failed, closing the DB included (facebook/rocksdb#12448,
  // fixed in 9.x). So a write is refused while the file system has less than a
  // reserve free (a full disk is the common failure), and after a write fails anyway
  // no write touches the DB again and it is never closed: the WAL holds every write
  // acknowledged before, and the next start recovers it.
  Status Mutate(std::string_view what, const std::function<rocksdb::Status(rocksdb::DB*)>& op) EXCLUDES(write_mu_);
  Status CheckFreeSpace(std::string_view what) const;

  std::string dir_;
  rocksdb::DB* db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;  // indexed by Cf
  mutable Mutex write_mu_;  // one write at a time: the one after a failure must see it
  std::string write_error_ GUARDED_BY(write_mu_);  // "" while writes go on
};

// Big-endian fixed-width encodings so that keys sort numerically.
void AppendBigEndian32(std::string* out, uint32_t v);
void AppendBigEndian64(std::string* out, uint64_t v);
uint32_t ReadBigEndian32(std::string_view in);
uint64_t ReadBigEndian64(std::string_view in);

}  // namespace tierkv::storage
