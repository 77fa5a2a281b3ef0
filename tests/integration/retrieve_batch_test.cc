// Integration: batched Retrieve (dp::Op::kRetrieveBatch, decision 0011) through a
// real tierkvd — a batch equals B separate Retrieves byte for byte, one bad entry
// fails only itself, a bad region is refused whole with a named field, the batch
// lease pins every sequence's blocks until one Release (or the channel's close),
// limits.max_retrieve_batch holds; and retrievals of several channels at once.
//
// Sequences 1..kSeqs, layers 0 and 1: kBlocks blocks of small random keys and one
// "needle" block per sequence (keys along +1) at a block that depends on the
// sequence, so each sequence's selection differs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "client/client_internal.h"
#include "tests/util/daemon_process.h"
#include "tests/util/namespace_client.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;
using BatchItem = DataChannel::BatchItem;

constexpr uint32_t kQHeads = 4, kKvHeads = 2, kHeadDim = 16, kBlockTokens = 16, kBlocks = 20, kSeqs = 6;
constexpr uint32_t kMaxBatch = 8;  // limits.max_retrieve_batch of the daemon under test
const ModelSpec kModel{2, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
constexpr size_t kQueryFloats = size_t{kQHeads} * kHeadDim;

uint32_t NeedleOf(uint64_t seq) { return 2 + static_cast<uint32_t>(seq * 3) % (kBlocks - 5); }

std::vector<std::byte> Block(uint64_t seq, uint32_t layer, uint32_t block) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 1000 + layer * 100 + block));
  std::normal_distribution<float> n(0.f, 0.3f);
  std::vector<float> f(kModel.BlockBytes() / 4);
  for (auto& x : f) x = n(rng);
  if (block == NeedleOf(seq)) std::fill_n(f.begin(), size_t{kKvHeads} * kBlockTokens * kHeadDim, 1.f);
  std::vector<std::byte> b(kModel.BlockBytes());
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

std::vector<float> Query(uint32_t salt) {
  std::mt19937 rng(salt);
  std::normal_distribution<float> n(0.5f, 0.5f);
  std::vector<float> q(kQueryFloats);
  for (auto& x : q) x = n(rng);
  return q;
}

class RetrieveBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    auto c = testing::ConnectWithNamespace(daemon_.socket_path(), spec);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    ch_ = Open();
    ASSERT_NE(ch_, nullptr);
    for (uint64_t seq = 1; seq <= kSeqs; ++seq) {
      for (uint32_t layer = 0; layer < kModel.num_layers; ++layer) {
        for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE(ch_->Put(seq, layer, b, Block(seq, layer, b)).ok());
      }
    }
    SetPolicy({{"retriever", "mean"}, {"sink_blocks", 1}, {"recent_window", 2}});
  }

  std::unique_ptr<DataChannel> Open() {
    auto ch = client_->OpenChannel("ns", {.staging_bytes = 1 << 20});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }

  void SetPolicy(const wire::Json& p) {
    auto r = internal::Call(*client_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", p}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // A single Retrieve on the wire with the recent window in aux (0: the policy's).
  Result<DataChannel::Retrieval> Single(uint64_t seq, uint32_t layer, const std::vector<float>& q, uint32_t budget,
                                        uint32_t window) {
    std::span<uint8_t> st = internal::Staging(*ch_);
    std::memcpy(st.data(), q.data(), q.size() * 4);
    dp::RingRequest req{};
    req.op = dp::Op::kRetrieve;
    req.seq = seq;
    req.layer = layer;
    req.count = budget;
    req.aux = window;
    req.length = q.size() * 4 + size_t{budget} * sizeof(dp::BlockTableEntry);
    ASSIGN_OR_RETURN(dp::RingCompletion c, internal::Call(*ch_, req));
    DataChannel::Retrieval r;
    r.lease = c.value;
    for (uint32_t i = 0; i < c.count; ++i) {
      dp::BlockTableEntry e;
      std::memcpy(&e, st.data() + q.size() * 4 + i * sizeof e, sizeof e);
      r.blocks.push_back({e.block, e.tier, e.offset});
    }
    return r;
  }

  // A raw batch request over entries the test lays out itself: the completion.
  Result<dp::RingCompletion> RawBatch(uint32_t count, uint64_t length, uint64_t table_offset, uint32_t layer = 0,
                                      uint32_t flags = 0) {
    dp::RingRequest req{};
    req.op = dp::Op::kRetrieveBatch;
    req.layer = layer;
    req.flags = flags;
    req.count = count;
    req.length = length;
    req.arg = table_offset;
    RETURN_IF_ERROR(internal::Submit(*ch_, req));
    return internal::WaitCompletion(*ch_);
  }

  // Writes entry i of a raw batch region at staging offset 0.
  void WriteEntry(uint32_t i, const dp::RetrieveBatchEntry& e) {
    std::memcpy(internal::Staging(*ch_).data() + i * sizeof e, &e, sizeof e);
  }
  dp::RetrieveBatchResult ReadResult(uint32_t count, uint32_t i) {
    dp::RetrieveBatchResult r;
    std::memcpy(&r, internal::Staging(*ch_).data() + count * 32 + i * sizeof r, sizeof r);
    return r;
  }

  testing::TempDir dir_{"retrieve-batch"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path(), "",
                        "[limits]\nmax_retrieve_batch = " + std::to_string(kMaxBatch) + "\n[retrieval]\nworkers = 2\n"};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
};

bool SameRefs(const std::vector<DataChannel::BlockRef>& a, const std::vector<DataChannel::BlockRef>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].block != b[i].block || a[i].tier != b[i].tier || a[i].offset != b[i].offset) return false;
  }
  return true;
}

