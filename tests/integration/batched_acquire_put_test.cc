// Integration: the batched Acquire and Put (docs/decisions/0028-batched-acquire-and-put.md)
// through a real tierkvd. Checked: PutBatch stores every item's blocks (read back
// equal with Get), an item over a pinned block fails alone saying what it stored;
// AcquireBatch returns each item's refs in item order under one lease, pointing at
// the bytes put, releases the previous lease in the same round trip, fails a bad item
// alone without pinning it; per KV head namespaces give a run per head with each
// head's bytes; every bad descriptor (counts, ranges, offsets, table areas) is
// refused with a clear error and the daemon keeps serving.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>

#include "client/client_internal.h"
#include "tests/util/daemon_process.h"
#include "tests/util/namespace_client.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 2, kQHeads = 4, kKvHeads = 2, kHeadDim = 8, kBlockTokens = 4;
const ModelSpec kModel{kLayers, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();          // 512
const size_t kRow = size_t{kBlockTokens} * kHeadDim;     // floats of one head's K (or V) in a block

// n blocks of (seq, layer) from `first`, deterministic.
std::vector<std::byte> Blocks(uint64_t seq, uint32_t layer, uint32_t first, uint32_t n) {
  std::vector<float> f(n * kBlockBytes / 4);
  for (uint32_t b = 0; b < n; ++b) {
    std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer * 131 + first + b));
    std::normal_distribution<float> d(0.f, 1.f);
    for (size_t i = 0; i < kBlockBytes / 4; ++i) f[b * kBlockBytes / 4 + i] = d(rng);
  }
  std::vector<std::byte> out(f.size() * 4);
  std::memcpy(out.data(), f.data(), out.size());
  return out;
}

// KV head h's K and V rows of a layer block (what a per-head entry holds).
std::vector<std::byte> HeadOf(std::span<const std::byte> block, uint32_t h) {
  std::vector<std::byte> out(2 * kRow * 4);
  std::memcpy(out.data(), block.data() + h * kRow * 4, kRow * 4);
  std::memcpy(out.data() + kRow * 4, block.data() + (kKvHeads + h) * kRow * 4, kRow * 4);
  return out;
}

class BatchedAcquirePutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    NamespaceSpec spec;
    spec.name = "layer";
    spec.model = kModel;
    spec.budgets = {16 * kBlockBytes, 32 * kBlockBytes, 512 * kBlockBytes};
    auto c = testing::ConnectWithNamespace(daemon_.socket_path(), spec);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    spec.name = "head";
    spec.granularity = Granularity::kKvHead;
    ASSERT_TRUE(client_->CreateNamespace(spec).ok());
    ASSERT_TRUE(client_->Attach("head").ok());
    ch_ = Open("layer");
  }
  std::unique_ptr<DataChannel> Open(const std::string& ns) {
    auto ch = client_->OpenChannel(ns, {.staging_bytes = 64 << 10});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }
  // Puts blocks [0, n_s) of sequences 1..4 (n_s = 2 + s) of layer 1 in one batch.
  void PutFour(DataChannel& ch) {
    std::vector<std::vector<std::byte>> data;
    std::vector<DataChannel::PutItem> items;
    for (uint64_t s = 1; s <= 4; ++s) data.push_back(Blocks(s, 1, 0, 2 + static_cast<uint32_t>(s)));
    for (uint64_t s = 1; s <= 4; ++s) items.push_back({s, 0, data[s - 1]});
    auto r = ch.PutBatch(1, items);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->stored_items, 4u);
    for (uint32_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(r->results[i].status.ok()) << r->results[i].status.ToString();
      EXPECT_EQ(r->results[i].stored, 3 + i);
    }
  }

  // Rewrites block b of (seq, layer 1); a block on its way between tiers may be busy a moment.
  bool PutEventually(uint64_t seq, uint32_t b) {
    Status st;
    for (int i = 0; i < 50 && !(st = ch_->Put(seq, 1, b, Blocks(seq, 1, b, 1))).ok(); ++i) usleep(10000);
    return st.ok();
  }

  testing::TempDir dir_{"batchacq"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
};

