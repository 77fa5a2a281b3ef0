// BlockStore over real tiers: memfd H, emulated G, O_DIRECT D, RocksDB manifest.
#include "storage/block_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <fstream>
#include <random>
#include <thread>

#include "storage/block_codec.h"
#include "storage/block_records.h"
#include "storage/disk_tier.h"
#include "storage/slot_format.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

using testing::RandomBytes;

#define ASSERT_OK(expr)                              \
  do {                                               \
    const Status _st = (expr);                       \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)

ModelSpec SmallModel() { return {2, 2, 1, 64, 16, DType::kF32}; }  // 8 KiB blocks

struct Tiers {
  std::unique_ptr<ArenaTier> g, h;
  std::unique_ptr<DiskTier> d;
  std::unique_ptr<Manifest> manifest;
};

class BlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(scratch_.path().empty()) << "no scratch directory accepting O_DIRECT"; }

  void OpenTiers(uint32_t g_slots, uint32_t h_slots, uint32_t d_slots) {
    store_.reset();
    tiers_ = Tiers{};
    const uint32_t cap = static_cast<uint32_t>(SmallModel().BlockBytes());
    tiers_.g = std::move(CreateEmulatedGpuTier({"G", g_slots, cap})).value();
    tiers_.h = std::move(CreateHostTier({"H", h_slots, cap, PinMode::kOff})).value();
    DiskTierOptions o;
    o.dir = scratch_.Sub("d");
    o.num_slots = d_slots;
    o.slot_capacity = cap;
    auto d = DiskTier::Open(o);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    tiers_.d = std::move(d).value();
    tiers_.manifest = std::move(Manifest::Open(scratch_.Sub("manifest"))).value();
  }

  void OpenStore(Policy policy = {}, bool migrator_thread = true) {
    store_.reset();
    BlockStoreOptions o;
    o.migrator_thread = migrator_thread;
    o.ns = 7;
    o.model = SmallModel();
    o.policy = policy;
    // Long enough for a demotion to D on a loaded 2-core machine (300 ms flaked in
    // CI: "no free slot in G or H within 300 ms"); no test here waits it out.
    o.put_wait = std::chrono::seconds(5);
    o.migrate_interval = std::chrono::hours(1);  // tests drive MigrateOnce themselves
    auto s = BlockStore::Open(o, tiers_.g.get(), tiers_.h.get(), tiers_.d.get(), tiers_.manifest.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::vector<std::byte> Block(uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto bytes = RandomBytes(SmallModel().BlockBytes(), rng);
    return std::vector<std::byte>(bytes.begin(), bytes.end());
  }

  void ExpectBlock(SequenceId seq, uint32_t layer, uint32_t idx, uint64_t seed) {
    std::vector<std::byte> out(SmallModel().BlockBytes());
    Status st = store_->Get(seq, layer, idx, out);
    ASSERT_TRUE(st.ok()) << st.ToString() << " seq " << seq << " block " << idx;
    EXPECT_TRUE(out == Block(seed)) << "seq " << seq << " block " << idx;
  }

  uint64_t Seed(SequenceId seq, uint32_t layer, uint32_t idx) { return seq * 1000003 + layer * 1009 + idx; }

  // No sinks and no recent window: every block may move.
  static Policy Unprotected() {
    Policy p;
    p.sink_blocks = 0;
    p.recent_window = 0;
    return p;
  }
  // Puts blocks [0, n) of sequence 1, layer `layer`, with their Seed contents.
  void PutBlocks(uint32_t layer, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) ASSERT_OK(store_->Put(1, layer, i, Block(Seed(1, layer, i))));
  }

  testing::ScratchDir scratch_;
  Tiers tiers_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreTest, PutGetRoundTripAndArgumentChecks) {
  OpenTiers(8, 8, 16);
  OpenStore();
  for (uint32_t i = 0; i < 6; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(Seed(1, 0, i))));
  for (uint32_t i = 0; i < 6; ++i) ExpectBlock(1, 0, i, Seed(1, 0, i));
  auto b = Block(1);
  EXPECT_EQ(store_->Put(1, 2, 0, b).code(), StatusCode::kInvalidArgument);          // layer out of range
  EXPECT_EQ(store_->Put(1, 0, 1u << 30, b).code(), StatusCode::kInvalidArgument);   // index out of range
  EXPECT_EQ(store_->Put(1, 0, 0, std::span(b).first(100)).code(), StatusCode::kInvalidArgument);
  std::vector<std::byte> out(b.size());
  EXPECT_EQ(store_->Get(1, 0, 99, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Get(2, 0, 0, out).code(), StatusCode::kNotFound);
  // A rewrite replaces the contents.
  ASSERT_OK(store_->Put(1, 0, 3, Block(42)));
  ExpectBlock(1, 0, 3, 42);
  EXPECT_EQ(store_->num_blocks(), 6u);
}

TEST_F(BlockStoreTest, FillsGThenHThenDemotesToDisk) {
  OpenTiers(8, 8, 64);
  const Policy p = Unprotected();
  OpenStore(p);
  PutBlocks(0, 15);
  EXPECT_LE(tiers_.g->used_slots(), 8u);
  EXPECT_EQ(tiers_.g->used_slots() + tiers_.h->used_slots(), 15u);
  store_->MigrateOnce();  // G and H are above 95%: G goes down to its low watermark,
                          // H (which receives G's blocks) at least below its high one.
  // (The migrator thread may have run a pass before the puts ended; puts then refill
  // G below its high watermark, which starts no new pass: hysteresis.)
  EXPECT_LE(tiers_.g->used_slots(), 8 * 0.95);
  EXPECT_LE(tiers_.h->used_slots(), 8 * 0.95);
  EXPECT_GT(tiers_.d->used_slots(), 0u);
  EXPECT_GT(store_->stats().demotions_h_to_d.load(), 0u);
  // More puts than G+H hold: the puts wait for the migrator rather than fail.
  for (uint32_t i = 15; i < 40; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(Seed(1, 0, i))));
  for (uint32_t i = 0; i < 40; ++i) ExpectBlock(1, 0, i, Seed(1, 0, i));
  EXPECT_GT(store_->stats().promotions_d_to_h.load(), 0u);
}

