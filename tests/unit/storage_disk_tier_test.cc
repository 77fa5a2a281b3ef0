// D tier specifics: persistence across reopen, the on-disk format, the recovery
// scan (valid / damaged / empty slots), option checks, and both I/O engines.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/checksum.h"
#include "io/fault_injection_engine.h"
#include "storage/disk_tier.h"
#include "storage/payload_checksum.h"
#include "storage/slab_scan.h"
#include "storage/slot_format.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
// Readable parameter values in test names and ctest listings (found by ADL).
inline void PrintTo(io::IoEngineKind kind, std::ostream* os) {
  *os << io::IoEngineKindName(kind);
}
namespace {

using testing::Bytes;
using testing::HoldsNoData;
using testing::RandomBytes;
using testing::ScratchDir;
using testing::TagFor;

class DiskTierTest : public ::testing::TestWithParam<io::IoEngineKind> {
 protected:
  void SetUp() override {
    if (GetParam() == io::IoEngineKind::kUring && !io::IoUringAvailable()) GTEST_SKIP() << "io_uring not available";
    ASSERT_FALSE(scratch_.path().empty());
  }

  DiskTierOptions Options(uint32_t slots = 10, uint32_t capacity = 10000) const {
    DiskTierOptions o;
    o.dir = scratch_.Sub("d");
    o.num_slots = slots;
    o.slot_capacity = capacity;
    o.engine = GetParam();
    o.queue_depth = 4;
    o.header_bytes = 512;  // format v2 with 512-byte headers (DiskSlotStride's default)
    o.max_slab_bytes = 4 * DiskSlotStride(capacity) + kSlabHeaderBytes;  // 4 slots per slab
    return o;
  }

