// Integration: the remote tier R on a real local Redis Cluster (3 masters + 3
// replicas) shared by two real tierkvd processes with their own data dirs and
// sockets — two "machines". A prefix put on A loads on B from R byte for byte; two
// model identities of one shape never share blocks; a value corrupted inside Redis
// is dropped, never served; with the cluster stopped both daemons serve their local
// blocks, R is reported down, and it comes back when the cluster does.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>

#include "client/client_internal.h"
#include "common/checksum.h"
#include "storage/remote/remote_value.h"
#include "tests/util/daemon_process.h"
#include "tests/util/remote_client.h"
#include "tests/util/redis_cluster.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {
using namespace std::chrono_literals;
using testing::DaemonProcess;
using testing::RedisCluster;

constexpr uint32_t kLayers = 4, kBlockTokens = 16;
const ModelSpec kModel{kLayers, 4, 2, 16, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB
constexpr uint32_t kPrefixBlocks = 3;

std::vector<std::byte> MakeBlock(uint32_t salt, uint32_t layer, uint32_t block) {
  std::mt19937 rng(salt * 7919 + layer * 131 + block);
  std::vector<std::byte> b(kBlockBytes);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

// A block of f32 values with few mantissa bits (KV-like: compressible, unlike MakeBlock's).
std::vector<std::byte> SmoothBlock(uint32_t salt, uint32_t layer, uint32_t block) {
  std::mt19937 rng(salt * 7919 + layer * 131 + block);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> f(kBlockBytes / sizeof(float));
  for (float& x : f) x = std::round(normal(rng) * 64) / 64;
  std::vector<std::byte> b(kBlockBytes);
  std::memcpy(b.data(), f.data(), kBlockBytes);
  return b;
}

std::vector<int32_t> Tokens(uint32_t salt) {
  std::vector<int32_t> t(kPrefixBlocks * kBlockTokens + 5);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 31 + salt * 1000003) % 50000);
  return t;
}

class RemoteTierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!RedisCluster::Available()) return;
    cluster_ = new RedisCluster(3, 1);
    error_ = new std::string(cluster_->Start());
    if (!error_->empty()) return;
    for (int i = 0; i < 2; ++i) {
      dirs_[i] = new testing::TempDir(i ? "remote-b" : "remote-a");
      const std::string sections =
          "[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\n"
          "[remote]\nenabled = true\nseeds = \"" + cluster_->address(i) + "," + cluster_->address(2) +
          "\"\ncommand_timeout_ms = 300\nfetch_timeout_ms = 1000\nbreaker_failures = 2\nbreaker_cooldown_ms = 300\n" +
          // A compresses what it writes, B does not: B reads both kinds.
          std::string(i ? "" : "compression = \"zstd\"\n");
      daemons_[i] = new DaemonProcess(testing::DaemonBinary(TIERKVD_PATH), dirs_[i]->path(), "", sections);
      if (!daemons_[i]->Start()) *error_ = "tierkvd did not start: " + daemons_[i]->Log();
    }
  }
  static void TearDownTestSuite() {
    for (int i = 0; i < 2; ++i) {
      delete daemons_[i];
      delete dirs_[i];
      daemons_[i] = nullptr;
    }
    delete cluster_;
    cluster_ = nullptr;
    delete error_;
  }
  void SetUp() override {
    if (!cluster_) GTEST_SKIP() << "redis-server/redis-cli not installed (deploy/install-deps.sh installs them)";
    ASSERT_EQ(*error_, "");
  }

  static std::unique_ptr<Client> Connect(int d) {
    auto c = Client::Connect(daemons_[d]->socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  // Creates (on daemon d) and opens a channel to a namespace with a model identity.
  static std::unique_ptr<DataChannel> Channel(Client& c, const std::string& ns, const std::string& model_id) {
    return testing::OpenRemoteChannel(c, ns, kModel, model_id);
  }
  static nlohmann::json Remote(Client& c) { return testing::RemoteStats(c); }
  // Puts blocks [0, n) of every layer of seq (SmoothBlock(salt, ...)), closes the
  // sequence and waits until R has every block (policy remote_blocks = closed-sequences).
  static void PutAndCloseSequence(Client& c, DataChannel& ch, uint64_t seq, uint32_t salt, uint32_t n) {
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      std::vector<std::byte> blocks;
      for (uint32_t blk = 0; blk < n; ++blk) {
        const auto one = SmoothBlock(salt, layer, blk);
        blocks.insert(blocks.end(), one.begin(), one.end());
      }
      ASSERT_TRUE(ch.Put(seq, layer, 0, blocks).ok());
    }
    const uint64_t puts = Remote(c)["puts"].get<uint64_t>();
    ASSERT_TRUE(ch.CloseSequence(seq).ok());
    testing::WaitForRemotePuts(c, puts + kLayers * n);
  }
  // Puts the prefix of Tokens(salt) as seq's blocks, then waits until R has them all.
  static void PutPrefix(Client& c, DataChannel& ch, uint64_t seq, uint32_t salt) {
    const uint64_t before = Remote(c)["puts"].get<uint64_t>();
    const auto hashes = PrefixBlockHashes(Tokens(salt), kBlockTokens);
    ASSERT_EQ(hashes.size(), kPrefixBlocks);
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      for (uint32_t b = 0; b < kPrefixBlocks; ++b) {
        ASSERT_TRUE(ch.Put(seq, layer, b, MakeBlock(salt, layer, b), hashes[b]).ok());
      }
    }
    testing::WaitForRemotePuts(c, before + kLayers * kPrefixBlocks);
  }
  // The Redis keys of one namespace (every master asked).
  static std::vector<std::pair<size_t, std::string>> KeysOf(const std::string& ns, const std::string& model_id) {
    const auto fp = storage::remote::NamespaceFingerprint(ns, model_id, kModel);
    const std::string prefix = storage::remote::RedisKey({fp, 0, 0}).substr(0, 5 + 1 + 32);
    std::vector<std::pair<size_t, std::string>> keys;
    for (size_t n = 0; n < cluster_->size(); ++n) {
      if (!cluster_->IsMaster(n)) continue;
      std::istringstream in(cluster_->Command(n, {"KEYS", prefix + "*"}));
      for (std::string k; std::getline(in, k);) {
        if (!k.empty()) keys.push_back({n, k});
      }
    }
    return keys;
  }

  static RedisCluster* cluster_;
  static std::string* error_;
  static testing::TempDir* dirs_[2];
  static DaemonProcess* daemons_[2];
};
RedisCluster* RemoteTierTest::cluster_ = nullptr;
std::string* RemoteTierTest::error_ = nullptr;
testing::TempDir* RemoteTierTest::dirs_[2] = {};
DaemonProcess* RemoteTierTest::daemons_[2] = {};