// H -> D demotions go as one batch (one write batch, one fdatasync per slab, one
// manifest batch); blocks already current on D just leave H.
TEST_F(BlockStoreTest, DemotionsAreBatched) {
  OpenTiers(4, 16, 64);
  Policy p;
  p.sink_blocks = 0;
  p.recent_window = 0;
  p.gpu = {1.0, 1.0};  // G keeps its 4: only H demotes
  p.host = {0.9, 0.25};
  OpenStore(p, /*migrator_thread=*/false);
  for (uint32_t i = 0; i < 20; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(Seed(1, 0, i))));
  ASSERT_EQ(tiers_.h->used_slots(), 16u);
  store_->MigrateOnce();
  EXPECT_EQ(tiers_.h->used_slots(), 4u);
  EXPECT_EQ(store_->stats().disk_writes.load(), 12u);
  EXPECT_EQ(store_->stats().disk_write_batches.load(), 1u);
  EXPECT_EQ(store_->stats().demotions_h_to_d.load(), 12u);
  // Read back (D -> H), then demote again: blocks read back are clean and just leave
  // H; no block is written twice (16 passed through H).
  for (uint32_t i = 0; i < 20; ++i) ExpectBlock(1, 0, i, Seed(1, 0, i));
  store_->MigrateOnce();
  EXPECT_LE(store_->stats().disk_writes.load(), 16u);
  EXPECT_GT(store_->stats().demotions_h_to_d.load(), store_->stats().disk_writes.load());
}

TEST_F(BlockStoreTest, SinksAndRecentWindowStayOnG) {
  OpenTiers(8, 32, 64);
  Policy p;
  p.sink_blocks = 2;
  p.recent_window = 2;
  p.gpu.high = 0.5;
  p.gpu.low = 0.25;
  OpenStore(p);
  for (uint32_t i = 0; i < 20; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(i)));
  store_->MigrateOnce();
  auto lease = store_->Acquire(1, 0, std::vector<uint32_t>{0, 1, 18, 19}, MissMode::kDefer);
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->blocks.size(), 4u);
  for (const auto& b : lease->blocks) EXPECT_EQ(b.where, Where::kGpu) << "block " << b.index;
  ASSERT_TRUE(store_->Release(lease->id).ok());
}

TEST_F(BlockStoreTest, AcquireWaitBringsBlocksToGAndPinsThem) {
  OpenTiers(8, 8, 64);
  const Policy p = Unprotected();
  OpenStore(p);
  PutBlocks(1, 30);
  store_->MigrateOnce();
  std::vector<uint32_t> want = {0, 5, 29, 100};  // 100 does not exist: skipped
  auto lease = store_->Acquire(1, 1, want, MissMode::kWait);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->blocks.size(), 3u);
  EXPECT_TRUE(lease->missing.empty());
  for (const auto& b : lease->blocks) {
    EXPECT_EQ(b.where, Where::kGpu);
    // The bytes at the returned offset are the block's.
    auto expect = Block(Seed(1, 1, b.index));
    EXPECT_EQ(std::memcmp(tiers_.g->memory().base() + b.offset, expect.data(), expect.size()), 0);
  }
  // Pinned blocks are neither rewritten nor moved.
  EXPECT_EQ(store_->Put(1, 1, 5, Block(1)).code(), StatusCode::kBusy);
  Policy tight = p;
  tight.gpu.high = 0.1;
  tight.gpu.low = 0.05;
  store_->SetPolicy(tight);
  store_->MigrateOnce();
  EXPECT_GE(tiers_.g->used_slots(), 3u);
  ASSERT_TRUE(store_->Release(lease->id).ok());
  EXPECT_EQ(store_->Release(lease->id).code(), StatusCode::kNotFound);
  store_->MigrateOnce();
  EXPECT_LE(tiers_.g->used_slots(), 1u);  // the smaller watermark applies once released
}

TEST_F(BlockStoreTest, AcquireWaitPromotesHostBlocksAsOneBatchOnceEach) {
  OpenTiers(8, 32, 64);
  Policy p;
  p.sink_blocks = 0;
  p.recent_window = 0;
  OpenStore(p, /*migrator_thread=*/false);  // the probes' deferred promotions must not run
  for (uint32_t i = 0; i < 24; ++i) ASSERT_OK(store_->Put(1, 1, i, Block(Seed(1, 1, i))));
  store_->MigrateOnce();
  std::vector<uint32_t> on_host;
  for (uint32_t i = 0; i < 24 && on_host.size() < 6; ++i) {
    auto probe = store_->Acquire(1, 1, std::vector<uint32_t>{i}, MissMode::kDefer);
    ASSERT_TRUE(probe.ok());
    if (probe->blocks.size() == 1 && probe->blocks[0].where == Where::kHost) on_host.push_back(i);
    ASSERT_OK(store_->Release(probe->id));
  }
  ASSERT_EQ(on_host.size(), 6u) << "the test needs six blocks on H";
  const uint64_t promoted = store_->stats().promotions_h_to_g;
  std::vector<uint32_t> want = on_host;
  want.push_back(on_host[0]);  // asked twice: moves once
  auto lease = store_->Acquire(1, 1, want, MissMode::kWait);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(store_->stats().promotions_h_to_g - promoted, 6u);
  ASSERT_EQ(lease->blocks.size(), want.size());
  for (const auto& b : lease->blocks) {
    ASSERT_EQ(b.where, Where::kGpu);
    auto expect = Block(Seed(1, 1, b.index));
    EXPECT_EQ(std::memcmp(tiers_.g->memory().base() + b.offset, expect.data(), expect.size()), 0);
  }
  ASSERT_OK(store_->Release(lease->id));
}

