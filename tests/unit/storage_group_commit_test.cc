// Group commit (storage/commit_queue.h, BlockStore::PutBlocks): the queue on its
// own, then write-through puts over real tiers (memfd H, emulated G, O_DIRECT D,
// RocksDB manifest) sharing D commits, and surviving a restart byte for byte.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <filesystem>
#include <map>
#include <thread>

#include "storage/block_store.h"
#include "storage/commit_queue.h"
#include "storage/disk_tier.h"
#include "tests/unit/storage_test_util.h"

namespace tierkv::storage {
namespace {

#define ASSERT_OK(expr)                                           \
  do {                                                            \
    const Status _st = (expr);                                    \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString();     \
  } while (0)

struct Item {
  int id = 0;
  std::atomic<int> runs{0};
  std::atomic<bool> committed{false};
};

// Every commit runs exactly once, its owner returns only after its group ran, groups
// never overlap, and commits that queue while a group runs share the next group.
TEST(CommitQueueTest, EachCommitRunsOnceInAGroupBeforeItsOwnerReturns) {
  std::atomic<int> running{0}, overlap{0};
  CommitQueue<Item> queue(
      [&](std::span<Item* const> group) {
        if (running.fetch_add(1) != 0) ++overlap;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a sync
        for (Item* it : group) {
          ++it->runs;
          it->committed = true;
        }
        --running;
      },
      16);
  constexpr int kThreads = 8, kPerThread = 40;
  std::vector<std::vector<Item>> items(kThreads);
  for (auto& v : items) v = std::vector<Item>(kPerThread);
  std::atomic<int> early{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (Item& it : items[t]) {
        queue.Commit(&it);
        if (!it.committed) ++early;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(early.load(), 0) << "a commit returned before its group ran";
  EXPECT_EQ(overlap.load(), 0) << "two groups ran at once";
  for (auto& v : items) {
    for (Item& it : v) EXPECT_EQ(it.runs.load(), 1);
  }
  EXPECT_EQ(queue.commits(), uint64_t{kThreads * kPerThread});
  // 8 threads, one commit each in flight: groups of several, far fewer than commits.
  EXPECT_LT(queue.groups(), queue.commits() / 2) << queue.groups() << " groups";
}

// Mean group size of 4 writers looping over commits whose run takes `sync`.
double MeanGroupOfFourWriters(std::chrono::microseconds window, std::chrono::milliseconds sync,
                              uint64_t* gather_us = nullptr) {
  CommitQueue<Item> queue([&](std::span<Item* const>) { std::this_thread::sleep_for(sync); }, 64, window);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      Item it;
      for (int i = 0; i < 25; ++i) queue.Commit(&it);
    });
  }
  for (auto& t : ts) t.join();
  if (gather_us) *gather_us = queue.gather_us();
  return static_cast<double>(queue.commits()) / static_cast<double>(queue.groups());
}

// Writers just acknowledged come back while the other half syncs: without a window
// 4 writers split into alternating groups; the leader's wait gathers them all.
TEST(CommitQueueTest, TheLeaderWaitsForTheActiveWritersWithinTheWindow) {
  const double with = MeanGroupOfFourWriters(std::chrono::microseconds(20000), std::chrono::milliseconds(10));
  const double without = MeanGroupOfFourWriters(std::chrono::microseconds(0), std::chrono::milliseconds(10));
  EXPECT_GE(with, 3.0) << "without a window: " << without;
  EXPECT_GT(with, without);
}

// One writer alone never waits for anyone.
TEST(CommitQueueTest, ALoneWriterNeverWaits) {
  CommitQueue<Item> queue([](std::span<Item* const>) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); },
                          64, std::chrono::microseconds(50000));
  Item it;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) queue.Commit(&it);
  EXPECT_EQ(queue.gather_us(), 0u);
  EXPECT_EQ(queue.groups(), 20u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));  // 20 x 1 ms, never 20 x 25 ms
}

