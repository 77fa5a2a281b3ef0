// The Redis Cluster client (storage/remote/cluster_client.h) against a real local
// cluster of 3 masters + 3 replicas (tests/util/redis_cluster.h): key slots checked
// against the spec and the server, routing, pipelined batches, MOVED after a
// resharding, ASK during a migration, a failover, timeouts of a hung cluster.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "storage/remote/cluster_client.h"
#include "storage/remote/key_slot.h"
#include "storage/remote/remote_tier.h"
#include "tests/util/redis_cluster.h"

namespace tierkv::storage::remote {
namespace {
using namespace std::chrono_literals;
using testing::RedisCluster;

TEST(KeySlotTest, SpecVectors) {
  EXPECT_EQ(Crc16("123456789"), 0x31C3);  // the cluster spec's CRC16 check value
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
  // Hash tags (the spec's examples).
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16("foo{}{bar}") % kClusterSlots);  // empty tag: whole key
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));                   // tag is "{bar"
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));                    // first tag only
}

class ClusterClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!RedisCluster::Available()) return;
    cluster_ = new RedisCluster(3, 1);
    start_error_ = new std::string(cluster_->Start());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete start_error_;
  }
  void SetUp() override {
    if (!cluster_) GTEST_SKIP() << "redis-server/redis-cli not installed (deploy/install-deps.sh installs them)";
    ASSERT_EQ(*start_error_, "");
    ASSERT_TRUE(cluster_->WaitOk(20s));
  }
  static ClusterOptions Options() {
    ClusterOptions o;
    o.seeds = {cluster_->address(0), cluster_->address(1)};
    o.connect_timeout = 200ms;
    o.command_timeout = 300ms;
    return o;
  }
  static RedisCluster* cluster_;
  static std::string* start_error_;
};
RedisCluster* ClusterClientTest::cluster_ = nullptr;
std::string* ClusterClientTest::start_error_ = nullptr;

TEST_F(ClusterClientTest, SlotsAgreeWithServerAndRouteToOwner) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50; ++i) {
    const std::string key = "k" + std::to_string(rng()) + (i % 3 ? "" : "{tag" + std::to_string(i) + "}");
    EXPECT_EQ(std::to_string(KeySlot(key)), cluster_->Command(0, {"CLUSTER", "KEYSLOT", key})) << key;
  }
  ClusterClient client(Options());
  ASSERT_TRUE(client.RefreshMap().ok());
  for (uint16_t slot : {0, 5460, 5461, 10922, 10923, 16383}) {
    const int owner = cluster_->MasterOf(slot);
    ASSERT_GE(owner, 0);
    EXPECT_EQ(client.NodeOfSlot(slot), cluster_->address(owner)) << slot;
  }
  // Single commands go straight to the owner: no redirect.
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(client.Set("route" + std::to_string(i), "v" + std::to_string(i)).ok());
  for (int i = 0; i < 30; ++i) {
    auto v = client.Get("route" + std::to_string(i));
    ASSERT_TRUE(v.ok() && v->has_value());
    EXPECT_EQ(**v, "v" + std::to_string(i));
  }
  EXPECT_EQ(client.stats().moved, 0u);
  auto absent = client.Get("never-written");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST_F(ClusterClientTest, PipelinedBatchIsOneRoundTripPerNode) {
  ClusterClient client(Options());
  ASSERT_TRUE(client.RefreshMap().ok());
  std::vector<ClusterRequest> sets(300), gets(300);
  for (int i = 0; i < 300; ++i) {
    sets[i].argv = {"SET", "batch" + std::to_string(i), std::string(1000 + i, static_cast<char>('a' + i % 26)),
                    "PX", "60000"};
    gets[i].argv = {"GET", "batch" + std::to_string(i)};
  }
  client.Execute(sets);
  EXPECT_EQ(client.stats().round_trips, 3u);  // one per master
  client.Execute(gets);
  EXPECT_EQ(client.stats().round_trips, 6u);
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(sets[i].status.ok()) << sets[i].status.ToString();
    ASSERT_TRUE(gets[i].status.ok()) << gets[i].status.ToString();
    ASSERT_FALSE(gets[i].nil);
    EXPECT_EQ(gets[i].value, sets[i].argv[2]);
  }
  // TTL applied.
  const int owner = cluster_->MasterOf(KeySlot("batch0"));
  const long ttl = std::stol(cluster_->Command(owner, {"PTTL", "batch0"}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 60000);
}