// kInPlace (the Acquire op's zero-copy get): H blocks stay on H, D blocks come up
// to H, nothing is promoted to G; every block pinned and readable where it is.
TEST_F(BlockStoreTest, AcquireInPlaceLeavesBlocksWhereTheyAreAndReadsDIntoH) {
  OpenTiers(8, 8, 64);
  OpenStore(Unprotected());
  PutBlocks(1, 30);
  store_->MigrateOnce();
  const uint64_t promoted = store_->stats().promotions_h_to_g;
  const std::vector<uint32_t> want = {0, 1, 2, 29};  // the oldest on D, the newest in memory
  auto lease = store_->Acquire(1, 1, want, MissMode::kInPlace);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->blocks.size(), want.size());
  EXPECT_TRUE(lease->missing.empty());
  EXPECT_EQ(store_->stats().promotions_h_to_g, promoted);
  for (const auto& b : lease->blocks) {
    ASSERT_NE(b.where, Where::kNone) << "block " << b.index;
    if (b.index < 3) {
      EXPECT_EQ(b.where, Where::kHost) << "block " << b.index << " was read from D into H";
    }
    const auto& arena = b.where == Where::kGpu ? tiers_.g : tiers_.h;
    auto expect = Block(Seed(1, 1, b.index));
    EXPECT_EQ(std::memcmp(arena->memory().base() + b.offset, expect.data(), expect.size()), 0) << "block " << b.index;
  }
  EXPECT_EQ(store_->Put(1, 1, 1, Block(1)).code(), StatusCode::kBusy);  // pinned
  ASSERT_OK(store_->Release(lease->id));
}

// G full and H full but for one slot: each block moved up needs a G victim demoted
// into H first, and H has room only once earlier moves of the batch have freed theirs.
TEST_F(BlockStoreTest, AcquireWaitFillsGEvenWhenGAndHAreFull) {
  OpenTiers(8, 8, 64);
  const Policy p = Unprotected();
  OpenStore(p);
  PutBlocks(1, 30);
  store_->MigrateOnce();
  // The oldest blocks are on D: their loads fill H but for one slot.
  const std::vector<uint32_t> want = {0, 1, 2, 3, 4, 5, 6};
  auto lease = store_->Acquire(1, 1, want, MissMode::kWait);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->blocks.size(), want.size());
  for (const auto& b : lease->blocks) {
    EXPECT_EQ(b.where, Where::kGpu) << "block " << b.index;
    auto expect = Block(Seed(1, 1, b.index));
    const std::byte* at = (b.where == Where::kGpu ? tiers_.g : tiers_.h)->memory().base() + b.offset;
    EXPECT_EQ(std::memcmp(at, expect.data(), expect.size()), 0) << "block " << b.index;
  }
  ASSERT_OK(store_->Release(lease->id));
}

TEST_F(BlockStoreTest, DeferModeReportsMissesAndBringsThemUpForTheNextStep) {
  OpenTiers(8, 8, 64);
  Policy p;
  p.sink_blocks = 0;
  p.recent_window = 0;
  OpenStore(p);
  for (uint32_t i = 0; i < 30; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(i)));
  store_->MigrateOnce();
  // Find blocks that are only on D now.
  std::vector<uint32_t> all(30);
  for (uint32_t i = 0; i < 30; ++i) all[i] = i;
  auto first = store_->Acquire(1, 0, all, MissMode::kDefer);
  ASSERT_TRUE(first.ok());
  ASSERT_FALSE(first->missing.empty());
  EXPECT_EQ(first->blocks.size() + first->missing.size(), 30u);
  const uint32_t missed = first->missing[0];
  store_->MigrateOnce();  // the migrator brings deferred blocks up while the lease holds
  auto second = store_->Acquire(1, 0, std::vector<uint32_t>{missed}, MissMode::kDefer);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->blocks.size(), 1u);
  EXPECT_EQ(second->blocks[0].where, Where::kGpu);
  ASSERT_TRUE(store_->Release(first->id).ok());
  ASSERT_TRUE(store_->Release(second->id).ok());
}