TEST_F(RemoteTierTest, PrefixPutOnALoadsOnBByteForByte) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "shared", "test/model@1");
  auto chb = Channel(*b, "shared", "test/model@1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 1);
  EXPECT_EQ(KeysOf("shared", "test/model@1").size(), kLayers * kPrefixBlocks);
  const auto tokens = Tokens(1);
  const nlohmann::json before = Remote(*b);
  auto looked = chb->LookupPrefix(tokens);
  ASSERT_TRUE(looked.ok()) << looked.status().ToString();
  EXPECT_EQ(*looked, kPrefixBlocks * kBlockTokens);
  auto loaded = chb->LoadPrefix(20, tokens);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t blk = 0; blk < kPrefixBlocks; ++blk) {
      ASSERT_TRUE(chb->Get(20, layer, blk, out).ok());
      EXPECT_TRUE(out == MakeBlock(1, layer, blk)) << "layer " << layer << " block " << blk;
    }
  }
  // The lookup fetched each block from R once; the load took the lookup's values
  // (docs/decisions/0014-remote-tier.md, item 18): one GET per block in all.
  const nlohmann::json after = Remote(*b);
  EXPECT_EQ(after["gets"].get<uint64_t>() - before["gets"].get<uint64_t>(), kLayers * kPrefixBlocks) << after.dump();
  EXPECT_EQ(after["reused"].get<uint64_t>() - before["reused"].get<uint64_t>(), kLayers * kPrefixBlocks);
  EXPECT_EQ(after["hits"].get<uint64_t>() - before["hits"].get<uint64_t>(), kLayers * kPrefixBlocks);
  // Now local on B: a second load does not ask R.
  const uint64_t gets = Remote(*b)["gets"].get<uint64_t>();
  loaded = chb->LoadPrefix(21, tokens);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
  EXPECT_EQ(Remote(*b)["gets"].get<uint64_t>(), gets);
  auto metrics = testing::HttpGet(internal::Call(*b, {{"op", "stats"}})->at("metrics_url").get<std::string>());
  EXPECT_GE(testing::MetricValue(metrics, "tierkv_remote_reused_total", {}), kLayers * kPrefixBlocks);
}

TEST_F(RemoteTierTest, TwoModelIdentitiesOfOneShapeNeverShare) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "iso", "org/model-a@rev1");
  auto chb = Channel(*b, "iso", "org/model-b@rev1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 2);
  auto looked = chb->LookupPrefix(Tokens(2));
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(*looked, 0u);
  EXPECT_TRUE(KeysOf("iso", "org/model-b@rev1").empty());
  // A namespace without a model identity never uses R.
  auto chn = Channel(*b, "anonymous", "");
  ASSERT_TRUE(chn);
  const uint64_t gets = Remote(*b)["gets"].get<uint64_t>();
  looked = chn->LookupPrefix(Tokens(2));
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(*looked, 0u);
  EXPECT_EQ(Remote(*b)["gets"].get<uint64_t>(), gets);
}

TEST_F(RemoteTierTest, CorruptValueIsDroppedNotServed) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "corrupt", "test/model@1");
  auto chb = Channel(*b, "corrupt", "test/model@1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 3);
  const auto keys = KeysOf("corrupt", "test/model@1");
  ASSERT_EQ(keys.size(), kLayers * kPrefixBlocks);
  // Flip one payload byte of every value (64-byte header, then the payload).
  int corrupted = 0;
  for (const auto& [node, key] : keys) {
    const std::string v = cluster_->Command(node, {"GETRANGE", key, "100", "100"});
    ASSERT_EQ(v.size(), 1u);
    ASSERT_EQ(cluster_->Command(node, {"SETRANGE", key, "100", std::string(1, static_cast<char>(v[0] ^ 0x5a))}),
              std::to_string(64 + kBlockBytes));
    ++corrupted;
  }
  ASSERT_GT(corrupted, 0);
  const uint64_t corrupt_before = Remote(*b)["corrupt"].get<uint64_t>();
  auto loaded = chb->LoadPrefix(30, Tokens(3));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, 0u);
  EXPECT_GE(Remote(*b)["corrupt"].get<uint64_t>(), corrupt_before + 1);
  std::vector<std::byte> out(kBlockBytes);
  EXPECT_EQ(chb->Get(30, 0, 0, out).code(), StatusCode::kNotFound);
}

