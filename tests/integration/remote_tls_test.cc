// The remote tier R over TLS: a real local Redis Cluster (3 masters + 3 replicas)
// that listens on TLS only (--port 0 --tls-port N, --tls-cluster yes,
// --tls-replication yes; certificates made by the openssl CLI, tests/util/
// redis_cluster.h), the cluster client on it (slot map of TLS ports, pipelined
// batches across nodes, MOVED after a resharding), two tierkvd with [remote] tls on
// (a prefix put on A loads on B byte for byte), and a third whose CA is not the
// cluster's: every connection is refused and counted, nothing comes from R, and it
// keeps serving its local blocks.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "client/client_internal.h"
#include "common/checksum.h"
#include "storage/remote/cluster_client.h"
#include "storage/remote/key_slot.h"
#include "tests/util/daemon_process.h"
#include "tests/util/redis_cluster.h"
#include "tests/util/remote_client.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {
using namespace std::chrono_literals;
using storage::remote::ClusterClient;
using storage::remote::ClusterOptions;
using storage::remote::ClusterRequest;
using storage::remote::TlsContext;
using testing::DaemonProcess;
using testing::RedisCluster;

constexpr uint32_t kLayers = 2, kBlockTokens = 16, kPrefixBlocks = 3;
const ModelSpec kModel{kLayers, 4, 2, 16, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB

std::vector<std::byte> MakeBlock(uint32_t salt, uint32_t layer, uint32_t block) {
  std::mt19937 rng(salt * 7919 + layer * 131 + block);
  std::vector<std::byte> b(kBlockBytes);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

std::vector<int32_t> Tokens(uint32_t salt) {
  std::vector<int32_t> t(kPrefixBlocks * kBlockTokens + 3);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 17 + salt * 1000003) % 50000);
  return t;
}