TEST_F(ClusterClientTest, MovedAfterReshardingAndAskDuringMigration) {
  ClusterClient client(Options());
  ASSERT_TRUE(client.Set("{moving}a", "first").ok());
  ASSERT_TRUE(client.Set("{moving}b", "second").ok());
  const uint16_t slot = KeySlot("{moving}a");
  const int from = cluster_->MasterOf(slot);
  size_t to = 0;
  while (static_cast<int>(to) == from || !cluster_->IsMaster(to)) ++to;
  // Keys migrated, slot still "migrating" on the source: the source answers ASK.
  ASSERT_EQ(cluster_->MoveSlot(slot, to, /*finish=*/false), "");
  auto v = client.Get("{moving}a");
  ASSERT_TRUE(v.ok() && v->has_value()) << v.status().ToString();
  EXPECT_EQ(**v, "first");
  EXPECT_GE(client.stats().ask, 1u);
  EXPECT_EQ(client.NodeOfSlot(slot), cluster_->address(from));  // ASK does not change the map
  // The move finished: the old owner answers MOVED; the client learns the new one.
  ASSERT_EQ(cluster_->FinishMove(slot, to), "");
  v = client.Get("{moving}b");
  ASSERT_TRUE(v.ok() && v->has_value()) << v.status().ToString();
  EXPECT_EQ(**v, "second");
  EXPECT_GE(client.stats().moved, 1u);
  EXPECT_EQ(client.NodeOfSlot(slot), cluster_->address(to));
  const uint64_t moved = client.stats().moved;
  v = client.Get("{moving}a");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(client.stats().moved, moved);  // routed right the second time
  ASSERT_EQ(cluster_->MoveSlot(slot, static_cast<size_t>(from)), "");  // put it back
}

// One hung master: after breaker_failures batches its slots fail at once, the other
// masters' keys keep being served at full speed, and R as a whole stays up; once the
// node answers again its breaker closes after the cooldown.
TEST_F(ClusterClientTest, PerNodeBreakerFailsOneHungMasterFast) {
  const ModelSpec model{2, 2, 2, 16, 16, DType::kF32};
  const Fingerprint fp = NamespaceFingerprint("ns", "node-breaker@1", model);
  ClusterClient writer(Options());
  std::vector<RemoteBlockKey> keys;
  for (uint64_t h = 1; h <= 60; ++h) {
    keys.push_back({fp, h, 0});
    const std::vector<std::byte> block(model.BlockBytes(), std::byte{static_cast<uint8_t>(h)});
    ASSERT_TRUE(writer.Set(RedisKey(keys.back()), EncodeRemoteValue(keys.back(), block), 60000).ok());
  }
  // The hung master: one that is not a seed, so that map refreshes stay quick.
  int hung = -1;
  for (size_t n = 2; n < cluster_->size() && hung < 0; ++n) hung = cluster_->IsMaster(n) ? static_cast<int>(n) : -1;
  ASSERT_GE(hung, 0);
  const std::string hung_addr = cluster_->address(static_cast<size_t>(hung));
  std::vector<bool> on_hung(keys.size());
  size_t others = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    on_hung[i] = cluster_->MasterOf(KeySlot(RedisKey(keys[i]))) == hung;
    others += !on_hung[i];
  }
  ASSERT_GT(others, 0u);
  ASSERT_LT(others, keys.size());
  RemoteOptions o;
  o.cluster = Options();
  o.cluster.command_timeout = 150ms;
  o.workers = 1;
  o.breaker_failures = 2;
  o.breaker_cooldown = 400ms;
  o.reuse_bytes = 0;  // every Fetch asks the cluster (no reuse of the previous fetch's values)
  auto tier = RemoteTier::Start(o);
  ASSERT_TRUE(tier.ok());
  RemoteTier& r = **tier;
  std::vector<std::string> out;
  ASSERT_TRUE(r.Fetch(keys, model.BlockBytes(), &out).ok());  // warm: map, connections
  cluster_->Pause(static_cast<size_t>(hung), true);
  for (int i = 0; i < 2; ++i) r.Fetch(keys, model.BlockBytes(), &out).IgnoreError();  // time out on it
  const auto t0 = std::chrono::steady_clock::now();
  const Status st = r.Fetch(keys, model.BlockBytes(), &out);
  const auto took = std::chrono::steady_clock::now() - t0;
  const std::vector<std::string> down = r.nodes_down();
  cluster_->Pause(static_cast<size_t>(hung), false);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_LT(took, 100ms) << "the hung node's requests did not fail fast";
  size_t served = 0;
  for (size_t i = 0; i < keys.size(); ++i) served += !on_hung[i] && !out[i].empty();
  EXPECT_EQ(served, others);
  EXPECT_EQ(r.state(), BreakerState::kClosed);
  EXPECT_EQ(down, std::vector<std::string>{hung_addr});
  EXPECT_EQ(r.stats().node_breaker_opens.load(), 1u);
  EXPECT_GT(r.stats().node_rejected.load(), 0u);
  // Back: the probe after the cooldown closes it, every key is served again.
  ASSERT_TRUE(cluster_->WaitOk(20s));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  size_t hits = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    r.Fetch(keys, model.BlockBytes(), &out).IgnoreError();
    hits = 0;
    for (const std::string& v : out) hits += !v.empty();
    if (hits == keys.size() && r.nodes_down().empty()) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(hits, keys.size());
  EXPECT_TRUE(r.nodes_down().empty());
  std::printf("per-node breaker: fetch with one hung master took %.1f ms (%zu of %zu keys served)\n",
              std::chrono::duration<double, std::milli>(took).count(), served, keys.size());
}

