// Faults under the SPANN posting store (index/posting_store.h), injected by the
// same FaultInjector wrapper the D tier is tested with (io/fault_injection_engine.h)
// around the real engines: a failed read is a clean kIOError, a torn (short) read
// is continued, a flipped byte is kCorruption; a batch that succeeds holds exactly
// the postings written, and an error leaves no partial batch behind. Writes and
// their sync go through the same engine: ENOSPC is kResourceExhausted, EIO on a
// write or on the sync kIOError, a torn write is continued or (when its rest
// fails) abandoned; after a failed Rewrite every posting reads as before it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "index/posting_store.h"
#include "index/rng.h"
#include "index/spann_retriever.h"
#include "io/fault_injection_engine.h"

namespace tierkv::index {
namespace {

std::string ScratchDir() {
  const std::string dir = std::string(TIERKV_TEST_SCRATCH_DIR) + "/postings";
  std::filesystem::create_directories(dir);
  return dir;
}

// Empty, small, page-crossing and multi-page postings (up to 5 pages a record).
std::vector<std::vector<uint8_t>> RandomPostings(uint64_t seed, size_t n) {
  Rng rng(seed);
  std::vector<std::vector<uint8_t>> p(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t len = i % 5 == 0 ? 0 : (i % 5 == 4 ? 9000 + rng.Below(9000) : rng.Below(3000));
    p[i].resize(len);
    for (auto& b : p[i]) b = static_cast<uint8_t>(rng.Below(256));
  }
  return p;
}

// True when out[i] holds exactly postings[ids[i]] for every i.
::testing::AssertionResult Exact(const std::vector<std::vector<uint8_t>>& postings, std::span<const uint32_t> ids,
                                 const std::vector<std::span<const uint8_t>>& out) {
  if (out.size() != ids.size()) return ::testing::AssertionFailure() << out.size() << " spans for " << ids.size();
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& want = postings[ids[i]];
    if (!std::equal(out[i].begin(), out[i].end(), want.begin(), want.end())) {
      return ::testing::AssertionFailure() << "posting " << ids[i] << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

class PostingStoreFaultTest : public ::testing::TestWithParam<bool> {  // param: use io_uring
 protected:
  void SetUp() override {
    if (GetParam() && !io::IoUringAvailable()) GTEST_SKIP() << "io_uring not available";
    FilePostingStoreOptions o;
    o.dir = ScratchDir();
    o.use_io_uring = GetParam();
    o.queue_depth = 4;  // fewer than a batch: requests wrap around the queue
    o.kept_path = &path_;
    auto injector = injector_;
    o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
      ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
      return io::WrapWithFaults(std::move(inner), injector);
    };
    Result<std::unique_ptr<PostingStore>> s = NewFilePostingStore(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->WriteAll(postings_).ok());
  }
  void TearDown() override {
    if (!path_.empty()) unlink(path_.c_str());
  }

  std::vector<uint32_t> AllIds() const {
    std::vector<uint32_t> ids(postings_.size());
    for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
    return ids;
  }

  std::shared_ptr<io::FaultInjector> injector_ = std::make_shared<io::FaultInjector>(16);
  const std::vector<std::vector<uint8_t>> postings_ = RandomPostings(5, 40);
  std::string path_;
  std::unique_ptr<PostingStore> store_;
  std::vector<std::span<const uint8_t>> out_;
};

TEST_P(PostingStoreFaultTest, ReadsGoThroughTheEngineWrapper) {
  EXPECT_EQ(store_->Name().rfind(GetParam() ? "file+fault(io_uring)" : "file+fault(psync)", 0), 0u) << store_->Name();
  const std::vector<uint32_t> ids = AllIds();
  ASSERT_TRUE(store_->ReadBatch(ids, &out_).ok());
  EXPECT_TRUE(Exact(postings_, ids, out_));
  EXPECT_GE(injector_->counts().requests, ids.size());  // one request per record, at least
}

TEST_P(PostingStoreFaultTest, EioIsAnIoErrorAndTheNextBatchReads) {
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kReads, .at_request = 3});
  const std::vector<uint32_t> ids = {7, 3, 3, 12, 0, 39, 21};
  out_.assign(2, {});  // stale spans from an earlier batch must go too
  const Status st = store_->ReadBatch(ids, &out_);
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(injector_->counts().io_errors, 1u);
  ASSERT_TRUE(store_->ReadBatch(ids, &out_).ok());  // the rule fired once
  EXPECT_TRUE(Exact(postings_, ids, out_));
}

TEST_P(PostingStoreFaultTest, ShortReadIsContinuedToTheExactPosting) {
  // A torn read of a multi-page record (posting 4 is 9000+ bytes: 3 pages or more).
  injector_->AddRule(
      {.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kReads, .one_in = 1, .max_faults = 3});
  const std::vector<uint32_t> ids = {4, 9, 14};
  ASSERT_TRUE(store_->ReadBatch(ids, &out_).ok());
  EXPECT_TRUE(Exact(postings_, ids, out_));
  EXPECT_EQ(injector_->counts().short_transfers, 3u);
}

TEST_P(PostingStoreFaultTest, FlippedByteIsCorruptionNeverData) {
  // Every read returns one inverted byte: in a header or payload that is
  // kCorruption; in a record's zero padding the posting is still exact.
  injector_->AddRule({.kind = io::FaultKind::kFlipByte, .target = io::FaultTarget::kReads, .one_in = 1});
  int corrupt = 0;
  for (uint32_t id = 0; id < postings_.size(); ++id) {
    const uint32_t one[] = {id};
    const Status st = store_->ReadBatch(one, &out_);
    if (st.ok()) {
      EXPECT_TRUE(Exact(postings_, one, out_));
    } else {
      EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
      EXPECT_TRUE(out_.empty());
      ++corrupt;
    }
  }
  EXPECT_GT(corrupt, 0);
  EXPECT_EQ(injector_->counts().flipped_bytes, postings_.size());
}

TEST_P(PostingStoreFaultTest, MixedFaultsNeverGiveWrongPostings) {
  for (io::FaultKind k : {io::FaultKind::kIoError, io::FaultKind::kShortTransfer, io::FaultKind::kFlipByte}) {
    injector_->AddRule({.kind = k, .target = io::FaultTarget::kReads, .one_in = 9});
  }
  Rng rng(77);
  int ok = 0, io_errors = 0, corrupt = 0;
  for (int batch = 0; batch < 150; ++batch) {
    std::vector<uint32_t> ids(1 + rng.Below(12));
    for (uint32_t& id : ids) id = static_cast<uint32_t>(rng.Below(postings_.size()));
    const Status st = store_->ReadBatch(ids, &out_);
    if (st.ok()) {
      ASSERT_TRUE(Exact(postings_, ids, out_)) << "batch " << batch;
      ++ok;
    } else {
      ASSERT_TRUE(st.code() == StatusCode::kIOError || st.code() == StatusCode::kCorruption) << st.ToString();
      ASSERT_TRUE(out_.empty());
      (st.code() == StatusCode::kIOError ? io_errors : corrupt)++;
    }
  }
  const io::FaultCounts c = injector_->counts();
  EXPECT_GT(c.io_errors, 0u);
  EXPECT_GT(c.short_transfers, 0u);
  EXPECT_GT(c.flipped_bytes, 0u);
  EXPECT_GT(ok, 0);
  EXPECT_GT(io_errors, 0);
  EXPECT_GT(corrupt, 0);
  // Without faults every posting reads back exactly.
  injector_->ClearRules();
  const std::vector<uint32_t> ids = AllIds();
  ASSERT_TRUE(store_->ReadBatch(ids, &out_).ok());
  EXPECT_TRUE(Exact(postings_, ids, out_));
}

// A record header whose length field is damaged to near 2^64 (sizeof(header) +
// length wraps around): kCorruption, not a read past the buffer.
TEST_P(PostingStoreFaultTest, HugeLengthInAHeaderIsCorruption) {
  const int fd = open(path_.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint64_t length = ~uint64_t{0} - 8;
  ASSERT_EQ(pwrite(fd, &length, sizeof(length), 4096 + 8), 8);  // posting 1: the record at 4096, length at +8
  ASSERT_EQ(fdatasync(fd), 0);
  close(fd);
  const std::vector<uint32_t> ids = {0, 1};
  EXPECT_EQ(store_->ReadBatch(ids, &out_).code(), StatusCode::kCorruption);
  EXPECT_TRUE(out_.empty());
}

// ---- Writes and syncs (decision 0025, "writes through the engine"). ----

// Every posting of `ids` given fresh random contents of `bytes` bytes (0: random sizes).
std::vector<std::vector<uint8_t>> NewContents(Rng& rng, size_t n, size_t bytes) {
  std::vector<std::vector<uint8_t>> c(n);
  for (auto& p : c) {
    p.resize(bytes > 0 ? bytes : rng.Below(6000));
    for (auto& b : p) b = static_cast<uint8_t>(rng.Below(256));
  }
  return c;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

TEST_P(PostingStoreFaultTest, WritesAndTheSyncGoThroughTheEngine) {
  // One Rewrite of two small records: at least one write request and one sync.
  const uint64_t before = injector_->counts().requests;
  Rng rng(3);
  const std::vector<uint32_t> ids = {2, 30};
  ASSERT_TRUE(store_->Rewrite(ids, NewContents(rng, 2, 100)).ok());
  EXPECT_GE(injector_->counts().requests - before, 2u);
  // A sync rule fires on exactly that request kind.
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kSyncs, .at_request = 0});
  EXPECT_EQ(store_->Rewrite(ids, NewContents(rng, 2, 100)).code(), StatusCode::kIOError);
  EXPECT_EQ(injector_->counts().io_errors, 1u);
}

TEST_P(PostingStoreFaultTest, NoSpaceOnAppendKeepsEveryPostingAsItWas) {
  injector_->AddRule({.kind = io::FaultKind::kNoSpace, .target = io::FaultTarget::kWrites, .at_request = 0});
  Rng rng(11);
  const std::vector<uint32_t> ids = {4, 17, 33};
  const uint64_t stored = store_->StoredBytes();
  const Status st = store_->Rewrite(ids, NewContents(rng, ids.size(), 0));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
  EXPECT_EQ(injector_->counts().no_space, 1u);
  EXPECT_EQ(store_->StoredBytes(), stored);
  const std::vector<uint32_t> all = AllIds();
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(postings_, all, out_));
  // Space again: the same append succeeds and reads back.
  std::vector<std::vector<uint8_t>> want = postings_;
  const std::vector<std::vector<uint8_t>> now = NewContents(rng, ids.size(), 0);
  for (size_t i = 0; i < ids.size(); ++i) want[ids[i]] = now[i];
  ASSERT_TRUE(store_->Rewrite(ids, now).ok());
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(want, all, out_));
}