std::string Blocks(const std::vector<DataChannel::BlockRef>& refs) {
  std::string s;
  for (const auto& r : refs) s += std::to_string(r.block) + " ";
  return s;
}

// The batch's tables equal those of B separate Retrieves (block, tier, offset of
// every entry), for both summary retrievers, both layers, each item's own budget
// and recent window.
TEST_F(RetrieveBatchTest, EqualsSeparateRetrievesByteForByte) {
  for (const char* method : {"mean", "minmax"}) {
    SetPolicy({{"retriever", method}});
    for (uint32_t layer = 0; layer < kModel.num_layers; ++layer) {
      std::vector<std::vector<float>> queries;
      std::vector<BatchItem> items;
      for (uint64_t seq = 1; seq <= kSeqs; ++seq) queries.push_back(Query(static_cast<uint32_t>(seq + 10 * layer)));
      for (uint64_t seq = 1; seq <= kSeqs; ++seq) {
        items.push_back({seq, queries[seq - 1], 3 + static_cast<uint32_t>(seq % 4), seq == 3 ? 5u : 0u});
      }
      auto batch = ch_->RetrieveBatch(layer, items);
      ASSERT_TRUE(batch.ok()) << batch.status().ToString();
      EXPECT_EQ(batch->served, kSeqs);
      EXPECT_NE(batch->lease & dp::kBatchLeaseBit, 0u);
      ASSERT_TRUE(ch_->Release(batch->lease).ok());
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& got = batch->results[i];
        ASSERT_TRUE(got.status.ok()) << got.status.ToString();
        EXPECT_EQ(got.blocks.size(), items[i].budget);
        auto single = Single(items[i].seq, layer, queries[i], items[i].budget, items[i].window);
        ASSERT_TRUE(single.ok()) << single.status().ToString();
        EXPECT_TRUE(SameRefs(got.blocks, single->blocks))
            << method << " layer " << layer << " item " << i << ": batch " << Blocks(got.blocks) << "vs single "
            << Blocks(single->blocks);
        ASSERT_TRUE(ch_->Release(single->lease).ok());
      }
      // The item with a window of 5 kept its last 5 blocks; the others the policy's 2.
      const auto& w = batch->results[2].blocks;
      for (uint32_t b = kBlocks - 5; b < kBlocks; ++b) {
        EXPECT_TRUE(std::any_of(w.begin(), w.end(), [&](const auto& r) { return r.block == b; })) << b;
      }
    }
  }
}