TEST_F(BatchedAcquirePutTest, PutBatchStoresEveryItemAndFailsABadOneAlone) {
  PutFour(*ch_);
  for (uint64_t s = 1; s <= 4; ++s) {
    const uint32_t n = 2 + static_cast<uint32_t>(s);
    std::vector<std::byte> got(n * kBlockBytes);
    ASSERT_TRUE(ch_->Get(s, 1, 0, got).ok());
    EXPECT_TRUE(got == Blocks(s, 1, 0, n)) << "sequence " << s;
  }
  // Item 1 rewrites a block a lease pins: it fails alone (kBusy, nothing stored);
  // items 0 and 2 are stored.
  auto pin = ch_->Acquire(2, 1, 1, 1);
  ASSERT_TRUE(pin.ok()) << pin.status().ToString();
  const auto a = Blocks(7, 1, 0, 2), b = Blocks(2, 1, 1, 1), c = Blocks(8, 1, 0, 1);
  std::vector<DataChannel::PutItem> items{{7, 0, a}, {2, 1, b}, {8, 0, c}};
  auto r = ch_->PutBatch(1, items);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stored_items, 2u);
  EXPECT_FALSE(r->durable);
  EXPECT_TRUE(r->results[0].status.ok());
  EXPECT_EQ(r->results[1].status.code(), StatusCode::kBusy) << r->results[1].status.ToString();
  EXPECT_NE(r->results[1].status.ToString().find("put batch: item 1"), std::string::npos);
  EXPECT_EQ(r->results[1].stored, 0u);
  EXPECT_EQ(r->results[2].stored, 1u);
  std::vector<std::byte> got(2 * kBlockBytes);
  ASSERT_TRUE(ch_->Get(7, 1, 0, got).ok());
  EXPECT_TRUE(got == a);
  ASSERT_TRUE(ch_->Release(pin->lease).ok());
  // Whole-call errors: no items, not whole blocks, a bad layer, an item larger than staging.
  EXPECT_EQ(ch_->PutBatch(1, {}).status().code(), StatusCode::kInvalidArgument);
  std::vector<DataChannel::PutItem> odd{{1, 0, std::span(a).first(100)}};
  EXPECT_EQ(ch_->PutBatch(1, odd).status().code(), StatusCode::kInvalidArgument);
  std::vector<DataChannel::PutItem> bad_layer{{1, 0, a}};
  EXPECT_EQ(ch_->PutBatch(kLayers, bad_layer).status().code(), StatusCode::kInvalidArgument);
  const auto big = Blocks(9, 1, 0, 128);  // 64 KiB of blocks + a header > 64 KiB staging
  std::vector<DataChannel::PutItem> too_big{{9, 0, big}};
  EXPECT_EQ(ch_->PutBatch(1, too_big).status().code(), StatusCode::kInvalidArgument);
  // Items that do not fit together go in several requests.
  const auto half = Blocks(10, 1, 0, 80);
  std::vector<DataChannel::PutItem> two{{10, 0, half}, {11, 0, half}};
  r = ch_->PutBatch(1, two);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stored_items, 2u);
  got.resize(half.size());
  ASSERT_TRUE(ch_->Get(11, 1, 0, got).ok());
  EXPECT_TRUE(got == half);
}

// Under write-through a batch of sequences is one D commit, and so is a put to a
// per-head namespace (one store range per KV head); every item is durable.
TEST_F(BatchedAcquirePutTest, UnderWriteThroughABatchIsOneDiskCommit) {
  for (const std::string ns : {"layer", "head"}) {
    SCOPED_TRACE(ns);
    ASSERT_TRUE(client_->SetPolicy(ns, R"({"write": "write-through"})").ok());
    auto stats = client_->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    auto commits = [&] {
      return testing::MetricValue(testing::HttpGet(stats->metrics_url), "tierkv_disk_commits_total",
                                  {"namespace=\"" + ns + "\""});
    };
    auto ch = Open(ns);
    ASSERT_NE(ch, nullptr);
    const double before = commits();
    std::vector<std::vector<std::byte>> data;
    std::vector<DataChannel::PutItem> items;
    // One block each: a put pins at most (G + H slots) / 8 blocks before it commits.
    for (uint64_t s = 1; s <= 4; ++s) data.push_back(Blocks(20 + s, 1, 0, 1));
    for (uint64_t s = 1; s <= 4; ++s) items.push_back({20 + s, 0, data[s - 1]});
    auto r = ch->PutBatch(1, items);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->stored_items, 4u);
    EXPECT_TRUE(r->durable);
    EXPECT_EQ(commits() - before, 1.0) << "4 sequences (x 2 KV heads in \"head\"), one commit";
    bool durable = false;
    ASSERT_TRUE(ch->Put(30, 1, 0, Blocks(30, 1, 0, 3), 0, &durable).ok());
    EXPECT_TRUE(durable);
    EXPECT_EQ(commits() - before, 2.0) << "one put of 3 blocks (x 2 KV heads), one commit";
    std::vector<std::byte> got(kBlockBytes);
    ASSERT_TRUE(ch->Get(23, 1, 0, got).ok());
    EXPECT_TRUE(got == data[2]);
  }
}