class RemoteTlsTest : public ::testing::Test {
 protected:
  static constexpr int kDaemons = 3;  // A, B: the cluster's CA; C: another CA
  static void SetUpTestSuite() {
    if (!RedisCluster::Available()) return;
    cluster_ = new RedisCluster(3, 1, /*tls=*/true);
    error_ = new std::string(cluster_->Start());
    if (!error_->empty()) return;
    const storage::remote::TlsOptions t = cluster_->tls_options();
    for (int i = 0; i < kDaemons; ++i) {
      dirs_[i] = new testing::TempDir("remote-tls");
      const std::string ca = i == 2 ? cluster_->wrong_ca_file() : t.ca_file;
      const std::string sections =
          "[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\n"
          "[remote]\nenabled = true\nseeds = \"" + cluster_->address(i % 3) + "\"\n" +
          "command_timeout_ms = 500\nfetch_timeout_ms = 1500\nbreaker_failures = 2\nbreaker_cooldown_ms = 300\n" +
          "tls = true\ntls_ca_file = \"" + ca + "\"\ntls_cert_file = \"" + t.cert_file + "\"\ntls_key_file = \"" +
          t.key_file + "\"\n";
      daemons_[i] = new DaemonProcess(testing::DaemonBinary(TIERKVD_PATH), dirs_[i]->path(), "", sections);
      if (!daemons_[i]->Start()) *error_ = "tierkvd did not start: " + daemons_[i]->Log();
    }
  }
  static void TearDownTestSuite() {
    for (int i = 0; i < kDaemons; ++i) {
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

  static ClusterOptions Options(const std::string& ca_file) {
    storage::remote::TlsOptions t = cluster_->tls_options();
    t.ca_file = ca_file;
    auto ctx = TlsContext::Create(t);
    EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
    ClusterOptions o;
    o.seeds = {cluster_->address(0)};
    o.connect_timeout = 500ms;
    o.command_timeout = 500ms;
    if (ctx.ok()) o.tls = *ctx;
    return o;
  }
  static std::unique_ptr<Client> Connect(int d) {
    auto c = Client::Connect(daemons_[d]->socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  static std::unique_ptr<DataChannel> Channel(Client& c, const std::string& ns) {
    return testing::OpenRemoteChannel(c, ns, kModel, "test/model@tls");
  }
  static nlohmann::json Remote(Client& c) { return testing::RemoteStats(c); }
  // Puts the prefix of Tokens(salt) as seq's blocks on A and waits until R has them.
  static void PutPrefix(Client& c, DataChannel& ch, uint64_t seq, uint32_t salt) {
    const uint64_t before = Remote(c)["puts"].get<uint64_t>();
    const auto hashes = PrefixBlockHashes(Tokens(salt), kBlockTokens);
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      for (uint32_t b = 0; b < kPrefixBlocks; ++b) {
        ASSERT_TRUE(ch.Put(seq, layer, b, MakeBlock(salt, layer, b), hashes[b]).ok());
      }
    }
    testing::WaitForRemotePuts(c, before + kLayers * kPrefixBlocks);
  }

  static RedisCluster* cluster_;
  static std::string* error_;
  static testing::TempDir* dirs_[kDaemons];
  static DaemonProcess* daemons_[kDaemons];
};
RedisCluster* RemoteTlsTest::cluster_ = nullptr;
std::string* RemoteTlsTest::error_ = nullptr;
testing::TempDir* RemoteTlsTest::dirs_[kDaemons] = {};
DaemonProcess* RemoteTlsTest::daemons_[kDaemons] = {};

// The slot map names the TLS ports; a pipelined batch across every master costs one
// round trip per master; after a slot moves, MOVED is followed over TLS.
TEST_F(RemoteTlsTest, ClusterClientPipelinesAndFollowsMovedOverTls) {
  ClusterClient client(Options(cluster_->tls_options().ca_file));
  ASSERT_TRUE(client.RefreshMap().ok());
  for (uint16_t slot : {0, 8000, 16383}) {
    const int owner = cluster_->MasterOf(slot);
    ASSERT_GE(owner, 0);
    EXPECT_EQ(client.NodeOfSlot(slot), cluster_->address(owner)) << slot;
  }
  constexpr int kKeys = 200;
  std::vector<ClusterRequest> batch(kKeys);
  for (int i = 0; i < kKeys; ++i) {
    batch[i].argv = {"SET", "tls" + std::to_string(i), std::string(1000 + i, static_cast<char>('a' + i % 26))};
  }
  const uint64_t trips = client.stats().round_trips;
  client.Execute(batch);
  for (const ClusterRequest& r : batch) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(client.stats().round_trips - trips, 3u);  // one per master
  for (int i = 0; i < kKeys; ++i) batch[i].argv = {"GET", "tls" + std::to_string(i)};
  client.Execute(batch);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(batch[i].status.ok() && !batch[i].nil) << i;
    EXPECT_EQ(batch[i].value, std::string(1000 + i, static_cast<char>('a' + i % 26))) << i;
  }
  // A slot moves behind the client's back: the next GET gets MOVED and follows it.
  const std::string key = "tls7";
  const uint16_t slot = storage::remote::KeySlot(key);
  const int from = cluster_->MasterOf(slot);
  size_t to = 0;
  while (static_cast<int>(to) == from || !cluster_->IsMaster(to)) ++to;
  ASSERT_EQ(cluster_->MoveSlot(slot, to), "");
  const uint64_t moved = client.stats().moved;
  auto v = client.Get(key);
  ASSERT_TRUE(v.ok() && v->has_value()) << v.status().ToString();
  EXPECT_EQ(**v, std::string(1007, 'h'));
  EXPECT_GE(client.stats().moved, moved + 1);
  EXPECT_EQ(client.NodeOfSlot(slot), cluster_->address(to));
  EXPECT_EQ(client.stats().tls_errors, 0u);
}

// A client whose CA did not sign the nodes' certificates never gets a connection:
// the refusal is counted and says why.
TEST_F(RemoteTlsTest, ClusterClientWithWrongCaIsRefused) {
  ClusterClient client(Options(cluster_->wrong_ca_file()));
  const Status st = client.RefreshMap();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.ToString().find("certificate"), std::string::npos) << st.ToString();
  EXPECT_GE(client.stats().tls_errors, 1u);
  // The right CA but a name the certificate does not carry: refused as well.
  storage::remote::TlsOptions t = cluster_->tls_options();
  t.server_name = "redis.example";
  auto ctx = TlsContext::Create(t);
  ASSERT_TRUE(ctx.ok());
  ClusterOptions o = Options(t.ca_file);
  o.tls = *ctx;
  ClusterClient named(o);
  EXPECT_EQ(named.RefreshMap().code(), StatusCode::kUnavailable);
  EXPECT_GE(named.stats().tls_errors, 1u);
  // "localhost" is in the certificate's names: accepted.
  t.server_name = "localhost";
  o.tls = *TlsContext::Create(t);
  ClusterClient localhost(o);
  EXPECT_TRUE(localhost.RefreshMap().ok());
}

TEST_F(RemoteTlsTest, PrefixPutOnALoadsOnBByteForByte) {
  auto a = Connect(0), b = Connect(1);
  auto cha = Channel(*a, "tls-shared");
  auto chb = Channel(*b, "tls-shared");
  ASSERT_TRUE(cha && chb);
  PutPrefix(*a, *cha, 10, 1);
  const nlohmann::json before = Remote(*b);
  auto looked = chb->LookupPrefix(Tokens(1));
  ASSERT_TRUE(looked.ok()) << looked.status().ToString();
  EXPECT_EQ(*looked, kPrefixBlocks * kBlockTokens);
  auto loaded = chb->LoadPrefix(20, Tokens(1));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(*loaded, kPrefixBlocks * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t blk = 0; blk < kPrefixBlocks; ++blk) {
      ASSERT_TRUE(chb->Get(20, layer, blk, out).ok());
      EXPECT_TRUE(out == MakeBlock(1, layer, blk)) << "layer " << layer << " block " << blk;
    }
  }
  const nlohmann::json after = Remote(*b);
  EXPECT_EQ(after["gets"].get<uint64_t>() - before["gets"].get<uint64_t>(), kLayers * kPrefixBlocks);  // lookup only
  EXPECT_EQ(after["tls_errors"].get<uint64_t>(), 0u);
  EXPECT_EQ(after["state"], "up");
}

