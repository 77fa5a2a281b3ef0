// Crash and soak through the daemon (issue 16): client processes
// (tierkv_soak_client) use a real tierkvd through the public client API while it is
// SIGKILLed at random moments; after each restart every block acknowledged durable
// reads back byte for byte (and no block anyone reads is ever wrong). The soak adds
// every kind of operation, clients killed at random, policy changes and tiers too
// small for the load, and reports tierkvd's RSS and descriptors over time.
//
// Environment (scripts/soak.sh sets them; defaults are the ctest form):
//   TIERKV_CRASH_ROUNDS     kill/restart rounds of the crash test (default 20)
//   TIERKV_SOAK_SECONDS     length of the soak (default 12)
//   TIERKV_SOAK_CLIENTS     client processes at a time in the soak (default 4)
//   TIERKV_SOAK_CRASH_EVERY_S  also SIGKILL the daemon this often during the soak (0: only at the end)
//   TIERKV_SOAK_SEED        seed (default: random, printed)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/manifest.h"
#include "tests/integration/soak_blocks.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using Clock = std::chrono::steady_clock;
using testing::DaemonProcess;

const ModelSpec kModel{2, 2, 1, 64, 16, DType::kF32};  // 8 KiB blocks, 2 layers
constexpr uint32_t kSeqsPerClient = 4, kBlocks = 32;

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : fallback;
}

uint64_t Seed() {
  const uint64_t s = EnvU64("TIERKV_SOAK_SEED", std::random_device{}());
  std::printf("seed %llu (TIERKV_SOAK_SEED replays it)\n", static_cast<unsigned long long>(s));
  return s;
}

// One client process: its log and its sequences belong to its slot.
struct ClientProc {
  pid_t pid = -1;
  int slot = 0;
};

