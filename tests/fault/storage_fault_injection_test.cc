// Faults under the D tier (EIO, ENOSPC, short transfers, flipped bytes), injected
// by the FaultInjector wrapper around the real engines: errors surface as Status,
// damaged bytes are caught by the checksums and never returned, stats count each.
#include <gtest/gtest.h>

#include <random>

#include "io/fault_injection_engine.h"
#include "storage/disk_tier.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

using testing::Bytes;
using testing::HoldsNoData;
using testing::RandomBytes;
using testing::ScratchDir;
using testing::TagFor;

constexpr uint32_t kSlots = 64;
constexpr uint32_t kCapacity = 20000;

struct FaultParam {
  io::IoEngineKind engine;
  // Payloads of whole pages in page-aligned buffers: the D tier's zero-copy path
  // (vectored I/O into the caller's memory). Else odd lengths: the bounce path.
  bool whole_pages;
};

void PrintTo(const FaultParam& p, std::ostream* os) {
  *os << io::IoEngineKindName(p.engine) << (p.whole_pages ? "_zero_copy" : "_bounce");
}

class FaultTest : public ::testing::TestWithParam<FaultParam> {
 protected:
  void SetUp() override {
    if (GetParam().engine == io::IoEngineKind::kUring && !io::IoUringAvailable())
      GTEST_SKIP() << "io_uring not available";
    ASSERT_FALSE(scratch_.path().empty());
    DiskTierOptions o;
    o.dir = scratch_.Sub("d");
    o.num_slots = kSlots;
    o.slot_capacity = kCapacity;
    o.engine = GetParam().engine;
    o.queue_depth = 8;
    auto injector = injector_;
    o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
      ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
      return io::WrapWithFaults(std::move(inner), injector);
    };
    Result<std::unique_ptr<DiskTier>> t = DiskTier::Open(o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tier_ = std::move(*t);
    ASSERT_TRUE(tier_->AllocateMany(kSlots, &slots_).ok());
  }

  // A payload length for the path under test.
  size_t Length() {
    if (GetParam().whole_pages) return 4096 * (1 + rng_() % (kCapacity / 4096));
    const size_t n = 1 + rng_() % kCapacity;
    return n % 4096 == 0 ? n - 1 : n;
  }
  size_t MaxLength() const { return GetParam().whole_pages ? kCapacity / 4096 * 4096 : kCapacity; }

  // Writes a fresh random payload to slot i with generation gen, remembering it.
  Status Put(uint32_t i, uint64_t gen) {
    data_[i] = RandomBytes(Length(), rng_);
    return tier_->Write(slots_[i], TagFor(1, i, gen), data_[i]);
  }

  // Reads slot i into a buffer of exactly its payload size (so the whole transfer
  // is covered by checksums: every injected flip must be caught). out is pre-filled
  // with a sentinel, which must survive any failed read.
  Status Get(uint32_t i, uint64_t gen) {
    Bytes out(data_[i].size(), std::byte{0xee});
    Result<SlotInfo> info = tier_->Read(slots_[i], TagFor(1, i, gen), out);
    if (!info.ok()) {
      EXPECT_TRUE(HoldsNoData(out, std::byte{0xee})) << "failed read handed out bytes";
      return info.status();
    }
    EXPECT_EQ(info->length, data_[i].size());
    EXPECT_TRUE(std::equal(data_[i].begin(), data_[i].end(), out.begin())) << "wrong data returned, slot " << i;
    return OkStatus();
  }

  ScratchDir scratch_;
  std::shared_ptr<io::FaultInjector> injector_ = std::make_shared<io::FaultInjector>(2024);
  std::unique_ptr<DiskTier> tier_;
  std::vector<SlotId> slots_;
  std::vector<Bytes> data_ = std::vector<Bytes>(kSlots);
  std::mt19937_64 rng_{7};
};

TEST_P(FaultTest, EngineIsWrapped) {
  EXPECT_EQ(tier_->engine_name(), GetParam().engine == io::IoEngineKind::kUring ? "fault(io_uring)" : "fault(psync)");
}

TEST_P(FaultTest, WriteEioIsIOErrorAndSlotHoldsNothing) {
  ASSERT_TRUE(Put(0, 1).ok());
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kWrites, .at_request = 0});
  Status st = Put(0, 2);
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
  EXPECT_EQ(Get(0, 2).code(), StatusCode::kNotFound);  // a failed write leaves the slot empty
  ASSERT_TRUE(Put(0, 3).ok());                          // the rule fired once, at request 0
  EXPECT_TRUE(Get(0, 3).ok());
  const TierStatsSnapshot s = tier_->stats().Snapshot();
  EXPECT_EQ(s.write_errors, 1u);
  EXPECT_EQ(s.io_errors, 1u);
  EXPECT_EQ(injector_->counts().io_errors, 1u);
}

