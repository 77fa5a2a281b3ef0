// Integration: the namespace lifecycle through a real tierkvd —
//   delete-namespace frees the namespace's memory (the daemon's RSS, from /proc),
//   its D directory, its manifest records and its metrics series; a namespace
//   created again under the same name is a new, empty one; the delete is refused
//   while another client is attached unless forced, and a forced delete makes that
//   client's channel fail with a status that says the namespace was deleted;
//   leftovers of a namespace no longer registered are swept at start;
//   the prefix cache is listed and its unused prefixes evicted (tierkvctl).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "client/client_internal.h"
#include "common/checksum.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

namespace fs = std::filesystem;
using testing::DaemonProcess;

// 32 KiB blocks (2 KV heads x 128 dims x 16 tokens x f32, K and V).
const ModelSpec kModel{4, 8, 2, 128, 16, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();
constexpr uint32_t kBlocksPerLayer = 256;  // 4 layers: 1024 blocks, 32 MiB

std::vector<std::byte> MakeBlocks(uint64_t seq, uint32_t layer, uint32_t n) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer));
  std::vector<std::byte> b(kBlockBytes * n);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

class NamespaceLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 32 MiB G, 64 MiB H, 64 MiB D per namespace; write-through so that D holds files.
    daemon_ = std::make_unique<DaemonProcess>(
        testing::DaemonBinary(TIERKVD_PATH), dir_.path(), "",
        "[storage]\ngpu_bytes = 33554432\nhost_bytes = 67108864\ndisk_bytes = 67108864\n");
    ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
    admin_ = Connect();
    ASSERT_TRUE(admin_);
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_->socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  NamespaceId Create(const std::string& name) {
    NamespaceSpec spec;
    spec.name = name;
    spec.model = kModel;
    auto r = admin_->CreateNamespace(spec);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(r.ok() && r->created);
    return r.ok() ? r->id : 0;
  }

  void SetPolicy(const std::string& name, const std::string& changes) {
    auto r = admin_->SetPolicy(name, changes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Puts kBlocksPerLayer blocks in each layer of sequence `seq`.
  void Fill(DataChannel& ch, uint64_t seq) {
    for (uint32_t layer = 0; layer < kModel.num_layers; ++layer) {
      const auto data = MakeBlocks(seq, layer, kBlocksPerLayer);
      for (uint32_t b = 0; b < kBlocksPerLayer; b += 8) {
        ASSERT_TRUE(ch.Put(seq, layer, b, std::span(data).subspan(b * kBlockBytes, 8 * kBlockBytes)).ok());
      }
    }
  }

  std::string Scrape() {
    auto stats = admin_->Stats();
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? testing::HttpGet(stats->metrics_url) : "";
  }

  std::string Ctl(const std::vector<std::string>& args, int* rc = nullptr) {
    std::vector<std::string> full = {"--socket", daemon_->socket_path()};
    full.insert(full.end(), args.begin(), args.end());
    std::string out;
    const int status = testing::RunProgram(TIERKVCTL_PATH, full, &out);
    if (rc) *rc = status;
    return out;
  }

  uint64_t UsageBlocks(const std::string& name) {
    auto r = internal::Call(*admin_, {{"op", "usage"}, {"namespace", name}});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? (*r)["namespaces"][0]["blocks"].get<uint64_t>() : ~0ull;
  }

  testing::TempDir dir_{"lifecycle"};
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> admin_;
};

TEST_F(NamespaceLifecycleTest, DeleteFreesMemoryFilesRecordsAndSeriesAndTheNameCanBeReused) {
  const NamespaceId id = Create("doomed");
  SetPolicy("doomed", R"({"write":"write-through"})");
  const fs::path disk_dir = fs::path(dir_.path()) / "data" / "disk" / ("ns" + std::to_string(id));
  const uint64_t rss_created = testing::Measure(daemon_->pid()).rss_kib;
  {
    auto att = admin_->Attach("doomed");
    ASSERT_TRUE(att.ok());
    auto ch = admin_->OpenChannel("doomed");
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    Fill(**ch, 1);
    auto r = (*ch)->Retrieve(1, 0, std::vector<float>(kModel.num_q_heads * kModel.head_dim, 0.5f), 8);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE((*ch)->Release(r->lease).ok());
  }  // the channel is closed: this process maps no arena of it any more
  ASSERT_EQ(UsageBlocks("doomed"), kModel.num_layers * kBlocksPerLayer);
  const uint64_t rss_filled = testing::Measure(daemon_->pid()).rss_kib;
  const uint64_t data_kib = kModel.num_layers * kBlocksPerLayer * kBlockBytes / 1024;  // 32 MiB
  // Memory is committed as it is used (storage.prefault = false): creating the
  // namespace committed little, the puts committed the blocks' pages.
  EXPECT_GE(rss_filled, rss_created + data_kib * 9 / 10) << "the puts should have committed the blocks' pages";
  ASSERT_TRUE(fs::exists(disk_dir)) << disk_dir;
  std::string metrics = Scrape();
  ASSERT_GT(testing::MetricValue(metrics, "tierkv_blocks", {"namespace=\"doomed\""}), 0) << metrics.substr(0, 2000);

  // This session is attached (its own attachment does not block the delete).
  const auto t0 = std::chrono::steady_clock::now();
  const Status deleted = admin_->DeleteNamespace("doomed");
  ASSERT_TRUE(deleted.ok()) << deleted.ToString();
  std::printf("delete-namespace of %llu blocks (32 MiB, write-through) took %.1f ms\n",
              static_cast<unsigned long long>(kModel.num_layers * kBlocksPerLayer),
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());

  const uint64_t rss_deleted = testing::Measure(daemon_->pid()).rss_kib;
  std::printf("daemon RSS: namespace created %llu KiB, 32 MiB stored %llu KiB, deleted %llu KiB\n",
              static_cast<unsigned long long>(rss_created), static_cast<unsigned long long>(rss_filled),
              static_cast<unsigned long long>(rss_deleted));
  EXPECT_LE(rss_deleted + data_kib * 9 / 10, rss_filled)
      << "RSS created " << rss_created << " KiB, filled " << rss_filled << " KiB, deleted " << rss_deleted << " KiB";
  EXPECT_FALSE(fs::exists(disk_dir)) << "the D directory should be gone";
  metrics = Scrape();
  EXPECT_EQ(metrics.find("namespace=\"doomed\""), std::string::npos) << "no series of the deleted namespace";
  auto list = admin_->ListNamespaces();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(admin_->Attach("doomed").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(admin_->DeleteNamespace("doomed").code(), StatusCode::kNotFound);

  // Same name again: a new namespace (new id), empty, that works.
  const NamespaceId again = Create("doomed");
  EXPECT_GT(again, id);
  EXPECT_EQ(UsageBlocks("doomed"), 0u);
  ASSERT_TRUE(admin_->Attach("doomed").ok());
  auto ch = admin_->OpenChannel("doomed");
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  std::vector<std::byte> out_block(kBlockBytes);
  EXPECT_EQ((*ch)->Get(1, 0, 0, out_block).code(), StatusCode::kNotFound);
  const auto data = MakeBlocks(7, 0, 1);
  ASSERT_TRUE((*ch)->Put(7, 0, 0, data).ok());
  ASSERT_TRUE((*ch)->Get(7, 0, 0, out_block).ok());
  EXPECT_TRUE(out_block == data);
  ch->reset();
  admin_.reset();

  // After a restart: still deleted (no block of the old namespace came back), and
  // the old id is never handed out again.
  ASSERT_EQ(daemon_->Stop(), 0);
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  admin_ = Connect();
  ASSERT_TRUE(admin_);
  EXPECT_EQ(UsageBlocks("doomed"), 1u);
  ASSERT_TRUE(admin_->DeleteNamespace("doomed").ok());
  EXPECT_GT(Create("third"), again);
}

TEST_F(NamespaceLifecycleTest, RefusedWhileAttachedUnlessForcedAndTheDetachedChannelSaysWhy) {
  Create("shared");
  auto engine = Connect();
  ASSERT_TRUE(engine->Attach("shared").ok());
  auto ch = engine->OpenChannel("shared");
  ASSERT_TRUE(ch.ok());
  const auto data = MakeBlocks(1, 0, 1);
  ASSERT_TRUE((*ch)->Put(1, 0, 0, data).ok());

  const Status refused = admin_->DeleteNamespace("shared");
  EXPECT_EQ(refused.code(), StatusCode::kBusy) << refused.ToString();
  EXPECT_NE(refused.message().find("1 attached client(s)"), std::string::npos) << refused.ToString();
  EXPECT_NE(refused.message().find("--force"), std::string::npos) << refused.ToString();
  EXPECT_EQ(UsageBlocks("shared"), 1u) << "a refused delete changes nothing";

  // A non-admin may not delete at all: checked in the control service unit tests
  // (this test runs as the daemon's own user, an admin).
  int rc = 0;
  const std::string out = Ctl({"delete-namespace", "shared", "--force"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("1 client(s) detached"), std::string::npos) << out;

  // The engine's channel fails with a clear status; its connection stays usable.
  std::vector<std::byte> out_block(kBlockBytes);
  const Status get = (*ch)->Get(1, 0, 0, out_block);
  EXPECT_EQ(get.code(), StatusCode::kNotFound) << get.ToString();
  EXPECT_NE(get.message().find("namespace was deleted"), std::string::npos) << get.ToString();
  const Status put = (*ch)->Put(1, 0, 1, data);
  EXPECT_NE(put.message().find("namespace was deleted"), std::string::npos) << put.ToString();
  EXPECT_TRUE(engine->Ping().ok());
  EXPECT_EQ(engine->OpenChannel("shared").status().code(), StatusCode::kNotFound);
  ch->reset();  // closing the detached channel is clean
  EXPECT_TRUE(engine->Ping().ok());
  EXPECT_NE(daemon_->Log().find("forced: 1 client(s) detached"), std::string::npos);
}

TEST_F(NamespaceLifecycleTest, LeftoversOfAnUnregisteredNamespaceAreSweptAtStart) {
  ASSERT_EQ(daemon_->Stop(), 0);
  const fs::path orphan = fs::path(dir_.path()) / "data" / "disk" / "ns77";
  fs::create_directories(orphan);
  std::ofstream(orphan / "data") << std::string(8192, 'x');
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_NE(daemon_->Log().find("namespace 77 is not registered"), std::string::npos) << daemon_->Log();
}

TEST_F(NamespaceLifecycleTest, ADaemonWhoseDiskSizeChangedKeepsTheRecordedGeometryAndItsBlocks) {
  Create("kept");
  SetPolicy("kept", R"({"write":"write-through"})");
  ASSERT_TRUE(admin_->Attach("kept").ok());
  auto ch = admin_->OpenChannel("kept");
  ASSERT_TRUE(ch.ok());
  const auto data = MakeBlocks(3, 1, 8);
  ASSERT_TRUE((*ch)->Put(3, 1, 0, data).ok());
  auto d_slots = [&] {
    auto r = internal::Call(*admin_, {{"op", "usage"}, {"namespace", "kept"}});
    EXPECT_TRUE(r.ok());
    return r.ok() ? (*r)["namespaces"][0]["tiers"]["D"]["slots"].get<uint64_t>() : 0;
  };
  const uint64_t slots = d_slots();
  ASSERT_GT(slots, 0u);
  ch->reset();
  admin_.reset();
  ASSERT_EQ(daemon_->Stop(), 0);

  // storage.disk_bytes halved (64 -> 32 MiB): the daemon starts, serves the namespace
  // with its recorded geometry, and says what it did and how to resize.
  daemon_ = std::make_unique<DaemonProcess>(
      testing::DaemonBinary(TIERKVD_PATH), dir_.path(), "",
      "[storage]\ngpu_bytes = 33554432\nhost_bytes = 67108864\ndisk_bytes = 33554432\n");
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  admin_ = Connect();
  ASSERT_TRUE(admin_);
  EXPECT_EQ(d_slots(), slots);
  const std::string log = daemon_->Log();
  EXPECT_NE(log.find("its D tier was created for " + std::to_string(slots) + " slots"), std::string::npos) << log;
  EXPECT_NE(log.find("To resize D"), std::string::npos) << log;
  ASSERT_TRUE(admin_->Attach("kept").ok());
  ch = admin_->OpenChannel("kept");
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  std::vector<std::byte> out(data.size());
  ASSERT_TRUE((*ch)->Get(3, 1, 0, out).ok());
  EXPECT_TRUE(out == data) << "the blocks on D survive the configuration change";
}

TEST_F(NamespaceLifecycleTest, PrefixesAreListedAndUnusedOnesEvicted) {
  Create("chat");
  ASSERT_TRUE(admin_->Attach("chat").ok());
  auto ch = admin_->OpenChannel("chat");
  ASSERT_TRUE(ch.ok());
  std::vector<int32_t> tokens(3 * kModel.block_tokens + 2);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 17 % 1000);
  const auto hashes = PrefixBlockHashes(tokens, kModel.block_tokens);
  ASSERT_EQ(hashes.size(), 3u);
  for (uint32_t layer = 0; layer < kModel.num_layers; ++layer) {
    const auto data = MakeBlocks(10, layer, 3);
    for (uint32_t b = 0; b < 3; ++b) {
      ASSERT_TRUE((*ch)->Put(10, layer, b, std::span(data).subspan(b * kBlockBytes, kBlockBytes), hashes[b]).ok());
    }
  }
  auto loaded = (*ch)->LoadPrefix(11, tokens);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();

  auto listed = internal::Call(*admin_, {{"op", "prefixes"}, {"namespace", "chat"}});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  const auto& ns = (*listed)["namespaces"][0];
  EXPECT_EQ(ns["prefixes"], 3);
  EXPECT_EQ(ns["blocks"], 3 * kModel.num_layers);
  EXPECT_EQ(ns["bytes"], 3 * kModel.num_layers * kBlockBytes);
  EXPECT_EQ(ns["unused_prefixes"], 0);
  EXPECT_EQ(ns["entries"][0]["sequences"], 2);  // sequences 10 and 11 link it
  EXPECT_GE(ns["entries"][0]["idle_s"].get<double>(), 0.0);
  int rc = 0;
  std::string out = Ctl({"prefixes", "chat"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("chat"), std::string::npos) << out;

  // In use: nothing is evicted.
  out = Ctl({"evict-prefixes", "chat"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("evicted 0 prefix(es)"), std::string::npos) << out;
  EXPECT_NE(out.find("kept 3 in use"), std::string::npos) << out;

  // Both sequences closed: the prefixes stay cached (a later request may share them)...
  ASSERT_TRUE((*ch)->CloseSequence(10).ok());
  ASSERT_TRUE((*ch)->CloseSequence(11).ok());
  auto cached = (*ch)->LookupPrefix(tokens);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 3 * kModel.block_tokens);
  listed = internal::Call(*admin_, {{"op", "prefixes"}, {"namespace", "chat"}});
  EXPECT_EQ((*listed)["namespaces"][0]["unused_prefixes"], 3);
  // ...until evicted; an age bound keeps the younger ones.
  out = Ctl({"evict-prefixes", "chat", "--older-than", "3600"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("evicted 0 prefix(es)"), std::string::npos) << out;
  EXPECT_NE(out.find("3 younger"), std::string::npos) << out;
  out = Ctl({"evict-prefixes", "chat", "--older-than", "0"}, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("evicted 3 prefix(es), " + std::to_string(3 * kModel.num_layers) + " blocks"), std::string::npos)
      << out;
  cached = (*ch)->LookupPrefix(tokens);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 0u);
  EXPECT_EQ(UsageBlocks("chat"), 0u);
  listed = internal::Call(*admin_, {{"op", "prefixes"}, {"namespace", "chat"}});
  EXPECT_EQ((*listed)["namespaces"][0]["prefixes"], 0);
}

TEST_F(NamespaceLifecycleTest, RetrieveRefusesABudgetBelowTheSinksAndRecentWindowNamingIt) {
  Create("budget");
  SetPolicy("budget", R"({"sink_blocks":2,"recent_window":4})");
  ASSERT_TRUE(admin_->Attach("budget").ok());
  auto ch = admin_->OpenChannel("budget");
  ASSERT_TRUE(ch.ok());
  ASSERT_TRUE((*ch)->Put(1, 0, 0, MakeBlocks(1, 0, 12)).ok());
  const std::vector<float> query(kModel.num_q_heads * kModel.head_dim, 0.25f);
  auto r = (*ch)->Retrieve(1, 0, query, 5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("budget is below the sink and recent-window blocks"), std::string::npos)
      << r.status().ToString();
  r = (*ch)->Retrieve(1, 0, query, 6);  // exactly sinks + window: allowed, all of them
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks.size(), 6u);
  ASSERT_TRUE((*ch)->Release(r->lease).ok());
  // A sequence shorter than sinks + window: a budget covering all of it is enough.
  ASSERT_TRUE((*ch)->Put(2, 0, 0, MakeBlocks(2, 0, 3)).ok());
  r = (*ch)->Retrieve(2, 0, query, 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks.size(), 3u);
  ASSERT_TRUE((*ch)->Release(r->lease).ok());
}

// Token-granular append: appending a sequence's tokens in uneven chunks stores the
// same blocks as putting them whole (the last one zero-padded), retrieves the same,
// and a gap or an overlap is refused naming the token expected.
TEST_F(NamespaceLifecycleTest, AppendEqualsWholeBlockPutAndRefusesGaps) {
  Create("append");
  ASSERT_TRUE(admin_->Attach("append").ok());
  auto ch = admin_->OpenChannel("append");
  ASSERT_TRUE(ch.ok());
  const uint32_t bt = kModel.block_tokens, heads = 2 * kModel.num_kv_heads, hd = kModel.head_dim;
  constexpr uint32_t kTokens = 3 * 16 + 5;  // three whole blocks and an open one
  // Token t of K/V head h (h < heads: K heads then V heads): hd floats.
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> tok(size_t{heads} * kTokens * hd);
  for (auto& x : tok) x = n(rng);
  auto row = [&](uint32_t h, uint32_t t) { return tok.data() + (size_t{h} * kTokens + t) * hd; };
  // Whole blocks of sequence 2: [heads][bt][hd], zero-padded.
  std::vector<float> whole(size_t{4} * heads * bt * hd, 0.f);
  for (uint32_t t = 0; t < kTokens; ++t) {
    for (uint32_t h = 0; h < heads; ++h) {
      std::memcpy(whole.data() + ((size_t{t / bt} * heads + h) * bt + t % bt) * hd, row(h, t), hd * 4);
    }
  }
  ASSERT_TRUE((*ch)->Put(2, 0, 0, std::as_bytes(std::span(whole))).ok());
  // Sequence 1 by appends of 1, 3, 7, 16, 20 and 6 tokens.
  uint64_t at = 0;
  for (uint32_t chunk : {1u, 3u, 7u, 16u, 20u, 6u}) {
    std::vector<float> kv(size_t{heads} * chunk * hd);
    for (uint32_t h = 0; h < heads; ++h) {
      for (uint32_t i = 0; i < chunk; ++i) std::memcpy(kv.data() + (size_t{h} * chunk + i) * hd, row(h, at + i), hd * 4);
    }
    auto next = (*ch)->Append(1, 0, at, chunk, std::as_bytes(std::span(kv)));
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_EQ(*next, at + chunk);
    at += chunk;
  }
  ASSERT_EQ(at, kTokens);
  std::vector<std::byte> a(kBlockBytes), b(kBlockBytes);
  for (uint32_t blk = 0; blk < 4; ++blk) {
    ASSERT_TRUE((*ch)->Get(1, 0, blk, a).ok()) << blk;
    ASSERT_TRUE((*ch)->Get(2, 0, blk, b).ok()) << blk;
    EXPECT_TRUE(a == b) << "block " << blk << " differs between append and whole-block put";
  }
  EXPECT_EQ(UsageBlocks("append"), 8u);
  const std::vector<float> query(kModel.num_q_heads * hd, 0.5f);
  SetPolicy("append", R"({"sink_blocks":1,"recent_window":1})");
  auto ra = (*ch)->Retrieve(1, 0, query, 3);
  auto rb = (*ch)->Retrieve(2, 0, query, 3);
  ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status().ToString() << rb.status().ToString();
  ASSERT_EQ(ra->blocks.size(), rb->blocks.size());
  for (size_t i = 0; i < ra->blocks.size(); ++i) EXPECT_EQ(ra->blocks[i].block, rb->blocks[i].block);
  ASSERT_TRUE((*ch)->Release(ra->lease).ok());
  ASSERT_TRUE((*ch)->Release(rb->lease).ok());

  // A gap and an overlap are refused, naming where the layer ends; nothing changes.
  std::vector<float> one(size_t{heads} * hd, 1.f);
  for (uint64_t wrong : {uint64_t{kTokens} + 1, uint64_t{kTokens} - 1, uint64_t{0}}) {
    auto r = (*ch)->Append(1, 0, wrong, 1, std::as_bytes(std::span(one)));
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("ends (token " + std::to_string(kTokens) + ")"), std::string::npos)
        << r.status().ToString();
  }
  EXPECT_EQ((*ch)->Append(1, 0, kTokens, 2, std::as_bytes(std::span(one))).status().code(),
            StatusCode::kInvalidArgument) << "2 tokens need twice the bytes";
  // A fresh layer starts after its whole blocks: layer 1 of sequence 2 has none.
  EXPECT_TRUE((*ch)->Append(2, 1, 0, 1, std::as_bytes(std::span(one))).ok());
  // After a whole-block put the next append starts after it.
  EXPECT_EQ(*(*ch)->Append(2, 0, 4 * bt, 1, std::as_bytes(std::span(one))), 4 * bt + 1);
}

// The metric names of docs/operations.md's table ("| `a` | ..." or "| `a`, `b` | ..."
// or "| `a` / `b` | ...").
std::set<std::string> DocumentedMetrics() {
  std::ifstream in(TIERKV_OPERATIONS_MD);
  std::set<std::string> names;
  std::string line;
  const std::regex row(R"(^\| `((tierkv|process)_[a-z_]+)`((,| /) `[a-z_]+`)* \| (counter|gauge|histogram) \|)");
  const std::regex name(R"(`([a-z_]+)`)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    const std::string names_part = line.substr(0, m.length(0));
    for (auto it = std::sregex_iterator(names_part.begin(), names_part.end(), name); it != std::sregex_iterator(); ++it) {
      names.insert((*it)[1]);
    }
  }
  return names;
}

TEST_F(NamespaceLifecycleTest, EveryDocumentedSeriesExistsAfterStart) {
  const std::set<std::string> documented = DocumentedMetrics();
  ASSERT_GT(documented.size(), 50u) << "the table of docs/operations.md was not found or not parsed";
  Create("fresh");  // per-namespace series exist once a namespace opens: no put, no channel
  const std::string scrape = Scrape();
  std::set<std::string> present;
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string n = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (n.size() > std::strlen(suffix) && n.ends_with(suffix) &&
          documented.count(n.substr(0, n.size() - std::strlen(suffix)))) {
        n = n.substr(0, n.size() - std::strlen(suffix));
      }
    }
    present.insert(n);
  }
  for (const std::string& n : documented) EXPECT_TRUE(present.count(n)) << n << " is documented but not exported";
  for (const std::string& n : present) EXPECT_TRUE(documented.count(n)) << n << " is exported but not documented";
  // Labelled counters exist at 0 before their first event.
  EXPECT_EQ(testing::MetricValue(scrape, "tierkv_control_errors_total", {"code=\"PermissionDenied\""}), 0);
  EXPECT_EQ(testing::MetricValue(scrape, "tierkv_control_disconnects_total", {"reason=\"hello_timeout\""}), 0);
  EXPECT_EQ(testing::MetricValue(scrape, "tierkv_retrieval_latency_seconds_count",
                                 {"namespace=\"fresh\"", "phase=\"total\""}),
            0);
}

}  // namespace
}  // namespace tierkv
