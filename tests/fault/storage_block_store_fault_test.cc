// The BlockStore over a D tier whose engines inject faults (EIO, short transfers,
// ENOSPC, flipped bytes): errors surface as Status, damaged bytes are caught by the
// checksums and never served, a full or failing disk stops D admission while G and
// H keep serving, the stats count each case, and D admission resumes once the
// condition clears. Real tiers (memfd H, emulated G, O_DIRECT D) and RocksDB.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "io/fault_injection_engine.h"
#include "storage/block_records.h"
#include "storage/block_store.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const Status _st = (expr);                                 \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)

ModelSpec Model() { return {2, 2, 1, 64, 16, DType::kF32}; }  // 8 KiB blocks: zero-copy D path

constexpr auto kRetry = std::chrono::milliseconds(100);

class BlockStoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scratch_.path().empty()) << "no scratch directory accepting O_DIRECT";
    Open(WritePolicy::kWriteBack);
  }

  // (Re)opens tiers and store over the same directories; the injector stays.
  void Open(WritePolicy write, std::chrono::milliseconds put_wait = std::chrono::milliseconds(200)) {
    const uint32_t g_slots = 4, h_slots = 8;
    store_.reset();
    const auto cap = static_cast<uint32_t>(Model().BlockBytes());
    g_ = std::move(CreateEmulatedGpuTier({"G", g_slots, cap})).value();
    h_ = std::move(CreateHostTier({"H", h_slots, cap, PinMode::kOff})).value();
    DiskTierOptions o;
    o.dir = scratch_.Sub("d");
    o.num_slots = 64;
    o.slot_capacity = cap;
    o.queue_depth = 8;
    auto injector = injector_;
    o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
      ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
      return io::WrapWithFaults(std::move(inner), injector);
    };
    d_.reset();
    auto d = DiskTier::Open(o);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    d_ = std::move(d).value();
    manifest_.reset();
    manifest_ = std::move(Manifest::Open(scratch_.Sub("manifest"))).value();
    BlockStoreOptions so;
    so.ns = 7;
    so.model = Model();
    so.policy.write = write;
    so.policy.sink_blocks = 0;
    so.policy.recent_window = 0;
    so.put_wait = put_wait;
    so.migrate_interval = std::chrono::hours(1);  // the tests drive MigrateOnce
    so.disk_retry_after = kRetry;
    auto s = BlockStore::Open(so, g_.get(), h_.get(), d_.get(), manifest_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::vector<std::byte> Block(uint32_t index, uint64_t version) {
    std::vector<std::byte> b(Model().BlockBytes());
    testing::FillBlock(1, 0, index, version, b);
    return b;
  }

  // Reads block `index` of sequence 1, layer 0; a success must hold exactly `version`.
  Status Read(uint32_t index, uint64_t version) {
    std::vector<std::byte> out(Model().BlockBytes(), std::byte{0xee});
    Status st = store_->Get(1, 0, index, out);
    if (st.ok()) {
      auto found = testing::CheckBlock(1, 0, index, out);
      EXPECT_TRUE(found.has_value()) << "block " << index << ": corrupt bytes served";
      EXPECT_EQ(found.value_or(0), version) << "block " << index << ": wrong version served";
    }
    return st;
  }

  // Puts blocks [0, n) at version 1 and pushes every one of them down to D only.
  void PutAndDemoteAll(uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(i, 1)));
    Policy p = store_->policy();
    p.gpu = {0.01, 0.01};
    p.host = {0.01, 0.01};
    store_->SetPolicy(p);
    store_->MigrateOnce();
    ASSERT_EQ(g_->used_slots() + h_->used_slots(), 0u);
    ASSERT_EQ(d_->used_slots(), n);
  }

  void RestoreWatermarks() {
    Policy p = store_->policy();
    p.gpu = Watermarks{};
    p.host = Watermarks{};
    store_->SetPolicy(p);
  }

  testing::ScratchDir scratch_;
  std::shared_ptr<io::FaultInjector> injector_ = std::make_shared<io::FaultInjector>(42);
  std::unique_ptr<ArenaTier> g_, h_;
  std::unique_ptr<DiskTier> d_;
  std::unique_ptr<Manifest> manifest_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreFaultTest, EioOnReadIsAnIoErrorAndTheBlockStays) {
  PutAndDemoteAll(4);
  RestoreWatermarks();
  injector_->AddRule({io::FaultKind::kIoError, io::FaultTarget::kReads, 0, 0, 1});
  EXPECT_EQ(Read(2, 1).code(), StatusCode::kIOError);
  EXPECT_EQ(d_->stats().io_errors.load(), 1u);
  EXPECT_EQ(store_->stats().disk_read_failures.load(), 1u);
  EXPECT_EQ(store_->stats().corrupt_blocks.load(), 0u);
  EXPECT_TRUE(store_->disk_admission().ok()) << "a read error does not stop writes";
  ASSERT_OK(Read(2, 1));  // the D copy is intact: the next read serves it
  EXPECT_EQ(injector_->counts().io_errors, 1u);
}