  std::unique_ptr<DiskTier> MustOpen(const DiskTierOptions& o) {
    Result<std::unique_ptr<DiskTier>> t = DiskTier::Open(o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(*t) : nullptr;
  }

  // Byte offset of a slot inside its slab file, and the file.
  std::pair<std::string, uint64_t> Where(const DiskTier& t, SlotId slot) const {
    EXPECT_EQ(t.num_devices(), 1u);
    std::pair<std::string, uint64_t> w{t.slab_paths()[slot / t.slots_per_slab()],
                                       kSlabHeaderBytes + uint64_t{slot % t.slots_per_slab()} * t.slot_stride()};
    EXPECT_EQ(t.SlotLocation(slot), w);
    return w;
  }
  static constexpr uint64_t kHb = 512;  // header sector of the tiers Options() opens

  static void FlipByteInFile(const std::string& path, uint64_t offset) {
    const int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    unsigned char b;
    ASSERT_EQ(pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
    b ^= 0x10;
    ASSERT_EQ(pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
    fsync(fd);
    close(fd);
  }

  ScratchDir scratch_;
  std::mt19937_64 rng_{99};
};

TEST_P(DiskTierTest, LayoutAndEngine) {
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->layout().version, 2u);
  EXPECT_EQ(t->layout().header_bytes, 512u);
  EXPECT_EQ(t->slot_stride(), 512u + 10240u);  // header sector + payload rounded up to 512
  EXPECT_EQ(t->slots_per_slab(), 4u);
  ASSERT_EQ(t->slab_paths().size(), 3u);  // 4 + 4 + 2 slots
  EXPECT_EQ(std::filesystem::file_size(t->slab_paths()[2]), kSlabHeaderBytes + 2 * t->slot_stride());
  EXPECT_EQ(t->engine_name(), GetParam() == io::IoEngineKind::kUring ? "io_uring" : "psync");
  EXPECT_TRUE(t->persistent());
}

TEST_P(DiskTierTest, HeaderOnDiskDescribesTheSlot) {
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(t->Adopt(6).ok());
  const auto payload = RandomBytes(5000, rng_);
  ASSERT_TRUE(t->Write(6, TagFor(42, 3, 9), payload).ok());
  ASSERT_TRUE(t->Sync().ok());
  auto [path, off] = Where(*t, 6);
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  SlotHeader h;
  ASSERT_EQ(pread(fd, &h, sizeof(h), static_cast<off_t>(off)), static_cast<ssize_t>(sizeof(h)));
  Bytes on_disk(payload.size());
  ASSERT_EQ(pread(fd, on_disk.data(), on_disk.size(), static_cast<off_t>(off + kHb)),
            static_cast<ssize_t>(on_disk.size()));
  close(fd);
  EXPECT_EQ(h.magic, kSlotMagic);
  EXPECT_EQ(h.version, kSlabFormatVersion);
  EXPECT_EQ(h.slot, 6u);
  EXPECT_EQ(h.key, TagFor(42, 3, 9).key);
  EXPECT_EQ(h.generation, 9u);
  EXPECT_EQ(h.payload_length, 5000u);
  EXPECT_EQ(h.encoding, 0u);
  EXPECT_EQ(h.payload_checksum, Checksum64(payload.data(), payload.size()));
  EXPECT_EQ(on_disk, payload);
}

TEST_P(DiskTierTest, ReopenKeepsDataAndAdoptRestoresSlots) {
  std::vector<Bytes> data;
  std::vector<SlotId> slots;
  {
    auto t = MustOpen(Options());
    ASSERT_NE(t, nullptr);
    for (int i = 0; i < 7; ++i) {
      slots.push_back(*t->Allocate());
      data.push_back(RandomBytes(1 + rng_() % 10000, rng_));
      ASSERT_TRUE(t->Write(slots[i], TagFor(5, i, 2), data[i]).ok());
    }
    ASSERT_TRUE(t->Sync().ok());
  }
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  Bytes out(10000);
  EXPECT_EQ(t->Read(slots[0], TagFor(5, 0, 2), out).status().code(), StatusCode::kNotFound) << "not adopted yet";
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(t->Adopt(slots[i]).ok());
    Result<SlotInfo> info = t->Read(slots[i], TagFor(5, i, 2), out);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(Bytes(out.begin(), out.begin() + info->length), data[i]);
  }
  EXPECT_EQ(t->used_slots(), 7u);
  // Adopting a slot that was never written: the read reports it, never returns data.
  ASSERT_TRUE(t->Adopt(9).ok());
  EXPECT_EQ(t->Read(9, TagFor(5, 9, 2), out).status().code(), StatusCode::kCorruption);
}

TEST_P(DiskTierTest, ReopenWithOtherGeometryIsRefused) {
  { ASSERT_NE(MustOpen(Options()), nullptr); }
  EXPECT_EQ(DiskTier::Open(Options(10, 20000)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DiskTier::Open(Options(11, 10000)).status().code(), StatusCode::kInvalidArgument);
  DiskTierOptions o = Options();
  o.dir = scratch_.Sub("absent");
  o.create_if_missing = false;
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kNotFound);
  // A damaged superblock is corruption, not a fresh start.
  FlipByteInFile(Options().dir + "/slab-00001.tkv", 20);
  EXPECT_EQ(DiskTier::Open(Options()).status().code(), StatusCode::kCorruption);
}

TEST_P(DiskTierTest, BadOptionsAreRefused) {
  DiskTierOptions o = Options();
  o.num_slots = 0;
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = Options();
  o.slot_capacity = 0;
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.slot_capacity = kMaxDiskSlotCapacity + 1;
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = Options();
  o.queue_depth = 0;
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = Options();
  o.dir = "";
  EXPECT_EQ(DiskTier::Open(o).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(DiskTierTest, DamageOnDiskIsCorruptionNeverData) {
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(4, &slots).ok());
  const auto payload = RandomBytes(9000, rng_);
  for (SlotId s : slots) ASSERT_TRUE(t->Write(s, TagFor(8, s, 1), payload).ok());
  ASSERT_TRUE(t->Sync().ok());
  // Damage: a payload byte, a header field, the zero padding after the header, and
  // the zero padding after the payload.
  const uint64_t where[4] = {kHb + 4321, offsetof(SlotHeader, generation), 100,
                             kHb + 9000 + 5};
  for (int i = 0; i < 4; ++i) {
    auto [path, off] = Where(*t, slots[i]);
    FlipByteInFile(path, off + where[i]);
  }
  // Exact-size buffers read through the bounce buffers, whole-page ones zero-copy.
  // `headers`: reads see the header sectors (a tier opened afresh remembers no slot);
  // else this tier remembers its writes and reads the payloads only, checked against
  // the checksums it wrote: the payload damages are caught, a damaged header over an
  // intact payload is not seen (the payload is served exact; recovery scans see it).
  auto read_all = [&](DiskTier& tier, bool headers) {
    for (size_t size : {size_t{9000}, size_t{12288}}) {
      for (int i = 0; i < 4; ++i) {
        Bytes out(size, std::byte{0x77});
        Result<SlotInfo> r = tier.Read(slots[i], TagFor(8, slots[i], 1), out);
        if (!headers && (i == 1 || i == 2)) {
          ASSERT_TRUE(r.ok()) << "damage " << i << ": " << r.status().ToString();
          EXPECT_TRUE(std::equal(payload.begin(), payload.end(), out.begin())) << "damage " << i;
          continue;
        }
        EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << "damage " << i << ": " << r.status().ToString();
        EXPECT_TRUE(HoldsNoData(out, std::byte{0x77})) << "damaged bytes were handed out";
      }
    }
  };
  read_all(*t, /*headers=*/false);
  EXPECT_EQ(t->stats().Snapshot().checksum_failures, 4u);
  t.reset();
  t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  for (SlotId s : slots) ASSERT_TRUE(t->Adopt(s).ok());
  read_all(*t, /*headers=*/true);
  EXPECT_EQ(t->stats().Snapshot().checksum_failures, 8u);
}

TEST_P(DiskTierTest, RecoveryScanSeparatesValidDamagedAndEmpty) {
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(6, &slots).ok());  // 0..5, across two slabs
  for (SlotId s : slots) {
    const auto payload = RandomBytes(1000 * (s + 1), rng_);
    ASSERT_TRUE(t->Write(s, TagFor(9, s, 10 + s), payload).ok());
  }
  ASSERT_TRUE(t->Sync().ok());
  auto [p2, o2] = Where(*t, 2);
  FlipByteInFile(p2, o2 + kHb + 10);  // torn/damaged payload
  auto [p5, o5] = Where(*t, 5);
  FlipByteInFile(p5, o5 + 3);  // damaged header

  Result<SlabScan> scan = t->Scan();
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  ASSERT_EQ(scan->valid.size(), 4u);
  const SlotId expect_valid[] = {0, 1, 3, 4};
  for (size_t i = 0; i < 4; ++i) {
    const SlotId s = expect_valid[i];
    EXPECT_EQ(scan->valid[i].slot, s);
    EXPECT_EQ(scan->valid[i].info.tag, TagFor(9, s, 10 + s));
    EXPECT_EQ(scan->valid[i].info.length, 1000 * (s + 1));
  }
  ASSERT_EQ(scan->damaged.size(), 2u);
  EXPECT_EQ(scan->damaged[0].slot, 2u);
  EXPECT_EQ(scan->damaged[1].slot, 5u);
  EXPECT_EQ(scan->damaged[0].status.code(), StatusCode::kCorruption);
  EXPECT_EQ(scan->empty, 4u);

  // Headers only: the payload damage is not seen, the header damage is.
  Result<SlabScan> quick = t->Scan({.verify_payload = false});
  ASSERT_TRUE(quick.ok());
  EXPECT_EQ(quick->valid.size(), 5u);
  EXPECT_EQ(quick->damaged.size(), 1u);

  // One slab file on its own.
  Result<SlabScan> one = ScanSlabFile(t->slab_paths()[1]);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->superblock.first_slot, 4u);
  EXPECT_EQ(one->valid.size(), 1u);
  EXPECT_EQ(one->damaged.size(), 1u);
  EXPECT_EQ(one->empty, 2u);
  EXPECT_EQ(ScanSlabFile(scratch_.Sub("nope")).status().code(), StatusCode::kNotFound);
}

// Zero-copy (page-aligned caller memory, vectored I/O) and bounce-buffer transfers
// write and read the same format: every combination round-trips.
// Recovery reads only the headers of the slots its manifest names, whatever their
// allocation state (after a restart every slot is free until adopted).
TEST_P(DiskTierTest, ReadHeadersReportsWhatEachSlotHolds) {
  DiskTierOptions o = Options();
  {
    auto t = MustOpen(o);
    ASSERT_NE(t, nullptr);
    std::vector<SlotId> slots;
    ASSERT_TRUE(t->AllocateMany(4, &slots).ok());
    for (SlotId s : slots) {
      ASSERT_TRUE(t->Write(s, TagFor(5, s, 10 + s), RandomBytes(100 + s, rng_), PayloadEncoding::kInt8).ok());
    }
    ASSERT_TRUE(t->Sync().ok());
  }
  auto t = MustOpen(o);  // a restart: every slot free
  ASSERT_NE(t, nullptr);
  auto [path, off] = Where(*t, 2);
  FlipByteInFile(path, off + 20);  // slot 2's header
  std::vector<DiskTier::HeaderRead> reads(6);
  const SlotId ask[] = {0, 1, 2, 3, 7, 9};
  for (size_t i = 0; i < reads.size(); ++i) reads[i].slot = ask[i];
  ASSERT_TRUE(t->ReadHeaders(reads).ok());
  for (size_t i : {0, 1, 3}) {
    ASSERT_TRUE(reads[i].status.ok()) << reads[i].status.ToString();
    EXPECT_EQ(reads[i].info.tag, TagFor(5, ask[i], 10 + ask[i]));
    EXPECT_EQ(reads[i].info.length, 100 + ask[i]);
    EXPECT_EQ(reads[i].info.encoding, PayloadEncoding::kInt8);
  }
  EXPECT_EQ(reads[2].status.code(), StatusCode::kCorruption);
  EXPECT_EQ(reads[4].status.code(), StatusCode::kNotFound);  // never written
  EXPECT_EQ(reads[5].status.code(), StatusCode::kNotFound);
  DiskTier::HeaderRead bad;
  bad.slot = 10;
  EXPECT_EQ(t->ReadHeaders(std::span(&bad, 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t->used_slots(), 0u);  // reading headers adopts nothing
}

// Payload checksums of large zero-copy reads run on the verify pool (and on the
// batch's thread at its end): a batch with damaged slots among good ones still
// answers kCorruption for exactly those, with nothing of them handed out, and the
// good ones byte for byte.
TEST_P(DiskTierTest, VerifyPoolFindsDamageInABatch) {
  constexpr uint32_t kBytes = 256 << 10;  // >= VerifyPool::kMinBytes
  for (uint32_t threads : {1u, 3u}) {
    DiskTierOptions o = Options(12, kBytes);
    o.dir = scratch_.Sub("pool" + std::to_string(threads));
    o.verify_threads = threads;
    auto t = MustOpen(o);
    ASSERT_NE(t, nullptr);
    std::vector<SlotId> slots;
    ASSERT_TRUE(t->AllocateMany(12, &slots).ok());
    std::vector<Bytes> payloads;
    for (SlotId s : slots) {
      payloads.push_back(RandomBytes(kBytes, rng_));
      ASSERT_TRUE(t->Write(s, TagFor(4, s, 1), payloads.back()).ok());
    }
    ASSERT_TRUE(t->Sync().ok());
    const std::vector<size_t> damaged = {1, 6, 11};
    for (size_t i : damaged) {
      auto [path, off] = Where(*t, slots[i]);
      FlipByteInFile(path, off + kHb + 1000 * i + 17);
    }
    for (int round = 0; round < 3; ++round) {
      std::vector<Bytes> outs(slots.size(), Bytes(kBytes, std::byte{0x77}));
      std::vector<ReadOp> ops;
      for (size_t i = 0; i < slots.size(); ++i) ops.emplace_back(slots[i], TagFor(4, slots[i], 1), outs[i]);
      t->ReadBatch(ops).IgnoreError();
      for (size_t i = 0; i < slots.size(); ++i) {
        if (std::find(damaged.begin(), damaged.end(), i) != damaged.end()) {
          EXPECT_EQ(ops[i].status.code(), StatusCode::kCorruption) << "slot " << i << ": " << ops[i].status.ToString();
          EXPECT_TRUE(HoldsNoData(outs[i], std::byte{0x77})) << "damaged bytes of slot " << i << " were handed out";
        } else {
          ASSERT_TRUE(ops[i].status.ok()) << "slot " << i << ": " << ops[i].status.ToString();
          EXPECT_TRUE(outs[i] == payloads[i]) << "slot " << i;
        }
      }
    }
    EXPECT_EQ(t->zero_copy_transfers(), 12u + 3 * 12u);
  }
}

TEST_P(DiskTierTest, ZeroCopyAndBouncePathsAgree) {
  auto t = MustOpen(Options(10, 16384));
  ASSERT_NE(t, nullptr);
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(4, &slots).ok());
  // An unaligned view forces the bounce path for the same bytes.
  auto unaligned = [](Bytes& backing, size_t n) { return std::span<std::byte>(backing.data() + 16, n); };
  for (int w = 0; w < 2; ++w) {
    for (int r = 0; r < 2; ++r) {
      const SlotId s = slots[w * 2 + r];
      const Bytes payload = RandomBytes(8192, rng_);
      Bytes staging(8192 + 16);
      std::span<const std::byte> src = payload;
      if (w == 1) {
        std::copy(payload.begin(), payload.end(), staging.begin() + 16);
        src = unaligned(staging, 8192);
      }
      ASSERT_TRUE(t->Write(s, TagFor(3, s, 1), src).ok());
      Bytes out(16384 + 16, std::byte{0});
      std::span<std::byte> dst = r == 0 ? std::span<std::byte>(out.data(), 16384) : unaligned(out, 8192);
      Result<SlotInfo> info = t->Read(s, TagFor(3, s, 1), dst);
      ASSERT_TRUE(info.ok()) << "write path " << w << ", read path " << r << ": " << info.status().ToString();
      ASSERT_EQ(info->length, 8192u);
      EXPECT_TRUE(std::equal(payload.begin(), payload.end(), dst.begin())) << "write " << w << " read " << r;
    }
  }
  EXPECT_EQ(t->zero_copy_transfers(), 4u);  // 2 writes + 2 reads
  EXPECT_EQ(t->bounce_transfers(), 4u);
}

// Format version 1 (4 KiB slot headers, what earlier builds wrote) keeps working: a
// tier opened over v1 slabs takes their layout whatever the options ask for new ones.
TEST_P(DiskTierTest, FormatV1SlabsStillServe) {
  DiskTierOptions o = Options();
  o.format_version = 1;
  o.header_bytes = 0;
  o.max_slab_bytes = 1 << 20;
  const Bytes payload = RandomBytes(9000, rng_);
  Result<std::optional<SlotLayout>> none = DiskTier::ExistingLayout(o);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  {
    auto t = MustOpen(o);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->layout().version, 1u);
    EXPECT_EQ(t->slot_stride(), 4096u + 12288u);
    ASSERT_TRUE(t->Adopt(3).ok());
    ASSERT_TRUE(t->Write(3, TagFor(5, 3, 2), payload).ok());
    ASSERT_TRUE(t->Sync().ok());
  }
  Result<SlabScan> scan = ScanSlabFile(o.dir + "/slab-00000.tkv");
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->superblock.version, 1u);
  EXPECT_EQ(scan->superblock.header_bytes, 4096u);
  ASSERT_EQ(scan->valid.size(), 1u);
  DiskTierOptions again = o;
  again.format_version = kSlabFormatVersion;  // what a new build asks for new slabs
  again.header_bytes = 512;
  // What a daemon sizing D from a byte budget asks first (a v1 tier keeps its slot count).
  Result<std::optional<SlotLayout>> found = DiskTier::ExistingLayout(again);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->version, 1u);
  EXPECT_EQ(DiskSlotStride(again.slot_capacity, **found), 4096u + 12288u);
  auto t = MustOpen(again);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->layout().version, 1u);
  EXPECT_EQ(t->layout().header_bytes, 4096u);
  ASSERT_TRUE(t->Adopt(3).ok());
  Bytes out(12288);
  Result<SlotInfo> info = t->Read(3, TagFor(5, 3, 2), out);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), out.begin()));
  ASSERT_TRUE(t->Adopt(4).ok());
  ASSERT_TRUE(t->Write(4, TagFor(5, 4, 1), payload).ok());
  ASSERT_TRUE(t->Read(4, TagFor(5, 4, 1), out).ok());
}

