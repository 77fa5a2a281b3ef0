#include "storage/disk_tier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "common/checksum.h"
#include "common/log.h"
#include "common/mutex.h"
#include "storage/payload_checksum.h"
#include "storage/slot_format.h"

namespace tierkv::storage {
namespace {

constexpr uint32_t kMaxQueueDepth = 4096;
constexpr uint32_t kMaxDevices = 64;

std::string SlabPath(const std::string& dir, uint32_t index) {
  char name[32];
  std::snprintf(name, sizeof(name), "slab-%05u.tkv", index);
  return (std::filesystem::path(dir) / name).string();
}

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<std::byte, FreeDeleter>;

AlignedBuf NewAlignedBlock(size_t n = kSlabHeaderBytes) {
  auto* p = static_cast<std::byte*>(std::aligned_alloc(io::kPageBytes, io::RoundUpTo(n, io::kPageBytes)));
  if (p != nullptr) std::memset(p, 0, n);
  return AlignedBuf(p);
}

std::vector<std::string> DirsOf(const DiskTierOptions& o) {
  return o.dirs.empty() ? std::vector<std::string>{o.dir} : o.dirs;
}

Status CheckOptions(const DiskTierOptions& o) {
  const std::vector<std::string> dirs = DirsOf(o);
  if (dirs.size() > kMaxDevices) return InvalidArgument("D tier: more than 64 dirs");
  for (const std::string& d : dirs) {
    if (d.empty()) return InvalidArgument("D tier: dir is empty");
  }
  for (size_t i = 0; i < dirs.size(); ++i) {
    for (size_t j = i + 1; j < dirs.size(); ++j) {
      if (std::filesystem::path(dirs[i]).lexically_normal() == std::filesystem::path(dirs[j]).lexically_normal()) {
        return InvalidArgument("D tier: dir " + dirs[i] + " is listed twice");
      }
    }
  }
  if (o.num_slots == 0 || o.num_slots == kInvalidSlot) {
    return InvalidArgument("D tier: num_slots must be in [1, 2^32 - 2], got " + std::to_string(o.num_slots));
  }
  if (o.num_slots < dirs.size()) return InvalidArgument("D tier: fewer slots than dirs");
  if (o.slot_capacity == 0 || o.slot_capacity > kMaxDiskSlotCapacity) {
    return InvalidArgument("D tier: slot_capacity must be in [1, 1 GiB], got " + std::to_string(o.slot_capacity));
  }
  if (o.queue_depth == 0 || o.queue_depth > kMaxQueueDepth) {
    return InvalidArgument("D tier: queue_depth must be in [1, 4096], got " + std::to_string(o.queue_depth));
  }
  if (o.io_contexts == 0) return InvalidArgument("D tier: io_contexts must be >= 1");
  if (o.format_version < kOldestSlabFormatVersion || o.format_version > kSlabFormatVersion) {
    return InvalidArgument("D tier: format_version must be 1 or 2");
  }
  if (o.header_bytes != 0) {
    RETURN_IF_ERROR(CheckSlotLayout(SlotLayout{o.format_version, o.header_bytes}).WithContext("D tier"));
  }
  if (o.device_fail_after == 0) return InvalidArgument("D tier: device_fail_after must be >= 1");
  return OkStatus();
}

// The superblock of an existing slab 0 of `dir`, or kNotFound.
Result<SlabSuperblock> ReadSuperblock(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? NotFound(path) : FromErrno(errno, "open slab " + path);
  SlabSuperblock sb{};
  std::byte buf[sizeof(SlabSuperblock)];
  const ssize_t n = pread(fd, buf, sizeof(buf), 0);
  close(fd);
  if (n != static_cast<ssize_t>(sizeof(buf))) return Corruption(path + ": truncated superblock");
  RETURN_IF_ERROR(DecodeSlabSuperblock(buf, path, &sb));
  return sb;
}

// The smallest O_DIRECT alignment `dir` accepts, 512 or 4096: a 512-byte read at
// offset 512 into a 512-aligned (not page-aligned) buffer of a scratch file.
uint32_t ProbeSectorBytes(const std::string& dir, bool direct_io) {
  if (!direct_io) return 512;
  const std::string path = (std::filesystem::path(dir) / ".tierkv-probe").string();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
  if (fd < 0) return kV1HeaderBytes;
  unlink(path.c_str());
  uint32_t sector = kV1HeaderBytes;
  AlignedBuf buf = NewAlignedBlock(2 * io::kPageBytes);
  if (buf != nullptr && ftruncate(fd, 2 * io::kPageBytes) == 0 && pread(fd, buf.get() + 512, 512, 512) == 512) {
    sector = 512;
  }
  close(fd);
  return sector;
}

}  // namespace

// One device: a directory of slab files, its engines, and a worker thread that runs
// its part of a multi-device batch.
struct DiskTier::Device {
  uint32_t index = 0;
  std::string dir;
  std::vector<std::string> paths;
  std::vector<int> fds;

  Mutex engines_mu;
  CondVar engines_cv;
  std::vector<std::unique_ptr<io::IoEngine>> idle_engines GUARDED_BY(engines_mu);
  uint32_t engines_out GUARDED_BY(engines_mu) = 0;  // engines existing outside idle_engines

  std::atomic<bool> failed{false};
  Mutex failure_mu;
  std::string failure GUARDED_BY(failure_mu);
  std::atomic<uint32_t> consecutive_errors{0};
  std::atomic<uint64_t> reads{0}, writes{0}, read_bytes{0}, write_bytes{0}, errors{0};

  // The worker: runs posted jobs in order (multi-device tiers only).
  std::thread worker;
  Mutex jobs_mu;
  CondVar jobs_cv;
  std::deque<std::function<void()>> jobs GUARDED_BY(jobs_mu);
  bool stopping GUARDED_BY(jobs_mu) = false;

