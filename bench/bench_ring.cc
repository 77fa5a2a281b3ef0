// tierkv_bench_ring: round-trip latency of a no-op request over the shared-memory
// ring, against a real tierkvd started by the benchmark on a temporary directory.
// Also the control-socket ping for comparison. Target: p50 <= 5 us, p99 <= 50 us.
#include <cstdio>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_ring [--iters N] [--spin-us US] [--json PATH]

Starts tierkvd (the one built beside this program) on a temporary directory, opens
a data-plane channel and measures the round trip of N no-op requests over the
shared-memory ring (client and daemon spin US microseconds before sleeping), and of
N pings over the control socket. Prints p50/p90/p99 in microseconds.
)";
}  // namespace

int main(int argc, char** argv) {
  using namespace tierkv;
  int iters = 100000;
  int spin_us = 50;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--iters" && i + 1 < argc) iters = std::stoi(argv[++i]);
    else if (a == "--spin-us" && i + 1 < argc) spin_us = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  testing::TempDir dir("bench-ring");
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "log_level = \"warning\"\n",
                                "[data_plane]\nspin_us = " + std::to_string(spin_us) + "\n");
  if (!daemon.Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", daemon.Log().c_str()), 1;
  auto client = Client::Connect(daemon.socket_path());
  if (!client.ok()) return std::fprintf(stderr, "%s\n", client.status().ToString().c_str()), 1;
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = {1, 1, 1, 8, 16, DType::kF32};
  if (!(*client)->CreateNamespace(spec).ok() || !(*client)->Attach("bench").ok()) return 1;
  auto ch = (*client)->OpenChannel("bench", {.staging_bytes = 4096});
  if (!ch.ok()) return std::fprintf(stderr, "%s\n", ch.status().ToString().c_str()), 1;
  (*ch)->set_spin(std::chrono::microseconds(spin_us));

  auto measure = [&](auto&& op) {
    std::vector<double> us;
    us.reserve(iters);
    for (int i = 0; i < iters / 10; ++i) op();  // warm-up
    for (int i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      op();
      us.push_back(bench::SecondsSince(t0) * 1e6);
    }
    return us;
  };
  std::printf("tierkv_bench_ring: %d round trips each, spin %d us\n\n", iters, spin_us);
  auto ring = measure([&] {
    if (!(*ch)->Noop().ok()) std::abort();
  });
  auto ctrl = measure([&] {
    if (!(*client)->Ping().ok()) std::abort();
  });
  nlohmann::json doc{{"benchmark", "ring_round_trip"}, {"iters", iters}, {"spin_us", spin_us}};
  std::vector<std::vector<std::string>> rows;
  for (auto& [name, s] : {std::pair<const char*, std::vector<double>&>{"shm ring no-op", ring},
                          std::pair<const char*, std::vector<double>&>{"control socket ping", ctrl}}) {
    double p50 = bench::Percentile(s, 50), p90 = bench::Percentile(s, 90), p99 = bench::Percentile(s, 99);
    rows.push_back({name, bench::Fmt(p50), bench::Fmt(p90), bench::Fmt(p99)});
    doc["results"][name] = {{"p50_us", p50}, {"p90_us", p90}, {"p99_us", p99}};
  }
  bench::PrintTable({"path", "p50 us", "p90 us", "p99 us"}, rows);
  std::printf("\ntarget: shm ring p50 <= 5 us, p99 <= 50 us\n");
  bench::WriteJson(json_path, doc);
  daemon.Stop();
  return 0;
}