TEST_P(FaultTest, ReadEioIsIOErrorAndDataSurvives) {
  ASSERT_TRUE(Put(1, 1).ok());
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kReads, .at_request = 1});
  EXPECT_TRUE(Get(1, 1).ok());                          // request 0
  EXPECT_EQ(Get(1, 1).code(), StatusCode::kIOError);     // request 1
  EXPECT_TRUE(Get(1, 1).ok());                          // request 2
  const TierStatsSnapshot s = tier_->stats().Snapshot();
  EXPECT_EQ(s.read_errors, 1u);
  EXPECT_EQ(s.io_errors, 1u);
  EXPECT_EQ(s.reads, 2u);
}

TEST_P(FaultTest, EnospcIsResourceExhausted) {
  injector_->AddRule({.kind = io::FaultKind::kNoSpace, .at_request = 0});
  EXPECT_EQ(Put(2, 1).code(), StatusCode::kResourceExhausted);
  const TierStatsSnapshot s = tier_->stats().Snapshot();
  EXPECT_EQ(s.no_space, 1u);
  EXPECT_EQ(s.write_errors, 1u);
  EXPECT_EQ(s.io_errors, 0u);
  ASSERT_TRUE(Put(2, 2).ok());
  EXPECT_TRUE(Get(2, 2).ok());  // ENOSPC never applies to reads
}

TEST_P(FaultTest, ShortWriteIsIOErrorAndTornSlotIsFoundByScan) {
  ASSERT_TRUE(Put(3, 1).ok());
  ASSERT_TRUE(tier_->Sync().ok());
  injector_->AddRule({.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kWrites, .at_request = 0});
  data_[3] = RandomBytes(MaxLength(), rng_);  // 20 or 24 KiB on disk: half of it lands
  Status st = tier_->Write(slots_[3], TagFor(1, 3, 2), data_[3]);
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
  EXPECT_EQ(tier_->stats().Snapshot().io_errors, 1u);
  ASSERT_TRUE(tier_->Sync().ok());
  // The first half of the new slot (header + part of the payload) is on disk: torn.
  Result<SlabScan> scan = tier_->Scan();
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->damaged.size(), 1u);
  EXPECT_EQ(scan->damaged[0].slot, slots_[3]);
  EXPECT_EQ(scan->damaged[0].status.code(), StatusCode::kCorruption);
  // A reader that adopts the torn slot (as after a restart) gets kCorruption, not bytes.
  ASSERT_TRUE(tier_->Free(slots_[3]).ok());
  ASSERT_TRUE(tier_->Adopt(slots_[3]).ok());
  EXPECT_EQ(Get(3, 2).code(), StatusCode::kCorruption);
}

TEST_P(FaultTest, ShortReadIsIOError) {
  ASSERT_TRUE(Put(4, 1).ok());
  injector_->AddRule({.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kReads, .at_request = 0});
  EXPECT_EQ(Get(4, 1).code(), StatusCode::kIOError);
  EXPECT_TRUE(Get(4, 1).ok());
  EXPECT_EQ(tier_->stats().Snapshot().io_errors, 1u);
}

TEST_P(FaultTest, FlippedByteOnReadIsCorruption) {
  ASSERT_TRUE(Put(5, 1).ok());
  injector_->AddRule(
      {.kind = io::FaultKind::kFlipByte, .target = io::FaultTarget::kReads, .one_in = 1, .max_faults = 20});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Get(5, 1).code(), StatusCode::kCorruption) << "flip " << i;
  EXPECT_TRUE(Get(5, 1).ok());  // rule exhausted; the data on disk was never damaged
  const TierStatsSnapshot s = tier_->stats().Snapshot();
  EXPECT_EQ(s.checksum_failures, 20u);
  EXPECT_EQ(injector_->counts().flipped_bytes, 20u);
}

TEST_P(FaultTest, FlippedByteOnWriteIsCaughtOnRead) {
  injector_->AddRule(
      {.kind = io::FaultKind::kFlipByte, .target = io::FaultTarget::kWrites, .one_in = 1, .max_faults = 10});
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(Put(10 + i, 1).ok());  // silent media damage
  for (uint32_t i = 0; i < 10; ++i) EXPECT_EQ(Get(10 + i, 1).code(), StatusCode::kCorruption) << "slot " << i;
  EXPECT_EQ(tier_->stats().Snapshot().checksum_failures, 10u);
}