// A slab of a newer format than this build knows is refused, saying so.
TEST_P(DiskTierTest, NewerFormatIsRefusedWithAClearMessage) {
  DiskTierOptions o = Options();
  { ASSERT_NE(MustOpen(o), nullptr); }
  const std::string slab0 = o.dir + "/slab-00000.tkv";
  const int fd = open(slab0.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  SlabSuperblock sb;
  ASSERT_EQ(pread(fd, &sb, sizeof(sb), 0), static_cast<ssize_t>(sizeof(sb)));
  sb.version = kSlabFormatVersion + 1;
  sb.checksum = Checksum64(&sb, offsetof(SlabSuperblock, checksum));
  ASSERT_EQ(pwrite(fd, &sb, sizeof(sb), 0), static_cast<ssize_t>(sizeof(sb)));
  close(fd);
  Result<std::unique_ptr<DiskTier>> t = DiskTier::Open(o);
  ASSERT_EQ(t.status().code(), StatusCode::kNotSupported) << t.status().ToString();
  EXPECT_NE(t.status().message().find("format version " + std::to_string(kSlabFormatVersion + 1)), std::string::npos)
      << t.status().message();
}

// Several dirs (one per device): slots alternate devices, each device has its own
// slab files, a scan and a reopen see every slot, another dir count is refused.
TEST_P(DiskTierTest, StripesSlotsOverSeveralDirs) {
  DiskTierOptions o = Options(10, 10000);
  o.dirs = {scratch_.Sub("nvme0"), scratch_.Sub("nvme1"), scratch_.Sub("nvme2")};
  std::vector<Bytes> data;
  {
    auto t = MustOpen(o);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->num_devices(), 3u);
    std::vector<SlotId> slots;
    ASSERT_TRUE(t->AllocateMany(10, &slots).ok());
    std::vector<WriteOp> ops;
    for (SlotId s : slots) data.push_back(RandomBytes(1000 + 100 * s, rng_));
    for (SlotId s : slots) ops.emplace_back(s, TagFor(7, s, 1), data[s]);
    ASSERT_TRUE(t->WriteBatch(ops).ok());
    ASSERT_TRUE(t->Sync().ok());
    for (SlotId s : slots) {
      EXPECT_EQ(t->DeviceOf(s), s % 3);
      const std::string path = t->SlotLocation(s).first;
      EXPECT_EQ(path.rfind(o.dirs[s % 3] + "/", 0), 0u) << path;
    }
    const auto stats = t->device_stats();
    ASSERT_EQ(stats.size(), 3u);
    EXPECT_EQ(stats[0].writes, 4u);  // slots 0 3 6 9
    EXPECT_EQ(stats[1].writes, 3u);
    EXPECT_EQ(stats[2].writes, 3u);
    Result<SlabScan> scan = t->Scan();
    ASSERT_TRUE(scan.ok()) << scan.status().ToString();
    ASSERT_EQ(scan->valid.size(), 10u);
    for (SlotId s = 0; s < 10; ++s) EXPECT_EQ(scan->valid[s].slot, s);
  }
  {
    auto t = MustOpen(o);
    ASSERT_NE(t, nullptr);
    std::vector<Bytes> outs(10, Bytes(10000));
    std::vector<ReadOp> reads;
    for (SlotId s = 0; s < 10; ++s) {
      ASSERT_TRUE(t->Adopt(s).ok());
      reads.emplace_back(s, TagFor(7, s, 1), std::span<std::byte>(outs[s]));
    }
    ASSERT_TRUE(t->ReadBatch(reads).ok());
    for (SlotId s = 0; s < 10; ++s) {
      ASSERT_TRUE(reads[s].status.ok()) << reads[s].status.ToString();
      EXPECT_TRUE(std::equal(data[s].begin(), data[s].end(), outs[s].begin())) << "slot " << s;
    }
  }
  DiskTierOptions fewer = o;
  fewer.dirs.pop_back();
  EXPECT_FALSE(DiskTier::Open(fewer).ok());
  DiskTierOptions twice = o;
  twice.dirs[2] = twice.dirs[0];
  EXPECT_EQ(DiskTier::Open(twice).status().code(), StatusCode::kInvalidArgument);
}

