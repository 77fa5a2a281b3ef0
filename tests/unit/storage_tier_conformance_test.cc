// One conformance suite over every Tier implementation: H (memfd), G emulated
// (anonymous memory), D with io_uring, D with pread/pwrite. Each variant must
// behave the same at the Tier interface.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "storage/arena_tier.h"
#include "storage/disk_tier.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

using testing::Bytes;
using testing::HoldsNoData;
using testing::RandomBytes;
using testing::ScratchDir;
using testing::TagFor;

constexpr uint32_t kSlots = 48;
// A multiple of 4 KiB, so reads into whole-capacity page-aligned buffers take the
// D tier's zero-copy path; payload lengths vary (most are not multiples: copy path).
constexpr uint32_t kCapacity = 3 * 4096;

struct Variant {
  std::string name;
  // Makes a tier of kSlots slots of kCapacity bytes; dir is a scratch directory.
  std::function<Result<std::unique_ptr<Tier>>(const std::string& dir)> make;
  bool needs_uring = false;
};

Result<std::unique_ptr<Tier>> MakeDisk(const std::string& dir, io::IoEngineKind kind, bool zero_copy = true) {
  DiskTierOptions o;
  o.zero_copy = zero_copy;
  o.dir = dir;
  o.num_slots = kSlots;
  o.slot_capacity = kCapacity;
  o.engine = kind;
  o.queue_depth = 8;
  o.io_contexts = 3;
  o.max_slab_bytes = 20 * DiskSlotStride(kCapacity);  // several slab files
  ASSIGN_OR_RETURN(std::unique_ptr<DiskTier> t, DiskTier::Open(o));
  return std::unique_ptr<Tier>(std::move(t));
}

std::vector<Variant> Variants() {
  return {
      {"H",
       [](const std::string&) -> Result<std::unique_ptr<Tier>> {
         ASSIGN_OR_RETURN(auto t, CreateHostTier({"H", kSlots, kCapacity, PinMode::kAuto}));
         return std::unique_ptr<Tier>(std::move(t));
       }},
      {"G_emulated",
       [](const std::string&) -> Result<std::unique_ptr<Tier>> {
         ASSIGN_OR_RETURN(auto t, CreateEmulatedGpuTier({"G", kSlots, kCapacity}));
         return std::unique_ptr<Tier>(std::move(t));
       }},
      {"D_io_uring", [](const std::string& d) { return MakeDisk(d, io::IoEngineKind::kUring); }, true},
      {"D_io_uring_bounce", [](const std::string& d) { return MakeDisk(d, io::IoEngineKind::kUring, false); }, true},
      {"D_psync", [](const std::string& d) { return MakeDisk(d, io::IoEngineKind::kPsync); }},
  };
}

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class TierConformance : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    if (GetParam().needs_uring && !io::IoUringAvailable()) GTEST_SKIP() << "io_uring not available here";
    ASSERT_FALSE(scratch_.path().empty()) << "no scratch directory accepting O_DIRECT";
    Result<std::unique_ptr<Tier>> t = GetParam().make(scratch_.Sub("tier"));
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tier_ = std::move(*t);
  }

  SlotId MustAllocate() {
    Result<SlotId> s = tier_->Allocate();
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : kInvalidSlot;
  }

  ScratchDir scratch_;
  std::unique_ptr<Tier> tier_;
  std::mt19937_64 rng_{12345};
};

TEST_P(TierConformance, Geometry) {
  EXPECT_EQ(tier_->num_slots(), kSlots);
  EXPECT_EQ(tier_->slot_capacity(), kCapacity);
  EXPECT_EQ(tier_->capacity_bytes(), uint64_t{kSlots} * kCapacity);
  EXPECT_EQ(tier_->used_slots(), 0u);
  EXPECT_EQ(tier_->free_slots(), kSlots);
}