// Random faults of every kind over batches: every op either returns exactly the
// bytes written or an error, and the stats match the injector's counts.
TEST_P(FaultTest, RandomFaultsNeverReturnWrongData) {
  const uint64_t kOneIn = 9;
  for (io::FaultKind k :
       {io::FaultKind::kIoError, io::FaultKind::kNoSpace, io::FaultKind::kShortTransfer, io::FaultKind::kFlipByte}) {
    injector_->AddRule({.kind = k, .target = io::FaultTarget::kWrites, .one_in = kOneIn});
  }
  std::vector<WriteOp> writes(kSlots);
  for (uint32_t i = 0; i < kSlots; ++i) {
    data_[i] = RandomBytes(Length(), rng_);
    writes[i] = {slots_[i], TagFor(1, i, 1), data_[i]};
  }
  (void)tier_->WriteBatch(writes);
  const io::FaultCounts w = injector_->counts();
  ASSERT_GT(w.total(), 0u) << "the seed injected nothing: the test would prove nothing";
  TierStatsSnapshot s = tier_->stats().Snapshot();
  EXPECT_EQ(s.io_errors, w.io_errors + w.short_transfers);
  EXPECT_EQ(s.no_space, w.no_space);
  EXPECT_EQ(s.writes, kSlots - (w.io_errors + w.short_transfers + w.no_space));
  std::vector<uint32_t> written;
  for (uint32_t i = 0; i < kSlots; ++i) {
    if (writes[i].status.ok()) written.push_back(i);
  }

  // Without read faults, the flipped writes read back as corruption, except a flip
  // in a header sector over an intact payload: the tier remembers what it wrote and
  // reads the payload alone (decision 0031), so that slot serves its exact bytes.
  // The recovery scan, which reads every header, finds every flipped or torn slot.
  injector_->ClearRules();
  Result<SlabScan> scan = tier_->Scan();
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->damaged.size(), w.flipped_bytes + w.short_transfers);
  uint64_t corrupt = 0;
  std::vector<uint32_t> good;
  for (uint32_t i : written) {
    Status st = Get(i, 1);
    if (st.code() == StatusCode::kCorruption) {
      ++corrupt;
    } else {
      EXPECT_TRUE(st.ok()) << st.ToString();
      good.push_back(i);
    }
  }
  EXPECT_LE(corrupt, w.flipped_bytes);
  EXPECT_GT(corrupt, 0u) << "no flip hit a payload: the test would prove little";

  // Read faults on the good slots, batched, several rounds.
  for (io::FaultKind k : {io::FaultKind::kIoError, io::FaultKind::kShortTransfer, io::FaultKind::kFlipByte}) {
    injector_->AddRule({.kind = k, .target = io::FaultTarget::kReads, .one_in = kOneIn});
  }
  const io::FaultCounts before = injector_->counts();
  s = tier_->stats().Snapshot();
  for (int round = 0; round < 5; ++round) {
    std::vector<Bytes> outs;
    for (uint32_t g : good) outs.emplace_back(data_[g].size());
    std::vector<ReadOp> reads;
    for (size_t j = 0; j < good.size(); ++j) reads.push_back({slots_[good[j]], TagFor(1, good[j], 1), outs[j]});
    (void)tier_->ReadBatch(reads);
    for (size_t j = 0; j < good.size(); ++j) {
      if (!reads[j].status.ok()) continue;
      const auto& d = data_[good[j]];
      EXPECT_EQ(reads[j].info.length, d.size());
      EXPECT_TRUE(std::equal(d.begin(), d.end(), outs[j].begin())) << "wrong data returned";
    }
  }
  const io::FaultCounts r = injector_->counts();
  const TierStatsSnapshot after = tier_->stats().Snapshot();
  // The path under test was the one taken.
  if (GetParam().whole_pages) {
    EXPECT_EQ(tier_->bounce_transfers(), 0u);
  } else {
    EXPECT_EQ(tier_->zero_copy_transfers(), 0u);
  }
  EXPECT_GT(r.total(), before.total());
  EXPECT_EQ(after.io_errors - s.io_errors, (r.io_errors - before.io_errors) + (r.short_transfers - before.short_transfers));
  EXPECT_EQ(after.checksum_failures - s.checksum_failures, r.flipped_bytes - before.flipped_bytes);
  EXPECT_EQ(after.reads - s.reads, 5 * good.size() - (r.total() - before.total()));
}

INSTANTIATE_TEST_SUITE_P(Engines, FaultTest,
                         ::testing::Values(FaultParam{io::IoEngineKind::kUring, false},
                                           FaultParam{io::IoEngineKind::kUring, true},
                                           FaultParam{io::IoEngineKind::kPsync, false},
                                           FaultParam{io::IoEngineKind::kPsync, true}),
                         [](const ::testing::TestParamInfo<FaultParam>& info) {
                           return std::string(info.param.engine == io::IoEngineKind::kUring ? "io_uring" : "psync") +
                                  (info.param.whole_pages ? "_zero_copy" : "_bounce");
                         });

}  // namespace
}  // namespace tierkv::storage