// A failing device (every I/O of device 1 fails: fault-injecting engine) is
// isolated: its slots answer kIOError, fast once it is marked failed; the other
// devices keep reading and writing; Sync succeeds.
TEST_P(DiskTierTest, FailingDeviceIsIsolated) {
  DiskTierOptions o = Options(12, 8192);
  o.dirs = {scratch_.Sub("ok0"), scratch_.Sub("bad1"), scratch_.Sub("ok2")};
  o.device_fail_after = 2;
  auto injector = std::make_shared<io::FaultInjector>(7);
  o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
    ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
    if (eo.device != 1) return inner;
    return io::WrapWithFaults(std::move(inner), injector);
  };
  auto t = MustOpen(o);
  ASSERT_NE(t, nullptr);
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(12, &slots).ok());
  const Bytes payload = RandomBytes(8192, rng_);
  // Healthy first: everything is written; then slots 9 (device 0) and 10 (device 1) are freed.
  for (SlotId s : slots) ASSERT_TRUE(t->Write(s, TagFor(4, s, 1), payload).ok());
  ASSERT_TRUE(t->Free(9).ok());
  ASSERT_TRUE(t->Free(10).ok());
  const std::vector<SlotId> used = {0, 1, 2, 3, 4, 5, 6, 7, 8, 11};
  injector->AddRule({io::FaultKind::kIoError, io::FaultTarget::kAll, 1});
  std::vector<WriteOp> ops;
  for (SlotId s : used) ops.emplace_back(s, TagFor(4, s, 2), payload);
  EXPECT_FALSE(t->WriteBatch(ops).ok());
  for (size_t i = 0; i < used.size(); ++i) {
    if (used[i] % 3 == 1) {
      EXPECT_EQ(ops[i].status.code(), StatusCode::kIOError) << "slot " << used[i];
    } else {
      EXPECT_TRUE(ops[i].status.ok()) << "slot " << used[i] << ": " << ops[i].status.ToString();
    }
  }
  auto stats = t->device_stats();
  ASSERT_TRUE(stats[1].failed);
  EXPECT_FALSE(stats[0].failed);
  EXPECT_FALSE(stats[2].failed);
  EXPECT_NE(stats[1].failure.find("in a row"), std::string::npos) << stats[1].failure;
  // The failed device's free slot is out of allocation; the healthy one's is not.
  EXPECT_TRUE(t->IsAllocated(10));
  EXPECT_EQ(t->free_slots(), 1u);
  Result<SlotId> fresh = t->Allocate();
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(*fresh, 9u);
  const uint64_t requests = injector->counts().requests;
  // Device 1 is not touched any more; the others serve.
  Bytes out(8192);
  for (SlotId s : used) {
    if (s % 3 == 1) {
      // (Its failed write left the slot unwritten: a write shows the fast refusal.)
      const Status w = t->Write(s, TagFor(4, s, 3), payload);
      EXPECT_EQ(w.code(), StatusCode::kIOError);
      EXPECT_NE(w.message().find("device 1"), std::string::npos) << w.message();
    } else {
      Result<SlotInfo> r = t->Read(s, TagFor(4, s, 2), out);
      ASSERT_TRUE(r.ok()) << "slot " << s << ": " << r.status().ToString();
      EXPECT_EQ(out, payload);
    }
  }
  EXPECT_EQ(injector->counts().requests, requests);
  EXPECT_TRUE(t->Sync().ok());
  EXPECT_GE(t->device_stats()[1].errors, 2u);
}

