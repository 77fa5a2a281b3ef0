// tierkv_bench_putget: put/get of 128 KiB KV blocks through tierkvd's shared-memory
// data plane vs a Redis server on loopback doing the same SET/GET work (the remote
// tier many caches use), 1 and 4 clients, measured in one run. Target: >= 5x Redis
// with one client.
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_putget [--blocks N] [--rounds R] [--json PATH]

Starts tierkvd (beside this program) and redis-server (from PATH) on a temporary
directory and loopback, then for 1 and 4 concurrent clients stores N blocks of
128 KiB each (model: 8 KV heads x 32 tokens x head_dim 128, bf16) and reads them
back, through tierkv's data plane (one block per request, like one SET/GET per key)
and through Redis SET/GET. Reports GB/s and the ratio. Default N = 1024 per client.
)";

using namespace tierkv;
using Clock = std::chrono::steady_clock;

const ModelSpec kModel{1, 32, 8, 128, 32, DType::kBF16};

struct Result2 {
  double put_gbs = 0, get_gbs = 0;
};

std::vector<std::byte> Payload(size_t bytes, uint32_t seed) {
  std::vector<std::byte> v(bytes);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < bytes; i += 4) {
    uint32_t x = rng();
    std::memcpy(&v[i], &x, std::min<size_t>(4, bytes - i));
  }
  return v;
}

// Runs fn(client_index) on `clients` threads at once; returns the wall seconds.
template <typename Fn>
double Parallel(int clients, Fn fn) {
  std::vector<std::thread> ts;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int c = 0; c < clients; ++c) {
    ts.emplace_back([&, c] {
      ++ready;
      while (!go.load()) std::this_thread::yield();
      fn(c);
    });
  }
  while (ready.load() < clients) std::this_thread::yield();
  auto t0 = Clock::now();
  go = true;
  for (auto& t : ts) t.join();
  return bench::SecondsSince(t0);
}

Result2 RunTierkv(const std::string& socket, int clients, uint32_t blocks, const std::vector<std::byte>& payload) {
  std::vector<std::unique_ptr<Client>> conns;
  std::vector<std::unique_ptr<DataChannel>> chans;
  for (int c = 0; c < clients; ++c) {
    conns.push_back(std::move(Client::Connect(socket)).value());
    if (!conns.back()->Attach("bench").ok()) std::abort();
    chans.push_back(std::move(conns.back()->OpenChannel("bench", {.staging_bytes = 1 << 20})).value());
  }
  const double bytes = double(clients) * blocks * payload.size();
  Result2 r;
  double put_s = Parallel(clients, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      if (!chans[c]->Put(1000 + c, 0, b, payload).ok()) std::abort();
    }
  });
  std::vector<std::vector<std::byte>> out(clients, std::vector<std::byte>(payload.size()));
  double get_s = Parallel(clients, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      if (!chans[c]->Get(1000 + c, 0, b, out[c]).ok()) std::abort();
    }
  });
  if (out[0] != payload) std::abort();
  for (int c = 0; c < clients; ++c) {
    if (!chans[c]->CloseSequence(1000 + c).ok()) std::abort();
  }
  r.put_gbs = bytes / put_s / 1e9;
  r.get_gbs = bytes / get_s / 1e9;
  return r;
}

Result2 RunRedis(int port, int clients, uint32_t blocks, const std::vector<std::byte>& payload) {
  std::vector<redisContext*> ctx;
  for (int c = 0; c < clients; ++c) {
    ctx.push_back(redisConnect("127.0.0.1", port));
    if (!ctx.back() || ctx.back()->err) std::abort();
  }
  const double bytes = double(clients) * blocks * payload.size();
  Result2 r;
  double put_s = Parallel(clients, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      std::string key = "kv:" + std::to_string(c) + ":" + std::to_string(b);
      auto* rep = static_cast<redisReply*>(
          redisCommand(ctx[c], "SET %b %b", key.data(), key.size(), payload.data(), payload.size()));
      if (!rep || rep->type == REDIS_REPLY_ERROR) std::abort();
      freeReplyObject(rep);
    }
  });
  std::vector<std::vector<std::byte>> out(clients, std::vector<std::byte>(payload.size()));
  double get_s = Parallel(clients, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      std::string key = "kv:" + std::to_string(c) + ":" + std::to_string(b);
      auto* rep = static_cast<redisReply*>(redisCommand(ctx[c], "GET %b", key.data(), key.size()));
      if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != payload.size()) std::abort();
      std::memcpy(out[c].data(), rep->str, rep->len);
      freeReplyObject(rep);
    }
  });
  if (out[0] != payload) std::abort();
  auto* rep = static_cast<redisReply*>(redisCommand(ctx[0], "FLUSHALL"));
  freeReplyObject(rep);
  for (auto* c : ctx) redisFree(c);
  r.put_gbs = bytes / put_s / 1e9;
  r.get_gbs = bytes / get_s / 1e9;
  return r;
}

