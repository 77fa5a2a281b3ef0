// Integration: a clean stop of the real tierkvd writes what G and H hold back to D
// (storage.shutdown_drain_s), so that a restart on the same data dir serves every
// block byte for byte, shared prefixes included; with the drain off only what had
// reached D survives; a D tier too small is reported, not fatal.
#include <gtest/gtest.h>

#include <cstring>
#include <cstdlib>
#include <random>
#include <thread>

#include "client/client_internal.h"
#include "common/checksum.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 4, kQHeads = 4, kKvHeads = 2, kHeadDim = 16, kBlockTokens = 16;
const ModelSpec kModel{kLayers, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB
constexpr uint32_t kBlocks = 40;                  // per layer of sequence 1: 160 blocks
constexpr uint64_t kSeq = 1, kPrefixSeq = 10, kLinkedSeq = 11;
constexpr uint32_t kPrefixBlocks = 3;

std::vector<std::byte> MakeBlock(uint64_t seq, uint32_t layer, uint32_t block) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer * 131 + block));
  std::normal_distribution<float> n(0.f, 0.1f);
  std::vector<float> f(kBlockBytes / 4);
  for (auto& x : f) x = n(rng);
  std::vector<std::byte> b(kBlockBytes);
  std::memcpy(b.data(), f.data(), kBlockBytes);
  return b;
}

std::vector<int32_t> PrefixTokens() {
  std::vector<int32_t> tokens(kPrefixBlocks * kBlockTokens + 5);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 31 % 512);
  return tokens;
}

std::string StorageSection(uint32_t drain_s) {
  return "[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\nshutdown_drain_s = " +
         std::to_string(drain_s) + "\n";
}

class DrainTest : public ::testing::Test {
 protected:
  // G 128 blocks, H 256, D `disk_blocks`: 160 + 3*4 blocks stay in G and H (below
  // the watermarks), so under write-back nothing reaches D before the stop.
  void StartFresh(uint32_t drain_s, uint32_t disk_blocks) {
    daemon_ = std::make_unique<DaemonProcess>(testing::DaemonBinary(TIERKVD_PATH), dir_.path(), "",
                                              StorageSection(drain_s));
    ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
    auto admin = Connect();
    ASSERT_TRUE(admin);
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    spec.budgets = {128 * 4096, 256 * 4096, uint64_t{disk_blocks} * (512 + 4096)};  // D slot: 512-byte header + 4 KiB
    auto created = admin->CreateNamespace(spec);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
  }

  void Restart() {
    log_before_restart_ = daemon_->Log().size();
    ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  }
  std::string LogSinceRestart() const { return daemon_->Log().substr(log_before_restart_); }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_->socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  std::unique_ptr<DataChannel> Channel(Client& c) {
    EXPECT_TRUE(c.Attach("ns").ok());
    auto ch = c.OpenChannel("ns", {.staging_bytes = 1 << 20});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }

  // Sequence 1 (kBlocks per layer), sequence 10 with 3 shared prefix blocks per
  // layer, and sequence 11 linked to them. Returns the blocks the store holds.
  void PutAll(DataChannel& ch) {
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      std::vector<std::byte> all;
      for (uint32_t b = 0; b < kBlocks; ++b) {
        auto blk = MakeBlock(kSeq, layer, b);
        all.insert(all.end(), blk.begin(), blk.end());
      }
      Status st = ch.Put(kSeq, layer, 0, all);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    const auto tokens = PrefixTokens();
    const auto hashes = PrefixBlockHashes(tokens, kBlockTokens);
    ASSERT_EQ(hashes.size(), kPrefixBlocks);
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      for (uint32_t b = 0; b < kPrefixBlocks; ++b) {
        ASSERT_TRUE(ch.Put(kPrefixSeq, layer, b, MakeBlock(kPrefixSeq, layer, b), hashes[b]).ok());
      }
    }
    auto loaded = ch.LoadPrefix(kLinkedSeq, tokens);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    ASSERT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
  }
  static constexpr uint64_t kStored = uint64_t{kLayers} * (kBlocks + kPrefixBlocks);

  nlohmann::json Usage(Client& admin) {
    auto usage = internal::Call(admin, {{"op", "usage"}, {"namespace", "ns"}});
    EXPECT_TRUE(usage.ok()) << usage.status().ToString();
    return usage.ok() ? (*usage)["namespaces"][0] : nlohmann::json();
  }

  // How many of the stored blocks read back byte for byte; any other outcome than
  // the right bytes or NotFound fails the test.
  uint64_t CountReadable(DataChannel& ch) {
    uint64_t n = 0;
    std::vector<std::byte> out(kBlockBytes);
    auto check = [&](uint64_t seq, uint32_t layer, uint32_t b, uint64_t content_seq) {
      Status st = ch.Get(seq, layer, b, out);
      if (st.code() == StatusCode::kNotFound) return;
      ASSERT_TRUE(st.ok()) << st.ToString() << " seq " << seq << " layer " << layer << " block " << b;
      ASSERT_TRUE(out == MakeBlock(content_seq, layer, b)) << "seq " << seq << " layer " << layer << " block " << b;
      ++n;
    };
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      for (uint32_t b = 0; b < kBlocks; ++b) check(kSeq, layer, b, kSeq);
      for (uint32_t b = 0; b < kPrefixBlocks; ++b) check(kPrefixSeq, layer, b, kPrefixSeq);
    }
    return n;
  }

  testing::TempDir dir_{"drain"};
  std::unique_ptr<DaemonProcess> daemon_;
  size_t log_before_restart_ = 0;
};