// A slot the tier wrote (or read with its header) is read as its payload alone, one
// transfer, verified against the checksum the write computed: another slot's bytes,
// an older generation's and damage are still corruption; a tag the tier does not
// remember goes through the header; a tier opened afresh reads headers once.
TEST_P(DiskTierTest, ReadsOfRememberedSlotsMoveThePayloadOnly) {
  auto t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(4, &slots).ok());
  std::vector<Bytes> payloads;
  for (SlotId s : slots) {
    payloads.push_back(RandomBytes(4096 + 1000 * s, rng_));
    ASSERT_TRUE(t->Write(s, TagFor(3, s, 1), payloads.back()).ok());
  }
  ASSERT_TRUE(t->Sync().ok());
  auto read = [&](SlotId s, uint64_t generation, Bytes* out) {
    out->assign(12288, std::byte{0x77});
    return t->Read(s, TagFor(3, s, generation), *out).status();
  };
  Bytes out;
  for (SlotId s : slots) {
    ASSERT_TRUE(read(s, 1, &out).ok());
    EXPECT_TRUE(std::equal(payloads[s].begin(), payloads[s].end(), out.begin()));
  }
  EXPECT_EQ(t->payload_only_reads(), 4u);
  // Slot 1's whole slot copied over slot 0's (a misdirected write): corruption.
  auto copy_slot = [&](SlotId from, SlotId to, Bytes* saved) {
    auto [pf, of] = Where(*t, from);
    auto [pt, ot] = Where(*t, to);
    Bytes bytes(t->slot_stride());
    const int ff = open(pf.c_str(), O_RDONLY), ft = open(pt.c_str(), O_RDWR);
    ASSERT_TRUE(ff >= 0 && ft >= 0);
    if (saved != nullptr) {
      saved->resize(bytes.size());
      ASSERT_EQ(pread(ft, saved->data(), saved->size(), static_cast<off_t>(ot)), static_cast<ssize_t>(saved->size()));
    }
    ASSERT_EQ(pread(ff, bytes.data(), bytes.size(), static_cast<off_t>(of)), static_cast<ssize_t>(bytes.size()));
    ASSERT_EQ(pwrite(ft, bytes.data(), bytes.size(), static_cast<off_t>(ot)), static_cast<ssize_t>(bytes.size()));
    fsync(ft);
    close(ff);
    close(ft);
  };
  copy_slot(1, 0, nullptr);
  EXPECT_EQ(read(0, 1, &out).code(), StatusCode::kCorruption);
  EXPECT_TRUE(HoldsNoData(out, std::byte{0x77}));
  // Slot 2 rewritten (generation 2), then its old bytes back on disk (a lost write).
  Bytes old_slot2;
  copy_slot(2, 2, &old_slot2);  // saves slot 2 as it is (generation 1)
  const Bytes fresh = RandomBytes(payloads[2].size(), rng_);
  ASSERT_TRUE(t->Write(2, TagFor(3, 2, 2), fresh).ok());
  {
    auto [p2, o2] = Where(*t, 2);
    const int fd = open(p2.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, old_slot2.data(), old_slot2.size(), static_cast<off_t>(o2)), static_cast<ssize_t>(old_slot2.size()));
    fsync(fd);
    close(fd);
  }
  EXPECT_EQ(read(2, 2, &out).code(), StatusCode::kCorruption);
  // A tag the tier does not remember: read with the header, which names what is there.
  const Status other = read(3, 7, &out);
  EXPECT_EQ(other.code(), StatusCode::kCorruption);
  EXPECT_NE(other.message().find("holds"), std::string::npos) << other.ToString();
  const uint64_t payload_only = t->payload_only_reads();
  // Opened afresh: the first read of slot 3 reads its header, the next one does not.
  t.reset();
  t = MustOpen(Options());
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(t->Adopt(3).ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(read(3, 1, &out).ok());
    EXPECT_TRUE(std::equal(payloads[3].begin(), payloads[3].end(), out.begin()));
    EXPECT_EQ(t->payload_only_reads(), static_cast<uint64_t>(i));
  }
  EXPECT_EQ(payload_only, 6u);  // slot 0 and slot 2's reads above
}