TEST_F(BlockStoreFaultTest, ShortReadIsAnIoErrorAndNothingIsServed) {
  PutAndDemoteAll(4);
  RestoreWatermarks();
  injector_->AddRule({io::FaultKind::kShortTransfer, io::FaultTarget::kReads, 0, 0, 1});
  EXPECT_EQ(Read(1, 1).code(), StatusCode::kIOError);
  EXPECT_EQ(d_->stats().io_errors.load(), 1u);
  ASSERT_OK(Read(1, 1));
}

TEST_F(BlockStoreFaultTest, AByteFlippedInTransitIsCaughtAndTheCopyReadAgain) {
  PutAndDemoteAll(4);
  RestoreWatermarks();
  injector_->AddRule({io::FaultKind::kFlipByte, io::FaultTarget::kReads, 0, 0, 1});
  ASSERT_OK(Read(3, 1));  // first read fails its checksum, the re-read is clean
  EXPECT_EQ(d_->stats().checksum_failures.load(), 1u);
  EXPECT_EQ(store_->stats().corrupt_blocks.load(), 0u);
  EXPECT_EQ(injector_->counts().flipped_bytes, 1u);
}

// Media corruption: the device stores a flipped byte. The write-through put is
// acknowledged (the write succeeded), its memory copy is intact and served; once
// only the D copy is left, it fails verification and is never served.
TEST_F(BlockStoreFaultTest, AByteFlippedOnTheMediaIsNeverServed) {
  Open(WritePolicy::kWriteThrough);
  injector_->AddRule({io::FaultKind::kFlipByte, io::FaultTarget::kWrites, 0, 0, 1});
  bool durable = false;
  ASSERT_OK(store_->Put(1, 0, 0, Block(0, 7), 0, nullptr, &durable));
  EXPECT_TRUE(durable);
  ASSERT_OK(Read(0, 7));  // from memory: the fault did not touch the caller's bytes
  Open(WritePolicy::kWriteThrough);  // restart: the D copy is the only one
  const Status st = Read(0, 7);
  EXPECT_NE(st.code(), StatusCode::kOk);
  // A flip in the header fails the recovery cross-check (stale record); one in the
  // payload fails the read's checksum twice (corrupt block), or, the put being the
  // last commit, Open's check of that commit's copies. Either way: missing.
  EXPECT_EQ(store_->stats().corrupt_blocks.load() + store_->stats().stale_records.load() +
                store_->stats().unfinished_writes.load(),
            1u);
  if (store_->stats().corrupt_blocks.load() == 1) {
    EXPECT_EQ(st.code(), StatusCode::kCorruption);
    EXPECT_EQ(d_->stats().checksum_failures.load(), 2u);  // read, re-read
  }
  EXPECT_EQ(Read(0, 7).code(), StatusCode::kNotFound);  // dropped, not retried forever
  EXPECT_EQ(d_->used_slots(), 0u);
}