  void Post(std::function<void()> job) {
    {
      MutexLock lock(&jobs_mu);
      jobs.push_back(std::move(job));
    }
    jobs_cv.NotifyOne();
  }
  void Work() {
    for (;;) {
      std::function<void()> job;
      {
        MutexLock lock(&jobs_mu);
        while (!stopping && jobs.empty()) jobs_cv.Wait(&jobs_mu);
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }
  void Stop() {
    if (!worker.joinable()) return;
    {
      MutexLock lock(&jobs_mu);
      stopping = true;
    }
    jobs_cv.NotifyOne();
    worker.join();
  }
  ~Device() {
    Stop();
    idle_engines.clear();  // rings first, then the files they reference
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

// One op of a batch while it runs.
struct DiskTier::Pending {
  SlotId slot = kInvalidSlot;
  const WriteOp* write = nullptr;  // exactly one of write / read / header is set
  ReadOp* read = nullptr;
  HeaderRead* header = nullptr;    // header sector only (recovery)
  uint32_t file = 0;               // index into the device's slab files
  uint64_t offset = 0;             // of the slot's header sector in that file
  uint32_t buf = 0;                // engine buffer while in flight (header, or whole slot)
  uint32_t io_length = 0;          // bytes of the transfer
  // Zero-copy: the payload segment goes straight from/to the caller's memory
  // (`direct`, direct_length bytes); the bounce buffer holds the header sector only.
  std::byte* direct = nullptr;
  uint32_t direct_length = 0;
  bool done = false;
  Status status;
  SlotInfo info;
  // A zero-copy read whose payload checksum is checked on the verify pool: its
  // header, kept for VerifyPayload (status may still turn to kCorruption then).
  bool verify_later = false;
  SlotHeader verify_header;
  // A read of the payload alone (the slot remembered): verify_header holds the
  // remembered length and checksum, info the remembered description.
  bool payload_only = false;
  uint64_t checksum = 0;  // a write's payload checksum
};

DiskTier::DiskTier(const DiskTierOptions& options, const SlotLayout& layout, uint64_t stride,
                   uint32_t slots_per_slab)
    : Tier(TierKind::kDisk, options.name, options.num_slots, options.slot_capacity),
      options_(options),
      layout_(layout),
      stride_(stride),
      slots_per_slab_(slots_per_slab) {
  if (options.verify_payload && options.payload_only_reads) memory_ = std::make_unique<SlotMemory[]>(options.num_slots);
}

DiskTier::~DiskTier() {
  for (auto& d : devices_) d->Stop();
  devices_.clear();
}

Result<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  const std::vector<std::string> dirs = DirsOf(options);
  // The layout: an existing tier's (its first device's slab 0), else the options'.
  SlotLayout layout{options.format_version, options.format_version == 1 ? kV1HeaderBytes : options.header_bytes};
  Result<SlabSuperblock> existing = ReadSuperblock(SlabPath(dirs[0], 0));
  if (existing.ok()) {
    layout = LayoutOf(*existing);
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  } else if (layout.header_bytes == 0) {
    uint32_t sector = 512;
    for (const std::string& d : dirs) {
      std::error_code ec;
      std::filesystem::create_directories(d, ec);
      if (ec) return IOError("create D tier directory " + d + ": " + ec.message());
      sector = std::max(sector, ProbeSectorBytes(d, options.direct_io));
    }
    layout.header_bytes = sector;
  }
  const uint64_t stride = DiskSlotStride(options.slot_capacity, layout);
  const uint32_t most = SlotsOnDevice(options.num_slots, static_cast<uint32_t>(dirs.size()), 0);
  uint64_t per_slab = 1;
  if (options.max_slab_bytes > kSlabHeaderBytes + stride) {
    per_slab = std::min<uint64_t>(most, (options.max_slab_bytes - kSlabHeaderBytes) / stride);
  }
  std::unique_ptr<DiskTier> tier(new DiskTier(options, layout, stride, static_cast<uint32_t>(per_slab)));
  RETURN_IF_ERROR(tier->OpenDevices());
  // One engine per device now: Open fails early when none can be made, and names it.
  // With registered memory every engine is made now: registering pins the memory
  // (~20 ms per GiB here), a cost for the open, not for a batch on the I/O path.
  const uint32_t eager = options.registered_memory.empty() ? 1 : options.io_contexts;
  for (auto& dev : tier->devices_) {
    std::vector<std::unique_ptr<io::IoEngine>> made;
    for (uint32_t i = 0; i < eager; ++i) {
      ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> engine, tier->AcquireEngine(*dev));
      tier->engine_name_ = std::string(engine->name());
      made.push_back(std::move(engine));
    }
    for (auto& engine : made) tier->ReleaseEngine(*dev, std::move(engine), true);
  }
  if (tier->devices_.size() > 1) {
    for (auto& dev : tier->devices_) dev->worker = std::thread([d = dev.get()] { d->Work(); });
  }
  const uint32_t verifiers =
      options.verify_threads.value_or(VerifyPool::DefaultThreads(static_cast<uint32_t>(dirs.size())));
  if (options.verify_payload && verifiers > 0) tier->verify_pool_ = std::make_unique<VerifyPool>(verifiers);
  LOG(DEBUG) << tier->name() << ": " << options.num_slots << " slots of " << options.slot_capacity << " bytes in "
             << tier->paths_.size() << " slab file(s) on " << dirs.size() << " device(s) under " << dirs[0]
             << ", format v" << layout.version << " (" << layout.header_bytes << "-byte headers), engine "
             << tier->engine_name_;
  return tier;
}

Result<std::optional<SlotLayout>> DiskTier::ExistingLayout(const DiskTierOptions& options) {
  const std::vector<std::string> dirs = DirsOf(options);
  if (dirs.empty() || dirs[0].empty()) return InvalidArgument("D tier: dir is empty");
  Result<SlabSuperblock> sb = ReadSuperblock(SlabPath(dirs[0], 0));
  if (sb.ok()) return std::optional<SlotLayout>(LayoutOf(*sb));
  if (sb.status().code() == StatusCode::kNotFound) return std::optional<SlotLayout>();
  return sb.status();
}

uint32_t DiskTier::DeviceSlots(uint32_t d) const { return SlotsOnDevice(num_slots(), num_devices(), d); }

Status DiskTier::OpenDevices() {
  const std::vector<std::string> dirs = DirsOf(options_);
  for (uint32_t d = 0; d < dirs.size(); ++d) {
    auto dev = std::make_unique<Device>();
    dev->index = d;
    dev->dir = dirs[d];
    devices_.push_back(std::move(dev));
  }
  for (auto& dev : devices_) {
    RETURN_IF_ERROR(OpenSlabs(*dev));
    paths_.insert(paths_.end(), dev->paths.begin(), dev->paths.end());
  }
  return OkStatus();
}

Status DiskTier::OpenSlabs(Device& dev) {
  std::error_code ec;
  std::filesystem::create_directories(dev.dir, ec);
  if (ec) return IOError("create D tier directory " + dev.dir + ": " + ec.message());
  const uint32_t slots = DeviceSlots(dev.index);
  const uint32_t num_slabs = (slots + slots_per_slab_ - 1) / slots_per_slab_;
  for (uint32_t i = 0; i < num_slabs; ++i) dev.paths.push_back(SlabPath(dev.dir, i));
  dev.fds.assign(num_slabs, -1);
  // Slab 0 is created last (each slab by rename), so its presence means the set is complete.
  if (std::filesystem::exists(dev.paths[0])) {
    for (uint32_t i = 0; i < num_slabs; ++i) RETURN_IF_ERROR(OpenSlab(dev, i, dev.paths[i]));
    return OkStatus();
  }
  if (dev.index > 0 && tier_id_ == 0) {
    return Corruption(dev.dir + ": no slabs, but device 0 of this tier has some (a device was replaced? "
                      "delete every dir of the tier to start it empty)");
  }
  if (!options_.create_if_missing) return NotFound("no D tier slabs in " + dev.dir);
  if (dev.index == 0) {
    std::random_device rd;
    tier_id_ = (uint64_t{rd()} << 32) | rd();
  }
  for (uint32_t i = num_slabs; i-- > 0;) RETURN_IF_ERROR(CreateSlab(dev, i, dev.paths[i]));
  const int dfd = open(dev.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return OkStatus();
}

Status DiskTier::CreateSlab(Device& dev, uint32_t index, const std::string& path) {
  const uint32_t first = index * slots_per_slab_;
  const uint32_t count = std::min(slots_per_slab_, DeviceSlots(dev.index) - first);
  const uint64_t size = kSlabHeaderBytes + uint64_t{count} * stride_;
  const std::string tmp = path + ".tmp";
  const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (options_.direct_io ? O_DIRECT : 0);
  const int fd = open(tmp.c_str(), flags, 0640);
  if (fd < 0 && errno == EINVAL && options_.direct_io) {
    return NotSupported("the file system of " + dev.dir + " refuses O_DIRECT (set direct_io = false)");
  }
  if (fd < 0) return FromErrno(errno, "create slab " + tmp);
  dev.fds[index] = fd;
  Status st;
  if (fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0) {
    if (errno == EOPNOTSUPP) {
      if (ftruncate(fd, static_cast<off_t>(size)) != 0) st = FromErrno(errno, "size slab " + tmp);
    } else {
      st = FromErrno(errno, "preallocate " + std::to_string(size) + " bytes for slab " + tmp);
    }
  }
  AlignedBuf block = NewAlignedBlock();
  if (st.ok() && block == nullptr) st = ResourceExhausted("slab superblock buffer");
  if (st.ok()) {
    SlabSuperblock sb{};
    sb.version = layout_.version;
    sb.header_bytes = layout_.header_bytes;
    sb.tier_id = tier_id_;
    sb.slab_index = index;
    sb.slab_count = static_cast<uint32_t>(dev.paths.size());
    sb.first_slot = first;
    sb.slots_in_slab = count;
    sb.total_slots = options_.num_slots;
    sb.slot_capacity = options_.slot_capacity;
    sb.slot_stride = stride_;
    if (layout_.version >= 2) {
      sb.device_index = static_cast<uint16_t>(dev.index);
      sb.device_count = num_devices();
    }
    EncodeSlabSuperblock(sb, block.get());
    const ssize_t n = pwrite(fd, block.get(), kSlabHeaderBytes, 0);
    if (n != static_cast<ssize_t>(kSlabHeaderBytes)) {
      st = n < 0 ? FromErrno(errno, "write superblock of " + tmp) : IOError("short write of superblock of " + tmp);
    }
  }
  if (st.ok() && fdatasync(fd) != 0) st = FromErrno(errno, "sync slab " + tmp);
  if (st.ok() && rename(tmp.c_str(), path.c_str()) != 0) st = FromErrno(errno, "rename " + tmp);
  if (!st.ok()) unlink(tmp.c_str());
  return st;
}

Status DiskTier::OpenSlab(Device& dev, uint32_t index, const std::string& path) {
  const int flags = O_RDWR | O_CLOEXEC | (options_.direct_io ? O_DIRECT : 0);
  const int fd = open(path.c_str(), flags);
  if (fd < 0 && errno == EINVAL && options_.direct_io) {
    return NotSupported("the file system of " + dev.dir + " refuses O_DIRECT (set direct_io = false)");
  }
  if (fd < 0) return FromErrno(errno, "open slab " + path);
  dev.fds[index] = fd;
  AlignedBuf block = NewAlignedBlock();
  if (block == nullptr) return ResourceExhausted("slab superblock buffer");
  const ssize_t n = pread(fd, block.get(), kSlabHeaderBytes, 0);
  if (n < 0) return FromErrno(errno, "read superblock of " + path);
  if (n != static_cast<ssize_t>(kSlabHeaderBytes)) return Corruption(path + ": truncated superblock");
  SlabSuperblock sb;
  RETURN_IF_ERROR(DecodeSlabSuperblock(block.get(), path, &sb));
  if (dev.index == 0 && index == 0) tier_id_ = sb.tier_id;
  const uint32_t first = index * slots_per_slab_;
  const uint32_t count = std::min(slots_per_slab_, DeviceSlots(dev.index) - first);
  if (sb.tier_id != tier_id_ || sb.slab_index != index || sb.device_index != (layout_.version >= 2 ? dev.index : 0)) {
    return Corruption(path + ": belongs to another tier or position (device " + std::to_string(sb.device_index) +
                      ", slab " + std::to_string(sb.slab_index) + ")");
  }
  if (LayoutOf(sb).version != layout_.version || LayoutOf(sb).header_bytes != layout_.header_bytes) {
    return Corruption(path + ": slab format differs from the tier's other slabs");
  }
  if (sb.slot_capacity != options_.slot_capacity || sb.total_slots != options_.num_slots ||
      DeviceCount(sb) != num_devices() || sb.slab_count != dev.paths.size() || sb.first_slot != first ||
      sb.slots_in_slab != count) {
    return InvalidArgument(path + ": created for " + std::to_string(sb.total_slots) + " slots of " +
                           std::to_string(sb.slot_capacity) + " bytes on " + std::to_string(DeviceCount(sb)) +
                           " device(s), " + std::to_string(sb.slab_count) + " slabs here; the options ask for " +
                           std::to_string(options_.num_slots) + " slots of " +
                           std::to_string(options_.slot_capacity) + " bytes on " + std::to_string(num_devices()) +
                           " device(s), " + std::to_string(dev.paths.size()) + " slabs here");
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return FromErrno(errno, "stat " + path);
  if (static_cast<uint64_t>(st.st_size) != kSlabHeaderBytes + uint64_t{count} * stride_) {
    return Corruption(path + ": file size " + std::to_string(st.st_size) + " does not match its superblock");
  }
  return OkStatus();
}

std::pair<std::string, uint64_t> DiskTier::SlotLocation(SlotId slot) const {
  const Device& dev = *devices_[DeviceOf(slot)];
  const uint32_t local = slot / num_devices();
  return {dev.paths[local / slots_per_slab_], kSlabHeaderBytes + uint64_t{local % slots_per_slab_} * stride_};
}

std::vector<DiskTier::DeviceStats> DiskTier::device_stats() const {
  std::vector<DeviceStats> out;
  for (const auto& d : devices_) {
    DeviceStats s;
    s.dir = d->dir;
    s.failed = d->failed.load();
    if (s.failed) {
      MutexLock lock(&d->failure_mu);
      s.failure = d->failure;
    }
    s.reads = d->reads.load(std::memory_order_relaxed);
    s.writes = d->writes.load(std::memory_order_relaxed);
    s.read_bytes = d->read_bytes.load(std::memory_order_relaxed);
    s.write_bytes = d->write_bytes.load(std::memory_order_relaxed);
    s.errors = d->errors.load(std::memory_order_relaxed);
    out.push_back(std::move(s));
  }
  return out;
}

void DiskTier::FailDevice(uint32_t d, const std::string& why) {
  if (d < devices_.size()) MarkFailed(*devices_[d], why);
}

void DiskTier::MarkFailed(Device& dev, const std::string& why) {
  {
    MutexLock lock(&dev.failure_mu);
    if (dev.failed.load()) return;
    dev.failure = why;
    dev.failed.store(true);
  }
  LOG(ERROR) << name() << ": device " << dev.index << " (" << dev.dir << ") failed, its " << DeviceSlots(dev.index)
             << " slots are lost, the other devices keep serving: " << why;
  RetireFreeSlots(dev);
}

void DiskTier::RetireFreeSlots(const Device& dev) {
  const uint32_t n = DeviceSlots(dev.index);
  for (uint32_t local = 0; local < n; ++local) {
    const SlotId s = local * num_devices() + dev.index;
    if (!IsAllocated(s)) Adopt(s).IgnoreError();  // lost a race with Allocate: the next sweep
  }
}

Status DiskTier::Sync() {
  std::vector<std::vector<bool>> all(devices_.size());
  for (size_t d = 0; d < devices_.size(); ++d) all[d].assign(devices_[d]->fds.size(), true);
  return SyncFiles(all);
}

Status DiskTier::SyncSlots(std::span<const SlotId> slots) {
  std::vector<std::vector<bool>> dirty(devices_.size());
  for (size_t d = 0; d < devices_.size(); ++d) dirty[d].assign(devices_[d]->fds.size(), false);
  for (SlotId s : slots) {
    if (s >= num_slots()) return InvalidArgument(name() + ": SyncSlots: slot " + std::to_string(s) + " out of range");
    dirty[DeviceOf(s)][(s / num_devices()) / slots_per_slab_] = true;
  }
  return SyncFiles(dirty);
}

// The syncs go through the device's engines (IoOp::kSync) like every other I/O, so
// fault injection sees them. A failed sync fails the call with one device, and marks
// the device failed with several (its blocks are lost as blocks, the rest serves).
Status DiskTier::SyncFiles(const std::vector<std::vector<bool>>& files) {
  for (auto& dev : devices_) {
    if (dev->failed.load()) continue;
    std::vector<io::IoRequest> syncs;
    for (size_t i = 0; i < dev->fds.size(); ++i) {
      if (!files[dev->index][i]) continue;
      io::IoRequest r;
      r.op = io::IoOp::kSync;
      r.file = static_cast<uint32_t>(i);
      r.user_data = i;
      syncs.push_back(r);
    }
    if (syncs.empty()) continue;
    Status st;
    Result<std::unique_ptr<io::IoEngine>> engine = AcquireEngine(*dev);
    if (engine.ok()) {
      std::vector<int32_t> results(syncs.size());
      st = io::RunIoBatch(**engine, syncs, results);
      ReleaseEngine(*dev, std::move(engine).value(), st.ok());
      for (size_t k = 0; k < syncs.size() && st.ok(); ++k) {
        if (results[k] < 0) st = FromErrno(-results[k], "fdatasync " + dev->paths[syncs[k].file]);
      }
    } else {
      st = engine.status();
    }
    if (st.ok()) continue;
    if (num_devices() == 1) return st;
    MarkFailed(*dev, st.ToString());
  }
  return OkStatus();
}

Result<SlabScan> DiskTier::Scan(const SlabScanOptions& options) const {
  SlabScan all;
  bool first = true;
  for (const auto& dev : devices_) {
    for (const std::string& path : dev->paths) {
      ASSIGN_OR_RETURN(SlabScan one, ScanSlabFile(path, options));
      if (one.superblock.tier_id != tier_id_) return Corruption(path + ": belongs to another tier");
      if (first) all.superblock = one.superblock;
      first = false;
      all.valid.insert(all.valid.end(), one.valid.begin(), one.valid.end());
      all.damaged.insert(all.damaged.end(), one.damaged.begin(), one.damaged.end());
      all.empty += one.empty;
    }
  }
  if (devices_.size() > 1) {
    std::sort(all.valid.begin(), all.valid.end(), [](const auto& a, const auto& b) { return a.slot < b.slot; });
    std::sort(all.damaged.begin(), all.damaged.end(), [](const auto& a, const auto& b) { return a.slot < b.slot; });
  }
  return all;
}

// ---- engines ----

Result<std::unique_ptr<io::IoEngine>> DiskTier::AcquireEngine(Device& dev) {
  {
    MutexLock lock(&dev.engines_mu);
    while (dev.idle_engines.empty() && dev.engines_out >= options_.io_contexts) dev.engines_cv.Wait(&dev.engines_mu);
    ++dev.engines_out;
    if (!dev.idle_engines.empty()) {
      std::unique_ptr<io::IoEngine> engine = std::move(dev.idle_engines.back());
      dev.idle_engines.pop_back();
      return engine;
    }
  }
  io::IoEngineOptions eo;
  eo.kind = options_.engine;
  eo.queue_depth = options_.queue_depth;
  eo.num_buffers = 2 * options_.queue_depth;  // see RunOnEngine
  eo.buffer_bytes = stride_;
  eo.device = dev.index;
  eo.regions = options_.registered_memory;
  Result<std::unique_ptr<io::IoEngine>> engine =
      options_.engine_factory ? options_.engine_factory(eo) : io::CreateIoEngine(eo);
  Status st = engine.ok() ? (*engine)->RegisterFiles(dev.fds) : engine.status();
  if (!st.ok()) {
    ReleaseEngine(dev, nullptr, false);
    return st.WithContext(name() + ": I/O engine");
  }
  return engine;
}

void DiskTier::ReleaseEngine(Device& dev, std::unique_ptr<io::IoEngine> engine, bool healthy) {
  MutexLock lock(&dev.engines_mu);
  --dev.engines_out;
  if (engine != nullptr && healthy) dev.idle_engines.push_back(std::move(engine));
  dev.engines_cv.NotifyOne();
}

// ---- the data path ----

namespace {
bool Aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

uint64_t Mix(uint64_t h, uint64_t v) {  // splitmix64's finalizer over h ^ v
  h ^= v + 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

uint64_t TagHash(const SlotTag& t) {
  uint64_t h = Mix(0, t.key.ns);
  h = Mix(h, t.key.layer);
  h = Mix(h, t.key.seq);
  h = Mix(h, t.key.index);
  return Mix(h, t.generation);
}
}  // namespace

void DiskTier::Remember(SlotId slot, const SlotInfo& info, uint64_t checksum) {
  if (!memory_) return;
  SlotMemory& m = memory_[slot];
  m.state.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  m.tag_hash.store(TagHash(info.tag), std::memory_order_relaxed);
  m.checksum.store(checksum, std::memory_order_relaxed);
  m.state.store(uint64_t{info.length} << 8 | uint64_t{static_cast<uint8_t>(info.encoding)} << 1 | 1,
                std::memory_order_release);
}

void DiskTier::Forget(SlotId slot) {
  if (memory_) memory_[slot].state.store(0, std::memory_order_release);
}

bool DiskTier::Recall(SlotId slot, const SlotTag& expect, SlotInfo* info, uint64_t* checksum) const {
  if (!memory_) return false;
  const SlotMemory& m = memory_[slot];
  const uint64_t state = m.state.load(std::memory_order_acquire);
  if (state == 0) return false;
  const uint64_t tag_hash = m.tag_hash.load(std::memory_order_relaxed);
  *checksum = m.checksum.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (m.state.load(std::memory_order_relaxed) != state || tag_hash != TagHash(expect)) return false;
  info->tag = expect;
  info->length = static_cast<uint32_t>(state >> 8);
  info->encoding = static_cast<PayloadEncoding>((state >> 1) & 0x7f);
  return true;
}

// A read of a remembered slot: its payload alone, into the caller's memory when it
// allows (a fixed transfer when that memory is registered), else the bounce buffer.
io::IoRequest DiskTier::StartPayloadRead(io::IoEngine& engine, Pending& op, io::IoRequest r) {
  const std::span<std::byte> out = op.read->out;
  const uint32_t padded = static_cast<uint32_t>(layout_.PaddedPayload(op.info.length));
  op.payload_only = true;
  op.verify_header.slot = op.slot;  // VerifyPayload's messages name it
  op.verify_header.payload_length = op.info.length;
  r.offset = op.offset + layout_.header_bytes;
  r.length = padded;
  if (options_.zero_copy && out.size() >= padded && Aligned(out.data(), layout_.header_bytes)) {
    op.direct = out.data();
    op.direct_length = padded;
    r.buf = op.direct;
    r.buf_index = padded >= options_.fixed_min_bytes ? engine.RegionIndex(op.direct, padded) : -1;
    if (r.buf_index >= 0) fixed_.fetch_add(1, std::memory_order_relaxed);
  }
  (op.direct != nullptr ? zero_copy_ : bounced_).fetch_add(1, std::memory_order_relaxed);
  payload_only_.fetch_add(1, std::memory_order_relaxed);
  op.io_length = padded;
  return r;
}

io::IoRequest DiskTier::StartOp(io::IoEngine& engine, Pending& op, uint32_t buf) {
  const uint32_t hb = layout_.header_bytes;
  op.buf = buf;
  std::byte* b = engine.buffers()->buffer(buf);
  io::IoRequest r;
  r.file = op.file;
  r.offset = op.offset;
  r.buf = b;
  r.buf_index = static_cast<int32_t>(buf);
  if (op.write != nullptr) {
    r.op = io::IoOp::kWrite;
    const std::span<const std::byte> payload = op.write->payload;
    const size_t padded = layout_.PaddedPayload(static_cast<uint32_t>(payload.size()));
    std::memset(b, 0, hb);
    const SlotInfo info{op.write->tag, static_cast<uint32_t>(payload.size()), op.write->encoding};
    op.checksum = PayloadChecksum(payload.data(), payload.size());
    EncodeSlotHeader(layout_, op.slot, info, op.checksum, b);
    Forget(op.slot);  // until the write completes
    if (options_.zero_copy && !payload.empty() && padded == payload.size() && Aligned(payload.data(), hb)) {
      // The engine only reads from buf2 on a write.
      op.direct = const_cast<std::byte*>(payload.data());
      op.direct_length = static_cast<uint32_t>(padded);
    } else {
      if (!payload.empty()) std::memcpy(b + hb, payload.data(), payload.size());
      std::memset(b + hb + payload.size(), 0, padded - payload.size());
    }
    op.io_length = static_cast<uint32_t>(hb + padded);
  } else if (op.header != nullptr) {
    r.op = io::IoOp::kRead;
    op.io_length = hb + (op.header->verify_payload ? static_cast<uint32_t>(layout_.PaddedPayload(slot_capacity())) : 0);
  } else {
    r.op = io::IoOp::kRead;
    if (Recall(op.slot, op.read->expect, &op.info, &op.verify_header.payload_checksum) &&
        op.info.length > 0 && op.info.length <= op.read->out.size()) {
      return StartPayloadRead(engine, op, r);
    }
    const std::span<std::byte> out = op.read->out;
    const size_t padded = layout_.PaddedPayload(static_cast<uint32_t>(std::min<size_t>(out.size(), slot_capacity())));
    if (options_.zero_copy && padded > 0 && out.size() >= padded && Aligned(out.data(), hb)) {
      op.direct = out.data();
      op.direct_length = static_cast<uint32_t>(padded);
    }
    op.io_length = static_cast<uint32_t>(hb + padded);
  }
  (op.direct != nullptr ? zero_copy_ : bounced_).fetch_add(1, std::memory_order_relaxed);
  if (op.direct != nullptr) {
    r.length = hb;
    r.buf2 = op.direct;
    r.length2 = op.direct_length;
    if (op.direct_length >= options_.fixed_min_bytes) {
      r.buf2_index = engine.RegionIndex(op.direct, op.direct_length);
      if (r.buf2_index >= 0) fixed_.fetch_add(1, std::memory_order_relaxed);
    }
  } else {
    r.length = op.io_length;
  }
  return r;
}

Status DiskTier::FinishOp(Pending& op, int32_t result, const std::byte* buf) {
  const char* verb = op.write != nullptr ? "write" : "read";
  if (result < 0) {
    return FromErrno(-result, std::string(verb) + " " + name() + " slot " + std::to_string(op.slot));
  }
  if (static_cast<uint32_t>(result) != op.io_length) {
    if (op.write == nullptr && op.direct != nullptr) std::memset(op.direct, 0, op.direct_length);
    return IOError(std::string("short ") + verb + " of " + name() + " slot " + std::to_string(op.slot) + ": " +
                   std::to_string(result) + " of " + std::to_string(op.io_length) + " bytes");
  }
  if (op.write != nullptr) {
    Remember(op.slot, {op.write->tag, static_cast<uint32_t>(op.write->payload.size()), op.write->encoding}, op.checksum);
    return OkStatus();
  }
  if (op.header != nullptr) {
    SlotHeader h;
    RETURN_IF_ERROR(DecodeSlotHeader(layout_, buf, op.slot, slot_capacity(), &h));
    op.header->info = InfoOf(h);
    Remember(op.slot, op.header->info, h.payload_checksum);
    if (op.header->verify_payload) RETURN_IF_ERROR(VerifyPayload(layout_, h, buf + layout_.header_bytes).WithContext(name()));
    return OkStatus();
  }
  Status st = FinishRead(op, buf);
  // A failed zero-copy read leaves no unverified bytes in the caller's buffer.
  if (!st.ok() && op.direct != nullptr) std::memset(op.direct, 0, op.direct_length);
  return st;
}

Status DiskTier::FinishRead(Pending& op, const std::byte* buf) {
  if (op.payload_only) return FinishPayloadRead(op, buf);
  // Messages are built on the error paths only: this runs for every read.
  SlotHeader h;
  Status st = DecodeSlotHeader(layout_, buf, op.slot, slot_capacity(), &h);
  if (!st.ok()) {
    if (st.code() == StatusCode::kNotFound) {
      return Corruption(name() + " slot " + std::to_string(op.slot) + ": written slot reads as never written");
    }
    return st.WithContext(name());
  }
  const SlotInfo info = InfoOf(h);
  if (!(info.tag == op.read->expect)) {
    mutable_stats().tag_mismatches.fetch_add(1, std::memory_order_relaxed);
    return Corruption(name() + " slot " + std::to_string(op.slot) + " holds (" + TagToString(info.tag) +
                      "), not the expected (" + TagToString(op.read->expect) + ")");
  }
  if (info.length > op.read->out.size()) {
    return InvalidArgument(name() + " slot " + std::to_string(op.slot) + ": buffer of " +
                           std::to_string(op.read->out.size()) + " bytes is smaller than the payload of " +
                           std::to_string(info.length));
  }
  const std::byte* payload = op.direct != nullptr ? op.direct : buf + layout_.header_bytes;
  if (options_.verify_payload && verify_pool_ && op.direct != nullptr && h.payload_length >= VerifyPool::kMinBytes) {
    op.verify_later = true;  // RunOnEngine hands it to the pool
    op.verify_header = h;
  } else if (options_.verify_payload) {
    st = VerifyPayload(layout_, h, payload);
    if (!st.ok()) return st.WithContext(name());
  }
  if (op.direct == nullptr && info.length > 0) std::memcpy(op.read->out.data(), payload, info.length);
  op.info = info;
  Remember(op.slot, info, h.payload_checksum);
  return OkStatus();
}

Status DiskTier::FinishPayloadRead(Pending& op, const std::byte* buf) {
  const std::byte* payload = op.direct != nullptr ? op.direct : buf;
  if (verify_pool_ && op.direct != nullptr && op.info.length >= VerifyPool::kMinBytes) {
    op.verify_later = true;  // RunOnEngine hands it to the pool
    return OkStatus();
  }
  if (Status st = VerifyPayload(layout_, op.verify_header, payload); !st.ok()) return st.WithContext(name());
  if (op.direct == nullptr) std::memcpy(op.read->out.data(), payload, op.info.length);
  return OkStatus();
}

Status DiskTier::RunOnEngine(io::IoEngine& engine, std::vector<Pending>& ops) {
  io::IoBufferPool* pool = engine.buffers();
  std::vector<uint32_t> free_bufs;
  for (uint32_t i = pool->count(); i-- > 0;) free_bufs.push_back(i);
  std::vector<io::IoCompletion> completed;
  auto record = [&](const io::IoCompletion& c) { completed.push_back(c); };
  size_t next = 0;
  auto refill = [&] {
    while (next < ops.size() && !free_bufs.empty() && engine.in_flight() < engine.queue_depth()) {
      const uint32_t buf = free_bufs.back();
      free_bufs.pop_back();
      io::IoRequest r = StartOp(engine, ops[next], buf);
      r.user_data = next;
      Status st = engine.Prepare(r);
      if (!st.ok()) {
        ops[next].status = st;
        ops[next].done = true;
        free_bufs.push_back(buf);
      }
      ++next;
    }
  };
  using Clock = std::chrono::steady_clock;
  uint64_t t_prepare = 0, t_reap = 0, t_finish = 0;
  auto lap = [](Clock::time_point& t) {
    const Clock::time_point now = Clock::now();
    const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count());
    t = now;
    return ns;
  };
  // Payload checksums of large zero-copy reads run on the pool while this thread
  // goes on reaping and refilling; it helps with what is left at the end (the
  // group's destructor waits, on every path out, before ops can go away).
  std::optional<VerifyPool::Group> verifying;
  if (verify_pool_) verifying.emplace(verify_pool_.get());
  auto verify_later = [&](Pending& op) {
    verifying->Run([this, &op] {
      Status st = VerifyPayload(layout_, op.verify_header, op.direct);
      if (st.ok()) return;
      op.status = st.WithContext(name());
      std::memset(op.direct, 0, op.direct_length);  // no unverified bytes left behind
    });
  };
  Clock::time_point t = Clock::now();
  Status failed;
  while (next < ops.size() || engine.in_flight() > 0) {
    refill();
    t_prepare += lap(t);
    if (engine.in_flight() == 0) continue;
    failed = engine.Reap(1, record).status();
    t_reap += lap(t);
    if (!failed.ok()) break;
    // The pool holds two buffers per queue slot, so the queue is refilled and
    // submitted (without waiting) before the CPU verifies and copies what completed.
    refill();
    t_prepare += lap(t);
    failed = engine.Reap(0, record).status();
    t_reap += lap(t);
    if (!failed.ok()) break;
    for (const io::IoCompletion& c : completed) {
      Pending& op = ops[c.user_data];
      op.status = FinishOp(op, c.result, pool->buffer(op.buf));
      if (op.status.ok() && op.verify_later) verify_later(op);
      op.done = true;
      free_bufs.push_back(op.buf);
    }
    completed.clear();
    t_finish += lap(t);
  }
  if (verifying) verifying->Wait();
  t_finish += lap(t);
  prepare_ns_.fetch_add(t_prepare, std::memory_order_relaxed);
  reap_ns_.fetch_add(t_reap, std::memory_order_relaxed);
  finish_ns_.fetch_add(t_finish, std::memory_order_relaxed);
  return failed;
}

void DiskTier::RunDeviceBatch(Device& dev, std::vector<Pending>& ops) {
  if (dev.failed.load()) {
    std::string why;
    {
      MutexLock lock(&dev.failure_mu);
      why = dev.failure;
    }
    const Status failed = IOError(name() + " device " + std::to_string(dev.index) + " (" + dev.dir + ") failed: " + why);
    for (Pending& op : ops) op.status = failed;
    // A slot of the device was freed and allocated again since the last sweep.
    if (std::any_of(ops.begin(), ops.end(), [](const Pending& op) { return op.write != nullptr; })) {
      RetireFreeSlots(dev);
    }
    return;
  }
  Result<std::unique_ptr<io::IoEngine>> engine = AcquireEngine(dev);
  Status failed = engine.ok() ? RunOnEngine(**engine, ops) : engine.status();
  if (!failed.ok()) {
    LOG(ERROR) << name() << ": I/O engine of device " << dev.index << " failed, " << ops.size()
               << " ops of the batch fail: " << failed.ToString();
    for (Pending& op : ops) {
      if (!op.done) op.status = failed.code() == StatusCode::kIOError ? failed : IOError(failed.ToString());
    }
  }
  if (engine.ok()) ReleaseEngine(dev, std::move(*engine), failed.ok());
  // Counters and the device's health: an engine failure, or device_fail_after
  // failed transfers in a row (errno or short), marks it failed; a checksum or tag
  // mismatch is one block's damage, not the device's.
  uint64_t n_read = 0, n_write = 0, b_read = 0, b_write = 0, errs = 0;
  for (const Pending& op : ops) {
    const bool io_failed = op.status.code() == StatusCode::kIOError;
    if (io_failed) {
      ++errs;
      if (dev.consecutive_errors.fetch_add(1) + 1 >= options_.device_fail_after && num_devices() > 1) {
        MarkFailed(dev, std::to_string(options_.device_fail_after) + " failed I/Os in a row, the last: " +
                            op.status.ToString());
      }
    } else {
      dev.consecutive_errors.store(0, std::memory_order_relaxed);
      (op.write != nullptr ? n_write : n_read) += 1;
      (op.write != nullptr ? b_write : b_read) += op.io_length;
    }
  }
  if (!failed.ok() && num_devices() > 1) MarkFailed(dev, "I/O engine failed: " + failed.ToString());
  dev.reads.fetch_add(n_read, std::memory_order_relaxed);
  dev.writes.fetch_add(n_write, std::memory_order_relaxed);
  dev.read_bytes.fetch_add(b_read, std::memory_order_relaxed);
  dev.write_bytes.fetch_add(b_write, std::memory_order_relaxed);
  dev.errors.fetch_add(errs, std::memory_order_relaxed);
}

void DiskTier::RunBatch(std::vector<Pending>& ops) {
  const uint32_t nd = num_devices();
  for (Pending& op : ops) {
    const uint32_t local = op.slot / nd;
    op.file = local / slots_per_slab_;
    op.offset = kSlabHeaderBytes + uint64_t{local % slots_per_slab_} * stride_;
  }
  if (nd == 1) {
    RunDeviceBatch(*devices_[0], ops);
    return;
  }
  // Split per device; each part runs on its device's worker but the first, which
  // runs here; then the results go back in place.
  std::vector<std::vector<Pending>> parts(nd);
  std::vector<std::vector<size_t>> where(nd);
  for (size_t i = 0; i < ops.size(); ++i) {
    const uint32_t d = DeviceOf(ops[i].slot);
    parts[d].push_back(ops[i]);
    where[d].push_back(i);
  }
  Mutex mu;
  CondVar cv;
  uint32_t pending = 0;
  int32_t here = -1;
  for (uint32_t d = 0; d < nd; ++d) {
    if (parts[d].empty()) continue;
    if (here < 0) {
      here = static_cast<int32_t>(d);
      continue;
    }
    ++pending;
    devices_[d]->Post([&, d] {
      RunDeviceBatch(*devices_[d], parts[d]);
      MutexLock lock(&mu);
      if (--pending == 0) cv.NotifyOne();
    });
  }
  if (here >= 0) RunDeviceBatch(*devices_[here], parts[here]);
  {
    MutexLock lock(&mu);
    while (pending != 0) cv.Wait(&mu);
  }
  for (uint32_t d = 0; d < nd; ++d) {
    for (size_t k = 0; k < parts[d].size(); ++k) ops[where[d][k]] = std::move(parts[d][k]);
  }
}

Status DiskTier::WriteImpl(SlotId slot, const SlotTag& tag, std::span<const std::byte> payload,
                           PayloadEncoding encoding) {
  WriteOp op(slot, tag, payload, encoding);
  std::vector<Pending> ops(1);
  ops[0].slot = slot;
  ops[0].write = &op;
  RunBatch(ops);
  return ops[0].status;
}

Status DiskTier::ReadImpl(SlotId slot, const SlotTag& expect, std::span<std::byte> out, SlotInfo* info) {
  ReadOp op(slot, expect, out);
  std::vector<Pending> ops(1);
  ops[0].slot = slot;
  ops[0].read = &op;
  RunBatch(ops);
  if (ops[0].status.ok()) *info = ops[0].info;
  return ops[0].status;
}

void DiskTier::WriteBatchImpl(std::span<WriteOp* const> ops) {
  std::vector<Pending> pending(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    pending[i].slot = ops[i]->slot;
    pending[i].write = ops[i];
  }
  RunBatch(pending);
  for (size_t i = 0; i < ops.size(); ++i) ops[i]->status = pending[i].status;
}

void DiskTier::ReadBatchImpl(std::span<ReadOp* const> ops) {
  std::vector<Pending> pending(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    pending[i].slot = ops[i]->slot;
    pending[i].read = ops[i];
  }
  RunBatch(pending);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i]->status = pending[i].status;
    if (pending[i].status.ok()) ops[i]->info = pending[i].info;
  }
}

Status DiskTier::ReadHeaders(std::span<HeaderRead> reads) {
  std::vector<Pending> pending(reads.size());
  for (size_t i = 0; i < reads.size(); ++i) {
    if (reads[i].slot >= num_slots()) {
      return InvalidArgument(name() + ": ReadHeaders: slot " + std::to_string(reads[i].slot) + " out of range");
    }
    pending[i].slot = reads[i].slot;
    pending[i].header = &reads[i];
  }
  if (pending.empty()) return OkStatus();
  RunBatch(pending);
  for (size_t i = 0; i < reads.size(); ++i) reads[i].status = pending[i].status;
  return OkStatus();
}

}  // namespace tierkv::storage