TEST_P(PostingStoreFaultTest, NoSpaceOrEioInWriteAllLeavesNoPostings) {
  for (io::FaultTarget target : {io::FaultTarget::kWrites, io::FaultTarget::kSyncs}) {
    injector_->ClearRules();
    injector_->AddRule({.kind = target == io::FaultTarget::kWrites ? io::FaultKind::kNoSpace : io::FaultKind::kIoError,
                        .target = target,
                        .at_request = 0});
    const Status st = store_->WriteAll(postings_);
    EXPECT_EQ(st.code(), target == io::FaultTarget::kWrites ? StatusCode::kResourceExhausted : StatusCode::kIOError)
        << st.ToString();
    EXPECT_EQ(store_->num_postings(), 0u);  // nothing half-written to read
    const uint32_t one[] = {0};
    EXPECT_EQ(store_->ReadBatch(one, &out_).code(), StatusCode::kInvalidArgument);
  }
  injector_->ClearRules();
  ASSERT_TRUE(store_->WriteAll(postings_).ok());
  const std::vector<uint32_t> all = AllIds();
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(postings_, all, out_));
}

TEST_P(PostingStoreFaultTest, TornWriteIsContinuedToTheExactRecord) {
  injector_->AddRule({.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kWrites, .at_request = 0});
  Rng rng(12);
  const std::vector<uint32_t> ids = {9};
  const std::vector<std::vector<uint8_t>> now = NewContents(rng, 1, 9000);  // a 3-page record
  ASSERT_TRUE(store_->Rewrite(ids, now).ok());
  EXPECT_EQ(injector_->counts().short_transfers, 1u);
  ASSERT_TRUE(store_->ReadBatch(ids, &out_).ok());
  EXPECT_TRUE(Exact(now, std::vector<uint32_t>{0}, out_));
}