// The needle block of each sequence is found by the batch (the batch really
// scores each sequence with its own query, not one query for all).
TEST_F(RetrieveBatchTest, EachSequenceFindsItsOwnNeedle) {
  std::vector<float> up(kQueryFloats, 1.f);
  std::vector<BatchItem> items;
  for (uint64_t seq = 1; seq <= kSeqs; ++seq) items.push_back({seq, up, 4, 0});
  auto batch = ch_->RetrieveBatch(0, items);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  for (uint64_t seq = 1; seq <= kSeqs; ++seq) {
    const auto& blocks = batch->results[seq - 1].blocks;
    EXPECT_TRUE(std::any_of(blocks.begin(), blocks.end(), [&](const auto& r) { return r.block == NeedleOf(seq); }))
        << "seq " << seq << ": " << Blocks(blocks);
  }
  ASSERT_TRUE(ch_->Release(batch->lease).ok());
}

// Bad entries fail alone, with their own status and a message naming the problem;
// the good ones are served and equal their single Retrieves.
TEST_F(RetrieveBatchTest, MixedGoodAndBadEntries) {
  const std::vector<float> good = Query(1), nan(kQueryFloats, std::nanf(""));
  std::vector<BatchItem> items = {{1, good, 4, 0},  {99, good, 4, 0},  // 99: nothing stored
                                  {2, good, 0, 0},                       // budget 0
                                  {3, nan, 4, 0},                        // not finite
                                  {4, good, 4, (1u << 20) + 1},          // window past the cap
                                  {5, good, 5, 0}};
  auto batch = ch_->RetrieveBatch(1, items);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->served, 2u);
  const auto& r = batch->results;
  EXPECT_TRUE(r[0].status.ok());
  EXPECT_EQ(r[1].status.code(), StatusCode::kNotFound);
  EXPECT_NE(r[1].status.message().find("item 1"), std::string::npos) << r[1].status.ToString();
  EXPECT_NE(r[1].status.message().find("no blocks stored"), std::string::npos) << r[1].status.ToString();
  EXPECT_EQ(r[2].status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r[2].status.message().find("count"), std::string::npos) << r[2].status.ToString();
  EXPECT_EQ(r[3].status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r[3].status.message().find("finite"), std::string::npos) << r[3].status.ToString();
  EXPECT_EQ(r[4].status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(r[5].status.ok());
  for (size_t i : {1, 2, 3, 4}) EXPECT_TRUE(r[i].blocks.empty());
  ASSERT_TRUE(ch_->Release(batch->lease).ok());
  for (size_t i : {0, 5}) {
    auto single = Single(items[i].seq, 1, good, items[i].budget, 0);
    ASSERT_TRUE(single.ok());
    EXPECT_TRUE(SameRefs(r[i].blocks, single->blocks)) << i;
    ASSERT_TRUE(ch_->Release(single->lease).ok());
  }
  // Every entry bad: served 0, no lease, the request itself succeeds.
  std::vector<BatchItem> none = {{77, good, 4, 0}, {78, good, 4, 0}};
  auto empty = ch_->RetrieveBatch(0, none);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->served, 0u);
  EXPECT_EQ(empty->lease, 0u);
}