TEST_P(TierConformance, RoundTripRandomPayloads) {
  std::vector<Bytes> payloads;
  std::vector<SlotId> slots;
  for (uint32_t i = 0; i < kSlots; ++i) {
    slots.push_back(MustAllocate());
    // Lengths cover 0, 1, whole pages (zero-copy writes on D), the capacity and random ones.
    const size_t len = i == 0   ? 0
                       : i == 1 ? 1
                       : i == 2 ? kCapacity
                       : i < 6  ? 4096 * (i - 2)
                                : rng_() % (kCapacity + 1);
    payloads.push_back(RandomBytes(len, rng_));
    ASSERT_TRUE(tier_->Write(slots[i], TagFor(100, i, 1), payloads[i]).ok());
  }
  EXPECT_EQ(tier_->used_slots(), kSlots);
  for (uint32_t i = 0; i < kSlots; ++i) {
    Bytes out(kCapacity);
    Result<SlotInfo> info = tier_->Read(slots[i], TagFor(100, i, 1), out);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->length, payloads[i].size());
    EXPECT_EQ(info->tag, TagFor(100, i, 1));
    EXPECT_EQ(info->encoding, PayloadEncoding::kRaw);
    out.resize(info->length);
    EXPECT_EQ(out, payloads[i]) << "slot " << slots[i];
  }
  const TierStatsSnapshot s = tier_->stats().Snapshot();
  size_t total = 0;
  for (const auto& p : payloads) total += p.size();
  EXPECT_EQ(s.writes, kSlots);
  EXPECT_EQ(s.reads, kSlots);
  EXPECT_EQ(s.write_bytes, total);
  EXPECT_EQ(s.read_bytes, total);
  EXPECT_EQ(s.read_errors + s.write_errors + s.rejected, 0u);
  // D variants: whole-page payloads and whole-capacity aligned reads go zero-copy
  // unless the variant turned it off.
  if (auto* d = dynamic_cast<DiskTier*>(tier_.get())) {
    if (GetParam().name.find("bounce") != std::string::npos) {
      EXPECT_EQ(d->zero_copy_transfers(), 0u);
    } else {
      EXPECT_GT(d->zero_copy_transfers(), kSlots);
      EXPECT_GT(d->bounce_transfers(), 0u);
    }
  }
}

TEST_P(TierConformance, OverwriteReplacesAndOldGenerationIsRefused) {
  const SlotId s = MustAllocate();
  const auto first = RandomBytes(kCapacity, rng_);
  const auto second = RandomBytes(777, rng_);
  ASSERT_TRUE(tier_->Write(s, TagFor(1, 1, 1), first).ok());
  ASSERT_TRUE(tier_->Write(s, TagFor(1, 1, 2), second).ok());
  Bytes out(kCapacity, std::byte{0x5a});
  Result<SlotInfo> stale = tier_->Read(s, TagFor(1, 1, 1), out);
  EXPECT_EQ(stale.status().code(), StatusCode::kCorruption);
  EXPECT_TRUE(HoldsNoData(out, std::byte{0x5a})) << "a refused read must not hand out bytes";
  Result<SlotInfo> other_block = tier_->Read(s, TagFor(1, 2, 2), out);
  EXPECT_EQ(other_block.status().code(), StatusCode::kCorruption);
  Result<SlotInfo> fresh = tier_->Read(s, TagFor(1, 1, 2), out);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(Bytes(out.begin(), out.begin() + fresh->length), second);
  const TierStatsSnapshot st = tier_->stats().Snapshot();
  EXPECT_EQ(st.tag_mismatches, 2u);
  EXPECT_EQ(st.checksum_failures, 2u);
  EXPECT_EQ(st.read_errors, 2u);
}