pid_t StartRedis(int port, const std::string& dir) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("redis-server", "redis-server", "--port", std::to_string(port).c_str(), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", dir.c_str(), "--loglevel", "warning", "--protected-mode", "no",
           "--proto-max-bulk-len", "1gb", static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 200; ++i) {
    redisContext* c = redisConnect("127.0.0.1", port);
    if (c && !c->err) {
      redisFree(c);
      return pid;
    }
    if (c) redisFree(c);
    usleep(20000);
  }
  kill(pid, SIGKILL);
  return -1;
}
}  // namespace

int main(int argc, char** argv) {
  uint32_t blocks = 1024;
  int rounds = 3;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--blocks" && i + 1 < argc) blocks = static_cast<uint32_t>(std::stoul(argv[++i]));
    else if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  testing::TempDir dir("bench-putget");
  const uint64_t ns_bytes = uint64_t{4} * blocks * kModel.BlockBytes() + (64 << 20);
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "log_level = \"warning\"\n",
                                "[storage]\ngpu_bytes = " + std::to_string(ns_bytes) +
                                    "\nhost_bytes = " + std::to_string(ns_bytes) + "\ndisk_bytes = 0\n");
  if (!daemon.Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", daemon.Log().c_str()), 1;
  auto admin = std::move(Client::Connect(daemon.socket_path())).value();
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = kModel;
  if (!admin->CreateNamespace(spec).ok()) return 1;
  const int port = 20000 + getpid() % 20000;
  pid_t redis = StartRedis(port, dir.path());
  if (redis < 0) return std::fprintf(stderr, "redis-server did not start (is it installed?)\n"), 1;
  const auto payload = Payload(kModel.BlockBytes(), 7);
  std::printf("tierkv_bench_putget: %u blocks of %zu KiB per client, best of %d rounds\n\n", blocks,
              payload.size() >> 10, rounds);
  nlohmann::json doc{{"benchmark", "putget"}, {"block_bytes", payload.size()}, {"blocks_per_client", blocks}};
  std::vector<std::vector<std::string>> rows;
  for (int clients : {1, 4}) {
    Result2 ours, redis_r;
    for (int r = 0; r < rounds; ++r) {
      std::fprintf(stderr, "clients=%d round %d/%d\n", clients, r + 1, rounds);
      Result2 a = RunTierkv(daemon.socket_path(), clients, blocks, payload);
      Result2 b = RunRedis(port, clients, blocks, payload);
      ours.put_gbs = std::max(ours.put_gbs, a.put_gbs);
      ours.get_gbs = std::max(ours.get_gbs, a.get_gbs);
      redis_r.put_gbs = std::max(redis_r.put_gbs, b.put_gbs);
      redis_r.get_gbs = std::max(redis_r.get_gbs, b.get_gbs);
    }
    for (auto [op, o, p] : {std::tuple{"put", ours.put_gbs, redis_r.put_gbs}, std::tuple{"get", ours.get_gbs, redis_r.get_gbs}}) {
      rows.push_back({std::to_string(clients), op, bench::Fmt(o, 3), bench::Fmt(p, 3), bench::Fmt(o / p, 1) + "x"});
      doc["results"].push_back({{"clients", clients}, {"op", op}, {"tierkv_gbs", o}, {"redis_gbs", p}, {"ratio", o / p}});
    }
  }
  bench::PrintTable({"clients", "op", "tierkv GB/s", "redis GB/s", "ratio"}, rows);
  std::printf("\ntarget: >= 5x Redis with one client\n");
  bench::WriteJson(json_path, doc);
  kill(redis, SIGTERM);
  waitpid(redis, nullptr, 0);
  daemon.Stop();
  return 0;
}