// A region the daemon cannot trust is refused whole, naming the field; entry-level
// offsets are checked per entry; the daemon keeps serving.
TEST_F(RetrieveBatchTest, BadRegionsAreRefusedWithTheirField) {
  const uint64_t qbytes = kQueryFloats * 4;
  auto expect_refused = [&](Result<dp::RingCompletion> c, dp::Detail d, const char* what) {
    ASSERT_TRUE(c.ok()) << what;
    EXPECT_EQ(c->status, static_cast<uint8_t>(StatusCode::kInvalidArgument)) << what;
    EXPECT_EQ(c->detail, static_cast<uint8_t>(d)) << what << ": " << dp::DetailName(static_cast<dp::Detail>(c->detail));
    EXPECT_EQ(c->value, 0u) << what << ": no lease";
  };
  const std::vector<float> q = Query(3);
  // Two good entries, queries right after the header, then a table of 8 entries.
  const uint64_t header = dp::BatchHeaderBytes(2), table = header + 2 * qbytes, length = table + 8 * 16;
  for (uint32_t i = 0; i < 2; ++i) {
    WriteEntry(i, {i + 1u, 4, 0, header + i * qbytes, 0});
    std::memcpy(internal::Staging(*ch_).data() + header + i * qbytes, q.data(), qbytes);
  }
  expect_refused(RawBatch(0, length, table), dp::Detail::kCount, "no entries");
  expect_refused(RawBatch(kMaxBatch + 1, 1 << 19, 1 << 18), dp::Detail::kCount, "past limits.max_retrieve_batch");
  expect_refused(RawBatch(2, header - 1, header - 1), dp::Detail::kLength, "region shorter than its header");
  expect_refused(RawBatch(2, length, header - 8), dp::Detail::kRange, "table area inside the header");
  expect_refused(RawBatch(2, length, length + 16), dp::Detail::kRange, "table area past the region");
  expect_refused(RawBatch(2, table + 7 * 16, table), dp::Detail::kRange, "table area smaller than the budgets");
  expect_refused(RawBatch(2, length, table, /*layer=*/2), dp::Detail::kLayer, "layer past num_layers");
  expect_refused(RawBatch(2, length, table, 0, dp::kFlagGpu), dp::Detail::kFlags, "GPU flag on a batch");
  expect_refused(RawBatch(2, uint64_t{1} << 40, table), dp::Detail::kRange, "region past the staging area");

  // Entry-level: a query inside the header, a query past the region, reserved bits.
  WriteEntry(0, {1, 4, 0, 16, 0});
  WriteEntry(1, {2, 4, 0, length - qbytes + 1, 0});
  auto c = RawBatch(2, length, table);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->status, 0);
  EXPECT_EQ(c->count, 0u);
  EXPECT_EQ(ReadResult(2, 0).detail, static_cast<uint8_t>(dp::Detail::kRange));
  EXPECT_EQ(ReadResult(2, 1).detail, static_cast<uint8_t>(dp::Detail::kRange));
  WriteEntry(0, {1, 4, 0, header, 7});
  WriteEntry(1, {2, 4, 0, header + qbytes, 0});
  c = RawBatch(2, length, table);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->count, 1u);
  EXPECT_EQ(ReadResult(2, 0).detail, static_cast<uint8_t>(dp::Detail::kFlags));
  EXPECT_EQ(ReadResult(2, 1).status, 0);
  EXPECT_EQ(ReadResult(2, 1).table_index, 0u);
  ASSERT_TRUE(ch_->Release(c->value).ok());
  EXPECT_TRUE(ch_->Noop().ok());
  EXPECT_TRUE(daemon_.Running());
}

// The client refuses what cannot fit before sending: mismatched queries, no items,
// more than the staging area holds; the daemon refuses more than its limit.
TEST_F(RetrieveBatchTest, ClientChecksAndTheBatchLimit) {
  const std::vector<float> q = Query(4), short_q(kQueryFloats - 1, 0.f);
  EXPECT_EQ(ch_->RetrieveBatch(0, {}).status().code(), StatusCode::kInvalidArgument);
  std::vector<BatchItem> mixed = {{1, q, 4, 0}, {2, short_q, 4, 0}};
  auto m = ch_->RetrieveBatch(0, mixed);
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("item 1"), std::string::npos) << m.status().ToString();
  std::vector<BatchItem> huge = {{1, q, 1u << 20, 0}};
  auto h = ch_->RetrieveBatch(0, huge);
  EXPECT_EQ(h.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("staging"), std::string::npos) << h.status().ToString();
  std::vector<BatchItem> many(kMaxBatch + 1, BatchItem{1, q, 2, 0});
  auto over = ch_->RetrieveBatch(0, many);
  EXPECT_EQ(over.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("count out of range"), std::string::npos) << over.status().ToString();
  // One sequence, several times; budget 5 = the sinks + recent window the policy keeps.
  std::vector<BatchItem> at_limit(kMaxBatch, BatchItem{1, q, 5, 0});
  auto ok = ch_->RetrieveBatch(0, at_limit);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->served, kMaxBatch);
  ASSERT_TRUE(ch_->Release(ok->lease).ok());
}

