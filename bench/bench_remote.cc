// tierkv_bench_remote: the remote tier R on a real local Redis Cluster (3 masters +
// 3 replicas on loopback) shared by two tierkvd processes (A and B), measured in one
// run:
//   - prefix from R on B: LookupPrefix (fetch + verify, nothing stored) and LoadPrefix
//     (fetch + verify + store into H) of a prefix A put, GB/s and latency per block;
//   - the same keys read with raw pipelined GETs (ClusterClient, same batch size):
//     the ceiling, and the ratio (target >= 0.8);
//   - the same prefix once local on B (LoadPrefix of a cached prefix);
//   - put latency on A with R on (background writes) vs a namespace without R;
//   - the same prefix loaded from local D on a third daemon C (write-through, then
//     restarted: its blocks are on D only);
//   - plain TCP vs TLS: the same blocks read with raw GETs and through a RemoteTier
//     on this cluster and on a TLS-only one ([remote] tls);
//   - lookup then load on a fresh daemon E that reuses the lookup's values
//     ([remote] lookup_reuse_mb; A and B run without, so every read above is R's);
//   - zstd compression of the blocks (RemoteCodec::kZstd, in this process): bytes
//     saved and the time to encode / inflate one block.
// --kv PATH takes the blocks from a file written by bench/remote/prefill_kv.py (the
// reference model's real K and V, with its prefill time) instead of random bytes.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "bench/bench_util.h"
#include "client/client_internal.h"
#include "common/checksum.h"
#include "storage/remote/cluster_client.h"
#include "storage/remote/remote_tier.h"
#include "storage/remote/remote_value.h"
#include "tests/util/daemon_process.h"
#include "tests/util/redis_cluster.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace {
using namespace tierkv;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(Usage: tierkv_bench_remote [--blocks N] [--layers L] [--rounds R] [--kv PATH] [--json PATH]

Starts a Redis Cluster (redis-server, redis-cli from PATH) and two tierkvd (beside
this program) on loopback; A puts a prefix of N full blocks x L layers (64 KiB
blocks: 8 KV heads x 16 tokens x head_dim 128, bf16), B reads it from R. Default
N = 32, L = 16 (512 blocks, 32 MiB); R rounds of each read (best kept, default 5).
--kv PATH: the model, N, L and the blocks from bench/remote/prefill_kv.py's file.
)";

// bench/remote/prefill_kv.py's file: a JSON header line, then f32 blocks [block][layer].
struct KvFile {
  nlohmann::json header;
  ModelSpec model;
  std::vector<std::vector<std::byte>> blocks;
};
bool ReadKv(const std::string& path, KvFile* kv) {
  std::ifstream f(path, std::ios::binary);
  std::string line;
  if (!f || !std::getline(f, line)) return false;
  kv->header = nlohmann::json::parse(line, nullptr, false);
  if (kv->header.is_discarded()) return false;
  const auto& h = kv->header;
  kv->model = ModelSpec{h["layers"].get<uint32_t>(), h["q_heads"].get<uint32_t>(), h["kv_heads"].get<uint32_t>(),
                        h["head_dim"].get<uint32_t>(), h["block_tokens"].get<uint32_t>(), DType::kF32};
  const uint64_t n = uint64_t{h["blocks"].get<uint32_t>()} * kv->model.num_layers;
  for (uint64_t i = 0; i < n; ++i) {
    std::vector<std::byte> b(kv->model.BlockBytes());
    if (!f.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()))) return false;
    kv->blocks.push_back(std::move(b));
  }
  return true;
}

// The same block as bf16 (f32 truncated): what a bf16 engine would store.
std::vector<std::byte> ToBf16(const std::vector<std::byte>& f32) {
  std::vector<std::byte> out(f32.size() / 2);
  for (size_t i = 0; i + 4 <= f32.size(); i += 4) {
    out[i / 2] = f32[i + 2];
    out[i / 2 + 1] = f32[i + 3];
  }
  return out;
}