// Policy remote_blocks = closed-sequences: closing a sequence on A writes its blocks
// to R (compressed: A has compression = "zstd"); a Get on B, which never had the
// sequence, misses locally and is served from R byte for byte, one R batch per Get;
// then the blocks are local on B. A corrupted value is not served.
TEST_F(RemoteTierTest, ClosedSequenceServesGetMissesOnB) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "seqs", "test/model@1");
  auto chb = Channel(*b, "seqs", "test/model@1");
  ASSERT_TRUE(cha && chb);
  // The policy, with tierkvctl on A and the control op on B.
  std::string text;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", daemons_[0]->socket_path(), "policy", "set", "seqs",
                                                 "remote_blocks=closed-sequences"}, &text), 0) << text;
  EXPECT_NE(text.find("closed-sequences"), std::string::npos) << text;
  ASSERT_TRUE(internal::Call(*b, {{"op", "set_policy"}, {"namespace", "seqs"},
                                  {"policy", {{"remote_blocks", "closed-sequences"}}}}).ok());
  EXPECT_FALSE(internal::Call(*b, {{"op", "set_policy"}, {"namespace", "seqs"},
                                   {"policy", {{"remote_blocks", "everything"}}}}).ok());
  constexpr uint32_t kBlocks = 5;
  auto put_sequence = [&](uint64_t seq, uint32_t salt) {
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      std::vector<std::byte> blocks;
      for (uint32_t blk = 0; blk < kBlocks; ++blk) {
        const auto one = SmoothBlock(salt, layer, blk);
        blocks.insert(blocks.end(), one.begin(), one.end());
      }
      ASSERT_TRUE(cha->Put(seq, layer, 0, blocks).ok());
    }
  };
  auto close_and_wait = [&](uint64_t seq) {
    const uint64_t puts = Remote(*a)["puts"].get<uint64_t>();
    ASSERT_TRUE(cha->CloseSequence(seq).ok());
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (Remote(*a)["puts"].get<uint64_t>() < puts + kLayers * kBlocks) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << Remote(*a).dump();
      std::this_thread::sleep_for(10ms);
    }
  };
  put_sequence(300, 11);
  std::vector<std::byte> out(kBlocks * kBlockBytes);
  EXPECT_EQ(chb->Get(300, 0, 0, out).code(), StatusCode::kNotFound);  // open on A: not in R yet
  const nlohmann::json a0 = Remote(*a);
  close_and_wait(300);
  const nlohmann::json a1 = Remote(*a);
  const double sent = a1["put_bytes"].get<double>() - a0["put_bytes"].get<double>();
  const double raw = a1["put_raw_bytes"].get<double>() - a0["put_raw_bytes"].get<double>();
  EXPECT_EQ(raw, double{kLayers} * kBlocks * kBlockBytes);
  EXPECT_LT(sent, raw * 0.8) << "zstd did not shrink the values";
  std::printf("closed sequence written to R: %.0f of %.0f bytes (zstd)\n", sent, raw);
  const uint64_t batches = Remote(*b)["get_batches"].get<uint64_t>();
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(chb->Get(300, layer, 0, out).ok()) << "layer " << layer;
    for (uint32_t blk = 0; blk < kBlocks; ++blk) {
      EXPECT_TRUE(std::memcmp(out.data() + blk * kBlockBytes, SmoothBlock(11, layer, blk).data(), kBlockBytes) == 0)
          << "layer " << layer << " block " << blk;
    }
  }
  EXPECT_EQ(Remote(*b)["get_batches"].get<uint64_t>(), batches + kLayers);  // one batch per Get
  // Now local on B.
  const uint64_t gets = Remote(*b)["gets"].get<uint64_t>();
  std::vector<std::byte> one(kBlockBytes);
  ASSERT_TRUE(chb->Get(300, 2, 3, one).ok());
  EXPECT_TRUE(one == SmoothBlock(11, 2, 3));
  EXPECT_EQ(Remote(*b)["gets"].get<uint64_t>(), gets);

  // A corrupted value: detected, counted, not served; the block before it is.
  put_sequence(301, 12);
  close_and_wait(301);
  const auto fp = storage::remote::NamespaceFingerprint("seqs", "test/model@1", kModel);
  const std::string key = storage::remote::RedisKey(storage::remote::SequenceBlockKey(fp, 301, 1, 3));
  const int node = cluster_->MasterOf(static_cast<uint16_t>(std::stoi(cluster_->Command(0, {"CLUSTER", "KEYSLOT", key}))));
  ASSERT_GE(node, 0);
  const std::string v = cluster_->Command(static_cast<size_t>(node), {"GETRANGE", key, "100", "100"});
  ASSERT_EQ(v.size(), 1u);
  ASSERT_NE(cluster_->Command(static_cast<size_t>(node), {"SETRANGE", key, "100", std::string(1, static_cast<char>(v[0] ^ 0x5a))}).find_first_of("0123456789"), std::string::npos);
  const uint64_t corrupt = Remote(*b)["corrupt"].get<uint64_t>();
  EXPECT_EQ(chb->Get(301, 1, 0, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(Remote(*b)["corrupt"].get<uint64_t>(), corrupt + 1);
  ASSERT_TRUE(chb->Get(301, 1, 2, one).ok());
  EXPECT_TRUE(one == SmoothBlock(12, 1, 2));
  EXPECT_EQ(chb->Get(301, 1, 3, one).code(), StatusCode::kNotFound);
}

// Acquire (a zero-copy get) and AcquireBatch fall through to R like Get: B pins the
// blocks of a sequence closed on A, fetched in one batch per call, kept in H.
TEST_F(RemoteTierTest, ClosedSequenceServesAcquireMissesOnB) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "seqs", "test/model@1");
  auto chb = Channel(*b, "seqs", "test/model@1");
  ASSERT_TRUE(cha && chb);
  for (auto* c : {a.get(), b.get()}) {
    ASSERT_TRUE(internal::Call(*c, {{"op", "set_policy"}, {"namespace", "seqs"},
                                    {"policy", {{"remote_blocks", "closed-sequences"}}}}).ok());
  }
  constexpr uint32_t kBlocks = 4;
  EXPECT_EQ(chb->Acquire(310, 1, 0, kBlocks).status().code(), StatusCode::kNotFound);  // no daemon has it
  for (uint64_t seq : {310, 311}) PutAndCloseSequence(*a, *cha, seq, static_cast<uint32_t>(seq), kBlocks);
  auto expect_bytes = [&](uint64_t seq, uint32_t layer, std::span<const DataChannel::BlockRef> refs) {
    for (const DataChannel::BlockRef& ref : refs) {
      std::vector<std::byte> got(kBlockBytes);
      ASSERT_TRUE(chb->CopyBlock(ref, got).ok());
      EXPECT_TRUE(got == SmoothBlock(static_cast<uint32_t>(seq), layer, ref.block))
          << "seq " << seq << " layer " << layer << " block " << ref.block;
    }
  };
  const uint64_t batches = Remote(*b)["get_batches"].get<uint64_t>();
  auto r = chb->Acquire(310, 1, 1, kBlocks - 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->blocks.size(), kBlocks - 1);
  expect_bytes(310, 1, r->blocks);
  EXPECT_EQ(Remote(*b)["get_batches"].get<uint64_t>(), batches + 1);  // one batch for the call
  // Now local: the whole range, block 0 from R and 1-3 from H, one more batch.
  auto whole = chb->Acquire(310, 1, 0, kBlocks, r->lease);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ASSERT_EQ(whole->blocks.size(), kBlocks);
  expect_bytes(310, 1, whole->blocks);
  EXPECT_EQ(Remote(*b)["get_batches"].get<uint64_t>(), batches + 2);
  ASSERT_TRUE(chb->Release(whole->lease).ok());
  // A batch of two sequences of layer 2, and one that no daemon ever had.
  const DataChannel::AcquireItem items[] = {{310, 0, kBlocks}, {311, 0, kBlocks}, {999, 0, 1}};
  auto batch = chb->AcquireBatch(2, items);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->results.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(batch->results[i].status.ok()) << i << ": " << batch->results[i].status.ToString();
    ASSERT_EQ(batch->results[i].blocks.size(), kBlocks);
    expect_bytes(items[i].seq, 2, batch->results[i].blocks);
  }
  EXPECT_EQ(batch->results[2].status.code(), StatusCode::kNotFound);
  ASSERT_TRUE(chb->Release(batch->lease).ok());
}