TEST_P(PostingStoreFaultTest, TornWriteWhoseRestFailsIsNeverRead) {
  // The first write of the append runs on half its length; its continuation fails.
  injector_->AddRule({.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kWrites, .at_request = 0});
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kWrites, .at_request = 0});
  Rng rng(13);
  const std::vector<uint32_t> ids = {9};
  const uint64_t stored = store_->StoredBytes();
  ASSERT_EQ(FileSize(path_), stored);
  const Status st = store_->Rewrite(ids, NewContents(rng, 1, 9000));  // 12 KiB record
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
  EXPECT_EQ(injector_->counts().short_transfers, 1u);
  EXPECT_EQ(injector_->counts().io_errors, 1u);
  // The torn half really reached the file, past the records the store points at.
  EXPECT_EQ(FileSize(path_), stored + 6144);
  EXPECT_EQ(store_->StoredBytes(), stored);
  const std::vector<uint32_t> all = AllIds();
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(postings_, all, out_));  // posting 9 is the old one, not the torn one
  // The next append writes over the torn tail and reads back exactly.
  std::vector<std::vector<uint8_t>> want = postings_;
  const std::vector<std::vector<uint8_t>> now = NewContents(rng, 1, 5000);
  want[9] = now[0];
  ASSERT_TRUE(store_->Rewrite(ids, now).ok());
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(want, all, out_));
}