TEST_P(TierConformance, BatchRoundTripWithPerOpStatus) {
  std::vector<SlotId> slots;
  ASSERT_TRUE(tier_->AllocateMany(kSlots - 1, &slots).ok());
  std::vector<Bytes> payloads;
  std::vector<WriteOp> writes;
  for (size_t i = 0; i < slots.size(); ++i) {
    payloads.push_back(RandomBytes(1 + rng_() % kCapacity, rng_));
  }
  for (size_t i = 0; i < slots.size(); ++i) writes.push_back({slots[i], TagFor(2, i, 5), payloads[i]});
  const auto big = RandomBytes(kCapacity + 1, rng_);
  writes.push_back({kSlots + 3, TagFor(2, 99, 5), payloads[0]});  // out of range
  writes.push_back({slots[0], TagFor(2, 98, 5), big});           // oversized
  Status st = tier_->WriteBatch(writes);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  for (size_t i = 0; i < slots.size(); ++i) EXPECT_TRUE(writes[i].status.ok()) << writes[i].status.ToString();
  EXPECT_EQ(writes[slots.size()].status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writes[slots.size() + 1].status.code(), StatusCode::kInvalidArgument);

  std::vector<Bytes> outs(slots.size() + 1, Bytes(kCapacity));
  std::vector<ReadOp> reads;
  for (size_t i = 0; i < slots.size(); ++i) reads.push_back({slots[i], TagFor(2, i, 5), outs[i]});
  reads.push_back({slots[3], TagFor(2, 3, 4), outs.back()});  // wrong generation
  st = tier_->ReadBatch(reads);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_TRUE(reads[i].status.ok()) << reads[i].status.ToString();
    ASSERT_EQ(reads[i].info.length, payloads[i].size());
    EXPECT_TRUE(std::equal(payloads[i].begin(), payloads[i].end(), outs[i].begin())) << "op " << i;
  }
  EXPECT_EQ(reads.back().status.code(), StatusCode::kCorruption);
}

