// SPANN pieces (index/posting_store.h, index/spann_retriever.h): one conformance
// test over every PostingStore (memory, file with io_uring, file with pread),
// corruption detection, and the retriever's clustering and pruning properties.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>

#include "eval/eval_metrics.h"
#include "index/faiss_util.h"
#include "index/rng.h"
#include "index/spann_retriever.h"
#include "eval/synthetic.h"

namespace tierkv::index {
namespace {

std::string ScratchDir() {
  const std::string dir = std::string(TIERKV_TEST_SCRATCH_DIR) + "/spann";
  std::filesystem::create_directories(dir);
  return dir;
}

struct StoreCase {
  const char* name;
  std::function<std::unique_ptr<PostingStore>()> make;
};

const StoreCase kStores[] = {
    {"memory", [] { return NewMemoryPostingStore(); }},
    {"file_uring",
     [] {
       FilePostingStoreOptions o;
       o.dir = ScratchDir();
       o.queue_depth = 4;  // fewer than a batch: submissions wrap around
       return std::move(NewFilePostingStore(o)).value();
     }},
    {"file_pread",
     [] {
       FilePostingStoreOptions o;
       o.dir = ScratchDir();
       o.use_io_uring = false;
       return std::move(NewFilePostingStore(o)).value();
     }},
};

class PostingStoreConformance : public ::testing::TestWithParam<StoreCase> {};

std::vector<std::vector<uint8_t>> RandomPostings(uint64_t seed, size_t n) {
  Rng rng(seed);
  std::vector<std::vector<uint8_t>> p(n);
  for (size_t i = 0; i < n; ++i) {
    // Empty, small, page-crossing and multi-page postings.
    const size_t len = i % 5 == 0 ? 0 : (i % 5 == 4 ? 9000 + rng.Below(5000) : rng.Below(3000));
    p[i].resize(len);
    for (auto& b : p[i]) b = static_cast<uint8_t>(rng.Below(256));
  }
  return p;
}

TEST_P(PostingStoreConformance, WritesAndReadsBatchesExactly) {
  auto store = GetParam().make();
  ASSERT_NE(store, nullptr);
  const auto postings = RandomPostings(7, 23);
  ASSERT_TRUE(store->WriteAll(postings).ok());
  EXPECT_EQ(store->num_postings(), 23u);
  EXPECT_GT(store->StoredBytes(), 0u);
  const std::vector<uint32_t> ids = {22, 0, 4, 4, 9, 13, 1, 21, 5, 17, 3};  // any order, a repeat
  std::vector<std::span<const uint8_t>> out;
  const uint64_t before = store->bytes_read();
  ASSERT_TRUE(store->ReadBatch(ids, &out).ok()) << store->Name();
  ASSERT_EQ(out.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(out[i].size(), postings[ids[i]].size()) << "posting " << ids[i];
    EXPECT_TRUE(std::equal(out[i].begin(), out[i].end(), postings[ids[i]].begin())) << "posting " << ids[i];
  }
  EXPECT_GT(store->bytes_read(), before);
  EXPECT_EQ(store->batches_read(), 1u);
  // Rewriting replaces the content.
  const auto again = RandomPostings(8, 3);
  ASSERT_TRUE(store->WriteAll(again).ok());
  const std::vector<uint32_t> two = {2, 1};
  ASSERT_TRUE(store->ReadBatch(two, &out).ok());
  EXPECT_TRUE(std::equal(out[0].begin(), out[0].end(), again[2].begin(), again[2].end()));
}

TEST_P(PostingStoreConformance, RewritesSomePostingsInPlaceOfTheOld) {
  auto store = GetParam().make();
  auto postings = RandomPostings(11, 9);
  ASSERT_TRUE(store->WriteAll(postings).ok());
  const std::vector<uint32_t> ids = {7, 2, 0};
  const auto fresh = RandomPostings(12, 3);  // an empty, a small and a small one
  std::vector<std::vector<uint8_t>> contents = {fresh[1], fresh[0], postings[4]};
  contents[2].insert(contents[2].end(), 5000, uint8_t{0x5a});  // grown past a page
  ASSERT_TRUE(store->Rewrite(ids, contents).ok()) << store->Name();
  for (size_t i = 0; i < ids.size(); ++i) postings[ids[i]] = contents[i];
  for (int round = 0; round < 2; ++round) {  // twice: the file store rewrites again at the end
    std::vector<uint32_t> all(9);
    for (uint32_t i = 0; i < 9; ++i) all[i] = i;
    std::vector<std::span<const uint8_t>> out;
    ASSERT_TRUE(store->ReadBatch(all, &out).ok());
    for (uint32_t i = 0; i < 9; ++i) {
      EXPECT_TRUE(std::equal(out[i].begin(), out[i].end(), postings[i].begin(), postings[i].end())) << "posting " << i;
    }
    const std::vector<uint32_t> one = {2};
    postings[2].assign(100, static_cast<uint8_t>(round));
    ASSERT_TRUE(store->Rewrite(one, {postings[2]}).ok());
  }
  std::vector<std::span<const uint8_t>> out;
  const std::vector<uint32_t> two = {2};
  ASSERT_TRUE(store->ReadBatch(two, &out).ok());
  EXPECT_TRUE(std::equal(out[0].begin(), out[0].end(), postings[2].begin(), postings[2].end()));
  // Bad calls change nothing.
  const std::vector<uint32_t> repeat = {1, 1}, out_of_range = {9}, short_ids = {1};
  EXPECT_EQ(store->Rewrite(repeat, {fresh[0], fresh[1]}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Rewrite(out_of_range, {fresh[0]}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Rewrite(short_ids, {fresh[0], fresh[1]}).code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> first = {1};
  ASSERT_TRUE(store->ReadBatch(first, &out).ok());
  EXPECT_TRUE(std::equal(out[0].begin(), out[0].end(), postings[1].begin(), postings[1].end()));
}

TEST_P(PostingStoreConformance, RefusesIdsOutOfRange) {
  auto store = GetParam().make();
  ASSERT_TRUE(store->WriteAll(RandomPostings(1, 4)).ok());
  std::vector<std::span<const uint8_t>> out;
  const std::vector<uint32_t> bad = {1, 4};
  EXPECT_EQ(store->ReadBatch(bad, &out).code(), StatusCode::kInvalidArgument);
  const std::vector<uint32_t> none;
  EXPECT_TRUE(store->ReadBatch(none, &out).ok());
  EXPECT_TRUE(out.empty());
}

INSTANTIATE_TEST_SUITE_P(AllStores, PostingStoreConformance, ::testing::ValuesIn(kStores),
                         [](const ::testing::TestParamInfo<StoreCase>& info) { return info.param.name; });

TEST(FilePostingStoreTest, DamagedRecordIsCorruptionNeverData) {
  for (bool uring : {true, false}) {
    std::string path;
    FilePostingStoreOptions o;
    o.dir = ScratchDir();
    o.use_io_uring = uring;
    o.kept_path = &path;
    auto store = NewFilePostingStore(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    const auto postings = RandomPostings(3, 6);
    ASSERT_TRUE((*store)->WriteAll(postings).ok());
    // Flip one payload byte of posting 1 (the second 4 KiB record).
    const int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t byte = 0;
    ASSERT_EQ(pread(fd, &byte, 1, 4096 + 40), 1);
    byte ^= 0x5a;
    ASSERT_EQ(pwrite(fd, &byte, 1, 4096 + 40), 1);
    ASSERT_EQ(fdatasync(fd), 0);
    close(fd);
    std::vector<std::span<const uint8_t>> out;
    const std::vector<uint32_t> good = {0, 2}, bad = {2, 1};
    EXPECT_TRUE((*store)->ReadBatch(good, &out).ok());
    EXPECT_EQ((*store)->ReadBatch(bad, &out).code(), StatusCode::kCorruption) << (*store)->Name();
    unlink(path.c_str());
  }
}

TEST(FilePostingStoreTest, RefusesBadOptions) {
  FilePostingStoreOptions o;
  o.dir = "";
  EXPECT_EQ(NewFilePostingStore(o).status().code(), StatusCode::kInvalidArgument);
  o.dir = ScratchDir();
  o.queue_depth = 0;
  EXPECT_EQ(NewFilePostingStore(o).status().code(), StatusCode::kInvalidArgument);
  o.queue_depth = 8;
  o.dir = ScratchDir() + "/does/not/exist";
  EXPECT_EQ(NewFilePostingStore(o).status().code(), StatusCode::kNotFound);
}

class SpannRetrieverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SetFaissThreads(1);
    SyntheticParams p;
    p.num_layers = 1;
    p.num_tokens = 3000;
    p.num_steps = 6;
    p.head_dim = 32;
    p.num_q_heads = 4;
    p.num_kv_heads = 2;
    auto gen = SyntheticGenerator::Create(p);
    ASSERT_TRUE(gen.ok());
    trace_ = new Trace(std::move((*gen)->GenerateAll()).value());
  }
  static void TearDownTestSuite() {
    delete trace_;
    trace_ = nullptr;
  }
  RetrieverParams Params() const {
    RetrieverParams rp;
    rp.block_tokens = 8;
    rp.num_q_heads = trace_->info.num_q_heads;
    return rp;
  }
  LayerKeys View() const { return LayerKeysOf(trace_->info, trace_->layers[0]); }
  static Trace* trace_;
};
Trace* SpannRetrieverTest::trace_ = nullptr;

TEST_F(SpannRetrieverTest, ClosureAssignsBetweenOneAndReplicasClusters) {
  SpannOptions o;
  o.eps = 10.0;  // every candidate qualifies (but for vectors sitting on their centroid): the cap decides
  o.replicas = 3;
  SpannRetriever wide(o);
  ASSERT_TRUE(wide.Build(View(), Params()).ok());
  EXPECT_LE(wide.mean_replicas(), 3.0);
  EXPECT_GT(wide.mean_replicas(), 2.9);
  o.eps = 0.0;
  SpannRetriever narrow(o);
  ASSERT_TRUE(narrow.Build(View(), Params()).ok());
  EXPECT_GE(narrow.mean_replicas(), 1.0);
  EXPECT_LT(narrow.mean_replicas(), 1.5);
  EXPECT_GT(wide.store()->StoredBytes(), 2 * narrow.store()->StoredBytes());
}

TEST_F(SpannRetrieverTest, PruningReadsFewerPostingsAndTheFileStoreCountsBytes) {
  const QueryView q = StepQuery(trace_->info, trace_->layers[0], 3);
  const std::vector<uint32_t> kept = AlwaysKeptBlocks(q.position, 8, 4, 32);
  std::vector<uint32_t> sel;
  uint64_t read[2];
  double probes[2];
  for (int i = 0; i < 2; ++i) {
    SpannOptions o;
    o.file = true;
    o.dir = ScratchDir();
    o.eps2 = i == 0 ? 0.0 : 100.0;  // 0: probe only what the budget needs; 100: up to maxprobe
    o.maxprobe = 1000;
    SpannRetriever r(o);
    ASSERT_TRUE(r.Build(View(), Params()).ok());
    EXPECT_GT(r.OffMemoryIndexBytes(), 0u);
    ASSERT_TRUE(r.Select(q, static_cast<uint32_t>(kept.size() + 10), kept, &sel).ok());
    read[i] = r.IndexBytesRead();
    probes[i] = r.mean_probes();
  }
  EXPECT_GT(read[0], 0u);
  EXPECT_LT(read[0], read[1]);
  EXPECT_LT(probes[0], probes[1]);
}

TEST_F(SpannRetrieverTest, BalancedAssignmentShrinksTheLargestPosting) {
  auto largest = [&](double balance, uint32_t rounds) {
    SpannOptions o;
    o.balance = balance;
    o.rounds = rounds;
    o.replicas = 1;
    o.r = 1;
    SpannRetriever r(o);
    EXPECT_TRUE(r.Build(View(), Params()).ok());
    std::vector<uint32_t> ids(r.store()->num_postings());
    for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
    std::vector<std::span<const uint8_t>> out;
    EXPECT_TRUE(r.store()->ReadBatch(ids, &out).ok());
    size_t mx = 0;
    for (const auto& p : out) mx = std::max(mx, p.size());
    return mx;
  };
  EXPECT_LT(largest(4.0, 3), largest(0.0, 0));
}

}  // namespace
}  // namespace tierkv::index