TEST_P(PostingStoreFaultTest, EioOnSyncKeepsEveryPostingAsItWas) {
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kSyncs, .at_request = 0});
  Rng rng(14);
  const std::vector<uint32_t> ids = {1, 5, 38};
  const Status st = store_->Rewrite(ids, NewContents(rng, ids.size(), 0));
  EXPECT_EQ(st.code(), StatusCode::kIOError) << st.ToString();
  EXPECT_EQ(injector_->counts().io_errors, 1u);
  const std::vector<uint32_t> all = AllIds();
  ASSERT_TRUE(store_->ReadBatch(all, &out_).ok());
  EXPECT_TRUE(Exact(postings_, all, out_));
}

TEST_P(PostingStoreFaultTest, FlippedByteInAWriteIsCorruptionNeverData) {
  // The medium stores one wrong byte of each written record (not reported).
  injector_->AddRule({.kind = io::FaultKind::kFlipByte, .target = io::FaultTarget::kWrites, .one_in = 1});
  Rng rng(15);
  int corrupt = 0;
  for (uint32_t id = 0; id < postings_.size(); ++id) {
    const uint32_t one[] = {id};
    const std::vector<std::vector<uint8_t>> now = NewContents(rng, 1, 100 + id * 97);
    ASSERT_TRUE(store_->Rewrite(one, now).ok());
    const Status st = store_->ReadBatch(one, &out_);
    if (st.ok()) {
      EXPECT_TRUE(Exact(now, std::vector<uint32_t>{0}, out_));  // the flip hit the padding
    } else {
      EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
      ++corrupt;
    }
  }
  EXPECT_GT(corrupt, 0);
  EXPECT_GE(injector_->counts().flipped_bytes, postings_.size());
}

TEST_P(PostingStoreFaultTest, MixedWriteFaultsNeverLeaveAWrongPosting) {
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kWrites, .one_in = 9});
  injector_->AddRule({.kind = io::FaultKind::kNoSpace, .target = io::FaultTarget::kWrites, .one_in = 11});
  injector_->AddRule({.kind = io::FaultKind::kShortTransfer, .target = io::FaultTarget::kWrites, .one_in = 4});
  injector_->AddRule({.kind = io::FaultKind::kIoError, .target = io::FaultTarget::kSyncs, .one_in = 6});
  injector_->AddRule({.kind = io::FaultKind::kNoSpace, .target = io::FaultTarget::kSyncs, .one_in = 13});
  std::vector<std::vector<uint8_t>> want = postings_;
  Rng rng(78);
  int ok = 0, io_errors = 0, no_space = 0;
  for (int batch = 0; batch < 200; ++batch) {
    std::vector<uint32_t> ids;
    for (uint32_t id = 0; id < want.size(); ++id) {
      if (rng.Below(8) == 0) ids.push_back(id);
    }
    if (ids.empty()) ids.push_back(static_cast<uint32_t>(rng.Below(want.size())));
    const std::vector<std::vector<uint8_t>> now = NewContents(rng, ids.size(), 0);
    const Status st = store_->Rewrite(ids, now);
    if (st.ok()) {
      for (size_t i = 0; i < ids.size(); ++i) want[ids[i]] = now[i];
      ++ok;
    } else {
      ASSERT_TRUE(st.code() == StatusCode::kIOError || st.code() == StatusCode::kResourceExhausted) << st.ToString();
      (st.code() == StatusCode::kIOError ? io_errors : no_space)++;
    }
    // Every posting reads as the last Rewrite that succeeded left it (reads are not faulted).
    const std::vector<uint32_t> all = AllIds();
    ASSERT_TRUE(store_->ReadBatch(all, &out_).ok()) << "batch " << batch;
    ASSERT_TRUE(Exact(want, all, out_)) << "batch " << batch;
  }
  const io::FaultCounts c = injector_->counts();
  EXPECT_GT(c.io_errors, 0u);
  EXPECT_GT(c.no_space, 0u);
  EXPECT_GT(c.short_transfers, 0u);
  EXPECT_GT(ok, 0);
  EXPECT_GT(io_errors, 0);
  EXPECT_GT(no_space, 0);
}

// ---- The SPANN retriever over a faulted file store. ----

