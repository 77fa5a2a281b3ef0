// tierkv_bench_putget: put/get of 128 KiB KV blocks through tierkvd's shared-memory
// data plane vs a Redis server on loopback doing the same SET/GET work (the remote
// tier many caches use), 1 and 4 clients, measured in one run. Target: >= 5x Redis
// with one client.
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "bench/proc_usage.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_putget [--blocks N] [--rounds R] [--json PATH]
                           [--clients 1,4] [--client-spin-us US] [--daemon-spin-us US]

Starts tierkvd (beside this program) and redis-server (from PATH) on a temporary
directory and loopback, then for 1 and 4 (--clients) concurrent clients stores N blocks of
128 KiB each (model: 8 KV heads x 32 tokens x head_dim 128, bf16) and reads them
back, through tierkv's data plane (one block per request, like one SET/GET per key)
and through Redis SET/GET; "acquire" is tierkv's zero-copy get (Acquire one block,
releasing the previous one in the same request, and copy it out of the shared
arena), compared with the same GETs. Reports
GB/s and the ratio, and the CPU time and context
switches per operation of the clients and of each server (/proc, getrusage).
Default N = 1024 per client. --client-spin-us / --daemon-spin-us override the
client library's and tierkvd's busy-poll before sleeping (default: theirs).
)";

using namespace tierkv;
using Clock = std::chrono::steady_clock;

const ModelSpec kModel{1, 32, 8, 128, 32, DType::kBF16};

// One timed phase: wall seconds and what the client threads (this process) and the
// server process spent on it.
struct Phase {
  double wall_s = 0;
  bench::Usage client, server;
};

// tierkv's acquire (a zero-copy get: Acquire, one copy out of the arena, Release)
// is compared with Redis's GET; Redis has no acquire (its fields stay empty).
struct Result2 {
  double put_gbs = 0, get_gbs = 0, acquire_gbs = 0;
  Phase put, get, acquire, first_touch;
};

// CPU microseconds per operation and context switches per operation of one phase.
struct PerOp {
  double client_us, server_us, switches;
};
PerOp Costs(const Phase& p, double ops) {
  return {p.client.cpu_s / ops * 1e6, p.server.cpu_s / ops * 1e6,
          static_cast<double>(p.client.switches + p.server.switches) / ops};
}

std::vector<std::byte> Payload(size_t bytes, uint32_t seed) {
  std::vector<std::byte> v(bytes);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < bytes; i += 4) {
    uint32_t x = rng();
    std::memcpy(&v[i], &x, std::min<size_t>(4, bytes - i));
  }
  return v;
}

// Runs fn(client_index) on `clients` threads at once; returns the wall seconds and
// the CPU time and context switches of this process and of `server` meanwhile.
template <typename Fn>
Phase Parallel(int clients, pid_t server, Fn fn) {
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
  Phase p;
  const bench::Usage client0 = bench::SelfUsage(), server0 = bench::ThreadsUsage(server);
  auto t0 = Clock::now();
  go = true;
  for (auto& t : ts) t.join();
  p.wall_s = bench::SecondsSince(t0);
  p.client = bench::SelfUsage() - client0;
  p.server = bench::ThreadsUsage(server) - server0;
  return p;
}