// Daemon C trusts another CA: R is unreachable for it (counted TLS errors, R marked
// down), nothing is served from R, and its local blocks are served as ever.
TEST_F(RemoteTlsTest, WrongCaDaemonServesLocalOnly) {
  auto a = Connect(0), c = Connect(2);
  auto cha = Channel(*a, "tls-wrong-ca");
  auto chc = Channel(*c, "tls-wrong-ca");
  ASSERT_TRUE(cha && chc);
  PutPrefix(*a, *cha, 10, 2);
  for (int i = 0; i < 3; ++i) {
    auto looked = chc->LookupPrefix(Tokens(2));
    ASSERT_TRUE(looked.ok()) << looked.status().ToString();
    EXPECT_EQ(*looked, 0u);
  }
  auto loaded = chc->LoadPrefix(30, Tokens(2));
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, 0u);
  const nlohmann::json r = Remote(*c);
  EXPECT_GE(r["tls_errors"].get<uint64_t>(), 1u) << r.dump();
  EXPECT_GE(r["errors"].get<uint64_t>(), 1u) << r.dump();
  EXPECT_EQ(r["hits"].get<uint64_t>(), 0u);
  EXPECT_NE(r["state"], "up") << r.dump();
  auto metrics = testing::HttpGet(internal::Call(*c, {{"op", "stats"}})->at("metrics_url").get<std::string>());
  EXPECT_GE(testing::MetricValue(metrics, "tierkv_remote_tls_errors_total", {}), 1);
  // C's own blocks: put and read back.
  const auto hashes = PrefixBlockHashes(Tokens(3), kBlockTokens);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(chc->Put(40, layer, 0, MakeBlock(3, layer, 0), hashes[0]).ok());
  }
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(chc->Get(40, layer, 0, out).ok());
    EXPECT_TRUE(out == MakeBlock(3, layer, 0));
  }
  auto local = chc->LookupPrefix(Tokens(3));
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(*local, kBlockTokens);
}

// Last (it kills a master): a connected TLS client loses a master; its requests for
// that master fail (no crash: OpenSSL's writes to a closed socket do not raise
// SIGPIPE into the process), then after the failover the client reconnects to the
// promoted replica over TLS and every key is served again.
TEST_F(RemoteTlsTest, FailoverAndReconnectOverTls) {
  ClusterOptions o = Options(cluster_->tls_options().ca_file);
  o.command_timeout = 300ms;
  ClusterClient client(o);
  constexpr int kKeys = 60;
  std::vector<ClusterRequest> batch(kKeys);
  for (int i = 0; i < kKeys; ++i) batch[i].argv = {"SET", "fo" + std::to_string(i), "v" + std::to_string(i)};
  client.Execute(batch);
  for (const ClusterRequest& r : batch) ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  std::this_thread::sleep_for(200ms);  // replication is asynchronous
  const int victim = cluster_->MasterOf(storage::remote::KeySlot("fo0"));
  ASSERT_GE(victim, 0);
  // A hung master (shorter than cluster-node-timeout): its requests time out after
  // command_timeout, over TLS as over TCP, and the others are served.
  cluster_->Pause(static_cast<size_t>(victim), true);
  for (int i = 0; i < kKeys; ++i) batch[i].argv = {"GET", "fo" + std::to_string(i)};
  const auto p0 = std::chrono::steady_clock::now();
  const uint64_t timeouts = client.stats().timeouts;
  client.Execute(batch);
  const auto paused_for = std::chrono::steady_clock::now() - p0;
  cluster_->Pause(static_cast<size_t>(victim), false);
  EXPECT_LT(paused_for, 900ms);
  EXPECT_GE(client.stats().timeouts, timeouts + 1);
  EXPECT_FALSE(batch[0].status.ok());
  EXPECT_NE(batch[0].status.ToString().find("timeout"), std::string::npos) << batch[0].status.ToString();
  int served = 0;
  for (const ClusterRequest& r : batch) served += r.status.ok() && r.value.size() > 1;
  EXPECT_GT(served, 0);
  cluster_->Kill(static_cast<size_t>(victim));
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < kKeys; ++i) batch[i].argv = {"GET", "fo" + std::to_string(i)};
    client.Execute(batch);
    bool all = true;
    for (int i = 0; i < kKeys; ++i) {
      if (!batch[i].status.ok()) {
        all = false;
        continue;
      }
      ASSERT_FALSE(batch[i].nil) << i;
      ASSERT_EQ(batch[i].value, "v" + std::to_string(i));  // never a wrong value
    }
    if (all) break;
    ASSERT_LT(std::chrono::steady_clock::now() - t0, 20s) << "no failover over TLS";
    std::this_thread::sleep_for(50ms);
  }
  std::printf("TLS failover: served again %.2f s after the master's SIGKILL\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_EQ(client.stats().tls_errors, 0u);
  EXPECT_GE(client.stats().connects, 4u);  // three masters, then the promoted replica
}

}  // namespace
}  // namespace tierkv