TEST_F(DrainTest, SigtermWritesBackAndARestartServesEveryBlock) {
  ASSERT_NO_FATAL_FAILURE(StartFresh(/*drain_s=*/30, /*disk_blocks=*/1024));
  auto admin = Connect();
  auto c = Connect();
  auto ch = Channel(*c);
  ASSERT_NO_FATAL_FAILURE(PutAll(*ch));
  const auto before = Usage(*admin);
  EXPECT_EQ(before["blocks"], kStored) << before.dump();
  // Write-back (the default): nothing has reached D, the blocks are in G and H.
  auto policy = internal::Call(*admin, {{"op", "get_policy"}, {"namespace", "ns"}});
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ((*policy)["policy"]["write"], "write-back") << policy->dump();
  EXPECT_EQ(before["tiers"]["D"]["used_slots"], 0) << before.dump();
  EXPECT_GT(before["tiers"]["H"]["used_slots"].get<int>(), 0) << before.dump();
  // The client still holds a lease (a retrieval's pins) when the daemon stops.
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto pinned = ch->Retrieve(kSeq, 1, query, /*budget=*/8);
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();

  ASSERT_EQ(daemon_->Stop(), 0) << daemon_->Log();
  const std::string log = daemon_->Log();
  EXPECT_NE(log.find("shutdown drain: writing " + std::to_string(kStored) + " block(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("shutdown drain done: " + std::to_string(kStored) + " of " + std::to_string(kStored) +
                     " block(s) written to D"),
            std::string::npos)
      << log;
  // Sequences 10 and 11 link the 3 shared blocks of each layer.
  EXPECT_NE(log.find(std::to_string(2 * kPrefixBlocks * kLayers) + " prefix link(s) recorded, 0 left"),
            std::string::npos)
      << log;

  ASSERT_NO_FATAL_FAILURE(Restart());
  EXPECT_NE(LogSinceRestart().find("recovered " + std::to_string(kStored) + " block(s) from D"), std::string::npos)
      << LogSinceRestart();
  admin = Connect();
  c = Connect();
  ch = Channel(*c);
  const auto after = Usage(*admin);
  EXPECT_EQ(after["blocks"], kStored) << after.dump();
  EXPECT_EQ(CountReadable(*ch), kStored);
  // Retrieval serves the recovered sequence (its summaries are rebuilt from the
  // blocks on the first Retrieve: they lived in the old process's memory).
  auto again = ch->Retrieve(kSeq, 1, query, /*budget=*/8);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->blocks.size(), 8u);
  ASSERT_TRUE(ch->Release(again->lease).ok());
  // The shared prefix survives: found by its tokens, and still linked to sequence 11.
  const auto tokens = PrefixTokens();
  auto cached = ch->LookupPrefix(tokens);
  ASSERT_TRUE(cached.ok()) << cached.status().ToString();
  EXPECT_EQ(*cached, kPrefixBlocks * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t b = 0; b < kPrefixBlocks; ++b) {
      ASSERT_TRUE(ch->Get(kLinkedSeq, layer, b, out).ok()) << "layer " << layer << " block " << b;
      EXPECT_TRUE(out == MakeBlock(kPrefixSeq, layer, b));
    }
  }
  // A second clean stop has nothing left to write.
  ch.reset();
  c.reset();
  admin.reset();
  ASSERT_EQ(daemon_->Stop(), 0);
  EXPECT_NE(LogSinceRestart().find("shutdown drain: every block is on D already"), std::string::npos)
      << LogSinceRestart();
}

// storage.shutdown_drain_s = 0: the old behaviour, documented — a restart keeps only
// what had reached D (under write-back with room in H: nothing).
TEST_F(DrainTest, DrainOffKeepsOnlyWhatReachedD) {
  ASSERT_NO_FATAL_FAILURE(StartFresh(/*drain_s=*/0, /*disk_blocks=*/1024));
  {
    auto c = Connect();
    auto ch = Channel(*c);
    ASSERT_NO_FATAL_FAILURE(PutAll(*ch));
  }
  ASSERT_EQ(daemon_->Stop(), 0) << daemon_->Log();
  EXPECT_NE(daemon_->Log().find("shutdown drain off (storage.shutdown_drain_s = 0): " + std::to_string(kStored) +
                                " block(s) held only in G/H are not written to D"),
            std::string::npos)
      << daemon_->Log();
  ASSERT_NO_FATAL_FAILURE(Restart());
  auto admin = Connect();
  auto c = Connect();
  auto ch = Channel(*c);
  EXPECT_EQ(Usage(*admin)["blocks"], 0);
  EXPECT_EQ(CountReadable(*ch), 0u);
}