TEST_F(BlockStoreTest, PrefetchAndPrefetchDepthLoadDiskBlocksIntoHost) {
  OpenTiers(8, 16, 64);
  Policy p;
  p.sink_blocks = 0;
  p.recent_window = 0;
  p.gpu = {0.01, 0.01};
  p.host = {0.01, 0.01};
  OpenStore(p, /*migrator_thread=*/false);
  for (uint32_t i = 0; i < 20; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(Seed(1, 0, i))));
  store_->MigrateOnce();
  ASSERT_EQ(tiers_.g->used_slots() + tiers_.h->used_slots(), 0u);
  const uint64_t reads0 = tiers_.d->stats().reads.load();
  auto n = store_->Prefetch(1, 0, std::vector<uint32_t>{2, 3, 3, 99, 4});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);  // 3 twice, 99 unknown
  EXPECT_EQ(tiers_.h->used_slots(), 3u);
  EXPECT_EQ(tiers_.d->stats().reads.load() - reads0, 3u);
  EXPECT_EQ(*store_->Prefetch(1, 0, std::vector<uint32_t>{2, 3}), 0u);  // already in memory
  // prefetch_depth: a miss brings the following D-only blocks up with it, unpinned.
  p.prefetch_depth = 3;
  p.gpu = Watermarks{};
  p.host = Watermarks{};
  store_->SetPolicy(p);
  auto lease = store_->Acquire(1, 0, std::vector<uint32_t>{10}, MissMode::kWait);
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->blocks.size(), 1u);
  EXPECT_EQ(lease->blocks[0].where, Where::kGpu);
  EXPECT_EQ(tiers_.h->used_slots(), 3u + 3u);  // 11, 12, 13 wait on H for the next step
  ASSERT_OK(store_->Release(lease->id));
  for (uint32_t i : {10u, 11u, 12u, 13u, 2u}) ExpectBlock(1, 0, i, Seed(1, 0, i));
  EXPECT_EQ(tiers_.d->stats().reads.load() - reads0, 3u + 4u);
}

TEST_F(BlockStoreTest, PrefixBlocksAreStoredOnceAndShared) {
  OpenTiers(8, 8, 16);
  OpenStore();
  const uint64_t h0 = 0x1111, h1 = 0x2222;
  for (uint32_t layer = 0; layer < 2; ++layer) {
    bool dedup = true;
    ASSERT_OK(store_->Put(1, layer, 0, Block(layer), h0, &dedup));
    EXPECT_FALSE(dedup);
    ASSERT_OK(store_->Put(1, layer, 1, Block(10 + layer), h1, &dedup));
    ASSERT_OK(store_->Put(2, layer, 0, Block(99), h0, &dedup));  // same hash: not copied
    EXPECT_TRUE(dedup);
  }
  EXPECT_EQ(store_->num_blocks(), 4u);
  ExpectBlock(2, 0, 0, 0);  // sequence 2 reads the shared block, not what it sent
  const uint64_t hashes[] = {h0, h1, 0x3333};
  EXPECT_EQ(store_->MatchPrefix(hashes), 2u);
  ASSERT_TRUE(store_->LinkPrefix(3, std::span(hashes, 2)).ok());
  ExpectBlock(3, 1, 1, 11);
  EXPECT_EQ(store_->LinkPrefix(3, hashes).code(), StatusCode::kNotFound);
  ASSERT_TRUE(store_->DropSequence(1).ok());
  ExpectBlock(2, 1, 0, 1);  // still there for the others
  ASSERT_TRUE(store_->DropSequence(2).ok());
  ASSERT_TRUE(store_->DropSequence(3).ok());
  EXPECT_EQ(store_->MatchPrefix(hashes), 2u);  // cached without owners until evicted
  EXPECT_EQ(store_->DropSequence(3).code(), StatusCode::kNotFound);
}

TEST_F(BlockStoreTest, DropSequenceFreesEverything) {
  OpenTiers(4, 4, 32);
  Policy p;
  p.write = WritePolicy::kWriteThrough;
  OpenStore(p);
  for (uint32_t i = 0; i < 6; ++i) ASSERT_OK(store_->Put(5, 0, i, Block(i)));
  EXPECT_EQ(tiers_.d->used_slots(), 6u);
  ASSERT_TRUE(store_->DropSequence(5).ok());
  EXPECT_EQ(tiers_.g->used_slots() + tiers_.h->used_slots() + tiers_.d->used_slots(), 0u);
  EXPECT_EQ(store_->num_blocks(), 0u);
  int records = 0;
  ASSERT_TRUE(tiers_.manifest->Scan(Cf::kBlocks, "", [&](auto, auto) { return ++records, true; }).ok());
  EXPECT_EQ(records, 0);
}

TEST_F(BlockStoreTest, WriteThroughBlocksSurviveARestart) {
  OpenTiers(4, 4, 64);
  Policy p;
  p.write = WritePolicy::kWriteThrough;
  OpenStore(p);
  for (uint32_t i = 0; i < 10; ++i) {
    bool durable = false;
    ASSERT_OK(store_->Put(3, i % 2, i, Block(Seed(3, i % 2, i)), 0, nullptr, &durable));
    EXPECT_TRUE(durable);
  }
  ASSERT_OK(store_->Put(4, 0, 0, Block(77), 0xABC));
  ASSERT_OK(store_->Put(5, 0, 0, Block(78), 0xABC));  // shares 0xABC
  // Restart everything but the files.
  OpenTiers(4, 4, 64);
  OpenStore(p);
  EXPECT_EQ(store_->stats().recovered_blocks.load(), 11u);
  for (uint32_t i = 0; i < 10; ++i) ExpectBlock(3, i % 2, i, Seed(3, i % 2, i));
  ExpectBlock(4, 0, 0, 77);
  ExpectBlock(5, 0, 0, 77);
}