// A torn (short) or failed write-through write: the put is stored in memory but not
// acknowledged as durable, D stops admitting, the last durable version survives a
// restart, and writes resume after disk_retry_after.
TEST_F(BlockStoreFaultTest, FailedWriteThroughKeepsTheLastDurableVersion) {
  for (io::FaultKind kind : {io::FaultKind::kShortTransfer, io::FaultKind::kIoError}) {
    SCOPED_TRACE(kind == io::FaultKind::kIoError ? "EIO" : "short write");
    Open(WritePolicy::kWriteThrough);
    bool durable = false;
    ASSERT_OK(store_->Put(1, 0, 5, Block(5, 1), 0, nullptr, &durable));
    ASSERT_TRUE(durable);
    injector_->AddRule({kind, io::FaultTarget::kWrites, 0, 0, 1});
    ASSERT_OK(store_->Put(1, 0, 5, Block(5, 2), 0, nullptr, &durable));
    EXPECT_FALSE(durable);
    EXPECT_EQ(store_->stats().puts_not_durable.load(), 1u);
    EXPECT_EQ(store_->stats().disk_write_failures.load(), 1u);
    EXPECT_EQ(store_->disk_admission().code(), StatusCode::kIOError);
    EXPECT_EQ(d_->stats().io_errors.load(), 1u);
    // The records were written beside the data (overlapped commit): the failed copy's
    // record was put back to the durable one at once.
    EXPECT_EQ(store_->stats().restored_records.load(), 1u);
    ASSERT_OK(Read(5, 2));  // G/H serve the new version
    // While D does not admit, write-through puts are stored, not durable.
    ASSERT_OK(store_->Put(1, 0, 6, Block(6, 1), 0, nullptr, &durable));
    EXPECT_FALSE(durable);
    EXPECT_GE(store_->stats().disk_admission_stops.load(), 1u);
    Open(WritePolicy::kWriteThrough);  // crash-equivalent: memory is gone
    ASSERT_OK(Read(5, 1));             // the acknowledged version, intact
    EXPECT_EQ(Read(6, 1).code(), StatusCode::kNotFound);
    EXPECT_EQ(store_->stats().stale_records.load(), 0u);
    EXPECT_EQ(store_->stats().restored_records.load(), 0u) << "the failed put left nothing for Open to repair";
    // After the pause, the first write probes the disk and admission resumes.
    injector_->ClearRules();
    ASSERT_OK(store_->Put(1, 0, 6, Block(6, 2), 0, nullptr, &durable));
    EXPECT_TRUE(durable);
    EXPECT_TRUE(store_->disk_admission().ok());
    ASSERT_OK(store_->DropSequence(1));
  }
}

// A failed fdatasync of the D slab (EIO or ENOSPC on the sync; the D tier's syncs go
// through its I/O engines): the put is stored in memory, not acknowledged durable,
// and the record the overlapped commit wrote beside the data is put back to the
// durable copy at once; after a restart the last durable version is read.
TEST_F(BlockStoreFaultTest, AFailedSyncKeepsTheLastDurableVersion) {
  for (io::FaultKind kind : {io::FaultKind::kIoError, io::FaultKind::kNoSpace}) {
    SCOPED_TRACE(kind == io::FaultKind::kIoError ? "EIO" : "ENOSPC");
    Open(WritePolicy::kWriteThrough);
    bool durable = false;
    ASSERT_OK(store_->Put(1, 0, 5, Block(5, 1), 0, nullptr, &durable));
    ASSERT_TRUE(durable);
    const uint64_t faults = injector_->counts().total();
    injector_->AddRule({kind, io::FaultTarget::kSyncs, 0, 0, 1});
    ASSERT_OK(store_->Put(1, 0, 5, Block(5, 2), 0, nullptr, &durable));
    EXPECT_FALSE(durable);
    EXPECT_EQ(injector_->counts().total() - faults, 1u) << "the sync went through the engine";
    EXPECT_EQ(store_->stats().restored_records.load(), 1u);
    ASSERT_OK(Read(5, 2));  // memory serves the new version
    injector_->ClearRules();
    Open(WritePolicy::kWriteThrough);
    ASSERT_OK(Read(5, 1));
    EXPECT_EQ(store_->stats().stale_records.load(), 0u);
    ASSERT_OK(store_->DropSequence(1));
  }
}

