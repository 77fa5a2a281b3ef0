#include "daemon/namespace_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <vector>

#include "common/log.h"
#include "common/unique_fd.h"
#include "storage/block_records.h"
#include "storage/slot_format.h"

namespace tierkv::daemon {
namespace fs = std::filesystem;
namespace {
// Every per-namespace key starts with a kind byte and the big-endian namespace id,
// except the policy's, which is the id alone.
struct KeyFamily {
  storage::Cf cf;
  char kind;
};
constexpr KeyFamily kFamilies[] = {{storage::Cf::kBlocks, 'B'},
                                   {storage::Cf::kBlocks, 'P'},
                                   {storage::Cf::kSequences, 'L'},
                                   {storage::Cf::kSequences, 'O'},
                                   {storage::Cf::kMeta, 'C'}};  // the pending writes of the last commit

std::string Prefix(char kind, NamespaceId id) {
  std::string k(1, kind);
  storage::AppendBigEndian32(&k, id);
  return k;
}

std::string PolicyKey(NamespaceId id) {
  std::string k;
  storage::AppendBigEndian32(&k, id);
  return k;
}

std::string DiskBase(const Config& config) {
  return config.storage.disk_dir.empty() ? (fs::path(config.daemon.data_dir) / "disk").string()
                                         : config.storage.disk_dir;
}

// Every folder that may hold namespace directories: the single D folder and, with
// several devices, each device's.
std::vector<std::string> DiskBases(const Config& config) {
  std::vector<std::string> bases{DiskBase(config)};
  bases.insert(bases.end(), config.storage.disk_dirs.begin(), config.storage.disk_dirs.end());
  return bases;
}

std::string NsDir(const std::string& base, NamespaceId id) {
  return (fs::path(base) / ("ns" + std::to_string(id))).string();
}

// Removes one directory; the bytes its files held (0 when absent).
Result<uint64_t> RemoveDir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return uint64_t{0};
  uint64_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    std::error_code size_ec;
    if (e.is_regular_file(size_ec)) bytes += e.file_size(size_ec);
  }
  fs::remove_all(dir, ec);
  if (ec) return IOError("remove " + dir.string() + ": " + ec.message());
  return bytes;
}
}  // namespace

std::string NamespaceDiskDir(const Config& config, NamespaceId id) { return NsDir(DiskBase(config), id); }

std::vector<std::string> NamespaceStripedDiskDirs(const Config& config, NamespaceId id) {
  std::vector<std::string> dirs;
  for (const std::string& d : config.storage.disk_dirs) dirs.push_back(NsDir(d, id));
  return dirs;
}

Result<std::optional<uint32_t>> RecordedDiskSlots(const std::string& dir) {
  const std::string path = (fs::path(dir) / "slab-00000.tkv").string();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<uint32_t>();
    return FromErrno(errno, "open " + path);
  }
  std::vector<std::byte> block(storage::kSlabHeaderBytes);
  const ssize_t n = ::pread(fd.get(), block.data(), block.size(), 0);
  if (n < 0) return FromErrno(errno, "read the superblock of " + path);
  if (static_cast<size_t>(n) != block.size()) return Corruption(path + ": truncated superblock");
  storage::SlabSuperblock sb;
  RETURN_IF_ERROR(storage::DecodeSlabSuperblock(block.data(), path, &sb));
  return std::optional<uint32_t>(sb.total_slots);
}

Result<uint64_t> DeleteNamespaceRecords(storage::Manifest* manifest, NamespaceId id) {
  storage::Manifest::Batch batch;
  for (const KeyFamily& f : kFamilies) {
    RETURN_IF_ERROR(manifest->Scan(f.cf, Prefix(f.kind, id), [&](std::string_view k, std::string_view) {
      batch.Delete(f.cf, k);
      return true;
    }));
  }
  batch.Delete(storage::Cf::kPolicies, PolicyKey(id));
  const uint64_t n = batch.Count();
  RETURN_IF_ERROR(manifest->Write(batch));
  return n;
}

Result<uint64_t> RemoveNamespaceFiles(const Config& config, NamespaceId id) {
  uint64_t bytes = 0;
  for (const std::string& base : DiskBases(config)) {
    ASSIGN_OR_RETURN(const uint64_t b, RemoveDir(NsDir(base, id)));
    bytes += b;
  }
  return bytes;
}

Status SweepDeletedNamespaces(const Config& config, storage::Manifest* manifest,
                              const std::set<NamespaceId>& registered) {
  // Manifest records: collect the namespace ids they name.
  std::set<NamespaceId> orphans;
  for (const KeyFamily& f : kFamilies) {
    RETURN_IF_ERROR(manifest->Scan(f.cf, std::string(1, f.kind), [&](std::string_view k, std::string_view) {
      if (k.size() >= 5) {
        const NamespaceId id = storage::ReadBigEndian32(k.substr(1, 4));
        if (!registered.count(id)) orphans.insert(id);
      }
      return true;
    }));
  }
  RETURN_IF_ERROR(manifest->Scan(storage::Cf::kPolicies, "", [&](std::string_view k, std::string_view) {
    if (k.size() == 4 && !registered.count(storage::ReadBigEndian32(k))) orphans.insert(storage::ReadBigEndian32(k));
    return true;
  }));
  // D directories named ns<ID>.
  for (const std::string& base : DiskBases(config)) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(base, ec)) {
      const std::string name = e.path().filename().string();
      if (name.size() < 3 || name.rfind("ns", 0) != 0) continue;
      if (name.find_first_not_of("0123456789", 2) != std::string::npos || name.size() > 12) continue;
      const uint64_t id = std::stoull(name.substr(2));
      if (id <= UINT32_MAX && !registered.count(static_cast<NamespaceId>(id))) {
        orphans.insert(static_cast<NamespaceId>(id));
      }
    }
  }
  for (NamespaceId id : orphans) {
    ASSIGN_OR_RETURN(const uint64_t records, DeleteNamespaceRecords(manifest, id));
    ASSIGN_OR_RETURN(const uint64_t bytes, RemoveNamespaceFiles(config, id));
    LOG(WARNING) << "namespace " << id << " is not registered (a delete-namespace interrupted by a crash?): removed "
                 << records << " manifest record(s) and " << bytes << " bytes of D files";
  }
  return OkStatus();
}

}  // namespace tierkv::daemon