// A rewrite goes to a fresh D slot; the record flips to it and only then is the old
// slot freed, so the acknowledged copy is never overwritten in place.
TEST_F(BlockStoreTest, WriteThroughRewritesCopyOnWrite) {
  OpenTiers(4, 4, 16);
  Policy p;
  p.write = WritePolicy::kWriteThrough;
  OpenStore(p);
  ASSERT_OK(store_->Put(3, 0, 0, Block(1)));
  auto record = [&] {
    auto v = tiers_.manifest->Get(Cf::kBlocks, EncodeRecordKey({'B', 7, 3, 0, 0}));
    EXPECT_TRUE(v.ok());
    return *DecodeBlockRecord(*v);
  };
  const BlockRecord first = record();
  for (int k = 2; k < 6; ++k) {
    bool durable = false;
    ASSERT_OK(store_->Put(3, 0, 0, Block(k), 0, nullptr, &durable));
    EXPECT_TRUE(durable);
    const BlockRecord now = record();
    EXPECT_NE(now.disk_slot, first.disk_slot == now.disk_slot ? kInvalidSlot : first.disk_slot);
    EXPECT_GT(now.generation, first.generation);
    EXPECT_EQ(tiers_.d->used_slots(), 1u) << "the old copy is freed once the record moved";
  }
  EXPECT_EQ(store_->stats().disk_writes.load(), 5u);
  OpenTiers(4, 4, 16);
  OpenStore(p);
  ExpectBlock(3, 0, 0, 5);
  // Generations continue above every recovered one.
  ASSERT_OK(store_->Put(3, 0, 1, Block(9)));
  auto v = tiers_.manifest->Get(Cf::kBlocks, EncodeRecordKey({'B', 7, 3, 0, 1}));
  ASSERT_TRUE(v.ok());
  EXPECT_GT(DecodeBlockRecord(*v)->generation, record().generation);
}