// Without the policy nothing of a closed sequence goes to R, and B does not ask R
// on a Get miss.
TEST_F(RemoteTierTest, ClosedSequenceStaysLocalByDefault) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "seqs-off", "test/model@1");
  auto chb = Channel(*b, "seqs-off", "test/model@1");
  ASSERT_TRUE(cha && chb);
  const uint64_t puts = Remote(*a)["puts"].get<uint64_t>() + Remote(*a)["queued_writes"].get<uint64_t>();
  ASSERT_TRUE(cha->Put(400, 0, 0, SmoothBlock(13, 0, 0)).ok());
  ASSERT_TRUE(cha->CloseSequence(400).ok());
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Remote(*a)["puts"].get<uint64_t>() + Remote(*a)["queued_writes"].get<uint64_t>(), puts);
  const uint64_t gets = Remote(*b)["gets"].get<uint64_t>();
  std::vector<std::byte> out(kBlockBytes);
  EXPECT_EQ(chb->Get(400, 0, 0, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(Remote(*b)["gets"].get<uint64_t>(), gets);
}

// B keeps looking a prefix up in R while the slot of its keys moves to another
// master (ASK during the migration, MOVED after it): every lookup finds it whole.
TEST_F(RemoteTierTest, ReshardingDuringLoads) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "reshard", "test/model@1");
  auto chb = Channel(*b, "reshard", "test/model@1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 6);
  const auto keys = KeysOf("reshard", "test/model@1");
  ASSERT_FALSE(keys.empty());
  const uint16_t slot = static_cast<uint16_t>(std::stoi(cluster_->Command(0, {"CLUSTER", "KEYSLOT", keys[0].second})));
  const int from = cluster_->MasterOf(slot);
  size_t to = 0;
  while (static_cast<int>(to) == from || !cluster_->IsMaster(to)) ++to;
  std::atomic<bool> done{false};
  std::atomic<int> lookups{0}, partial{0};
  std::thread loader([&] {
    while (!done) {
      auto looked = chb->LookupPrefix(Tokens(6));
      ++lookups;
      if (!looked.ok() || *looked != kPrefixBlocks * kBlockTokens) ++partial;
    }
  });
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(cluster_->MoveSlot(slot, to, /*finish=*/false), "");
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(cluster_->FinishMove(slot, to), "");
  std::this_thread::sleep_for(100ms);
  done = true;
  loader.join();
  EXPECT_GT(lookups.load(), 5);
  auto metrics = testing::HttpGet(internal::Call(*b, {{"op", "stats"}})->at("metrics_url").get<std::string>());
  // A lookup is never partial silently: on a loaded machine a fetch may pass
  // fetch_timeout_ms or exhaust its redirects while the slot moves (an R error,
  // counted by kind): then only a few lookups may be partial.
  if (partial.load() > 0) {
    double errors = 0;
    std::string kinds;
    for (const char* kind : {"timeout", "unavailable", "redis"}) {
      const double v = testing::MetricValue(metrics, "tierkv_remote_errors_total",
                                            {"kind=\"" + std::string(kind) + "\""});
      errors += std::max(v, 0.0);
      kinds += std::string(" ") + kind + "=" + std::to_string(v);
    }
    EXPECT_GT(errors, 0) << partial.load() << " partial lookups without a counted R error:" << kinds;
    std::printf("%d partial lookups; R errors:%s\n", partial.load(), kinds.c_str());
  }
  EXPECT_LE(partial.load() * 20, lookups.load()) << partial.load() << " of " << lookups.load() << " lookups partial";
  EXPECT_GE(testing::MetricValue(metrics, "tierkv_remote_redirects_total", {"kind=\"moved\""}) +
                testing::MetricValue(metrics, "tierkv_remote_redirects_total", {"kind=\"ask\""}),
            1);
  std::printf("resharding: %d lookups during the move, all whole\n", lookups.load());
}