// D holds 100 blocks of the 172: the drain writes what fits, says what it could not
// write and why, and the stop (here the admin's shutdown op) still exits 0.
TEST_F(DrainTest, DTooSmallIsReportedAndShutdownSucceeds) {
  constexpr uint32_t kDiskBlocks = 100;
  ASSERT_NO_FATAL_FAILURE(StartFresh(/*drain_s=*/30, kDiskBlocks));
  {
    auto admin = Connect();
    auto c = Connect();
    auto ch = Channel(*c);
    ASSERT_NO_FATAL_FAILURE(PutAll(*ch));
    ASSERT_EQ(Usage(*admin)["tiers"]["D"]["slots"], kDiskBlocks);
    auto r = internal::Call(*admin, {{"op", "shutdown"}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (daemon_->Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(daemon_->Stop(), 0) << daemon_->Log();
  const std::string log = daemon_->Log();
  const std::string left = std::to_string(kStored - kDiskBlocks);
  EXPECT_NE(log.find("namespace 'ns': " + left + " of " + std::to_string(kStored) + " block(s) not written to D"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("shutdown drain done: " + std::to_string(kDiskBlocks) + " of " + std::to_string(kStored)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(left + " left"), std::string::npos) << log;

  ASSERT_NO_FATAL_FAILURE(Restart());
  auto admin = Connect();
  auto c = Connect();
  auto ch = Channel(*c);
  EXPECT_EQ(Usage(*admin)["blocks"], kDiskBlocks);
  // Shared prefix blocks went first, then sequence 1 position by position: the
  // first 100 - 12 = 88 blocks of sequence 1 are its first 22 positions, all layers.
  EXPECT_EQ(CountReadable(*ch), kDiskBlocks);
  std::vector<std::byte> out(kBlockBytes);
  const uint32_t positions = (kDiskBlocks - kPrefixBlocks * kLayers) / kLayers;
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    EXPECT_TRUE(ch->Get(kSeq, layer, positions - 1, out).ok()) << "layer " << layer;
    EXPECT_EQ(ch->Get(kSeq, layer, positions, out).code(), StatusCode::kNotFound) << "layer " << layer;
    EXPECT_TRUE(ch->Get(kLinkedSeq, layer, 0, out).ok()) << "layer " << layer;
  }
}

// Drain throughput on this machine's disk: TIERKV_DRAIN_BENCH_MB=N fills G and H of
// a namespace with N MB of 64 KiB blocks under write-back, stops the daemon and
// prints the drain's final log line (docs/operations.md, "Sizing the drain time").
// Skipped unless the variable is set.
TEST(DrainBench, ThroughputOfAShutdownDrain) {
  const char* env = std::getenv("TIERKV_DRAIN_BENCH_MB");
  if (env == nullptr || std::atoi(env) <= 0) GTEST_SKIP() << "set TIERKV_DRAIN_BENCH_MB to measure";
  const uint64_t mb = static_cast<uint64_t>(std::atoi(env));
  const ModelSpec model{4, 32, 8, 128, 16, DType::kF16};  // 64 KiB blocks
  const size_t block = model.BlockBytes();
  const uint64_t blocks = mb * 1000000 / block;
  testing::TempDir dir("drainbench");
  DaemonProcess daemon(testing::DaemonBinary(TIERKVD_PATH), dir.path(), "", StorageSection(600));
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  auto c = Client::Connect(daemon.socket_path());
  ASSERT_TRUE(c.ok());
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = model;
  // G half the data, H all of it: the rest of the data sits in H below its watermark.
  spec.budgets = {blocks * block / 2 + (8 << 20), blocks * block + (8 << 20), blocks * (block + 8192) + (64 << 20)};
  auto created = (*c)->CreateNamespace(spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ASSERT_TRUE((*c)->Attach("bench").ok());
  constexpr uint32_t kPerCall = 64;
  auto ch = (*c)->OpenChannel("bench", {.staging_bytes = kPerCall * block});
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  std::vector<std::byte> payload(kPerCall * block);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 2654435761u >> 13);
  const uint64_t per_layer = blocks / model.num_layers;
  for (uint64_t seq = 0; seq * 1024 < per_layer; ++seq) {
    for (uint32_t layer = 0; layer < model.num_layers; ++layer) {
      for (uint32_t b = 0; b < 1024 && seq * 1024 + b < per_layer; b += kPerCall) {
        const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kPerCall, per_layer - seq * 1024 - b));
        Status st = (*ch)->Put(seq, layer, b, std::span(payload).first(n * block));
        ASSERT_TRUE(st.ok()) << st.ToString();
      }
    }
  }
  ch->reset();
  c->reset();
  ASSERT_EQ(daemon.Stop(std::chrono::seconds(600)), 0) << daemon.Log();
  const std::string log = daemon.Log();
  for (size_t at = log.find("shutdown drain"); at != std::string::npos; at = log.find("shutdown drain", at + 1)) {
    std::printf("%s\n", log.substr(at, log.find('\n', at) - at).c_str());
  }
  EXPECT_NE(log.find("shutdown drain done"), std::string::npos) << log;
}

}  // namespace
}  // namespace tierkv