// Threads put, rewrite, read, acquire and drop overlapping keys while the migrator
// moves blocks through small tiers; every read is checked byte for byte, and once
// everything is dropped no slot, meta or manifest record is left behind.
TEST_F(BlockStoreTest, ConcurrentOperationsKeepThePlacementMapConsistent) {
  OpenTiers(6, 10, 256);
  Policy p;
  p.sink_blocks = 1;
  p.recent_window = 1;
  p.gpu.high = 0.6;
  p.gpu.low = 0.3;
  p.host.high = 0.6;
  p.host.low = 0.3;
  for (WritePolicy w : {WritePolicy::kWriteBack, WritePolicy::kWriteThrough}) {
    p.write = w;
    OpenTiers(6, 10, 256);
    store_.reset();
    BlockStoreOptions o;
    o.ns = 7;
    o.model = SmallModel();
    o.policy = p;
    o.put_wait = std::chrono::milliseconds(2000);
    o.migrate_interval = std::chrono::milliseconds(1);
    o.demote_batch = 4;
    o.unlocked_copy_bytes = 0;  // every copy with the lock dropped (the default for blocks >= 4 KiB)
    store_ = std::move(BlockStore::Open(o, tiers_.g.get(), tiers_.h.get(), tiers_.d.get(), tiers_.manifest.get()))
                 .value();
    std::atomic<uint64_t> version{1}, bad{0}, errors{0};
    std::mutex error_mu;
    std::string first_error;
    auto error = [&](const Status& st) {
      ++errors;
      std::lock_guard l(error_mu);
      if (first_error.empty()) first_error = st.ToString();
    };
    auto worker = [&](int t) {
      std::mt19937_64 rng(t);
      std::vector<std::byte> block(SmallModel().BlockBytes()), out(block.size());
      for (int op = 0; op < 1500; ++op) {
        const SequenceId seq = 1 + rng() % 4;
        const uint32_t layer = rng() % 2, idx = rng() % 6;
        const int dice = rng() % 100;
        if (dice < 40) {
          testing::FillBlock(seq, layer, idx, version++, block);
          Status st = store_->Put(seq, layer, idx, block);
          if (!st.ok() && st.code() != StatusCode::kBusy) error(st);
        } else if (dice < 75) {
          Status st = store_->Get(seq, layer, idx, out);
          if (st.ok() && !testing::CheckBlock(seq, layer, idx, out)) ++bad;
          if (!st.ok() && st.code() != StatusCode::kNotFound) error(st);
        } else if (dice < 97) {
          std::vector<uint32_t> want = {idx, (idx + 1) % 6, (idx + 3) % 6};
          auto lease = store_->Acquire(seq, layer, want, rng() % 2 ? MissMode::kWait : MissMode::kDefer);
          if (!lease.ok()) {
            error(lease.status());
            continue;
          }
          for (const auto& b : lease->blocks) {
            const ArenaTier* tier = b.where == Where::kGpu ? tiers_.g.get() : tiers_.h.get();
            auto bytes = std::span<const std::byte>(tier->memory().base() + b.offset, block.size());
            if (!testing::CheckBlock(seq, layer, b.index, bytes)) ++bad;
          }
          if (Status st = store_->Release(lease->id); !st.ok()) error(st);
        } else {
          Status st = store_->DropSequence(seq);
          if (!st.ok() && st.code() != StatusCode::kNotFound) error(st);
        }
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0u) << WritePolicyName(w);
    EXPECT_EQ(errors.load(), 0u) << WritePolicyName(w) << ": " << first_error;
    EXPECT_EQ(store_->stats().corrupt_blocks.load(), 0u);
    EXPECT_GT(store_->stats().promotions_d_to_h.load(), 0u) << "the test must exercise D";
    for (SequenceId s = 1; s <= 4; ++s) store_->DropSequence(s).IgnoreError();
    // The migrator may still be writing a dropped block: it frees it when done.
    for (int k = 0; k < 200 && store_->num_blocks() > 0; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(store_->num_blocks(), 0u) << WritePolicyName(w);
    EXPECT_EQ(tiers_.g->used_slots() + tiers_.h->used_slots() + tiers_.d->used_slots(), 0u) << WritePolicyName(w);
    int records = 0;
    ASSERT_TRUE(tiers_.manifest->Scan(Cf::kBlocks, "", [&](auto, auto) { return ++records, true; }).ok());
    EXPECT_EQ(records, 0) << WritePolicyName(w);
  }
}

// Put and Get copy into and out of G/H with the store's mutex dropped
// (docs/decisions/0020-copies-outside-the-lock.md). Writers rewriting the same few
// blocks in place while readers get them: every get returns one whole version (never
// a torn mix), no version older than one acknowledged before the get began, and a
// put is never refused because a get was copying the block out (only a retrieval's
// lease refuses a put).
TEST_F(BlockStoreTest, GetsAndRewritesOfOneBlockCopyOutsideTheLock) {
  ASSERT_GE(SmallModel().BlockBytes(), BlockStoreOptions{}.unlocked_copy_bytes) << "must take the unlocked path";
  OpenTiers(4, 4, 16);
  OpenStore();
  std::vector<std::byte> block(SmallModel().BlockBytes());
  for (uint32_t i = 0; i < 2; ++i) {
    testing::FillBlock(1, 0, i, 1, block);
    ASSERT_OK(store_->Put(1, 0, i, block));
  }
  std::atomic<uint64_t> acked[2] = {1, 1};
  std::atomic<uint64_t> version{2}, torn{0}, stale{0}, refused{0}, gets{0};
  std::atomic<bool> stop{false};
  auto writer = [&](uint32_t i) {
    std::vector<std::byte> b(block.size());
    for (int k = 0; k < 3000; ++k) {
      const uint64_t v = version++;
      testing::FillBlock(1, 0, i, v, b);
      Status st = store_->Put(1, 0, i, b);
      if (!st.ok()) {
        ++refused;
        continue;
      }
      uint64_t seen = acked[i].load();
      while (seen < v && !acked[i].compare_exchange_weak(seen, v)) {
      }
    }
  };
  auto reader = [&](uint32_t i) {
    std::vector<std::byte> out(block.size());
    while (!stop.load()) {
      const uint64_t floor = acked[i].load();
      ASSERT_OK(store_->Get(1, 0, i, out));
      ++gets;
      const auto v = testing::CheckBlock(1, 0, i, out);
      if (!v) {
        ++torn;
      } else if (*v < floor) {
        ++stale;
      }
    }
  };
  std::vector<std::thread> writers, readers;
  for (uint32_t i = 0; i < 2; ++i) {
    writers.emplace_back(writer, i);
    readers.emplace_back(reader, i);
    readers.emplace_back(reader, i);
  }
  for (auto& t : writers) t.join();
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0u);
  EXPECT_EQ(stale.load(), 0u);
  EXPECT_EQ(refused.load(), 0u) << "a put was refused while gets copied the block out";
  EXPECT_GT(gets.load(), 0u);
  EXPECT_EQ(tiers_.g->stats().Snapshot().tag_mismatches + tiers_.h->stats().Snapshot().tag_mismatches, 0u);
}

// Compression applies to D copies only: G/H hold raw blocks, D payloads are encoded
// (smaller, recorded in the slot header), decoded on the way back (lossy, bounded),
// across a policy change and a restart. Lossless (kNone) round trips exactly.
TEST_F(BlockStoreTest, CompressedDiskCopiesAreSmallerAndDecodeOnTheWayBack) {
  OpenTiers(4, 4, 64);
  const ModelSpec m = SmallModel();
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto make = [&] {
    std::vector<float> f(m.BlockBytes() / 4);
    for (auto& x : f) x = normal(rng);
    std::vector<std::byte> b(m.BlockBytes());
    std::memcpy(b.data(), f.data(), b.size());
    return b;
  };
  auto rel_error = [&](const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
    double d = 0, r = 0;
    for (size_t i = 0; i < a.size() / 4; ++i) {
      float x, y;
      std::memcpy(&x, a.data() + 4 * i, 4);
      std::memcpy(&y, b.data() + 4 * i, 4);
      d += (x - y) * double{x - y};
      r += x * double{x};
    }
    return std::sqrt(d / r);
  };
  Policy p;
  p.sink_blocks = 0;
  p.recent_window = 0;
  p.gpu = {0.01, 0.01};
  p.host = {0.01, 0.01};
  std::vector<std::vector<std::byte>> blocks;
  std::vector<Compression> codec;
  OpenStore(p);
  for (Compression c : {Compression::kInt8, Compression::kKivi2, Compression::kNone}) {
    p.compression = c;
    store_->SetPolicy(p);  // takes effect for the next D writes
    const uint64_t before = tiers_.d->stats().write_bytes.load();
    for (int k = 0; k < 6; ++k) {
      blocks.push_back(make());
      codec.push_back(c);
      ASSERT_OK(store_->Put(1, 0, static_cast<uint32_t>(blocks.size() - 1), blocks.back()));
    }
    store_->MigrateOnce();
    ASSERT_EQ(tiers_.g->used_slots() + tiers_.h->used_slots(), 0u);
    const uint64_t written = tiers_.d->stats().write_bytes.load() - before;
    const uint64_t per_block = c == Compression::kNone ? m.BlockBytes() : *EncodedBlockBytes(m, c, p.compression_group);
    std::printf("%-5s: %llu payload bytes written to D for 6 blocks of %zu bytes\n",
                std::string(CompressionName(c)).c_str(), static_cast<unsigned long long>(written), m.BlockBytes());
    EXPECT_EQ(written, 6 * per_block);
    if (c != Compression::kNone) {
      EXPECT_LT(per_block, m.BlockBytes() / 2);
    }
  }
  EXPECT_EQ(store_->stats().disk_encoded_bytes.load(), tiers_.d->stats().write_bytes.load());
  // Slot headers record each block's encoding.
  auto scan = tiers_.d->Scan();
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->valid.size(), blocks.size());
  for (const auto& s : scan->valid) {
    const uint32_t i = s.info.tag.key.index;
    const PayloadEncoding want = codec[i] == Compression::kInt8    ? PayloadEncoding::kInt8
                                 : codec[i] == Compression::kKivi2 ? PayloadEncoding::kKivi2
                                                                   : PayloadEncoding::kRaw;
    EXPECT_EQ(s.info.encoding, want) << "block " << i;
  }
  // Every block decodes under today's policy (kNone) and after a restart.
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      OpenTiers(4, 4, 64);
      OpenStore(p);
    }
    for (uint32_t i = 0; i < blocks.size(); ++i) {
      std::vector<std::byte> out(m.BlockBytes());
      ASSERT_OK(store_->Get(1, 0, i, out));
      const double err = rel_error(blocks[i], out);
      if (codec[i] == Compression::kNone) {
        EXPECT_EQ(err, 0.0) << "block " << i;
      }
      if (codec[i] == Compression::kInt8) {
        EXPECT_LT(err, 0.01) << "block " << i;
      }
      if (codec[i] == Compression::kKivi2) {
        EXPECT_LT(err, 0.45) << "block " << i;
      }
      if (codec[i] != Compression::kNone) {
        EXPECT_GT(err, 0.0) << "block " << i;
      }
    }
  }
}