// zstd on every block, in this process: sent / raw bytes and ns per block each way.
struct Compressed {
  double ratio = 1, encode_us = 0, inflate_us = 0;
};
Compressed Compress(const std::vector<std::vector<std::byte>>& blocks, uint32_t elem) {
  using namespace storage::remote;
  const Fingerprint fp{1, 2};
  double raw = 0, sent = 0, enc = 0, inf = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const RemoteBlockKey key{fp, i + 1, 0};
    auto t0 = Clock::now();
    std::string v = EncodeRemoteValue(key, blocks[i], RemoteCodec::kZstd, elem);
    enc += bench::SecondsSince(t0);
    raw += blocks[i].size();
    sent += v.size() - 64;
    t0 = Clock::now();
    if (!VerifyRemoteValue(key, v, blocks[i].size()).ok() || !InflateRemoteValue(&v, blocks[i].size()).ok() ||
        std::memcmp(RemotePayload(v).data(), blocks[i].data(), blocks[i].size()) != 0) {
      std::fprintf(stderr, "zstd round trip failed\n");
      std::exit(1);
    }
    inf += bench::SecondsSince(t0);
  }
  const double n = static_cast<double>(blocks.size());
  return {sent / raw, enc / n * 1e6, inf / n * 1e6};
}

std::vector<std::byte> Block(size_t bytes, uint32_t seed) {
  std::vector<std::byte> v(bytes);
  std::mt19937 rng(seed);
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    const uint32_t x = rng();
    std::memcpy(&v[i], &x, 4);
  }
  return v;
}

std::unique_ptr<DataChannel> Open(Client& c, const std::string& ns, const ModelSpec& m, const std::string& id) {
  NamespaceSpec spec;
  spec.name = ns;
  spec.model = m;
  spec.model_id = id;
  if (!c.CreateNamespace(spec).ok() || !c.Attach(ns).ok()) return nullptr;
  auto ch = c.OpenChannel(ns, {.staging_bytes = 1 << 20});
  return ch.ok() ? std::move(ch).value() : nullptr;
}

int Fail(const std::string& why) {
  std::fprintf(stderr, "tierkv_bench_remote: %s\n", why.c_str());
  return 1;
}