TEST_P(TierConformance, OutOfRangeSlotsAreRejected) {
  const auto payload = RandomBytes(10, rng_);
  Bytes out(kCapacity);
  for (SlotId bad : {kSlots, kSlots + 1, kInvalidSlot}) {
    EXPECT_EQ(tier_->Write(bad, TagFor(3, 0, 1), payload).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tier_->Read(bad, TagFor(3, 0, 1), out).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(tier_->Free(bad).code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(tier_->IsAllocated(bad));
  }
  EXPECT_EQ(tier_->stats().Snapshot().rejected, 9u);
}

TEST_P(TierConformance, OversizedPayloadIsRejected) {
  const SlotId s = MustAllocate();
  const auto payload = RandomBytes(kCapacity + 1, rng_);
  EXPECT_EQ(tier_->Write(s, TagFor(4, 0, 1), payload).code(), StatusCode::kInvalidArgument);
  Bytes out(kCapacity + 10);
  EXPECT_EQ(tier_->Read(s, TagFor(4, 0, 1), out).status().code(), StatusCode::kNotFound);
}

TEST_P(TierConformance, BufferSmallerThanPayloadIsRejected) {
  const SlotId s = MustAllocate();
  const auto payload = RandomBytes(5000, rng_);
  ASSERT_TRUE(tier_->Write(s, TagFor(5, 0, 1), payload).ok());
  Bytes out(4999);
  EXPECT_EQ(tier_->Read(s, TagFor(5, 0, 1), out).status().code(), StatusCode::kInvalidArgument);
  out.resize(5000);
  EXPECT_TRUE(tier_->Read(s, TagFor(5, 0, 1), out).ok());
}

TEST_P(TierConformance, FreeAndEmptySlotsHoldNothing) {
  Bytes out(kCapacity);
  const auto payload = RandomBytes(100, rng_);
  EXPECT_EQ(tier_->Read(0, TagFor(6, 0, 1), out).status().code(), StatusCode::kNotFound);   // free
  EXPECT_EQ(tier_->Write(0, TagFor(6, 0, 1), payload).code(), StatusCode::kInvalidArgument);  // not allocated
  const SlotId s = MustAllocate();
  EXPECT_TRUE(tier_->IsAllocated(s));
  EXPECT_EQ(tier_->Read(s, TagFor(6, 0, 1), out).status().code(), StatusCode::kNotFound);  // never written
  ASSERT_TRUE(tier_->Write(s, TagFor(6, 0, 1), payload).ok());
  ASSERT_TRUE(tier_->Free(s).ok());
  EXPECT_FALSE(tier_->IsAllocated(s));
  EXPECT_EQ(tier_->Read(s, TagFor(6, 0, 1), out).status().code(), StatusCode::kNotFound);  // freed
  // Reallocated: holds nothing until written again.
  const SlotId again = MustAllocate();
  EXPECT_EQ(again, s);
  EXPECT_EQ(tier_->Read(again, TagFor(6, 0, 1), out).status().code(), StatusCode::kNotFound);
}

TEST_P(TierConformance, DoubleFreeIsRejected) {
  const SlotId s = MustAllocate();
  ASSERT_TRUE(tier_->Free(s).ok());
  EXPECT_EQ(tier_->Free(s).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tier_->Free(s + 1).code(), StatusCode::kInvalidArgument);  // never allocated
  EXPECT_EQ(tier_->used_slots(), 0u);
  const TierStatsSnapshot st = tier_->stats().Snapshot();
  EXPECT_EQ(st.frees, 1u);
  EXPECT_EQ(st.rejected, 2u);
}

TEST_P(TierConformance, CapacityExhaustion) {
  std::vector<SlotId> slots;
  ASSERT_TRUE(tier_->AllocateMany(kSlots - 2, &slots).ok());
  std::vector<SlotId> too_many;
  EXPECT_EQ(tier_->AllocateMany(3, &too_many).code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(too_many.empty()) << "all or nothing";
  slots.push_back(MustAllocate());
  slots.push_back(MustAllocate());
  std::sort(slots.begin(), slots.end());
  EXPECT_EQ(std::unique(slots.begin(), slots.end()), slots.end()) << "a slot handed out twice";
  EXPECT_EQ(slots.back(), kSlots - 1);
  EXPECT_EQ(tier_->free_slots(), 0u);
  Result<SlotId> none = tier_->Allocate();
  EXPECT_EQ(none.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(tier_->stats().Snapshot().allocation_failures, 2u);
  ASSERT_TRUE(tier_->Free(17).ok());
  Result<SlotId> again = tier_->Allocate();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 17u);
}

TEST_P(TierConformance, AdoptOnlyOnPersistentTiers) {
  Status st = tier_->Adopt(3);
  if (!tier_->persistent()) {
    EXPECT_EQ(st.code(), StatusCode::kNotSupported);
    return;
  }
  EXPECT_TRUE(st.ok());
  EXPECT_TRUE(tier_->IsAllocated(3));
  EXPECT_EQ(tier_->Adopt(3).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(tier_->Adopt(kSlots).code(), StatusCode::kInvalidArgument);
  // Allocate never hands out an adopted slot.
  std::vector<SlotId> rest;
  ASSERT_TRUE(tier_->AllocateMany(kSlots - 1, &rest).ok());
  EXPECT_EQ(std::count(rest.begin(), rest.end(), 3u), 0);
}

TEST_P(TierConformance, ConcurrentWritersAndReadersOnDistinctSlots) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 12;
  constexpr uint32_t kPerThread = kSlots / kThreads;
  std::vector<SlotId> all;
  ASSERT_TRUE(tier_->AllocateMany(kSlots, &all).ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      std::vector<SlotId> mine(all.begin() + t * kPerThread, all.begin() + (t + 1) * kPerThread);
      for (int round = 1; round <= kRounds; ++round) {
        std::vector<Bytes> data;
        std::vector<WriteOp> writes;
        for (uint32_t i = 0; i < kPerThread; ++i) data.push_back(RandomBytes(rng() % (kCapacity + 1), rng));
        for (uint32_t i = 0; i < kPerThread; ++i) writes.push_back({mine[i], TagFor(t, i, round), data[i]});
        // Alternate batched and single-op paths.
        if (round % 2 == 0) {
          if (!tier_->WriteBatch(writes).ok()) failures++;
        } else {
          for (auto& w : writes) failures += !tier_->Write(w.slot, w.tag, w.payload).ok();
        }
        Bytes out(kCapacity);
        for (uint32_t i = 0; i < kPerThread; ++i) {
          Result<SlotInfo> info = tier_->Read(mine[i], TagFor(t, i, round), out);
          if (!info.ok() || info->length != data[i].size() ||
              !std::equal(data[i].begin(), data[i].end(), out.begin())) {
            failures++;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const TierStatsSnapshot st = tier_->stats().Snapshot();
  EXPECT_EQ(st.writes, uint64_t{kThreads} * kRounds * kPerThread);
  EXPECT_EQ(st.reads, uint64_t{kThreads} * kRounds * kPerThread);
}

INSTANTIATE_TEST_SUITE_P(AllTiers, TierConformance, ::testing::ValuesIn(Variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

}  // namespace
}  // namespace tierkv::storage
