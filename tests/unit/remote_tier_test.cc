// The remote tier's value format (storage/remote/remote_value.h) and RemoteTier's
// circuit breaker against a cluster that is not there (a loopback port nobody
// listens on): failures open it, fetches then fail at once, writes are dropped.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "storage/remote/recent_fetches.h"
#include "storage/remote/remote_tier.h"
#include "storage/remote/remote_value.h"
#include "storage/slot_format.h"

namespace tierkv::storage::remote {
namespace {
using namespace std::chrono_literals;

const ModelSpec kModel{4, 4, 2, 16, 16, DType::kF32};

std::vector<std::byte> Block(size_t n, uint8_t seed) {
  std::vector<std::byte> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>(seed + i * 7);
  return b;
}

// RecentFetches: a value serves one later call, within its age and the byte bound.
TEST(RecentFetchesTest, TakeOnceBoundedInBytesAndAge) {
  RecentFetches r(100, 200ms);
  std::string out;
  EXPECT_FALSE(r.Take("a", &out));
  r.Put("a", std::string(40, 'a'));
  r.Put("b", std::string(40, 'b'));
  EXPECT_EQ(r.bytes(), 80u);
  ASSERT_TRUE(r.Take("a", &out));
  EXPECT_EQ(out, std::string(40, 'a'));
  EXPECT_FALSE(r.Take("a", &out));  // once
  r.Put("c", std::string(40, 'c'));
  r.Put("d", std::string(40, 'd'));  // 120 > 100: the oldest (b) goes
  EXPECT_FALSE(r.Take("b", &out));
  EXPECT_TRUE(r.Take("c", &out));
  r.Put("big", std::string(101, 'x'));  // larger than the bound: not kept
  EXPECT_FALSE(r.Take("big", &out));
  std::this_thread::sleep_for(250ms);
  EXPECT_FALSE(r.Take("d", &out));  // too old
  EXPECT_EQ(r.bytes(), 0u);
  RecentFetches off(0, 1s);
  off.Put("a", "x");
  EXPECT_FALSE(off.Take("a", &out));
}

TEST(RemoteValueTest, FingerprintSeparatesModelsNamesAndShapes) {
  const Fingerprint a = NamespaceFingerprint("ns", "org/a@1", kModel);
  EXPECT_EQ(a, NamespaceFingerprint("ns", "org/a@1", kModel));
  EXPECT_NE(a, NamespaceFingerprint("ns", "org/b@1", kModel));
  EXPECT_NE(a, NamespaceFingerprint("ns", "org/a@2", kModel));
  EXPECT_NE(a, NamespaceFingerprint("other", "org/a@1", kModel));
  ModelSpec m = kModel;
  m.block_tokens = 32;
  EXPECT_NE(a, NamespaceFingerprint("ns", "org/a@1", m));
  const std::string key = RedisKey({a, 0x1234, 3});
  EXPECT_EQ(key.substr(0, 6), "tkv1:{");
  EXPECT_EQ(key.substr(key.size() - 3), "}:3");
  EXPECT_NE(key, RedisKey({a, 0x1234, 2}));
}

TEST(RemoteValueTest, RoundTripAndEveryMismatchIsCorruption) {
  const RemoteBlockKey key{NamespaceFingerprint("ns", "m@1", kModel), 42, 1};
  const auto block = Block(kModel.BlockBytes(), 3);
  const std::string value = EncodeRemoteValue(key, block);
  ASSERT_EQ(value.size(), sizeof(SlotHeader) + block.size());
  std::vector<std::byte> out(block.size());
  ASSERT_TRUE(DecodeRemoteValue(key, value, out).ok());
  EXPECT_EQ(out, block);
  auto corrupt = [&](std::string v) { return DecodeRemoteValue(key, v, out).code() == StatusCode::kCorruption; };
  for (size_t pos : {size_t{0}, size_t{10}, size_t{40}, size_t{63}, size_t{64}, size_t{100}, value.size() - 1}) {
    std::string v = value;
    v[pos] ^= 0x01;
    EXPECT_TRUE(corrupt(v)) << "byte " << pos;
  }
  EXPECT_TRUE(corrupt(value.substr(0, 30)));
  EXPECT_TRUE(corrupt(value.substr(0, value.size() - 1)));
  EXPECT_TRUE(corrupt(value + "x"));
  // Another block, layer or namespace under this key: refused.
  EXPECT_TRUE(corrupt(EncodeRemoteValue({key.fp, 43, 1}, block)));
  EXPECT_TRUE(corrupt(EncodeRemoteValue({key.fp, 42, 2}, block)));
  EXPECT_TRUE(corrupt(EncodeRemoteValue({NamespaceFingerprint("ns", "m@2", kModel), 42, 1}, block)));
  std::vector<std::byte> small(block.size() - 4);
  EXPECT_EQ(DecodeRemoteValue(key, value, small).code(), StatusCode::kCorruption);
}

// A compressible f16-like block: smooth values whose high bytes repeat.
std::vector<std::byte> SmoothBlock(size_t n) {
  std::vector<std::byte> b(n);
  for (size_t i = 0; i + 1 < n; i += 2) {
    b[i] = static_cast<std::byte>((i * 37) >> 3);
    b[i + 1] = static_cast<std::byte>(0x3c + ((i / 64) % 3));
  }
  return b;
}

TEST(RemoteValueTest, ZstdIsLosslessSmallerAndVerified) {
  const RemoteBlockKey key = SequenceBlockKey(NamespaceFingerprint("ns", "m@1", kModel), 77, 2, 5);
  const auto block = SmoothBlock(kModel.BlockBytes());
  const std::string value = EncodeRemoteValue(key, block, RemoteCodec::kZstd, 2);
  ASSERT_LT(value.size(), sizeof(SlotHeader) + block.size() / 2);
  std::vector<std::byte> out(block.size());
  ASSERT_TRUE(DecodeRemoteValue(key, value, out).ok());
  EXPECT_EQ(out, block);
  // Incompressible data stays raw.
  const auto noise = Block(kModel.BlockBytes(), 9);
  std::vector<std::byte> random(noise.size());
  uint64_t x = 88172645463325252ull;
  for (auto& v : random) v = static_cast<std::byte>((x ^= x << 13, x ^= x >> 7, x ^= x << 17));
  EXPECT_EQ(EncodeRemoteValue(key, random, RemoteCodec::kZstd, 2).size(), sizeof(SlotHeader) + random.size());
  // Every flipped byte is caught (header fields, checksums, or the zstd frame).
  for (size_t pos : {size_t{2}, size_t{6}, size_t{30}, size_t{64}, size_t{70}, value.size() / 2, value.size() - 1}) {
    std::string v = value;
    v[pos] ^= 0x10;
    EXPECT_EQ(DecodeRemoteValue(key, v, out).code(), StatusCode::kCorruption) << "byte " << pos;
  }
  // A prefix block and a sequence block never answer for each other.
  EXPECT_EQ(DecodeRemoteValue({key.fp, 77, 2}, value, out).code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeRemoteValue(SequenceBlockKey(key.fp, 77, 2, 6), value, out).code(), StatusCode::kCorruption);
  EXPECT_NE(RedisKey(key), RedisKey({key.fp, 77, 2}));
  EXPECT_EQ(RedisKey(key).substr(0, 7), "tkv1s:{");
}

int DeadPort() {  // bound and closed: nothing listens there
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(RemoteTierTest, BreakerOpensFailsFastAndProbes) {
  RemoteOptions o;
  o.cluster.seeds = {"127.0.0.1:" + std::to_string(DeadPort())};
  o.cluster.connect_timeout = 100ms;
  o.breaker_failures = 2;
  o.breaker_cooldown = 200ms;
  auto tier = RemoteTier::Start(o);
  ASSERT_TRUE(tier.ok());
  RemoteTier& r = **tier;
  EXPECT_EQ(r.state(), BreakerState::kClosed);
  const RemoteBlockKey key{NamespaceFingerprint("ns", "m@1", kModel), 1, 0};
  std::vector<std::string> out;
  EXPECT_EQ(r.Fetch(std::span(&key, 1), kModel.BlockBytes(), &out).code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.Fetch(std::span(&key, 1), kModel.BlockBytes(), &out).code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.state(), BreakerState::kOpen);
  EXPECT_EQ(r.stats().breaker_opens.load(), 1u);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(r.Fetch(std::span(&key, 1), kModel.BlockBytes(), &out).code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5ms);  // refused at once
  EXPECT_GE(r.stats().rejected.load(), 1u);
  r.Write(key, Block(kModel.BlockBytes(), 1), 60);
  EXPECT_EQ(r.stats().writes_dropped.load(), 1u);
  // The probe after the cooldown fails too: still down, probed again later.
  std::this_thread::sleep_for(600ms);
  EXPECT_NE(r.state(), BreakerState::kClosed);
  EXPECT_GE(r.stats().errors_unavailable.load(), 3u);
  EXPECT_TRUE(out.size() == 1 && out[0].empty());
}

TEST(RemoteTierTest, StartChecksOptions) {
  RemoteOptions o;
  EXPECT_EQ(RemoteTier::Start(o).status().code(), StatusCode::kInvalidArgument);
  o.cluster.seeds = {"127.0.0.1:1"};
  o.workers = 0;
  EXPECT_EQ(RemoteTier::Start(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::storage::remote