// A batch lease pins every served sequence's blocks (a put over one is Busy) until
// one Release, which frees them all; a second Release is NotFound; closing the
// channel releases a batch still held.
TEST_F(RetrieveBatchTest, OneReleaseFreesEverySequence) {
  const std::vector<float> q = Query(5);
  std::vector<BatchItem> items = {{1, q, 4, 0}, {2, q, 4, 0}, {3, q, 4, 0}};
  auto batch = ch_->RetrieveBatch(0, items);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  for (size_t i = 0; i < items.size(); ++i) {
    const uint32_t b = batch->results[i].blocks.front().block;
    EXPECT_EQ(ch_->Put(items[i].seq, 0, b, Block(items[i].seq, 0, b)).code(), StatusCode::kBusy) << i;
  }
  ASSERT_TRUE(ch_->Release(batch->lease).ok());
  EXPECT_EQ(ch_->Release(batch->lease).code(), StatusCode::kNotFound);
  for (size_t i = 0; i < items.size(); ++i) {
    const uint32_t b = batch->results[i].blocks.front().block;
    EXPECT_TRUE(ch_->Put(items[i].seq, 0, b, Block(items[i].seq, 0, b)).ok()) << i;
  }
  // Held by a client that goes away (its channels close): released with it.
  auto other_client = Client::Connect(daemon_.socket_path());
  ASSERT_TRUE(other_client.ok());
  ASSERT_TRUE((*other_client)->Attach("ns").ok());
  auto other = (*other_client)->OpenChannel("ns", {.staging_bytes = 1 << 20});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  auto held = (*other)->RetrieveBatch(0, items);
  ASSERT_TRUE(held.ok());
  const uint32_t b = held->results[0].blocks.front().block;
  EXPECT_EQ(ch_->Put(1, 0, b, Block(1, 0, b)).code(), StatusCode::kBusy);
  other->reset();
  other_client->reset();
  Status st;
  for (int i = 0; i < 100 && !(st = ch_->Put(1, 0, b, Block(1, 0, b))).ok(); ++i) usleep(10000);
  EXPECT_TRUE(st.ok()) << st.ToString();
}

// Several channels retrieve at once (batches and singles of different sequences,
// the same sequence from two channels) while another puts: every answer is right.
TEST_F(RetrieveBatchTest, ChannelsRetrieveConcurrently) {
  std::vector<float> up(kQueryFloats, 1.f);
  std::atomic<int> wrong{0};
  std::vector<std::unique_ptr<DataChannel>> chans;  // opened here: the Client is one thread's
  for (int i = 0; i < 4; ++i) chans.push_back(Open());
  for (const auto& ch : chans) ASSERT_NE(ch, nullptr);
  auto worker = [&](DataChannel* ch, uint64_t first_seq, bool batched) {
    for (int step = 0; step < 30; ++step) {
      std::vector<BatchItem> items;
      for (uint64_t s = first_seq; s < first_seq + 3; ++s) items.push_back({s, up, 4, 0});
      if (batched) {
        auto r = ch->RetrieveBatch(step % 2, items);
        if (!r.ok() || r->served != 3) wrong++;
        else {
          for (size_t i = 0; i < 3; ++i) {
            const auto& bl = r->results[i].blocks;
            if (!std::any_of(bl.begin(), bl.end(), [&](const auto& x) { return x.block == NeedleOf(items[i].seq); }))
              wrong++;
          }
          if (!ch->Release(r->lease).ok()) wrong++;
        }
      } else {
        for (const auto& it : items) {
          auto r = ch->Retrieve(it.seq, step % 2, up, 4);
          if (!r.ok() || r->blocks.size() != 4 || !ch->Release(r->lease).ok()) wrong++;
        }
      }
    }
  };
  std::thread a(worker, chans[0].get(), 1, true), b(worker, chans[1].get(), 4, true),
      c(worker, chans[2].get(), 1, false);
  std::thread d([&, ch = chans[3].get()] {  // puts to another sequence meanwhile
    for (uint32_t blk = 0; blk < 40; ++blk) {
      if (!ch->Put(50, 0, blk, Block(50, 0, blk)).ok()) wrong++;
    }
  });
  a.join(), b.join(), c.join(), d.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_TRUE(daemon_.Running());
}

}  // namespace
}  // namespace tierkv