// A master dies while B loads: once a replica has taken over, loads succeed again;
// the failures in between are bounded (by the failover time) and counted, and
// nothing wrong is ever served.
TEST_F(RemoteTierTest, MasterKilledUnderLoad) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "failover", "test/model@1");
  auto chb = Channel(*b, "failover", "test/model@1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 7);
  std::this_thread::sleep_for(200ms);  // replication to the replicas is asynchronous
  const auto keys = KeysOf("failover", "test/model@1");
  ASSERT_FALSE(keys.empty());
  const size_t victim = keys[0].first;
  const uint64_t errors_before = Remote(*b)["errors"].get<uint64_t>();
  cluster_->Kill(victim);
  const auto t0 = std::chrono::steady_clock::now();
  int failed = 0, lookups = 0;
  for (;;) {
    auto looked = chb->LookupPrefix(Tokens(7));
    ++lookups;
    ASSERT_TRUE(looked.ok()) << looked.status().ToString();  // a partial answer, never an error
    if (*looked == kPrefixBlocks * kBlockTokens) break;
    ++failed;
    ASSERT_LT(std::chrono::steady_clock::now() - t0, 20s) << "no failover; " << Remote(*b).dump();
    std::this_thread::sleep_for(20ms);
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto loaded = chb->LoadPrefix(50, Tokens(7));
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t blk = 0; blk < kPrefixBlocks; ++blk) {
      ASSERT_TRUE(chb->Get(50, layer, blk, out).ok());
      ASSERT_TRUE(out == MakeBlock(7, layer, blk));
    }
  }
  const uint64_t errors = Remote(*b)["errors"].get<uint64_t>() - errors_before;
  EXPECT_EQ(failed == 0, errors == 0);
  std::printf("failover: %d of %d lookups partial, %llu R errors counted, served again after %.2f s\n", failed,
              lookups, static_cast<unsigned long long>(errors), took);
  ASSERT_EQ(cluster_->Restart(victim), "");
  ASSERT_TRUE(cluster_->WaitOk(20s));
}