// Keys [kv][tokens][d] of `tokens` tokens; the first tokens are the same for every
// count (same seed, generated token by token).
std::vector<float> SpannKeys(uint32_t kv, uint64_t tokens, uint32_t d) {
  std::vector<float> keys(kv * tokens * d);
  for (uint32_t g = 0; g < kv; ++g) {
    Rng rng(100 + g);
    for (uint64_t t = 0; t < tokens; ++t) {
      for (uint32_t i = 0; i < d; ++i) keys[(g * tokens + t) * d + i] = static_cast<float>(rng.Below(2001)) / 1000.f - 1.f;
    }
  }
  return keys;
}

TEST_P(PostingStoreFaultTest, SpannKeepsServingItsIndexAfterAFailedExtend) {
  constexpr uint32_t kKv = 2, kD = 16, kQ = 4, kBt = 8;
  const std::vector<float> k512 = SpannKeys(kKv, 512, kD), k640 = SpannKeys(kKv, 640, kD);
  auto view = [&](const std::vector<float>& keys, uint64_t tokens) {
    LayerKeys v;
    v.num_kv_heads = kKv;
    v.head_dim = kD;
    v.num_tokens = tokens;
    v.keys = keys.data();
    return v;
  };
  RetrieverParams rp;
  rp.block_tokens = kBt;
  rp.num_q_heads = kQ;
  std::vector<float> qv(kQ * kD);
  Rng rng(9);
  for (float& f : qv) f = static_cast<float>(rng.Below(2001)) / 1000.f - 1.f;
  auto query = [&](uint64_t position) {
    QueryView q;
    q.num_q_heads = kQ;
    q.head_dim = kD;
    q.q = qv.data();
    q.position = position;
    return q;
  };
  auto make = [&](std::shared_ptr<io::FaultInjector> injector) {
    SpannOptions o;
    o.file = true;
    o.dir = ScratchDir();
    o.uring = GetParam();
    o.rebalance = 0;  // no re-clustering: the Extend's Rewrite is the only write
    o.skew = 1e9;
    o.engine_factory = [injector](const io::IoEngineOptions& eo) -> Result<std::unique_ptr<io::IoEngine>> {
      ASSIGN_OR_RETURN(std::unique_ptr<io::IoEngine> inner, io::CreateIoEngine(eo));
      return io::WrapWithFaults(std::move(inner), injector);
    };
    return std::make_unique<SpannRetriever>(o);
  };
  const std::vector<uint32_t> kept = {0, 63};  // a sink and the last block at position 511
  const std::vector<uint32_t> kept2 = {0, 79};
  auto entries = [](const SpannRetriever& r) {
    std::vector<uint32_t> all;
    for (uint32_t g = 0; g < kKv; ++g) all.insert(all.end(), r.posting_entries(g).begin(), r.posting_entries(g).end());
    return all;
  };
  auto faulted = make(injector_);
  ASSERT_TRUE(faulted->Build(view(k512, 512), rp).ok());
  std::vector<uint32_t> before, after, want;
  ASSERT_TRUE(faulted->Select(query(511), 12, kept, &before).ok());
  const std::vector<uint32_t> entries_before = entries(*faulted);
  ASSERT_FALSE(entries_before.empty());

  injector_->AddRule({.kind = io::FaultKind::kNoSpace, .target = io::FaultTarget::kWrites, .one_in = 1});
  const Status st = faulted->Extend(view(k640, 640));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
  EXPECT_GT(injector_->counts().no_space, 0u);
  // Still built over the 512 tokens, and selecting exactly as before.
  EXPECT_TRUE(faulted->built());
  EXPECT_EQ(entries(*faulted), entries_before);  // the assignment was undone
  ASSERT_TRUE(faulted->Select(query(511), 12, kept, &after).ok());
  EXPECT_EQ(after, before);

  // Space again: the same Extend succeeds, and the index equals one that never failed.
  injector_->ClearRules();
  ASSERT_TRUE(faulted->Extend(view(k640, 640)).ok());
  ASSERT_TRUE(faulted->Select(query(639), 12, kept2, &after).ok());
  auto clean = make(std::make_shared<io::FaultInjector>(1));
  ASSERT_TRUE(clean->Build(view(k512, 512), rp).ok());
  ASSERT_TRUE(clean->Extend(view(k640, 640)).ok());
  ASSERT_TRUE(clean->Select(query(639), 12, kept2, &want).ok());
  EXPECT_EQ(after, want);
  EXPECT_EQ(entries(*faulted), entries(*clean));
}

INSTANTIATE_TEST_SUITE_P(Engines, PostingStoreFaultTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "io_uring" : "psync");
                         });

}  // namespace
}  // namespace tierkv::index