// A crash inside an overlapped commit (decision 0016, one sync per commit): the
// group's manifest batch landed, its data did not land whole. Made by hand: once
// version 1 of block 5 is durable, the manifest gets what the group's batch would
// have held for version 2 (its record naming a fresh slot, and the pending-writes
// record) and the fresh slot gets version 2 never written, torn (the first half of
// the write: a valid header, half a payload) or whole. A header-only check adopts
// the torn copy and the acknowledged version is lost.
TEST_F(BlockStoreFaultTest, OpenPutsBackThePreviousCopyWhenTheLastCommitsCopyIsNotWhole) {
  enum class Fresh { kNeverWritten, kTorn, kWhole };
  SlotId fresh = 63;  // a slot the store never used
  for (Fresh state : {Fresh::kNeverWritten, Fresh::kTorn, Fresh::kWhole}) {
    SCOPED_TRACE(state == Fresh::kNeverWritten ? "never written" : state == Fresh::kTorn ? "torn" : "whole");
    Open(WritePolicy::kWriteThrough);
    bool durable = false;
    ASSERT_OK(store_->Put(1, 0, 5, Block(5, 1), 0, nullptr, &durable));
    ASSERT_TRUE(durable);
    const std::string key = EncodeRecordKey({'B', 7, 1, 0, 5});
    const BlockRecord v1 = DecodeBlockRecord(manifest_->Get(Cf::kBlocks, key).value()).value();
    store_.reset();  // crash-equivalent: memory is gone
    const uint32_t generation = v1.generation + 1;
    if (state != Fresh::kNeverWritten) {
      ASSERT_OK(d_->Adopt(fresh));
      if (state == Fresh::kTorn) injector_->AddRule({io::FaultKind::kShortTransfer, io::FaultTarget::kWrites, 0, 0, 1});
      const Status wrote = d_->Write(fresh, SlotTag{BlockKey{7, 0, 1, 5, 0}, generation}, Block(5, 2));
      EXPECT_EQ(wrote.ok(), state == Fresh::kWhole) << wrote.ToString();
      injector_->ClearRules();
    }
    Manifest::Batch batch;
    batch.Put(Cf::kBlocks, key, EncodeBlockRecord({fresh, generation, v1.length, v1.encoding}));
    const PendingWrite pending{key, fresh, generation, v1.disk_slot};
    batch.Put(Cf::kMeta, PendingWritesKey(7), EncodePendingWrites(std::span(&pending, 1)));
    ASSERT_OK(manifest_->Write(batch));
    Open(WritePolicy::kWriteThrough);
    if (state == Fresh::kWhole) {
      ASSERT_OK(Read(5, 2));  // the new copy is whole: its record stands
      EXPECT_EQ(store_->stats().restored_records.load(), 0u);
    } else {
      ASSERT_OK(Read(5, 1));  // the acknowledged version
      EXPECT_EQ(store_->stats().restored_records.load(), 1u);
    }
    EXPECT_EQ(store_->stats().unfinished_writes.load(), state == Fresh::kWhole ? 0u : 1u);
    EXPECT_EQ(store_->stats().stale_records.load(), 0u);
    EXPECT_EQ(manifest_->Get(Cf::kMeta, PendingWritesKey(7)).status().code(), StatusCode::kNotFound);
    ASSERT_OK(store_->DropSequence(1));
    --fresh;
  }
}

// The same crash for a block put for the first time: no previous copy, so its record
// goes (that version was never acknowledged), and nothing else changes.
TEST_F(BlockStoreFaultTest, OpenDropsTheRecordOfANewBlockWhoseCopyIsNotWhole) {
  Open(WritePolicy::kWriteThrough);
  ASSERT_OK(store_->Put(1, 0, 4, Block(4, 1)));
  store_.reset();
  const std::string key = EncodeRecordKey({'B', 7, 1, 0, 5});
  Manifest::Batch batch;
  batch.Put(Cf::kBlocks, key, EncodeBlockRecord({63, 1000, static_cast<uint32_t>(Model().BlockBytes()), 0}));
  const PendingWrite pending{key, 63, 1000, kInvalidSlot};
  batch.Put(Cf::kMeta, PendingWritesKey(7), EncodePendingWrites(std::span(&pending, 1)));
  ASSERT_OK(manifest_->Write(batch));
  Open(WritePolicy::kWriteThrough);
  EXPECT_EQ(Read(5, 1).code(), StatusCode::kNotFound);
  ASSERT_OK(Read(4, 1));
  EXPECT_EQ(manifest_->Get(Cf::kBlocks, key).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->stats().restored_records.load(), 0u);
  EXPECT_EQ(store_->stats().unfinished_writes.load(), 1u);
  EXPECT_EQ(store_->stats().stale_records.load(), 0u);
  EXPECT_EQ(manifest_->Get(Cf::kMeta, PendingWritesKey(7)).status().code(), StatusCode::kNotFound);
}