// Payloads in registered memory (the H arena in the daemon) move as fixed-buffer
// transfers on io_uring and come back exact; payloads below fixed_min_bytes or
// outside the memory take the pinned path; psync ignores the registration. Damage
// and short transfers on the fixed path are still caught, and never served.
TEST_P(DiskTierTest, RegisteredMemoryTransfersAreFixedAndExact) {
  constexpr uint32_t kCap = 128 * 1024;
  const size_t arena_bytes = 8 * size_t{kCap};
  void* p = mmap(nullptr, arena_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  const std::span<std::byte> arena(static_cast<std::byte*>(p), arena_bytes);
  auto injector = std::make_shared<io::FaultInjector>(3);
  DiskTierOptions o = Options(10, kCap);
  o.registered_memory = {arena};
  o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
    ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
    return io::WrapWithFaults(std::move(inner), injector);
  };
  auto t = MustOpen(o);
  ASSERT_NE(t, nullptr);
  const bool uring = GetParam() == io::IoEngineKind::kUring;
  std::vector<SlotId> slots;
  ASSERT_TRUE(t->AllocateMany(6, &slots).ok());
  // Slots 0-3: 128 KiB payloads written from the arena; slot 4: 64 KiB (the default
  // fixed_min_bytes); slot 5: 16 KiB (pinned path).
  const uint32_t sizes[6] = {kCap, kCap, kCap, kCap, 64 * 1024, 16 * 1024};
  std::vector<Bytes> want;
  for (int i = 0; i < 6; ++i) {
    want.push_back(RandomBytes(sizes[i], rng_));
    std::memcpy(arena.data() + static_cast<size_t>(i) * kCap, want[i].data(), sizes[i]);
    ASSERT_TRUE(t->Write(slots[i], TagFor(5, slots[i], 1), arena.subspan(static_cast<size_t>(i) * kCap, sizes[i])).ok());
  }
  EXPECT_EQ(t->fixed_transfers(), uring ? 5u : 0u);
  // Read back into other parts of the arena, as promotions to H do (a read of a slot
  // the tier wrote moves its payload only: slots 0-4 fixed, the 16 KiB one pinned).
  std::memset(arena.data(), 0, arena_bytes);
  std::vector<ReadOp> reads;
  for (int i = 0; i < 6; ++i) {
    reads.emplace_back(slots[i], TagFor(5, slots[i], 1), arena.subspan(static_cast<size_t>((i + 2) % 8) * kCap, kCap));
  }
  ASSERT_TRUE(t->ReadBatch(reads).ok());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(reads[i].status.ok()) << i << ": " << reads[i].status.ToString();
    EXPECT_EQ(reads[i].info.length, sizes[i]);
    EXPECT_TRUE(std::equal(want[i].begin(), want[i].end(), reads[i].out.begin())) << "slot " << i;
  }
  EXPECT_EQ(t->fixed_transfers(), uring ? 10u : 0u);
  EXPECT_EQ(t->payload_only_reads(), 6u);
  // Memory outside the registered arena: zero-copy, not fixed.
  Bytes outside(kCap);
  ASSERT_TRUE(t->Read(slots[0], TagFor(5, slots[0], 1), outside).ok());
  EXPECT_TRUE(std::equal(want[0].begin(), want[0].end(), outside.begin()));
  EXPECT_EQ(t->fixed_transfers(), uring ? 10u : 0u);
  // A byte flipped on the way in, a short transfer: errors, and no payload left behind.
  const std::span<std::byte> dst = arena.subspan(0, kCap);
  for (io::FaultKind k : {io::FaultKind::kFlipByte, io::FaultKind::kShortTransfer}) {
    injector->AddRule({k, io::FaultTarget::kReads, 0, 0, 1});
    std::memset(dst.data(), 0x5a, kCap);
    Result<SlotInfo> r = t->Read(slots[1], TagFor(5, slots[1], 1), dst);
    EXPECT_FALSE(r.ok()) << static_cast<int>(k);
    EXPECT_TRUE(std::all_of(dst.begin(), dst.end(), [](std::byte b) { return b == std::byte{0}; }));
    injector->ClearRules();
  }
  // A torn write on the fixed path (its first half stored) reads as damage.
  injector->AddRule({io::FaultKind::kShortTransfer, io::FaultTarget::kWrites, 0, 0, 1});
  EXPECT_FALSE(t->Write(slots[2], TagFor(5, slots[2], 2), arena.subspan(2 * size_t{kCap}, kCap)).ok());
  injector->ClearRules();
  EXPECT_FALSE(t->Read(slots[2], TagFor(5, slots[2], 2), dst).ok());
  t.reset();
  munmap(p, arena_bytes);
}