// Only a fetch that keeps (a lookup) leaves its values for the next fetch; one that
// does not (a load, a Get) copies nothing into the reuse buffer.
TEST_F(ClusterClientTest, OnlyAKeepingFetchIsReused) {
  const ModelSpec model{1, 1, 1, 16, 16, DType::kF32};
  const auto fp = NamespaceFingerprint("reuse", "m@1", model);
  ClusterClient writer(Options());
  std::vector<RemoteBlockKey> keys;
  for (uint64_t h = 1; h <= 8; ++h) {
    keys.push_back({fp, h, 0});
    const std::vector<std::byte> block(model.BlockBytes(), std::byte{static_cast<uint8_t>(h)});
    ASSERT_TRUE(writer.Set(RedisKey(keys.back()), EncodeRemoteValue(keys.back(), block), 60000).ok());
  }
  RemoteOptions o;
  o.cluster = Options();
  o.workers = 1;
  auto tier = RemoteTier::Start(o);
  ASSERT_TRUE(tier.ok());
  RemoteTier& r = **tier;
  std::vector<std::string> out;
  ASSERT_TRUE(r.Fetch(keys, model.BlockBytes(), &out, /*keep=*/false).ok());
  ASSERT_TRUE(r.Fetch(keys, model.BlockBytes(), &out, /*keep=*/true).ok());
  EXPECT_EQ(r.stats().reused.load(), 0u);  // the first fetch kept nothing
  EXPECT_EQ(r.stats().gets.load(), 2 * keys.size());
  ASSERT_TRUE(r.Fetch(keys, model.BlockBytes(), &out, /*keep=*/false).ok());
  EXPECT_EQ(r.stats().reused.load(), keys.size());  // the second one's values, taken once
  EXPECT_EQ(r.stats().gets.load(), 2 * keys.size());
  for (const std::string& v : out) EXPECT_FALSE(v.empty());
}

TEST_F(ClusterClientTest, HungClusterTimesOut) {
  ClusterOptions o = Options();
  o.command_timeout = 200ms;
  ClusterClient client(o);
  ASSERT_TRUE(client.Set("hang", "x").ok());
  cluster_->Pause(true);
  const auto t0 = std::chrono::steady_clock::now();
  auto v = client.Get("hang");
  const auto took = std::chrono::steady_clock::now() - t0;
  cluster_->Pause(false);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().ToString().find("timeout"), std::string::npos) << v.status().ToString();
  EXPECT_LT(took, 2s);
  EXPECT_GE(client.stats().timeouts, 1u);
  // Back to normal once the nodes run again.
  for (int i = 0; i < 50; ++i) {
    v = client.Get("hang");
    if (v.ok()) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(v.ok() && v->has_value()) << v.status().ToString();
}

// Last: kills a master; the promoted replica serves its slots afterwards.
TEST_F(ClusterClientTest, ReconnectsAfterFailover) {
  ClusterClient client(Options());
  ASSERT_TRUE(client.Set("failover-key", "survives").ok());
  const uint16_t slot = KeySlot("failover-key");
  const int master = cluster_->MasterOf(slot);
  ASSERT_GE(master, 0);
  std::this_thread::sleep_for(200ms);  // replication is asynchronous
  cluster_->Kill(master);
  const auto t0 = std::chrono::steady_clock::now();
  Result<std::optional<std::string>> v = Unavailable("not tried");
  int failures = 0;
  while (std::chrono::steady_clock::now() - t0 < 15s) {
    v = client.Get("failover-key");
    if (v.ok()) break;
    ++failures;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ(**v, "survives");
  EXPECT_NE(client.NodeOfSlot(slot), cluster_->address(master));
  std::printf("failover: %d failed gets, %.2f s until served again\n", failures,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  ASSERT_EQ(cluster_->Restart(master), "");  // rejoins as a replica
  ASSERT_TRUE(cluster_->WaitOk(20s));
}

}  // namespace
}  // namespace tierkv::storage::remote