TEST_F(BlockStoreTest, ACorruptDiskBlockIsReportedAndNeverServed) {
  OpenTiers(2, 2, 16);
  Policy p;
  p.write = WritePolicy::kWriteThrough;
  p.sink_blocks = 0;
  p.recent_window = 0;
  OpenStore(p);
  ASSERT_OK(store_->Put(9, 0, 0, Block(5)));
  // Another commit after it: Open reads the last commit's copies whole (decision
  // 0016) and would drop a damaged one there; this test is about the read path.
  ASSERT_OK(store_->Put(9, 0, 1, Block(6)));
  // Restart so that the only copy is on D, then flip a payload byte in the slab file.
  OpenTiers(2, 2, 16);
  std::string slab = tiers_.d->slab_paths()[0];
  const uint64_t slot_header = tiers_.d->layout().header_bytes;
  tiers_.d.reset();
  {
    std::fstream f(slab, std::ios::in | std::ios::out | std::ios::binary);
    // Slot 0's payload follows the slab superblock and the slot header; its header
    // stays intact, so only the payload checksum can catch this.
    const long payload = static_cast<long>(kSlabHeaderBytes + slot_header) + 1000;
    f.seekg(payload);
    char c;
    f.read(&c, 1);
    c ^= 0x5a;
    f.seekp(payload);
    f.write(&c, 1);
  }
  DiskTierOptions o;
  o.dir = scratch_.Sub("d");
  o.num_slots = 16;
  o.slot_capacity = static_cast<uint32_t>(SmallModel().BlockBytes());
  tiers_.d = std::move(DiskTier::Open(o)).value();
  OpenStore(p);
  std::vector<std::byte> out(SmallModel().BlockBytes());
  Status st = store_->Get(9, 0, 0, out);
  EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
  EXPECT_EQ(store_->stats().corrupt_blocks.load(), 1u);
  EXPECT_EQ(store_->Get(9, 0, 0, out).code(), StatusCode::kNotFound);  // dropped, not retried forever
}

TEST_F(BlockStoreTest, EvictionPolicyChoosesTheVictim) {
  for (Eviction e : {Eviction::kLru, Eviction::kLfu, Eviction::kScore}) {
    OpenTiers(4, 16, 16);
    Policy p;
    p.sink_blocks = 0;
    p.recent_window = 0;
    p.eviction = e;
    p.gpu.high = 0.5;
    p.gpu.low = 0.5;
    OpenStore(p, /*migrator_thread=*/false);  // the test's MigrateOnce decides alone
    for (uint32_t i = 0; i < 3; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(i)));  // all on G
    std::vector<std::byte> out(SmallModel().BlockBytes());
    // Block 0: touched often long ago; block 1: selected by retrieval; block 2: touched last.
    for (int k = 0; k < 5; ++k) ASSERT_TRUE(store_->Get(1, 0, 0, out).ok());
    for (int k = 0; k < 3; ++k) ASSERT_TRUE(store_->Release(store_->Acquire(1, 0, std::vector<uint32_t>{1}, MissMode::kWait)->id).ok());
    ASSERT_TRUE(store_->Get(1, 0, 2, out).ok());
    store_->MigrateOnce();  // 3 of 4 used > 50%: one block goes to H
    auto lease = store_->Acquire(1, 0, std::vector<uint32_t>{0, 1, 2}, MissMode::kDefer);
    uint32_t demoted = 99;
    for (const auto& b : lease->blocks) {
      if (b.where == Where::kHost) demoted = b.index;
    }
    // LRU: block 0 (oldest access); LFU: block 2 (1 hit + put); score: block 0 or 2 (never selected), the older.
    const uint32_t expect = e == Eviction::kLfu ? 2 : 0;
    EXPECT_EQ(demoted, expect) << EvictionName(e);
    ASSERT_TRUE(store_->Release(lease->id).ok());
  }
}