pid_t SpawnClient(const std::string& socket, const std::string& log, int slot, uint64_t version_base, uint64_t seed,
                  uint64_t ops, const std::string& mix, const std::string& err) {
  const std::vector<std::string> args = {SOAK_CLIENT_PATH,
                                         socket,
                                         "soak",
                                         log,
                                         std::to_string(1000 + slot * 100),
                                         std::to_string(kSeqsPerClient),
                                         std::to_string(kModel.num_layers),
                                         std::to_string(kBlocks),
                                         std::to_string(version_base),
                                         std::to_string(seed),
                                         std::to_string(ops),
                                         mix};
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) ::dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for pid; SIGKILLs it after `timeout`. Returns the exit code, 128 + signal when killed.
int WaitClient(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Verdict {
  uint64_t checked = 0, acked = 0, lost = 0, wrong = 0;
  std::string first_problem;
};

// Reads every block the logs name through a fresh client and checks it against them.
Verdict Verify(const std::string& socket, const std::map<soak::BlockId, soak::KeyState>& state) {
  Verdict v;
  auto client = Client::Connect(socket);
  if (!client.ok() || !(*client)->Attach("soak").ok()) {
    v.first_problem = "cannot attach after the restart";
    ++v.lost;
    return v;
  }
  auto ch = (*client)->OpenChannel("soak", {.staging_bytes = 1 << 20});
  if (!ch.ok()) {
    v.first_problem = "open channel: " + ch.status().ToString();
    ++v.lost;
    return v;
  }
  std::vector<std::byte> out(kModel.BlockBytes());
  for (const auto& [id, k] : state) {
    const auto& [seq, layer, block] = id;
    const bool must = k.acked > 0 && !k.closed_after;
    ++v.checked;
    v.acked += must;
    const Status st = (*ch)->Get(seq, layer, block, out);
    auto problem = [&](const std::string& what) {
      if (v.first_problem.empty()) {
        v.first_problem = "seq " + std::to_string(seq) + " layer " + std::to_string(layer) + " block " +
                          std::to_string(block) + " (acked v" + std::to_string(k.acked) + ", sent up to v" +
                          std::to_string(k.attempted) + "): " + what;
      }
    };
    if (!st.ok()) {
      if (must || st.code() != StatusCode::kNotFound) {
        ++v.lost;
        problem(st.ToString());
      }
      continue;
    }
    uint64_t key = 0, version = 0;
    if (!soak::Check(out, &key, &version) || key != soak::KeyOf(seq, layer, block) || version > k.attempted) {
      ++v.wrong;
      problem("wrong bytes (block says key " + std::to_string(key) + " v" + std::to_string(version) + ")");
    } else if (must && version < k.acked) {
      ++v.lost;
      problem("older version v" + std::to_string(version) + " came back");
    }
  }
  return v;
}

std::string DaemonSections(uint64_t disk_bytes) {
  return "[storage]\ngpu_bytes = 1048576\nhost_bytes = 2097152\ndisk_bytes = " + std::to_string(disk_bytes) +
         "\nprefault = false\nshutdown_drain_s = 0\nput_wait_ms = 100\ngroup_commit = " +
         (EnvU64("TIERKV_SOAK_GROUP_COMMIT", 1) ? "true" : "false") + "\n";
}

// On a failure, keeps the logs (clients' and tierkvd's) for a post-mortem.
void KeepOnFailure(const testing::TempDir& dir) {
  if (!::testing::Test::HasFailure()) return;
  const std::string keep = "/tmp/tierkv-soak-failed-" + std::to_string(::getpid());
  std::error_code ec;
  std::filesystem::create_directories(keep, ec);
  for (const auto& e : std::filesystem::directory_iterator(dir.path(), ec)) {
    if (e.is_regular_file()) std::filesystem::copy_file(e.path(), keep + "/" + e.path().filename().string(), ec);
  }
  std::printf("logs kept in %s\n", keep.c_str());
}

void CreateNamespace(const std::string& socket) {
  auto admin = Client::Connect(socket);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  NamespaceSpec spec;
  spec.name = "soak";
  spec.model = kModel;
  auto created = (*admin)->CreateNamespace(spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto set = (*admin)->SetPolicy("soak", R"({"write": "write-through"})");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
}

std::map<soak::BlockId, soak::KeyState> ReadLogs(const testing::TempDir& dir, int slots) {
  std::map<soak::BlockId, soak::KeyState> state;
  for (int s = 0; s < slots; ++s) soak::ReadLog(dir.Sub("client" + std::to_string(s) + ".log"), &state);
  return state;
}

std::string ClientErrors(const testing::TempDir& dir, int slots) {
  std::string all;
  for (int s = 0; s < slots; ++s) {
    std::ifstream in(dir.Sub("client" + std::to_string(s) + ".err"));
    std::stringstream ss;
    ss << in.rdbuf();
    all += ss.str();
  }
  return all;
}

// Several client processes put write-through blocks (1 to 4 per put); the daemon is
// SIGKILLed at a random moment, restarted, and every acknowledged block is read back.
TEST(DaemonCrashTest, EveryAcknowledgedBlockSurvivesKill9OfTheDaemon) {
  const uint64_t rounds = EnvU64("TIERKV_CRASH_ROUNDS", 20);
  constexpr int kClients = 3;
  std::mt19937_64 rng(Seed());
  testing::TempDir dir("daemon-crash");
  DaemonProcess daemon(testing::DaemonBinary(TIERKVD_PATH), dir.path(), "log_level = \"warning\"\n",
                       DaemonSections(32 << 20));
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  ASSERT_NO_FATAL_FAILURE(CreateNamespace(daemon.socket_path()));
  uint64_t acked_total = 0;
  double slowest_restart = 0;  // seconds from the restart to the socket answering
  const auto t0 = Clock::now();
  for (uint64_t round = 0; round < rounds; ++round) {
    std::vector<pid_t> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.push_back(SpawnClient(daemon.socket_path(), dir.Sub("client" + std::to_string(c) + ".log"), c,
                                    (round + 1) * 1000000000ull, rng(), 0, "put",
                                    dir.Sub("client" + std::to_string(c) + ".err")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    daemon.Kill();
    for (pid_t pid : clients) {
      const int code = WaitClient(pid, std::chrono::seconds(10));
      EXPECT_EQ(code, 3) << "round " << round << ": a client did not see the daemon go away\n"
                         << ClientErrors(dir, kClients);
    }
    const auto restart = Clock::now();
    ASSERT_TRUE(daemon.Start()) << "round " << round << ": tierkvd did not answer within 20 s of its restart\n"
                                << daemon.Log();
    slowest_restart = std::max(slowest_restart, std::chrono::duration<double>(Clock::now() - restart).count());
    const Verdict v = Verify(daemon.socket_path(), ReadLogs(dir, kClients));
    acked_total = v.acked;
    EXPECT_EQ(v.lost, 0u) << "round " << round << ": " << v.first_problem;
    EXPECT_EQ(v.wrong, 0u) << "round " << round << ": " << v.first_problem;
    if (HasFailure()) return KeepOnFailure(dir);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("%llu kill -9 rounds in %.1f s: %llu acknowledged blocks, every one read back byte for byte; "
              "slowest restart %.2f s\n",
              static_cast<unsigned long long>(rounds), s, static_cast<unsigned long long>(acked_total),
              slowest_restart);
  EXPECT_GT(acked_total, rounds) << "too few puts were acknowledged for the test to mean anything";
}

double Metric(const std::string& url, const std::string& name) {
  return testing::MetricValue(testing::HttpGet(url), name, {"namespace=\"soak\""});
}
double DaemonMetric(const std::string& url, const std::string& name) {
  return testing::MetricValue(testing::HttpGet(url), name);
}

// Under AddressSanitizer every free goes to a quarantine (256 MiB by default) that
// fills over minutes and reads as RSS growth; the daemon (and the clients, which
// inherit the environment) run with a small one so the RSS bound still means a leak.
void BoundAsanQuarantine() {
#if defined(__SANITIZE_ADDRESS__)
  const char* old = std::getenv("ASAN_OPTIONS");
  std::string opts = old != nullptr ? std::string(old) + ":" : std::string();
  opts += "quarantine_size_mb=16:thread_local_quarantine_size_kb=256";
  ::setenv("ASAN_OPTIONS", opts.c_str(), 1);
#endif
}

std::string MetricsUrl(const std::string& socket) {
  auto c = Client::Connect(socket);
  if (!c.ok()) return "";
  auto st = (*c)->Stats();
  return st.ok() ? st->metrics_url : "";
}

// Every kind of operation from client processes killed at random, policy changes,
// tiers too small for the load (D full: write-through puts are stored without D);
// tierkvd's RSS and descriptors sampled over time; at the end every channel and
// lease reclaimed, then a kill -9 and every acknowledged block read back.
TEST(DaemonSoakTest, MixedLoadWithClientsKilledLosesNothingAndStaysBounded) {
  const uint64_t seconds = EnvU64("TIERKV_SOAK_SECONDS", 12);
  const int slots = static_cast<int>(EnvU64("TIERKV_SOAK_CLIENTS", 4));
  const uint64_t crash_every = EnvU64("TIERKV_SOAK_CRASH_EVERY_S", 0);
  std::mt19937_64 rng(Seed());
  testing::TempDir dir("daemon-soak");
  BoundAsanQuarantine();
  // G, H and D together smaller than the clients' blocks: D fills, and write-through
  // puts then go on without D (not acknowledged durable) until closes free slots.
  DaemonProcess daemon(testing::DaemonBinary(TIERKVD_PATH), dir.path(), "log_level = \"warning\"\n",
                       DaemonSections(6 << 20));
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  ASSERT_NO_FATAL_FAILURE(CreateNamespace(daemon.socket_path()));
  std::string metrics = MetricsUrl(daemon.socket_path());
  const testing::Footprint base = testing::Measure(daemon.pid());
  std::printf("%6s %9s %6s %8s %9s %7s %8s %9s\n", "t_s", "rss_kib", "fds", "threads", "channels", "leases", "blocks",
              "clients");
  std::vector<ClientProc> running(slots);
  uint64_t spawned = 0, killed = 0, policy_changes = 0, daemon_kills = 0, version = 1;
  std::vector<int> bad_exits;
  auto spawn = [&](int slot) {
    running[slot].slot = slot;
    running[slot].pid = SpawnClient(daemon.socket_path(), dir.Sub("client" + std::to_string(slot) + ".log"), slot,
                                    (version++) * 1000000000ull, rng(), 200 + rng() % 3000, "all",
                                    dir.Sub("client" + std::to_string(slot) + ".err"));
    ++spawned;
  };
  auto reap = [&](int slot, bool block) {
    pid_t& pid = running[slot].pid;
    if (pid <= 0) return;
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, block ? 0 : WNOHANG);
    if (r != pid) return;
    pid = -1;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code == 1 || code == 2 || code == 127) bad_exits.push_back(code);
  };
  auto verify = [&](const char* when) {
    const Verdict v = Verify(daemon.socket_path(), ReadLogs(dir, slots));
    EXPECT_EQ(v.lost, 0u) << when << ": " << v.first_problem;
    EXPECT_EQ(v.wrong, 0u) << when << ": " << v.first_problem;
    return v;
  };
  for (int s = 0; s < slots; ++s) spawn(s);
  const char* policies[] = {R"({"eviction": "lfu"})", R"({"eviction": "score"})", R"({"eviction": "lru"})",
                            R"({"miss_mode": "defer"})", R"({"miss_mode": "wait"})", R"({"write": "write-back"})",
                            R"({"write": "write-through"})", R"({"prefetch_depth": 2})", R"({"prefetch_depth": 0})"};
  uint64_t rss_max_late = 0, rss_at_quarter = 0, fds_max = 0;
  const auto t0 = Clock::now();
  auto last_sample = t0, last_crash = t0;
  while (Clock::now() - t0 < std::chrono::seconds(seconds)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int s = 0; s < slots; ++s) {
      reap(s, false);
      if (running[s].pid <= 0) spawn(s);
    }
    if (rng() % 10 == 0) {  // a client killed in the middle of whatever it does
      const int s = static_cast<int>(rng() % slots);
      ::kill(running[s].pid, SIGKILL);
      reap(s, true);
      ++killed;
      spawn(s);
    }
    if (rng() % 20 == 0) {
      auto admin = Client::Connect(daemon.socket_path());
      if (admin.ok() && (*admin)->SetPolicy("soak", policies[rng() % std::size(policies)]).ok()) ++policy_changes;
    }
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (crash_every > 0 && Clock::now() - last_crash > std::chrono::seconds(crash_every)) {
      daemon.Kill();
      for (int s = 0; s < slots; ++s) reap(s, true);  // they see the daemon go away
      ASSERT_TRUE(daemon.Start()) << daemon.Log();
      ++daemon_kills;
      metrics = MetricsUrl(daemon.socket_path());
      verify("after a daemon kill during the soak");
      last_crash = Clock::now();
    }
    if (Clock::now() - last_sample >= std::chrono::seconds(1)) {
      last_sample = Clock::now();
      const testing::Footprint f = testing::Measure(daemon.pid());
      std::printf("%6.1f %9llu %6zu %8zu %9.0f %7.0f %8.0f %9d\n", t, static_cast<unsigned long long>(f.rss_kib), f.fds,
                  f.threads, DaemonMetric(metrics, "tierkv_channels"), Metric(metrics, "tierkv_leases"),
                  Metric(metrics, "tierkv_blocks"), slots);
      std::fflush(stdout);
      if (t >= seconds / 4.0 && rss_at_quarter == 0) rss_at_quarter = f.rss_kib;
      if (t >= seconds / 2.0) rss_max_late = std::max(rss_max_late, f.rss_kib);
      fds_max = std::max(fds_max, uint64_t{f.fds});
    }
  }
  // The end: every client killed; the daemon reclaims their channels and leases.
  for (int s = 0; s < slots; ++s) {
    if (running[s].pid > 0) ::kill(running[s].pid, SIGKILL);
    reap(s, true);
  }
  double channels = -1, leases = -1;
  for (int i = 0; i < 100; ++i) {
    channels = DaemonMetric(metrics, "tierkv_channels");
    leases = Metric(metrics, "tierkv_leases");
    if (channels == 0 && leases == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(channels, 0) << "channels of killed clients not reclaimed";
  EXPECT_EQ(leases, 0) << "leases of killed clients not reclaimed";
  const testing::Footprint end = testing::Measure(daemon.pid());
  const double not_durable = Metric(metrics, "tierkv_puts_not_durable_total");
  const double refused = Metric(metrics, "tierkv_disk_admission_stops_total");
  const double rejected = Metric(metrics, "tierkv_puts_rejected_total");
  std::printf("tiers full: %.0f write-through puts stored without D, %.0f D writes refused, %.0f puts refused\n",
              not_durable, refused, rejected);
  std::printf("clients spawned %llu, killed %llu, policy changes %llu, daemon kills %llu; tierkvd at start: rss %llu "
              "KiB, %zu fds; at the end: rss %llu KiB, %zu fds of which %zu manifest table files (max %llu fds "
              "during the run)\n",
              static_cast<unsigned long long>(spawned), static_cast<unsigned long long>(killed),
              static_cast<unsigned long long>(policy_changes), static_cast<unsigned long long>(daemon_kills),
              static_cast<unsigned long long>(base.rss_kib), base.fds, static_cast<unsigned long long>(end.rss_kib),
              end.fds, end.table_fds, static_cast<unsigned long long>(fds_max));
  EXPECT_TRUE(bad_exits.empty()) << bad_exits.size() << " client(s) saw wrong bytes or an unexpected error:\n"
                                 << ClientErrors(dir, slots);
  if (daemon_kills == 0) {
    // RocksDB keeps the manifest's table files open (flushes add them, compactions
    // remove them, bounded by max_open_files): the leak check counts the others.
    EXPECT_LE(end.fds - end.table_fds, base.fds - base.table_fds + 4) << "descriptors leaked";
    EXPECT_LE(end.table_fds, size_t{storage::kMaxOpenTableFiles});
  }
  if (rss_at_quarter > 0 && daemon_kills == 0) {
    EXPECT_LE(rss_max_late, rss_at_quarter * 3 / 2 + 32768) << "RSS kept growing";
  }
  // Finally a kill -9 and every acknowledged block back.
  daemon.Kill();
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  const Verdict v = verify("after the final kill -9");
  KeepOnFailure(dir);
  std::printf("after the final kill -9: %llu blocks checked, %llu acknowledged durable, lost %llu, wrong %llu\n",
              static_cast<unsigned long long>(v.checked), static_cast<unsigned long long>(v.acked),
              static_cast<unsigned long long>(v.lost), static_cast<unsigned long long>(v.wrong));
}

}  // namespace
}  // namespace tierkv