// Plain vs TLS on the same footing: the blocks written (encoded values, keys of a
// namespace of their own) to `cluster`, then read back with raw pipelined GETs and
// through a RemoteTier in this process (fetch + verify), best of `rounds` each.
struct FetchTimes {
  double raw_s = 1e9, tier_s = 1e9;
  std::string error;
};
FetchTimes TimeFetches(const testing::RedisCluster& cluster, const ModelSpec& model,
                       const std::vector<std::vector<std::byte>>& data, uint32_t rounds, size_t per_batch) {
  FetchTimes t;
  storage::remote::ClusterOptions o;
  o.seeds = {cluster.address(0)};
  o.command_timeout = std::chrono::seconds(5);
  if (cluster.tls()) {
    auto ctx = storage::remote::TlsContext::Create(cluster.tls_options());
    if (!ctx.ok()) return {1e9, 1e9, ctx.status().ToString()};
    o.tls = *ctx;
  }
  const auto fp = storage::remote::NamespaceFingerprint("bench-fetch", "bench/model@1", model);
  std::vector<storage::remote::RemoteBlockKey> keys;
  for (size_t i = 0; i < data.size(); ++i) {
    keys.push_back({fp, i / model.num_layers + 1, static_cast<uint32_t>(i % model.num_layers)});
  }
  storage::remote::ClusterClient client(o);
  for (size_t i = 0; i < keys.size(); i += per_batch) {
    std::vector<storage::remote::ClusterRequest> reqs(std::min(per_batch, keys.size() - i));
    for (size_t j = 0; j < reqs.size(); ++j) {
      reqs[j].argv = {"SET", storage::remote::RedisKey(keys[i + j]),
                      storage::remote::EncodeRemoteValue(keys[i + j], data[i + j])};
    }
    client.Execute(reqs);
    for (auto& q : reqs) {
      if (!q.status.ok()) return {1e9, 1e9, "SET: " + q.status.ToString()};
    }
  }
  for (uint32_t r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < keys.size(); i += per_batch) {
      std::vector<storage::remote::ClusterRequest> reqs(std::min(per_batch, keys.size() - i));
      for (size_t j = 0; j < reqs.size(); ++j) reqs[j].argv = {"GET", storage::remote::RedisKey(keys[i + j])};
      client.Execute(reqs);
      for (auto& q : reqs) {
        if (!q.status.ok() || q.nil) return {1e9, 1e9, "GET: " + q.status.ToString()};
      }
    }
    t.raw_s = std::min(t.raw_s, bench::SecondsSince(t0));
  }
  storage::remote::RemoteOptions ro;
  ro.cluster = o;
  ro.fetch_timeout = std::chrono::seconds(10);
  ro.reuse_bytes = 0;  // every round reads the cluster
  auto tier = storage::remote::RemoteTier::Start(ro);
  if (!tier.ok()) return {1e9, 1e9, "RemoteTier: " + tier.status().ToString()};
  for (uint32_t r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < keys.size(); i += per_batch) {
      std::vector<std::string> got;
      const size_t n = std::min(per_batch, keys.size() - i);
      if (!(*tier)->Fetch(std::span(keys).subspan(i, n), model.BlockBytes(), &got).ok()) {
        return {1e9, 1e9, "RemoteTier fetch failed"};
      }
      for (auto& g : got) {
        if (storage::remote::RemotePayload(g).size() != model.BlockBytes()) return {1e9, 1e9, "a block missing"};
      }
    }
    t.tier_s = std::min(t.tier_s, bench::SecondsSince(t0));
  }
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  uint32_t blocks = 32, layers = 16, rounds = 5;
  std::string json_path, kv_path;
  if (!bench::ParseFlagValues(argc, argv, [] { std::fputs(kUsage, stdout); },
                              [&](const std::string& f, const std::string& v) {
                                if (f == "--blocks") blocks = std::stoul(v);
                                else if (f == "--layers") layers = std::stoul(v);
                                else if (f == "--rounds") rounds = std::stoul(v);
                                else if (f == "--json") json_path = v;
                                else if (f == "--kv") kv_path = v;
                                else return false;
                                return true;
                              })) {
    return 2;
  }
  KvFile kv;
  if (!kv_path.empty()) {
    if (!ReadKv(kv_path, &kv)) return Fail("cannot read " + kv_path);
    blocks = kv.header["blocks"].get<uint32_t>();
    layers = kv.model.num_layers;
  }
  const ModelSpec model = kv_path.empty() ? ModelSpec{layers, 32, 8, 128, 16, DType::kBF16} : kv.model;
  const size_t bb = model.BlockBytes();
  const uint64_t total = uint64_t{blocks} * layers;
  if (!testing::RedisCluster::Available()) return Fail("redis-server/redis-cli not installed");
  testing::RedisCluster cluster(3, 1);
  if (std::string e = cluster.Start(); !e.empty()) return Fail(e);
  testing::TempDir dir_a("bench-remote-a"), dir_b("bench-remote-b");
  const std::string mib = std::to_string((total * bb * 2 + (64 << 20)) & ~uint64_t{0xFFFFF});
  const std::string sections = "[storage]\ngpu_bytes = " + mib + "\nhost_bytes = " + mib +
                               "\ndisk_bytes = 0\n[remote]\nenabled = true\nseeds = \"" + cluster.Seeds() +
                               "\"\nwrite_queue_blocks = 65536\nfetch_timeout_ms = 10000\ncommand_timeout_ms = 5000\n"
                               // Every lookup round and the load read R (no reuse of the lookup's values).
                               "lookup_reuse_mb = 0\n";
  const std::string daemon = testing::DaemonBinary(TIERKVD_PATH);
  testing::DaemonProcess a(daemon, dir_a.path(), "", sections), b(daemon, dir_b.path(), "", sections);
  if (!a.Start() || !b.Start()) return Fail("tierkvd did not start: " + a.Log() + b.Log());
  auto ca = Client::Connect(a.socket_path());
  auto cb = Client::Connect(b.socket_path());
  if (!ca.ok() || !cb.ok()) return Fail("connect");
  auto cha = Open(**ca, "bench", model, "bench/model@1");
  auto chl = Open(**ca, "local", model, "");  // R off: the put latency baseline
  auto chb = Open(**cb, "bench", model, "bench/model@1");
  if (!cha || !chl || !chb) return Fail("namespaces");

  std::vector<int32_t> tokens(size_t{blocks} * model.block_tokens + 3);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7 + 11);
  const auto hashes = PrefixBlockHashes(tokens, model.block_tokens);
  std::vector<std::vector<std::byte>> data;
  for (uint64_t i = 0; i < total; ++i) data.push_back(kv_path.empty() ? Block(bb, static_cast<uint32_t>(i)) : kv.blocks[i]);
  // Puts: R on (A's "bench") and R off ("local"), interleaved per position.
  std::vector<double> put_r, put_l;
  for (uint32_t p = 0; p < blocks; ++p) {
    for (uint32_t l = 0; l < layers; ++l) {
      const auto& d = data[size_t{p} * layers + l];
      auto t0 = Clock::now();
      if (!cha->Put(1, l, p, d, hashes[p]).ok()) return Fail("put");
      put_r.push_back(bench::SecondsSince(t0) * 1e6);
      t0 = Clock::now();
      if (!chl->Put(1, l, p, d, hashes[p]).ok()) return Fail("put");
      put_l.push_back(bench::SecondsSince(t0) * 1e6);
    }
  }
  const auto write_t0 = Clock::now();
  for (;;) {
    auto s = internal::Call(**ca, {{"op", "stats"}});
    if (s.ok() && (*s)["remote"]["puts"].get<uint64_t>() >= total) break;
    if (bench::SecondsSince(write_t0) > 60) return Fail("background writes did not finish");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double write_s = bench::SecondsSince(write_t0);

  const double bytes = double(total) * bb;
  double lookup_best = 1e9, raw_best = 1e9, tier_best = 1e9, lookup_first = 0;
  for (uint32_t r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    auto n = chb->LookupPrefix(tokens);
    const double t = bench::SecondsSince(t0);
    if (!n.ok() || *n != blocks * model.block_tokens) {
      auto st = internal::Call(**cb, {{"op", "stats"}});
      return Fail("lookup from R incomplete: " + (n.ok() ? std::to_string(*n) : n.status().ToString()) + " " +
                  (st.ok() ? (*st)["remote"].dump() : "") + "\n" + b.Log().substr(b.Log().size() > 3000 ? b.Log().size() - 3000 : 0));
    }
    lookup_best = std::min(lookup_best, t);
    if (r == 0) lookup_first = t;  // a fresh daemon's first lookup (E's below is one too)
  }
  // Raw pipelined GETs of the same keys, batches of the same size as the daemon's.
  {
    storage::remote::ClusterOptions o;
    o.seeds = {cluster.address(0)};
    storage::remote::ClusterClient client(o);
    const auto fp = storage::remote::NamespaceFingerprint("bench", "bench/model@1", model);
    // The daemon scopes prefix hashes by publisher uid: list the keys R holds instead.
    std::vector<std::string> keys;
    const std::string prefix = storage::remote::RedisKey({fp, 0, 0}).substr(0, 38);
    for (size_t n = 0; n < cluster.size(); ++n) {
      if (!cluster.IsMaster(n)) continue;
      std::istringstream in(cluster.Command(n, {"KEYS", prefix + "*"}));
      for (std::string k; std::getline(in, k);) {
        if (!k.empty()) keys.push_back(k);
      }
    }
    if (keys.size() != total) return Fail("R holds " + std::to_string(keys.size()) + " keys");
    const size_t per_batch = std::max<size_t>(1, 512 / layers) * layers;
    for (uint32_t r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      for (size_t i = 0; i < keys.size(); i += per_batch) {
        std::vector<storage::remote::ClusterRequest> reqs(std::min(per_batch, keys.size() - i));
        for (size_t j = 0; j < reqs.size(); ++j) reqs[j].argv = {"GET", keys[i + j]};
        client.Execute(reqs);
        for (auto& q : reqs) {
          if (!q.status.ok() || q.nil) return Fail("raw GET failed");
        }
      }
      raw_best = std::min(raw_best, bench::SecondsSince(t0));
    }
    // The same keys through a RemoteTier in this process (fetch + verify, as the daemon).
    storage::remote::RemoteOptions ro;
    ro.cluster = o;
    ro.fetch_timeout = std::chrono::seconds(10);
    ro.reuse_bytes = 0;
    auto tier = storage::remote::RemoteTier::Start(ro);
    if (!tier.ok()) return Fail("RemoteTier");
    std::vector<storage::remote::RemoteBlockKey> rkeys;
    for (const std::string& k : keys) {  // "tkv1:{" fp(32) hash(16) "}:" layer
      storage::remote::RemoteBlockKey rk{fp, std::stoull(k.substr(38, 16), nullptr, 16),
                                         static_cast<uint32_t>(std::stoul(k.substr(56)))};
      rkeys.push_back(rk);
    }
    for (uint32_t r = 0; r < rounds; ++r) {
      auto t0 = Clock::now();
      for (size_t i = 0; i < rkeys.size(); i += per_batch) {
        std::vector<std::string> got;
        const size_t n = std::min(per_batch, rkeys.size() - i);
        if (!(*tier)->Fetch(std::span(rkeys).subspan(i, n), bb, &got).ok()) return Fail("RemoteTier fetch");
        for (auto& g : got) {
          if (storage::remote::RemotePayload(g).size() != bb) return Fail("RemoteTier fetch: a block missing");
        }
      }
      tier_best = std::min(tier_best, bench::SecondsSince(t0));
    }
  }
  auto t0 = Clock::now();
  auto loaded = chb->LoadPrefix(2, tokens);
  const double load_remote = bench::SecondsSince(t0);
  if (!loaded.ok() || *loaded != blocks * model.block_tokens) return Fail("load from R incomplete");
  double load_local = 1e9;
  for (uint32_t r = 0; r < rounds; ++r) {
    t0 = Clock::now();
    loaded = chb->LoadPrefix(3 + r, tokens);
    load_local = std::min(load_local, bench::SecondsSince(t0));
  }
  // Local D: daemon C puts the prefix write-through, restarts (G/H are volatile: its
  // blocks are on D only), then loads it.
  // Lookup then load on a fresh daemon E with lookup_reuse_mb at its default (the load
  // takes the lookup's values): R GETs and time, against B's lookup + load above.
  double lookup_e = 0, load_e = 0, gets_e = 0, reused_e = 0;
  {
    testing::TempDir dir_e("bench-remote-e");
    std::string reuse_sections = sections;
    reuse_sections.erase(reuse_sections.find("lookup_reuse_mb = 0\n"));
    testing::DaemonProcess e(daemon, dir_e.path(), "", reuse_sections);
    if (!e.Start()) return Fail("tierkvd E did not start: " + e.Log());
    auto ce = Client::Connect(e.socket_path());
    if (!ce.ok()) return Fail("connect E");
    auto che = Open(**ce, "bench", model, "bench/model@1");
    if (!che) return Fail("E namespace");
    t0 = Clock::now();
    auto n = che->LookupPrefix(tokens);
    lookup_e = bench::SecondsSince(t0);
    t0 = Clock::now();
    auto m = che->LoadPrefix(1, tokens);
    load_e = bench::SecondsSince(t0);
    if (!n.ok() || !m.ok() || *m != blocks * model.block_tokens) return Fail("lookup + load on E incomplete");
    auto st = internal::Call(**ce, {{"op", "stats"}});
    if (!st.ok()) return Fail("E stats");
    gets_e = (*st)["remote"]["gets"].get<double>();
    reused_e = (*st)["remote"]["reused"].get<double>();
  }
  testing::TempDir dir_c("bench-remote-c");
  const std::string d_sections = "[storage]\ngpu_bytes = " + mib + "\nhost_bytes = " + mib + "\ndisk_bytes = " +
                                 std::to_string(total * (bb + 8192) * 2 + (64 << 20)) + "\n";
  testing::DaemonProcess c(daemon, dir_c.path(), "", d_sections);
  if (!c.Start()) return Fail("tierkvd C did not start: " + c.Log());
  double load_disk = 0, lookup_disk = 0;
  {
    auto cc = Client::Connect(c.socket_path());
    if (!cc.ok()) return Fail("connect C");
    auto chc = Open(**cc, "bench", model, "");
    if (!chc || !internal::Call(**cc, {{"op", "set_policy"}, {"namespace", "bench"},
                                       {"policy", {{"write", "write-through"}}}}).ok()) {
      return Fail("C namespace");
    }
    for (uint32_t p = 0; p < blocks; ++p) {
      for (uint32_t l = 0; l < layers; ++l) {
        if (!chc->Put(1, l, p, data[size_t{p} * layers + l], hashes[p]).ok()) return Fail("put on C");
      }
    }
  }
  if (c.Stop() != 0 || !c.Start()) return Fail("restart C: " + c.Log());
  {
    auto cc = Client::Connect(c.socket_path());
    if (!cc.ok() || !(*cc)->Attach("bench").ok()) return Fail("reconnect C");
    auto chc = (*cc)->OpenChannel("bench", {.staging_bytes = 1 << 20});
    if (!chc.ok()) return Fail("C channel");
    t0 = Clock::now();
    auto n = (*chc)->LookupPrefix(tokens);
    lookup_disk = bench::SecondsSince(t0);
    t0 = Clock::now();
    auto m = (*chc)->LoadPrefix(100, tokens);
    load_disk = bench::SecondsSince(t0);
    if (!n.ok() || !m.ok() || *m != blocks * model.block_tokens) return Fail("load from D incomplete");
  }
  // Plain vs TLS: the same blocks and batches on this cluster and on a TLS-only one
  // (3 masters + 3 replicas as well; certificates by the openssl CLI).
  const size_t fetch_batch = std::max<size_t>(1, 512 / layers) * layers;
  const FetchTimes plain = TimeFetches(cluster, model, data, rounds, fetch_batch);
  if (!plain.error.empty()) return Fail("plain fetches: " + plain.error);
  testing::RedisCluster tls_cluster(3, 1, /*tls=*/true);
  if (std::string e = tls_cluster.Start(); !e.empty()) return Fail("TLS cluster: " + e);
  const FetchTimes tls = TimeFetches(tls_cluster, model, data, rounds, fetch_batch);
  if (!tls.error.empty()) return Fail("TLS fetches: " + tls.error);
  std::vector<std::vector<std::string>> rows = {
      {"lookup from R (fetch+verify)", bench::Fmt(bytes / lookup_best / 1e9), bench::Fmt(lookup_best * 1e6 / total, 1)},
      {"raw pipelined GET (ClusterClient)", bench::Fmt(bytes / raw_best / 1e9), bench::Fmt(raw_best * 1e6 / total, 1)},
      {"RemoteTier in this process (fetch+verify)", bench::Fmt(bytes / tier_best / 1e9),
       bench::Fmt(tier_best * 1e6 / total, 1)},
      {"raw pipelined GET, plain TCP", bench::Fmt(bytes / plain.raw_s / 1e9), bench::Fmt(plain.raw_s * 1e6 / total, 1)},
      {"raw pipelined GET, TLS", bench::Fmt(bytes / tls.raw_s / 1e9), bench::Fmt(tls.raw_s * 1e6 / total, 1)},
      {"RemoteTier, plain TCP (fetch+verify)", bench::Fmt(bytes / plain.tier_s / 1e9),
       bench::Fmt(plain.tier_s * 1e6 / total, 1)},
      {"RemoteTier, TLS (fetch+verify)", bench::Fmt(bytes / tls.tier_s / 1e9), bench::Fmt(tls.tier_s * 1e6 / total, 1)},
      {"load from R (fetch+verify+store)", bench::Fmt(bytes / load_remote / 1e9),
       bench::Fmt(load_remote * 1e6 / total, 1)},
      {"load, prefix already local", bench::Fmt(bytes / load_local / 1e9), bench::Fmt(load_local * 1e6 / total, 1)},
      {"lookup on C, prefix on local D", bench::Fmt(bytes / lookup_disk / 1e9), bench::Fmt(lookup_disk * 1e6 / total, 1)},
      {"load on C from local D (read+store)", bench::Fmt(bytes / load_disk / 1e9), bench::Fmt(load_disk * 1e6 / total, 1)},
  };
  std::printf("prefix of %u blocks x %u layers = %llu blocks of %zu KiB (%.1f MiB), best of %u\n", blocks, layers,
              static_cast<unsigned long long>(total), bb >> 10, bytes / (1 << 20), rounds);
  bench::PrintTable({"path", "GB/s", "us/block"}, rows);
  std::printf("lookup / raw = %.2f (target >= 0.8)\n", raw_best / lookup_best);
  if (auto st = internal::Call(**cb, {{"op", "stats"}}); st.ok()) {
    const std::string m = testing::HttpGet((*st)["metrics_url"].get<std::string>());
    const double sum = testing::MetricValue(m, "tierkv_remote_fetch_seconds_sum");
    const double count = testing::MetricValue(m, "tierkv_remote_fetch_seconds_count");
    std::printf("inside B: %.0f fetch batches, %.1f ms each on average (R worker: GETs + verification)\n", count,
                count > 0 ? sum / count * 1e3 : 0.0);
  }
  std::printf("lookup + load from R, %llu blocks (first lookup of a fresh daemon): reuse off (B) %.1f + %.1f ms, %llu "
              "GETs | reuse on (E) %.1f + %.1f ms, %.0f GETs, %.0f reused\n",
              static_cast<unsigned long long>(total), lookup_first * 1e3, load_remote * 1e3,
              static_cast<unsigned long long>(2 * total), lookup_e * 1e3, load_e * 1e3, gets_e, reused_e);
  std::printf("whole prefix: load from R %.2f ms, load from local D %.2f ms", load_remote * 1e3, load_disk * 1e3);
  if (!kv_path.empty()) {
    std::printf("; prefill of the same %u tokens (torch, CPU, %d thread): %.2f ms", blocks * model.block_tokens,
                kv.header.value("threads", 1), kv.header["prefill_s"].get<double>() * 1e3);
  }
  std::printf("\n");
  const Compressed z = Compress(data, static_cast<uint32_t>(DTypeBytes(model.dtype)));
  std::printf("zstd (byte planes, level 1) on these %s blocks: %.3f of the bytes, %.1f us to encode, %.1f us to "
              "inflate one block\n", kv_path.empty() ? "random" : "f32 KV", z.ratio, z.encode_us, z.inflate_us);
  if (!kv_path.empty()) {
    std::vector<std::vector<std::byte>> bf16;
    for (const auto& d : data) bf16.push_back(ToBf16(d));
    const Compressed zb = Compress(bf16, 2);
    std::printf("zstd on the same KV as bf16 (truncated): %.3f of the bytes, %.1f us to encode, %.1f us to inflate "
                "one block\n", zb.ratio, zb.encode_us, zb.inflate_us);
  }
  std::printf("put latency on A, us: R on p50 %.1f p99 %.1f | R off p50 %.1f p99 %.1f; background writes done %.3f s "
              "after the last put\n",
              bench::Percentile(put_r, 50), bench::Percentile(put_r, 99), bench::Percentile(put_l, 50),
              bench::Percentile(put_l, 99), write_s);
  if (!json_path.empty()) {
    nlohmann::json doc{{"blocks", total},
                       {"block_bytes", bb},
                       {"lookup_gbs", bytes / lookup_best / 1e9},
                       {"raw_gbs", bytes / raw_best / 1e9},
                       {"load_remote_gbs", bytes / load_remote / 1e9},
                       {"load_local_gbs", bytes / load_local / 1e9},
                       {"tier_gbs", bytes / tier_best / 1e9},
                       {"plain_raw_gbs", bytes / plain.raw_s / 1e9},
                       {"tls_raw_gbs", bytes / tls.raw_s / 1e9},
                       {"plain_tier_gbs", bytes / plain.tier_s / 1e9},
                       {"tls_tier_gbs", bytes / tls.tier_s / 1e9},
                       {"ratio", raw_best / lookup_best},
                       {"put_p50_us_remote", bench::Percentile(put_r, 50)},
                       {"put_p50_us_local", bench::Percentile(put_l, 50)},
                       {"load_remote_s", load_remote},
                       {"load_disk_s", load_disk},
                       {"lookup_reuse_s", lookup_e},
                       {"load_reuse_s", load_e},
                       {"zstd_ratio", z.ratio}};
    bench::WriteJson(json_path, doc);
  }
  return 0;
}