Result2 RunTierkv(const std::string& socket, pid_t daemon, int clients, uint32_t blocks,
                  const std::vector<std::byte>& payload, int client_spin_us) {
  std::vector<std::unique_ptr<Client>> conns;
  std::vector<std::unique_ptr<DataChannel>> chans;
  for (int c = 0; c < clients; ++c) {
    conns.push_back(std::move(Client::Connect(socket)).value());
    if (!conns.back()->Attach("bench").ok()) std::abort();
    chans.push_back(std::move(conns.back()->OpenChannel("bench", {.staging_bytes = 1 << 20})).value());
    if (client_spin_us >= 0) chans.back()->set_spin(std::chrono::microseconds(client_spin_us));
  }
  const double bytes = double(clients) * blocks * payload.size();
  Result2 r;
  r.put = Parallel(clients, daemon, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      if (!chans[c]->Put(1000 + c, 0, b, payload).ok()) std::abort();
    }
  });
  std::vector<std::vector<std::byte>> out(clients, std::vector<std::byte>(payload.size()));
  r.get = Parallel(clients, daemon, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      if (!chans[c]->Get(1000 + c, 0, b, out[c]).ok()) std::abort();
    }
  });
  if (out[0] != payload) std::abort();
  for (auto& o : out) std::fill(o.begin(), o.end(), std::byte{0});
  auto acquire_all = [&](int c) {
    uint64_t held = 0;  // each acquire gives the previous block's lease back: one round trip per block
    for (uint32_t b = 0; b < blocks; ++b) {
      auto a = chans[c]->Acquire(1000 + c, 0, b, 1, held);
      if (!a.ok() || a->blocks.size() != 1 || !chans[c]->CopyBlock(a->blocks[0], out[c]).ok()) std::abort();
      held = a->lease;
    }
    if (!chans[c]->Release(held).ok()) std::abort();
  };
  // Steady state, as for an engine that keeps its channel: a channel's first read of
  // an arena page faults it into this process's mapping (minor faults, once per page
  // per channel); an untimed pass takes them, its time printed apart.
  r.first_touch = Parallel(clients, daemon, acquire_all);
  r.acquire = Parallel(clients, daemon, acquire_all);
  if (out[0] != payload) std::abort();
  for (int c = 0; c < clients; ++c) {
    if (!chans[c]->CloseSequence(1000 + c).ok()) std::abort();
  }
  r.put_gbs = bytes / r.put.wall_s / 1e9;
  r.get_gbs = bytes / r.get.wall_s / 1e9;
  r.acquire_gbs = bytes / r.acquire.wall_s / 1e9;
  return r;
}