ModelSpec SmallModel() { return {2, 2, 1, 64, 16, DType::kF32}; }  // 8 KiB blocks

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(scratch_.path().empty()) << "no scratch directory accepting O_DIRECT"; }

  void Open(bool group_commit, uint32_t g = 64, uint32_t h = 256, uint32_t d = 2048) {
    store_.reset();
    manifest_.reset();
    const uint32_t cap = static_cast<uint32_t>(SmallModel().BlockBytes());
    g_ = std::move(CreateEmulatedGpuTier({"G", g, cap})).value();
    h_ = std::move(CreateHostTier({"H", h, cap, PinMode::kOff})).value();
    DiskTierOptions o;
    o.dir = scratch_.Sub("d");
    o.num_slots = d;
    o.slot_capacity = cap;
    auto dt = DiskTier::Open(o);
    ASSERT_TRUE(dt.ok()) << dt.status().ToString();
    d_ = std::move(dt).value();
    manifest_ = std::move(Manifest::Open(scratch_.Sub("manifest"))).value();
    BlockStoreOptions so;
    so.ns = 3;
    so.model = SmallModel();
    so.policy.write = WritePolicy::kWriteThrough;
    so.group_commit = group_commit;
    so.put_wait = std::chrono::milliseconds(300);
    auto s = BlockStore::Open(so, g_.get(), h_.get(), d_.get(), manifest_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  static std::vector<std::byte> Block(uint64_t seed, size_t n = 1) {
    std::mt19937_64 rng(seed);
    auto bytes = testing::RandomBytes(SmallModel().BlockBytes() * n, rng);
    return std::vector<std::byte>(bytes.begin(), bytes.end());
  }
  void Expect(SequenceId seq, uint32_t layer, uint32_t idx, std::span<const std::byte> want) {
    std::vector<std::byte> out(SmallModel().BlockBytes());
    ASSERT_OK(store_->Get(seq, layer, idx, out));
    EXPECT_TRUE(std::equal(out.begin(), out.end(), want.begin())) << "seq " << seq << " block " << idx;
  }

  testing::ScratchDir scratch_;
  std::unique_ptr<ArenaTier> g_, h_;
  std::unique_ptr<DiskTier> d_;
  std::unique_ptr<Manifest> manifest_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(GroupCommitTest, TheBlocksOfOnePutShareOneCommitAndSurviveARestart) {
  Open(true);
  const size_t bb = SmallModel().BlockBytes();
  const auto payload = Block(1, 16);
  PutOutcome out;
  ASSERT_OK(store_->PutBlocks(9, 1, 100, 16, payload, 0, &out));
  EXPECT_EQ(out.stored, 16u);
  EXPECT_EQ(out.durable, 16u);
  EXPECT_EQ(out.deduplicated, 0u);
  EXPECT_EQ(store_->stats().disk_commits.load(), 1u) << "16 blocks, one fdatasync + manifest batch";
  EXPECT_EQ(store_->stats().disk_writes.load(), 16u);
  Open(true);
  EXPECT_EQ(store_->stats().recovered_blocks.load(), 16u);
  for (uint32_t i = 0; i < 16; ++i) Expect(9, 1, 100 + i, std::span(payload).subspan(i * bb, bb));
}

// PutRanges (a batch of sequences, or the KV heads of a per-head put): every range's
// D writes share one commit; a bad range fails alone.
TEST_F(GroupCommitTest, TheRangesOfOnePutRangesShareOneCommit) {
  Open(true);
  const size_t bb = SmallModel().BlockBytes();
  const auto payload = Block(2, 8);
  std::vector<PutRange> ranges;
  for (uint32_t s = 0; s < 4; ++s) {
    ranges.push_back({10 + s, 0, 7, 2, std::span(payload).subspan(s * 2 * bb, 2 * bb), 0});
  }
  ranges.push_back({20, 0, 0, 0, {}, 0});  // zero blocks: refused alone
  store_->PutRanges(ranges);
  for (uint32_t s = 0; s < 4; ++s) {
    ASSERT_OK(ranges[s].status);
    EXPECT_EQ(ranges[s].out.stored, 2u);
    EXPECT_EQ(ranges[s].out.durable, 2u);
  }
  EXPECT_EQ(ranges[4].status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ranges[4].out.stored, 0u);
  EXPECT_EQ(store_->stats().disk_commits.load(), 1u) << "4 sequences x 2 blocks, one commit";
  Open(true);
  for (uint32_t s = 0; s < 4; ++s) {
    for (uint32_t i = 0; i < 2; ++i) Expect(10 + s, 0, 7 + i, std::span(payload).subspan((s * 2 + i) * bb, bb));
  }
}

TEST_F(GroupCommitTest, PutBlocksChecksItsArguments) {
  Open(true);
  const size_t bb = SmallModel().BlockBytes();
  PutOutcome out;
  const auto two = Block(2, 2);
  EXPECT_EQ(store_->PutBlocks(1, 0, 0, 0, {}, 0, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->PutBlocks(1, 0, 0, 2, two, 0xAB, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->PutBlocks(1, 0, 0, 2, std::span(two).first(bb), 0, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->PutBlocks(1, 0, UINT32_MAX, 2, two, 0, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->PutBlocks(1, 9, 0, 2, two, 0, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out.stored, 0u);
  EXPECT_EQ(store_->num_blocks(), 0u);
}

// A block pinned by a retrieve stops the put there: the blocks before it are stored
// and durable, the count says so, the pinned one keeps its old bytes.
TEST_F(GroupCommitTest, APutStopsAtAPinnedBlockAndKeepsTheBlocksBeforeIt) {
  Open(true);
  const size_t bb = SmallModel().BlockBytes();
  const auto old = Block(5);
  ASSERT_OK(store_->Put(4, 0, 3, old));
  auto lease = store_->Acquire(4, 0, std::vector<uint32_t>{3}, MissMode::kWait);
  ASSERT_TRUE(lease.ok());
  const auto payload = Block(6, 6);
  PutOutcome out;
  EXPECT_EQ(store_->PutBlocks(4, 0, 0, 6, payload, 0, &out).code(), StatusCode::kBusy);
  EXPECT_EQ(out.stored, 3u);
  EXPECT_EQ(out.durable, 3u);
  ASSERT_OK(store_->Release(lease->id));
  for (uint32_t i = 0; i < 3; ++i) Expect(4, 0, i, std::span(payload).subspan(i * bb, bb));
  Expect(4, 0, 3, old);
  EXPECT_EQ(store_->SequenceBlocks(4, 0), 4u);
}

// Writers on several threads: with group commit their puts share commits (fewer
// commits than puts), without it each put has its own; every acknowledged block is
// back byte for byte after a restart either way.
TEST_F(GroupCommitTest, ConcurrentWritersShareCommitsAndEveryAcknowledgedBlockSurvives) {
  constexpr int kWriters = 4;
  constexpr uint32_t kPuts = 60;
  for (bool grouped : {true, false}) {
    SCOPED_TRACE(grouped ? "group commit" : "one commit per put");
    Open(grouped);
    std::atomic<int> not_durable{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < kWriters; ++w) {
      ts.emplace_back([&, w] {
        for (uint32_t i = 0; i < kPuts; ++i) {
          bool durable = false;
          const Status st = store_->Put(100 + w, 0, i, Block(w * 10000 + i), 0, nullptr, &durable);
          if (!st.ok() || !durable) ++not_durable;
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(not_durable.load(), 0);
    const uint64_t commits = store_->stats().disk_commits.load();
    if (grouped) {
      EXPECT_LT(commits, uint64_t{kWriters * kPuts}) << "no put shared a commit";
    } else {
      EXPECT_EQ(commits, uint64_t{kWriters * kPuts});
    }
    Open(grouped);
    EXPECT_EQ(store_->stats().recovered_blocks.load(), uint64_t{kWriters * kPuts});
    for (int w = 0; w < kWriters; ++w) {
      for (uint32_t i = 0; i < kPuts; ++i) Expect(100 + w, 0, i, Block(w * 10000 + i));
    }
    store_.reset();
    manifest_.reset();
    d_.reset();
    std::filesystem::remove_all(scratch_.Sub("d"));
    std::filesystem::remove_all(scratch_.Sub("manifest"));
  }
}

// Writers put 1 to 4 blocks at a time over a small key space through tiers much
// smaller than it (the migrator demotes meanwhile). Reopened without a drain, the
// store finds every record consistent with its slot (no stale record: no slot was
// freed or reused while a record named it) and the last version of every block.
TEST_F(GroupCommitTest, MultiBlockPutsUnderMigrationKeepEveryRecordConsistent) {
  for (bool grouped : {true, false}) {
    SCOPED_TRACE(grouped ? "group commit" : "one commit per block");
    Open(grouped, 16, 32, 1024);
    constexpr int kWriters = 3;
    constexpr uint32_t kBlocksPerSeq = 32;
    std::vector<std::map<uint32_t, uint64_t>> last(kWriters);  // block -> seed of its last durable version
    std::atomic<int> errors{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < kWriters; ++w) {
      ts.emplace_back([&, w] {
        std::mt19937 rng(w + 1);
        for (int op = 0; op < 150; ++op) {
          const uint32_t count = 1 + rng() % 4;
          const uint32_t first = rng() % (kBlocksPerSeq - count + 1);
          const uint64_t seed = (uint64_t{static_cast<uint32_t>(w)} << 40) | (uint64_t{first} << 20) | op;
          PutOutcome out;
          const Status st = store_->PutBlocks(50 + w, op % 2, first, count, Block(seed, count), 0, &out);
          if (!st.ok()) continue;  // full tiers may refuse; nothing is claimed then
          if (out.durable != count) ++errors;
          for (uint32_t i = 0; i < count; ++i) last[w][((op % 2) << 16) | (first + i)] = seed * 16 + i;
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(errors.load(), 0);
    Open(grouped, 16, 32, 1024);
    EXPECT_EQ(store_->stats().stale_records.load(), 0u);
    const size_t bb = SmallModel().BlockBytes();
    for (int w = 0; w < kWriters; ++w) {
      for (const auto& [key, v] : last[w]) {
        const auto blocks = Block(v / 16, (v % 16) + 1);
        Expect(50 + w, key >> 16, key & 0xffff, std::span(blocks).subspan((v % 16) * bb, bb));
      }
    }
    store_.reset();
    manifest_.reset();
    d_.reset();
    std::filesystem::remove_all(scratch_.Sub("d"));
    std::filesystem::remove_all(scratch_.Sub("manifest"));
  }
}

// A block pinned by a retrieve when its sequence is closed is freed at the lease's
// release; the sequence was put again meanwhile: the release must not delete the
// new block's record (the daemon soak lost an acknowledged block that way).
TEST_F(GroupCommitTest, ReleasingAClosedSequencesLeaseKeepsItsSuccessorsRecord) {
  Open(true);
  ASSERT_OK(store_->Put(8, 0, 5, Block(1)));
  auto lease = store_->Acquire(8, 0, std::vector<uint32_t>{5}, MissMode::kWait);
  ASSERT_TRUE(lease.ok());
  ASSERT_OK(store_->DropSequence(8));
  bool durable = false;
  const auto again = Block(2);
  ASSERT_OK(store_->Put(8, 0, 5, again, 0, nullptr, &durable));
  ASSERT_TRUE(durable);
  ASSERT_OK(store_->Release(lease->id));  // frees the old block
  Open(true);
  EXPECT_EQ(store_->stats().recovered_blocks.load(), 1u);
  Expect(8, 0, 5, again);
}

}  // namespace
}  // namespace tierkv::storage