TEST_F(BlockStoreTest, MetadataStaysUnder64BytesPerBlock) {
  constexpr uint32_t kBlocks = 200000;
  const uint32_t cap = 64;  // tiny blocks: this test is about metadata
  auto g = std::move(CreateEmulatedGpuTier({"G", 1024, cap})).value();
  auto h = std::move(CreateAnonymousArena(size_t{kBlocks} * 4096)).value();
  auto host = std::make_unique<ArenaTier>(TierKind::kHost, "H", std::move(h), kBlocks, cap);
  auto manifest = std::move(Manifest::Open(scratch_.Sub("m"))).value();
  BlockStoreOptions o;
  o.model = {1, 1, 1, 8, 2, DType::kF16};  // 64-byte blocks
  o.policy.sink_blocks = 0;
  o.policy.recent_window = 0;
  auto store = std::move(BlockStore::Open(o, g.get(), host.get(), nullptr, manifest.get())).value();
  std::vector<std::byte> payload(64, std::byte{1});
  for (uint32_t i = 0; i < kBlocks; ++i) ASSERT_TRUE(store->Put(i / 1000, 0, i % 1000, payload).ok());
  const double per_block = static_cast<double>(store->MetadataBytes()) / kBlocks;
  std::printf("metadata: %.1f bytes per block at %u blocks\n", per_block, kBlocks);
  EXPECT_LE(per_block, 64.0);
}

// Shutdown drain under write-back: what only G and H hold goes to D with its
// records, prefix links included, so a reopened store serves all of it; a dropped
// sequence's links go with it.
TEST_F(BlockStoreTest, DrainWritesBackWhatOnlyMemoryHoldsAndLinksSurvive) {
  OpenTiers(8, 8, 64);
  OpenStore(Unprotected(), /*migrator_thread=*/false);
  for (uint32_t layer = 0; layer < 2; ++layer) PutBlocks(layer, 6);
  ASSERT_OK(store_->Put(4, 0, 0, Block(77), 0xABC));
  ASSERT_OK(store_->Put(5, 0, 0, Block(78), 0xABC));  // shares 0xABC
  EXPECT_EQ(tiers_.d->used_slots(), 0u);
  EXPECT_EQ(store_->BlocksNotOnDisk(), 13u);
  uint64_t reported = 0;
  const DrainResult r = store_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(30),
                                      [&](uint64_t blocks, uint64_t) { reported += blocks; });
  EXPECT_TRUE(r.first_error.ok()) << r.first_error.ToString();
  EXPECT_EQ(r.pending, 13u);
  EXPECT_EQ(r.written, 13u);
  EXPECT_EQ(r.left, 0u);
  EXPECT_EQ(r.links, 2u);  // sequences 4 and 5 -> 0xABC
  EXPECT_EQ(reported, 13u);
  EXPECT_EQ(tiers_.d->used_slots(), 13u);
  EXPECT_EQ(store_->BlocksNotOnDisk(), 0u);
  ExpectBlock(1, 1, 5, Seed(1, 1, 5));  // still served from memory

  OpenTiers(8, 8, 64);
  OpenStore(Unprotected(), /*migrator_thread=*/false);
  EXPECT_EQ(store_->stats().recovered_blocks.load(), 13u);
  for (uint32_t layer = 0; layer < 2; ++layer) {
    for (uint32_t i = 0; i < 6; ++i) ExpectBlock(1, layer, i, Seed(1, layer, i));
  }
  ExpectBlock(4, 0, 0, 77);
  ExpectBlock(5, 0, 0, 77);
  ASSERT_OK(store_->DropSequence(5));
  OpenTiers(8, 8, 64);
  OpenStore(Unprotected(), /*migrator_thread=*/false);
  std::vector<std::byte> out(SmallModel().BlockBytes());
  EXPECT_EQ(store_->Get(5, 0, 0, out).code(), StatusCode::kNotFound);
  ExpectBlock(4, 0, 0, 77);
}

TEST_F(BlockStoreTest, DrainStopsAtItsDeadlineAndWhenDIsFull) {
  OpenTiers(8, 8, 5);
  OpenStore(Unprotected(), /*migrator_thread=*/false);
  for (uint32_t layer = 0; layer < 2; ++layer) PutBlocks(layer, 6);
  // A deadline already past: nothing tried, everything left.
  DrainResult r = store_->Drain(std::chrono::steady_clock::now() - std::chrono::seconds(1));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.pending, 12u);
  EXPECT_EQ(r.written, 0u);
  EXPECT_EQ(r.left, 12u);
  // D holds 5 blocks: those go (positions 0-1 of both layers, then block 2 of layer
  // 0), the rest are reported with D's refusal.
  r = store_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(30));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.written, 5u);
  EXPECT_EQ(r.failed, 7u);
  EXPECT_EQ(r.left, 7u);
  EXPECT_EQ(r.first_error.code(), StatusCode::kResourceExhausted) << r.first_error.ToString();
  OpenTiers(8, 8, 5);
  OpenStore(Unprotected(), /*migrator_thread=*/false);
  EXPECT_EQ(store_->num_blocks(), 5u);
  for (uint32_t layer = 0; layer < 2; ++layer) {
    for (uint32_t i = 0; i < 2; ++i) ExpectBlock(1, layer, i, Seed(1, layer, i));
  }
  ExpectBlock(1, 0, 2, Seed(1, 0, 2));
}

}  // namespace
}  // namespace tierkv::storage