Result2 RunRedis(int port, pid_t server, int clients, uint32_t blocks, const std::vector<std::byte>& payload) {
  std::vector<redisContext*> ctx;
  for (int c = 0; c < clients; ++c) {
    ctx.push_back(redisConnect("127.0.0.1", port));
    if (!ctx.back() || ctx.back()->err) std::abort();
  }
  const double bytes = double(clients) * blocks * payload.size();
  Result2 r;
  r.put = Parallel(clients, server, [&](int c) {
    for (uint32_t b = 0; b < blocks; ++b) {
      std::string key = "kv:" + std::to_string(c) + ":" + std::to_string(b);
      auto* rep = static_cast<redisReply*>(
          redisCommand(ctx[c], "SET %b %b", key.data(), key.size(), payload.data(), payload.size()));
      if (!rep || rep->type == REDIS_REPLY_ERROR) std::abort();
      freeReplyObject(rep);
    }
  });
  std::vector<std::vector<std::byte>> out(clients, std::vector<std::byte>(payload.size()));
  r.get = Parallel(clients, server, [&](int c) {
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
  r.put_gbs = bytes / r.put.wall_s / 1e9;
  r.get_gbs = bytes / r.get.wall_s / 1e9;
  return r;
}

pid_t StartRedis(int port, const std::string& dir) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("redis-server", "redis-server", "--port", std::to_string(port).c_str(), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", dir.c_str(), "--loglevel", "warning", "--logfile", (dir + "/redis.log").c_str(), "--protected-mode", "no",
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
  std::vector<uint64_t> client_counts{1, 4};
  int client_spin_us = -1, daemon_spin_us = -1;  // -1: the library's and the daemon's defaults
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--blocks" && i + 1 < argc) blocks = static_cast<uint32_t>(std::stoul(argv[++i]));
    else if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--clients" && i + 1 < argc) client_counts = bench::ParseUintList(argv[++i]);
    else if (a == "--client-spin-us" && i + 1 < argc) client_spin_us = std::stoi(argv[++i]);
    else if (a == "--daemon-spin-us" && i + 1 < argc) daemon_spin_us = std::stoi(argv[++i]);
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  if (client_counts.empty() || std::count(client_counts.begin(), client_counts.end(), 0) > 0 || rounds < 1) {
    return std::fprintf(stderr, "--clients needs counts of 1 or more and --rounds 1 or more\n"), 2;
  }
  testing::TempDir dir("bench-putget");
  const uint64_t most_clients = *std::max_element(client_counts.begin(), client_counts.end());
  const uint64_t ns_bytes = most_clients * blocks * kModel.BlockBytes() + (64 << 20);
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "log_level = \"warning\"\n",
                                "[storage]\ngpu_bytes = " + std::to_string(ns_bytes) +
                                    "\nhost_bytes = " + std::to_string(ns_bytes) + "\ndisk_bytes = 0\n" +
                                    (daemon_spin_us >= 0 ? "[data_plane]\nspin_us = " + std::to_string(daemon_spin_us) + "\n"
                                                         : std::string()));
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
  std::vector<std::vector<std::string>> rows, costs, first_pass;
  for (const int clients : client_counts) {
    Result2 ours, redis_r;  // the best round of each op, with its costs
    auto keep_best = [](Result2& best, const Result2& r) {
      if (r.put_gbs > best.put_gbs) best.put_gbs = r.put_gbs, best.put = r.put;
      if (r.get_gbs > best.get_gbs) best.get_gbs = r.get_gbs, best.get = r.get;
      if (r.acquire_gbs > best.acquire_gbs) {
        best.acquire_gbs = r.acquire_gbs, best.acquire = r.acquire, best.first_touch = r.first_touch;
      }
    };
    for (int r = 0; r < rounds; ++r) {
      std::fprintf(stderr, "clients=%d round %d/%d\n", clients, r + 1, rounds);
      keep_best(ours, RunTierkv(daemon.socket_path(), daemon.pid(), clients, blocks, payload, client_spin_us));
      keep_best(redis_r, RunRedis(port, redis, clients, blocks, payload));
    }
    const double ops = double(clients) * blocks;
    for (const char* op : {"put", "get", "acquire"}) {
      const bool put = op == std::string("put"), acquire = op == std::string("acquire");
      const double o = put ? ours.put_gbs : acquire ? ours.acquire_gbs : ours.get_gbs;
      const double p = put ? redis_r.put_gbs : redis_r.get_gbs;  // acquire vs Redis's GET
      rows.push_back({std::to_string(clients), op, bench::Fmt(o, 3), bench::Fmt(p, 3), bench::Fmt(o / p, 1) + "x"});
      nlohmann::json row{{"clients", clients}, {"op", op}, {"tierkv_gbs", o}, {"redis_gbs", p}, {"ratio", o / p}};
      for (auto [name, res] : {std::pair{"tierkv", &ours}, std::pair{"redis", &redis_r}}) {
        const Phase& ph = put ? res->put : acquire && res == &ours ? res->acquire : res->get;
        const PerOp c = Costs(ph, ops);
        costs.push_back({std::to_string(clients), op, name, bench::Fmt(c.client_us, 1), bench::Fmt(c.server_us, 1),
                         bench::Fmt(c.client_us + c.server_us, 1),
                         bench::Fmt((ph.client.cpu_s + ph.server.cpu_s) / ph.wall_s, 2), bench::Fmt(c.switches, 1)});
        row[std::string(name) + "_cpu_us_per_op"] = {{"client", c.client_us}, {"server", c.server_us}};
        row[std::string(name) + "_switches_per_op"] = c.switches;
      }
      if (acquire) {
        row["tierkv_first_pass_us_per_block"] = ours.first_touch.wall_s / blocks * 1e6;
        first_pass.push_back({std::to_string(clients), bench::Fmt(ours.first_touch.wall_s / blocks * 1e6, 1),
                              bench::Fmt(ours.acquire.wall_s / blocks * 1e6, 1)});
      }
      doc["results"].push_back(row);
    }
  }
  bench::PrintTable({"clients", "op", "tierkv GB/s", "redis GB/s", "ratio"}, rows);
  std::printf("\nCPU per operation in the best round (client: the client threads; server: tierkvd or redis-server;\n"
              "cores: CPU-seconds of both per wall second; switches: context switches of both per operation):\n\n");
  bench::PrintTable({"clients", "op", "side", "client us/op", "server us/op", "total us/op", "cores", "switches/op"},
                    costs);
  std::printf("\nacquire: the untimed first pass of a new channel (its reads fault the arenas' pages into the\n"
              "client's mapping, once per page) against the timed pass, wall us per block per client:\n\n");
  bench::PrintTable({"clients", "first pass us/block", "steady us/block"}, first_pass);
  std::printf("\ntarget: >= 5x Redis with one client, >= 10x with 4\n");
  bench::WriteJson(json_path, doc);
  kill(redis, SIGTERM);
  waitpid(redis, nullptr, 0);
  daemon.Stop();
  return 0;
}