// The io_uring engine's split request: a pool header sector and a region payload
// complete once with both lengths summed; a wrong region index is refused.
TEST(IoEngineRegions, SplitRequestCompletesOnceWithBothParts) {
  if (!io::IoUringAvailable()) GTEST_SKIP() << "io_uring not available";
  ScratchDir scratch;
  const size_t region_bytes = 1 << 20;
  void* p = mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::byte* region = static_cast<std::byte*>(p);
  io::IoEngineOptions eo;
  eo.kind = io::IoEngineKind::kUring;
  eo.queue_depth = 4;
  eo.num_buffers = 4;
  eo.buffer_bytes = 4096;
  eo.regions = {{region, region_bytes}};
  Result<std::unique_ptr<io::IoEngine>> engine = io::CreateIoEngine(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  io::IoEngine& e = **engine;
  EXPECT_EQ(e.RegionIndex(region + 4096, 8192), 4);  // after the 4 pool buffers
  EXPECT_EQ(e.RegionIndex(region + region_bytes - 512, 1024), -1);  // runs past the end
  EXPECT_EQ(e.RegionIndex(e.buffers()->buffer(0), 512), -1);
  const std::string path = scratch.Sub("raw");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  ASSERT_TRUE(e.RegisterFiles(std::span<const int>(&fd, 1)).ok());
  std::memset(e.buffers()->buffer(0), 0x11, 512);
  std::memset(region, 0x22, 65536);
  io::IoRequest w{io::IoOp::kWrite, 0, 4096, 512, e.buffers()->buffer(0), 0, 1, region, 65536, 4};
  std::vector<int32_t> results(1, 0);
  ASSERT_TRUE(io::RunIoBatch(e, std::span(&w, 1), results).ok());
  EXPECT_EQ(results[0], 512 + 65536);
  std::memset(e.buffers()->buffer(1), 0, 512);
  std::memset(region + 65536, 0, 65536);
  io::IoRequest r{io::IoOp::kRead, 0, 4096, 512, e.buffers()->buffer(1), 1, 2, region + 65536, 65536, 4};
  ASSERT_TRUE(io::RunIoBatch(e, std::span(&r, 1), results).ok());
  EXPECT_EQ(results[0], 512 + 65536);
  EXPECT_EQ(static_cast<unsigned char>(e.buffers()->buffer(1)[511]), 0x11);
  EXPECT_EQ(static_cast<unsigned char>(region[65536 + 65535]), 0x22);
  EXPECT_EQ(static_cast<unsigned char>(region[65536]), 0x22);
  r.buf2_index = 3;  // a pool buffer, not the region
  EXPECT_EQ(e.Prepare(r).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.in_flight(), 0u);
  close(fd);
  munmap(p, region_bytes);
}

TEST_P(DiskTierTest, IoEngineRoundTripAndMisalignment) {
  io::IoEngineOptions eo;
  eo.kind = GetParam();
  eo.queue_depth = 4;
  eo.num_buffers = 4;
  eo.buffer_bytes = 8192;
  Result<std::unique_ptr<io::IoEngine>> engine = io::CreateIoEngine(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  io::IoEngine& e = **engine;
  const std::string path = scratch_.Sub("raw");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  ASSERT_TRUE(e.RegisterFiles(std::span<const int>(&fd, 1)).ok());
  // Ten writes through four engine buffers, in groups of four (RunIoBatch keeps at
  // most queue_depth in flight; a buffer is refilled only after its group is done).
  std::vector<int32_t> results;
  for (uint32_t g = 0; g < 10; g += 4) {
    const uint32_t n = std::min<uint32_t>(4, 10 - g);
    std::vector<io::IoRequest> reqs;
    for (uint32_t j = 0; j < n; ++j) {
      std::byte* b = e.buffers()->buffer(j);
      std::memset(b, static_cast<int>(g + j + 1), 8192);
      reqs.push_back({io::IoOp::kWrite, 0, uint64_t{g + j} * 8192, 8192, b, static_cast<int32_t>(j), 0});
    }
    results.assign(n, 0);
    ASSERT_TRUE(io::RunIoBatch(e, reqs, results).ok());
    for (int32_t r : results) EXPECT_EQ(r, 8192);
  }
  // Read back into plain aligned memory (not an engine buffer).
  void* mem = std::aligned_alloc(io::kIoAlign, 10 * 8192);
  std::vector<io::IoRequest> rd;
  for (uint32_t i = 0; i < 10; ++i) {
    rd.push_back({io::IoOp::kRead, 0, uint64_t{i} * 8192, 8192, static_cast<std::byte*>(mem) + i * 8192, -1, 0});
  }
  results.assign(10, 0);
  ASSERT_TRUE(io::RunIoBatch(e, rd, results).ok());
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(results[i], 8192);
    EXPECT_EQ(static_cast<unsigned char*>(mem)[i * 8192 + 17], i + 1);
  }
  // Misaligned requests and bad indexes are refused at Prepare.
  io::IoRequest bad{io::IoOp::kRead, 0, 100, 8192, static_cast<std::byte*>(mem), -1, 0};
  EXPECT_EQ(e.Prepare(bad).code(), StatusCode::kInvalidArgument);
  bad = {io::IoOp::kRead, 1, 0, 8192, static_cast<std::byte*>(mem), -1, 0};
  EXPECT_EQ(e.Prepare(bad).code(), StatusCode::kInvalidArgument);
  bad = {io::IoOp::kRead, 0, 0, 8192, static_cast<std::byte*>(mem), 2, 0};  // not inside buffer 2
  EXPECT_EQ(e.Prepare(bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.in_flight(), 0u);
  std::free(mem);
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(Engines, DiskTierTest, ::testing::Values(io::IoEngineKind::kUring, io::IoEngineKind::kPsync),
                         [](const ::testing::TestParamInfo<io::IoEngineKind>& info) {
                           return info.param == io::IoEngineKind::kUring ? std::string("io_uring")
                                                                         : std::string("psync");
                         });

TEST(IoEngineFactory, KindNames) {
  for (io::IoEngineKind k : {io::IoEngineKind::kAuto, io::IoEngineKind::kUring, io::IoEngineKind::kPsync}) {
    Result<io::IoEngineKind> parsed = io::ParseIoEngineKind(io::IoEngineKindName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_EQ(io::ParseIoEngineKind("aio").status().code(), StatusCode::kInvalidArgument);
  io::IoEngineOptions eo;
  eo.queue_depth = 0;
  EXPECT_EQ(io::CreateIoEngine(eo).status().code(), StatusCode::kInvalidArgument);
  eo.queue_depth = 8;
  Result<std::unique_ptr<io::IoEngine>> e = io::CreateIoEngine(eo);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)->name(), io::IoUringAvailable() ? "io_uring" : "psync");
  EXPECT_EQ((*e)->buffers(), nullptr);
}

}  // namespace
}  // namespace tierkv::storage

namespace tierkv::storage {
namespace {
// The wide-vector payload checksum equals Checksum64 (xxh3 does not depend on the
// vector width): slabs written by either path verify with the other.
TEST(PayloadChecksum, EqualsChecksum64AtEveryLength) {
  std::mt19937_64 rng(11);
  const testing::Bytes data = testing::RandomBytes(70000, rng);
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{16}, size_t{17}, size_t{128}, size_t{129}, size_t{240},
                   size_t{241}, size_t{1023}, size_t{1024}, size_t{4096}, size_t{16384}, size_t{65537}, size_t{70000}}) {
    for (size_t off : {size_t{0}, size_t{1}, size_t{64}}) {
      if (off + n > data.size()) continue;
      EXPECT_EQ(PayloadChecksum(data.data() + off, n), Checksum64(data.data() + off, n)) << n << " at " << off;
    }
  }
  EXPECT_FALSE(PayloadChecksumPath().empty());
}
}  // namespace
}  // namespace tierkv::storage