TEST_F(BatchedAcquirePutTest, AcquireBatchPinsEveryItemUnderOneLease) {
  PutFour(*ch_);
  std::vector<DataChannel::AcquireItem> items{{4, 1, 4}, {1, 0, 3}, {9, 0, 1} /* no such sequence */, {3, 2, 3}};
  auto r = ch_->AcquireBatch(1, items);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->served, 3u);
  ASSERT_NE(r->lease, 0u);
  ASSERT_EQ(r->results.size(), 4u);
  EXPECT_EQ(r->results[2].status.code(), StatusCode::kNotFound);
  for (size_t i : {0, 1, 3}) {
    const auto& res = r->results[i];
    ASSERT_TRUE(res.status.ok()) << res.status.ToString();
    ASSERT_EQ(res.blocks.size(), items[i].count);
    for (uint32_t k = 0; k < items[i].count; ++k) {
      const auto& ref = res.blocks[k];
      EXPECT_EQ(ref.block, items[i].first + k);
      std::vector<std::byte> got(kBlockBytes);
      ASSERT_TRUE(ch_->CopyBlock(ref, got).ok());
      EXPECT_TRUE(got == Blocks(items[i].seq, 1, ref.block, 1)) << "item " << i << " block " << ref.block;
    }
  }
  EXPECT_EQ(ch_->Put(1, 1, 2, Blocks(1, 1, 2, 1)).code(), StatusCode::kBusy);  // pinned by the batch
  // The next batch gives the previous lease back in the same round trip.
  std::vector<DataChannel::AcquireItem> next_items{{1, 0, 1}, {2, 0, 4}};
  auto next = ch_->AcquireBatch(1, next_items, r->lease);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->served, 2u);
  EXPECT_EQ(ch_->Release(r->lease).code(), StatusCode::kNotFound);
  EXPECT_TRUE(PutEventually(3, 3));  // no longer pinned
  // A release this channel does not hold fails the whole call; nothing is pinned.
  EXPECT_EQ(ch_->AcquireBatch(1, next_items, r->lease).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(ch_->Release(next->lease).ok());
  // Items that fail alone (count 0, past the end, a wrapping range) pin nothing;
  // none served: lease 0.
  std::vector<DataChannel::AcquireItem> bad{{1, 0, 0}, {1, 2, 2}, {1, UINT32_MAX, 2}};
  auto none = ch_->AcquireBatch(1, bad);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->served, 0u);
  EXPECT_EQ(none->lease, 0u);
  EXPECT_EQ(none->results[0].status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(none->results[1].status.code(), StatusCode::kNotFound);
  EXPECT_EQ(none->results[2].status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(PutEventually(1, 2));  // block 2 was not left pinned
  // Whole-call errors: no items, a bad layer, a table larger than the staging area.
  EXPECT_EQ(ch_->AcquireBatch(1, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ch_->AcquireBatch(kLayers, next_items).status().code(), StatusCode::kInvalidArgument);
  std::vector<DataChannel::AcquireItem> huge{{1, 0, 4096}};
  EXPECT_EQ(ch_->AcquireBatch(1, huge).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(BatchedAcquirePutTest, PerHeadNamespacesGiveARunPerHead) {
  auto head = Open("head");
  ASSERT_NE(head, nullptr);
  ASSERT_EQ(head->table_heads(), kKvHeads);
  PutFour(*head);
  std::vector<DataChannel::AcquireItem> items{{3, 1, 3}, {1, 0, 2}};
  auto r = head->AcquireBatch(1, items);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->served, 2u);
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& res = r->results[i];
    ASSERT_EQ(res.blocks.size(), items[i].count * kKvHeads);
    for (size_t k = 0; k < res.blocks.size(); ++k) {
      const auto& ref = res.blocks[k];
      const uint32_t h = static_cast<uint32_t>(k / items[i].count);
      EXPECT_EQ(ref.head, h);
      EXPECT_EQ(ref.block, items[i].first + k % items[i].count);
      std::vector<std::byte> got(head->entry_bytes());
      ASSERT_TRUE(head->CopyBlock(ref, got).ok());
      EXPECT_TRUE(got == HeadOf(Blocks(items[i].seq, 1, ref.block, 1), h)) << "item " << i << " entry " << k;
    }
  }
  ASSERT_TRUE(head->Release(r->lease).ok());
  std::vector<std::byte> whole(3 * kBlockBytes);  // Get joins the heads back
  ASSERT_TRUE(head->Get(4, 1, 2, whole).ok());
  EXPECT_TRUE(whole == Blocks(4, 1, 2, 3));
}

// Descriptors the library would not send: each refused with kInvalidArgument and the
// detail naming the field; the daemon keeps serving.
TEST_F(BatchedAcquirePutTest, BadDescriptorsAreRefused) {
  PutFour(*ch_);
  std::span<uint8_t> staging = internal::Staging(*ch_);
  auto call = [&](dp::Op op, uint32_t count, uint64_t length, auto entry) {
    std::memcpy(staging.data(), &entry, sizeof entry);
    dp::RingRequest req{};
    req.op = op;
    req.layer = 1;
    req.count = count;
    req.length = length;
    auto c = internal::Call(*ch_, req);
    return c.ok() ? std::string("ok") : c.status().ToString();
  };
  auto results = [&]() {
    dp::RetrieveBatchResult r;
    std::memcpy(&r, staging.data() + 32, sizeof r);
    return r;
  };
  const dp::AcquireBatchEntry good{1, 0, 2, 0, 0};
  EXPECT_EQ(call(dp::Op::kAcquireBatch, 1, 64 + 32, good), "ok");
  EXPECT_EQ(results().status, 0);
  auto refused = [](const std::string& s, const char* detail) {
    return s.find("InvalidArgument") != std::string::npos && s.find(detail) != std::string::npos;
  };
  EXPECT_TRUE(refused(call(dp::Op::kAcquireBatch, 0, 64, good), "count out of range"));
  // More sequences than limits.max_retrieve_batch (256).
  EXPECT_TRUE(refused(call(dp::Op::kAcquireBatch, 257, 257 * 64, good), "count out of range"));
  EXPECT_TRUE(refused(call(dp::Op::kAcquireBatch, 2, 64, good), "payload length"));         // the header does not fit
  EXPECT_TRUE(refused(call(dp::Op::kAcquireBatch, 1, 64 + 16, good), "outside the staging"));     // a table of 1 for 2
  EXPECT_TRUE(refused(call(dp::Op::kAcquireBatch, 1, UINT64_MAX, good), "outside the staging"));  // outside staging
  // A bad entry fails alone: reserved fields, a wrapping range.
  EXPECT_EQ(call(dp::Op::kAcquireBatch, 1, 64, dp::AcquireBatchEntry{1, 0, 2, 1, 0}), "ok");
  EXPECT_EQ(results().status, static_cast<uint8_t>(StatusCode::kInvalidArgument));
  EXPECT_EQ(results().detail, static_cast<uint8_t>(dp::Detail::kFlags));
  EXPECT_EQ(call(dp::Op::kAcquireBatch, 1, 64, dp::AcquireBatchEntry{1, UINT32_MAX, 2, 0, 0}), "ok");
  EXPECT_EQ(results().detail, static_cast<uint8_t>(dp::Detail::kCount));

  auto put_result = [&]() {
    dp::PutBatchResult r;
    std::memcpy(&r, staging.data() + 32, sizeof r);
    return r;
  };
  const uint64_t one = 64 + kBlockBytes;
  EXPECT_EQ(call(dp::Op::kPutBatch, 1, one, dp::PutBatchEntry{20, 0, 1, 64, 0}), "ok");
  EXPECT_EQ(put_result().status, 0);
  EXPECT_EQ(put_result().stored, 1u);
  struct Case {
    dp::PutBatchEntry e;
    dp::Detail detail;
  };
  for (const Case& k : {Case{{20, 0, 1, 0, 0}, dp::Detail::kRange},           // data over the header
                        Case{{20, 0, 1, 65, 0}, dp::Detail::kRange},          // past the region
                        Case{{20, 0, 1, UINT64_MAX - 8, 0}, dp::Detail::kRange},  // wraps
                        Case{{20, 0, 2, 64, 0}, dp::Detail::kRange},          // two blocks, one in the region
                        Case{{20, 0, 0, 64, 0}, dp::Detail::kCount},
                        Case{{20, UINT32_MAX, 1, 64, 0}, dp::Detail::kCount},
                        Case{{20, UINT32_MAX - 1, 1, 64, 0}, dp::Detail::kBlock},  // beyond the sequence's blocks
                        Case{{20, 0, 1, 64, 5}, dp::Detail::kFlags}}) {
    EXPECT_EQ(call(dp::Op::kPutBatch, 1, one, k.e), "ok");
    EXPECT_EQ(put_result().status, static_cast<uint8_t>(StatusCode::kInvalidArgument));
    EXPECT_EQ(put_result().detail, static_cast<uint8_t>(k.detail)) << k.e.first << " " << k.e.data_offset;
    EXPECT_EQ(put_result().stored, 0u);
  }
  EXPECT_TRUE(refused(call(dp::Op::kPutBatch, 0, one, good), "count out of range"));
  EXPECT_TRUE(refused(call(dp::Op::kPutBatch, 2, 100, good), "payload length"));
  dp::RingRequest flagged{};
  flagged.op = dp::Op::kPutBatch;
  flagged.layer = 1;
  flagged.count = 1;
  flagged.length = one;
  flagged.flags = dp::kFlagPrefixBlock;
  EXPECT_EQ(internal::Call(*ch_, flagged).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ch_->Noop().ok());
  EXPECT_TRUE(daemon_.Running());
}

}  // namespace
}  // namespace tierkv
