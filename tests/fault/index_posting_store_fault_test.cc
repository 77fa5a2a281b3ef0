// Faults under the SPANN posting store (index/posting_store.h), injected by the
// same FaultInjector wrapper the D tier is tested with (io/fault_injection_engine.h)
// around the real engines: a failed read is a clean kIOError, a torn (short) read
// is continued, a flipped byte is kCorruption; a batch that succeeds holds exactly
// the postings written, and an error leaves no partial batch behind.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "index/posting_store.h"
#include "index/rng.h"
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

INSTANTIATE_TEST_SUITE_P(Engines, PostingStoreFaultTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "io_uring" : "psync");
                         });

}  // namespace
}  // namespace tierkv::index