// Last: stops the whole cluster, then brings it back (empty: no persistence).
TEST_F(RemoteTierTest, ClusterDownLocalServesAndRecovers) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "down", "test/model@1");
  auto chb = Channel(*b, "down", "test/model@1");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 4);
  cluster_->KillAll();
  // B's lookups fail fast, answer with what is local (nothing), and mark R down.
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto looked = chb->LookupPrefix(Tokens(4));
    ASSERT_TRUE(looked.ok()) << looked.status().ToString();
    EXPECT_EQ(*looked, 0u);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
  EXPECT_EQ(Remote(*b)["state"], "down") << Remote(*b).dump();
  // A still serves its local blocks, byte for byte, and takes new puts.
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(cha->Get(10, layer, 1, out).ok());
    EXPECT_TRUE(out == MakeBlock(4, layer, 1));
  }
  auto looked = cha->LookupPrefix(Tokens(4));
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(*looked, kPrefixBlocks * kBlockTokens);
  ASSERT_TRUE(cha->Put(11, 0, 0, MakeBlock(9, 0, 0)).ok());
  // tierkvctl status says so too.
  std::string text;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", daemons_[1]->socket_path(), "status"}, &text), 0)
      << text;
  EXPECT_NE(text.find("remote            down"), std::string::npos) << text;
  // The cluster returns: the probe marks R up again and new prefixes flow.
  ASSERT_EQ(cluster_->RestartAll(), "");
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (Remote(*a)["state"] != "up" || Remote(*b)["state"] != "up") {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << Remote(*a).dump() << Remote(*b).dump();
    std::this_thread::sleep_for(50ms);
  }
  PutPrefix(*a, *cha, 12, 5);
  auto loaded = chb->LoadPrefix(40, Tokens(5));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
}

}  // namespace
}  // namespace tierkv