// ENOSPC: demotions stop, G and H keep taking puts until they are full and keep
// serving every block; once the disk has room again demotions resume.
TEST_F(BlockStoreFaultTest, NoSpaceStopsDiskAdmissionWhileMemoryKeepsServing) {
  Policy p = store_->policy();
  p.host = {0.5, 0.25};  // H (8 slots) demotes above 4 blocks
  store_->SetPolicy(p);
  injector_->AddRule({io::FaultKind::kNoSpace, io::FaultTarget::kWrites, 1, io::kNoRequest});  // every write
  for (uint32_t i = 0; i < 10; ++i) ASSERT_OK(store_->Put(1, 0, i, Block(i, 1)));
  store_->MigrateOnce();  // G and H are over their watermarks: demotion is tried
  EXPECT_EQ(store_->stats().demotions_h_to_d.load(), 0u);
  EXPECT_EQ(store_->disk_admission().code(), StatusCode::kResourceExhausted);
  EXPECT_GE(d_->stats().no_space.load(), 1u);
  EXPECT_GE(store_->stats().disk_write_failures.load(), 1u);
  EXPECT_EQ(d_->used_slots(), 0u);
  // Memory keeps taking puts up to its capacity (4 + 8 slots) and serving them.
  ASSERT_OK(store_->Put(1, 0, 10, Block(10, 1)));
  ASSERT_OK(store_->Put(1, 0, 11, Block(11, 1)));
  EXPECT_EQ(store_->Put(1, 0, 12, Block(12, 1)).code(), StatusCode::kResourceExhausted);
  store_->MigrateOnce();  // within the pause: refused without touching the disk
  EXPECT_GE(store_->stats().disk_admission_stops.load(), 1u);
  for (uint32_t i = 0; i < 12; ++i) ASSERT_OK(Read(i, 1));
  // Room again: after disk_retry_after the migrator's writes probe and succeed.
  injector_->ClearRules();
  std::this_thread::sleep_for(kRetry + std::chrono::milliseconds(20));
  store_->MigrateOnce();
  EXPECT_TRUE(store_->disk_admission().ok());
  EXPECT_GT(store_->stats().demotions_h_to_d.load(), 0u);
  EXPECT_GT(d_->used_slots(), 0u);
  ASSERT_OK(store_->Put(1, 0, 12, Block(12, 1)));
  for (uint32_t i = 0; i < 13; ++i) ASSERT_OK(Read(i, 1));
}

// Every kind of fault at random, reads and writes, write-back and write-through:
// whatever is served is exactly the last version put; errors are only the kinds
// faults may cause; once the faults stop, every block still stored reads back.
TEST_F(BlockStoreFaultTest, RandomFaultsNeverServeWrongBytes) {
  for (WritePolicy w : {WritePolicy::kWriteBack, WritePolicy::kWriteThrough}) {
    SCOPED_TRACE(WritePolicyName(w));
    Open(w, std::chrono::milliseconds(40));  // puts wait less for room while D fails
    for (io::FaultKind k :
         {io::FaultKind::kIoError, io::FaultKind::kNoSpace, io::FaultKind::kShortTransfer, io::FaultKind::kFlipByte}) {
      injector_->AddRule({k, io::FaultTarget::kAll, 12, io::kNoRequest});
    }
    std::mt19937_64 rng(7);
    std::vector<uint64_t> version(24, 0);  // 0: never put
    uint64_t next = 1;
    for (int op = 0; op < 600; ++op) {
      const uint32_t i = rng() % version.size();
      if (rng() % 3 == 0) {
        Status st = store_->Put(1, 0, i, Block(i, next));
        if (st.ok()) version[i] = next;
        ++next;
        EXPECT_TRUE(st.ok() || st.code() == StatusCode::kResourceExhausted) << st.ToString();
      } else {
        Status st = Read(i, version[i]);
        const StatusCode c = st.code();
        EXPECT_TRUE(st.ok() || c == StatusCode::kNotFound || c == StatusCode::kIOError ||
                    c == StatusCode::kCorruption || c == StatusCode::kResourceExhausted)
            << st.ToString();
        if (c == StatusCode::kNotFound && version[i] != 0) version[i] = 0;  // dropped as corrupt
      }
      if (op % 20 == 0) store_->MigrateOnce();
    }
    injector_->ClearRules();
    std::this_thread::sleep_for(kRetry);
    for (uint32_t i = 0; i < version.size(); ++i) {
      if (version[i] == 0) continue;
      // Media corruption stays: such a copy fails (kCorruption) and is dropped.
      Status st = Read(i, version[i]);
      EXPECT_TRUE(st.ok() || st.code() == StatusCode::kNotFound || st.code() == StatusCode::kCorruption)
          << "block " << i << ": " << st.ToString();
    }
    const io::FaultCounts c = injector_->counts();
    EXPECT_GT(c.total(), 10u);
    const TierStatsSnapshot ds = d_->stats().Snapshot();
    EXPECT_GT(ds.io_errors + ds.no_space + ds.checksum_failures, 0u);
    ASSERT_OK(store_->DropSequence(1));
  }
}

// Shutdown drain under write-back: a rewrite of a block already on D goes to a fresh
// slot (the old copy stays the recorded one until the new one is synced and
// recorded); a write that fails keeps the last durable version, the drain reports
// it, and a later drain waits out D's pause and writes it.
TEST_F(BlockStoreFaultTest, DrainKeepsTheLastDurableVersionWhenAWriteFails) {
  PutAndDemoteAll(4);
  RestoreWatermarks();
  ASSERT_OK(store_->Put(1, 0, 1, Block(1, 2)));  // in memory; D holds version 1
  ASSERT_OK(store_->Put(1, 0, 2, Block(2, 2)));
  ASSERT_OK(store_->Put(1, 0, 4, Block(4, 1)));  // in memory only
  EXPECT_EQ(store_->BlocksNotOnDisk(), 3u);
  injector_->AddRule({io::FaultKind::kIoError, io::FaultTarget::kWrites, 0, 0, 1});  // the first write fails
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  DrainResult r = store_->Drain(deadline);
  EXPECT_EQ(r.pending, 3u);
  EXPECT_EQ(r.written, 2u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.first_error.code(), StatusCode::kIOError) << r.first_error.ToString();
  EXPECT_EQ(store_->disk_admission().code(), StatusCode::kIOError);
  EXPECT_EQ(d_->used_slots(), 4u + 2u - 1u);  // one rewrite flipped, its old slot freed
  Open(WritePolicy::kWriteBack);  // crash-equivalent after the failed drain
  uint32_t new_versions = 0;
  for (uint32_t i : {1u, 2u}) {
    std::vector<std::byte> out(Model().BlockBytes());
    ASSERT_OK(store_->Get(1, 0, i, out));
    auto v = testing::CheckBlock(1, 0, i, out);
    ASSERT_TRUE(v.has_value()) << "block " << i;
    EXPECT_TRUE(*v == 1 || *v == 2) << "block " << i;
    new_versions += *v == 2;
  }
  const bool four = Read(4, 1).ok();
  EXPECT_EQ(new_versions + (four ? 1 : 0), 2u) << "two of the three writes were recorded";
  ASSERT_OK(Read(0, 1));
  ASSERT_OK(Read(3, 1));
  // D paused by the error: a drain waits for the retry time, then writes.
  injector_->ClearRules();
  ASSERT_OK(store_->Put(1, 0, 5, Block(5, 1)));
  ASSERT_OK(store_->Put(1, 0, 6, Block(6, 1)));
  injector_->AddRule({io::FaultKind::kIoError, io::FaultTarget::kWrites, 0, 0, 1});
  r = store_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(30));
  ASSERT_EQ(r.failed, 1u);
  ASSERT_EQ(store_->disk_admission().code(), StatusCode::kIOError);
  const auto start = std::chrono::steady_clock::now();
  r = store_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(30));
  EXPECT_GE(std::chrono::steady_clock::now() - start, kRetry / 2);
  EXPECT_EQ(r.written, 1u);
  EXPECT_EQ(r.left, 0u);
  EXPECT_TRUE(store_->disk_admission().ok());
  Open(WritePolicy::kWriteBack);
  ASSERT_OK(Read(5, 1));
  ASSERT_OK(Read(6, 1));
}

}  // namespace
}  // namespace tierkv::storage
