// Integration: the local denial-of-service attacks of issue 14 against a real
// tierkvd (docs/security.md, "Local denial of service"). In each, an honest client's
// control ping keeps a bounded p99 while the attack runs, and the daemon's threads
// (/proc/PID/task), descriptors (/proc/PID/fd) and RSS stay bounded.
//
// The ping bound is kPingP99: 50 ms, generous because this suite runs on a 2-core
// machine shared with parallel builds; unloaded, the p99 measured here is ~0.2 ms
// (each test prints what it measured).
#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using namespace std::chrono_literals;
using testing::DaemonProcess;
using testing::Footprint;
using testing::Measure;
using testing::HttpGet;
using testing::MetricValue;

constexpr auto kPingP99 = 50ms;
constexpr uid_t kNobody = 65534;   // the attacking local user (when the test runs as root)
constexpr uid_t kBystander = 65533;  // another non-admin user

// CPU seconds the process has used (user + system).
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(all.substr(all.rfind(')') + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

// Pings on one connection from a thread of its own until stopped; p99 of the round trips.
class Pinger {
 public:
  explicit Pinger(const std::string& socket) {
    auto c = Client::Connect(socket);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (!c.ok()) return;
    client_ = std::move(c).value();
    thread_ = std::thread([this] {
      while (!stop_) {
        const auto t0 = std::chrono::steady_clock::now();
        if (!client_->Ping().ok()) ++failures_;
        lat_.push_back(std::chrono::steady_clock::now() - t0);
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  ~Pinger() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Stops, prints and checks the p99 and that every ping succeeded.
  void Check(const char* attack) {
    Stop();
    ASSERT_GE(lat_.size(), 20u) << "too few pings: the control plane stalled";
    std::sort(lat_.begin(), lat_.end());
    const auto p50 = lat_[lat_.size() / 2], p99 = lat_[lat_.size() * 99 / 100];
    std::printf("[%s] honest pings: %zu, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", attack, lat_.size(),
                p50.count() / 1e6, p99.count() / 1e6, lat_.back().count() / 1e6);
    EXPECT_EQ(failures_, 0u);
    EXPECT_LT(p99, kPingP99) << attack;
  }

 private:
  std::unique_ptr<Client> client_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  size_t failures_ = 0;
  std::vector<std::chrono::nanoseconds> lat_;
};

int ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int ConnectTcp(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Whether the daemon closed fd: a read returns EOF (or a reset), not EAGAIN. Waits up to `wait`.
bool ClosedByPeer(int fd, std::chrono::milliseconds wait) {
  timeval tv{0, static_cast<suseconds_t>(std::chrono::microseconds(wait).count())};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return true;
    if (n < 0) return false;  // timed out: still open
  }
}

uint16_t PortOf(const std::string& url) {  // http://127.0.0.1:PORT/metrics
  const auto colon = url.rfind(':');
  return static_cast<uint16_t>(std::stoi(url.substr(colon + 1)));
}

// Runs fn in a child process as `uid` (gid the same); returns its exit status.
int RunAs(uid_t uid, const std::function<int()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(100);
    ::_exit(fn());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class DosTest : public ::testing::Test {
 protected:
  // A daemon whose socket other users may reach (0666 socket in a 0755 directory),
  // with `sections` appended to its config.
  void StartDaemon(const std::string& sections, const std::string& daemon_keys = "") {
    ::chmod(dir_.path().c_str(), 0755);
    daemon_ = std::make_unique<DaemonProcess>(TIERKVD_PATH, dir_.path(), "socket_mode = 0o666\n" + daemon_keys,
                                              sections);
    ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
    admin_ = Client::Connect(daemon_->socket_path()).value();
    metrics_url_ = admin_->Stats()->metrics_url;
    ASSERT_FALSE(metrics_url_.empty());
  }
  double Metric(const std::string& name, const std::vector<std::string>& labels) {
    return MetricValue(HttpGet(metrics_url_), name, labels);
  }
  void TearDown() override {
    admin_.reset();
    if (daemon_) {
      EXPECT_EQ(daemon_->Stop(), 0) << daemon_->Log();
    }
  }

  testing::TempDir dir_{"dos"};
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> admin_;
  std::string metrics_url_;
};

// ~N idle TCP connections to the metrics port, far beyond limits.metrics_max_connections.
TEST_F(DosTest, IdleMetricsConnectionsBeyondTheCap) {
  StartDaemon("[limits]\nmetrics_max_connections = 8\nmetrics_timeout_ms = 1000\n");
  const Footprint before = Measure(daemon_->pid());
  Pinger honest(daemon_->socket_path());
  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) {
    const int fd = ConnectTcp(PortOf(metrics_url_));
    if (fd >= 0) idle.push_back(fd);
  }
  ASSERT_GE(idle.size(), 200u);
  std::this_thread::sleep_for(200ms);
  const Footprint during = Measure(daemon_->pid());
  // A scrape still gets through: it takes the slot of the oldest idle connection.
  const std::string scrape = HttpGet(metrics_url_);
  EXPECT_NE(scrape.find("tierkv_build_info"), std::string::npos);
  EXPECT_GE(MetricValue(scrape, "tierkv_connections_dropped_total", {"reason=\"evicted\""}), 250);
  honest.Check("metrics idle connections");
  std::printf("daemon fds %zu -> %zu, threads %zu -> %zu\n", before.fds, during.fds, before.threads, during.threads);
  EXPECT_LE(during.fds, before.fds + 8 + 4);  // the cap, and the pinger's connection
  EXPECT_LE(during.threads, before.threads);
  // The read deadline closes the idle ones that still hold a slot.
  std::this_thread::sleep_for(1200ms);
  EXPECT_GE(Metric("tierkv_connections_dropped_total", {"reason=\"timeout\""}), 7);
  size_t closed = 0;
  for (int fd : idle) closed += ClosedByPeer(fd, 1ms) ? 1 : 0;
  EXPECT_EQ(closed, idle.size());
  for (int fd : idle) ::close(fd);
}

// The control accept loop out of descriptors (EMFILE): it backs off instead of
// spinning and logs a few lines, not 650,000.
TEST_F(DosTest, AcceptBacksOffWhenOutOfDescriptors) {
  // Probe how many descriptors an idle daemon holds, then give it 48 more.
  StartDaemon("[control]\nmax_clients = 4096\n[limits]\ncontrol_hello_timeout_ms = 60000\n");
  const size_t base_fds = Measure(daemon_->pid()).fds;
  admin_.reset();
  ASSERT_EQ(daemon_->Stop(), 0);
  rlimit saved{};
  ::getrlimit(RLIMIT_NOFILE, &saved);
  rlimit low{base_fds + 48, saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  daemon_ = std::make_unique<DaemonProcess>(TIERKVD_PATH, dir_.path(), "socket_mode = 0o666\n",
                                            "[control]\nmax_clients = 4096\n[limits]\ncontrol_hello_timeout_ms = "
                                            "60000\naccept_backoff_ms = 100\nlog_interval_s = 10\n");
  const bool started = daemon_->Start();
  ::setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_TRUE(started) << daemon_->Log();
  admin_ = Client::Connect(daemon_->socket_path()).value();
  metrics_url_ = admin_->Stats()->metrics_url;

  Pinger honest(daemon_->socket_path());
  const double cpu0 = CpuSeconds(daemon_->pid());
  std::vector<int> attack;
  for (int i = 0; i < 200; ++i) {
    const int fd = ConnectUnix(daemon_->socket_path());  // the backlog takes what accept cannot
    if (fd >= 0) attack.push_back(fd);
  }
  // The metrics listener out of descriptors too, once the control listener took the
  // last ones (else the metrics thread may accept these before the control thread
  // has run out, and never see EMFILE).
  for (int i = 0; i < 200 && daemon_->Log().find("Too many open files") == std::string::npos; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  for (int i = 0; i < 4; ++i) {
    const int fd = ConnectTcp(PortOf(metrics_url_));
    if (fd >= 0) attack.push_back(fd);
  }
  std::this_thread::sleep_for(1500ms);
  const double cpu = CpuSeconds(daemon_->pid()) - cpu0;
  honest.Check("control EMFILE");
  const std::string log = daemon_->Log();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find("Too many open files", at)) != std::string::npos; ++at) ++lines;
  std::printf("attack connections %zu; daemon CPU %.2f s in 1.5 s; 'Too many open files' log lines: %zu\n",
              attack.size(), cpu, lines);
  EXPECT_GE(lines, 2u);  // one line per listener in log_interval_s (10 s), not one per failure
  EXPECT_LE(lines, 2u);
  EXPECT_LT(cpu, 0.5) << "the accept loop spins";
  EXPECT_LE(Measure(daemon_->pid()).fds, low.rlim_cur + 2);  // + what it inherited above the limit
  // Once the attacker leaves, new clients get in again.
  for (int fd : attack) ::close(fd);
  Result<std::unique_ptr<Client>> late = NotFound("not tried");
  for (int i = 0; i < 100 && !late.ok(); ++i) {
    std::this_thread::sleep_for(20ms);
    late = Client::Connect(daemon_->socket_path());
  }
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_TRUE((*late)->Ping().ok());
  const std::string m = HttpGet(metrics_url_);
  EXPECT_GE(MetricValue(m, "tierkv_accept_errors_total", {"listener=\"control\"", "error=\"EMFILE\""}), 1);
  // 100 ms back-off: about 15 tries in 1.5 s, not hundreds of thousands.
  EXPECT_LE(MetricValue(m, "tierkv_accept_errors_total", {"listener=\"control\"", "error=\"EMFILE\""}), 40);
  EXPECT_GE(MetricValue(m, "tierkv_accept_errors_total", {"listener=\"metrics\"", "error=\"EMFILE\""}), 1);
  EXPECT_LE(MetricValue(m, "tierkv_accept_errors_total", {"listener=\"metrics\"", "error=\"EMFILE\""}), 40);
}

// Slowloris: control.max_clients connections that each send 1 byte and wait.
TEST_F(DosTest, SlowlorisOnTheControlSocket) {
  StartDaemon(
      "[control]\nmax_clients = 24\n[limits]\ncontrol_clients_per_uid = 8\ncontrol_admin_reserved_clients = 4\n"
      "control_hello_timeout_ms = 600\ncontrol_frame_timeout_ms = 600\n");
  const bool root = ::geteuid() == 0;
  const Footprint before = Measure(daemon_->pid());
  Pinger honest(daemon_->socket_path());
  // The attacker: another local user when we are root (per-uid caps apply), else us
  // (an admin: only the deadlines apply). Its connections live in a child that
  // waits to be killed.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const std::string socket = daemon_->socket_path();
  const pid_t attacker = ::fork();
  if (attacker == 0) {
    if (root && (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)) ::_exit(100);
    std::vector<int> fds;
    for (int i = 0; i < 24; ++i) {
      const int fd = ConnectUnix(socket);
      if (fd >= 0 && ::send(fd, "\x10", 1, MSG_NOSIGNAL) == 1) fds.push_back(fd);
    }
    const char n = static_cast<char>(fds.size());
    (void)!::write(ready[1], &n, 1);
    ::pause();
    ::_exit(0);
  }
  char sent = 0;
  ASSERT_EQ(::read(ready[0], &sent, 1), 1);
  EXPECT_GT(sent, 0);
  std::this_thread::sleep_for(100ms);
  if (root) {
    // The per-uid cap kept most of them out; another user still gets in and works.
    EXPECT_EQ(Metric("tierkv_connections_refused_total", {"reason=\"uid_clients\""}), 24 - 8);
    EXPECT_EQ(RunAs(kBystander, [&] {
                auto c = Client::Connect(socket);
                return c.ok() && (*c)->Ping().ok() ? 0 : 1;
              }),
              0);
  }
  // The hello deadline drops every attacking connection; new clients are served.
  std::this_thread::sleep_for(800ms);
  auto late = Client::Connect(socket);
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_TRUE((*late)->Ping().ok());
  EXPECT_EQ(Metric("tierkv_control_disconnects_total", {"reason=\"hello_timeout\""}), root ? 8 : 24 - 2);
  const Footprint during = Measure(daemon_->pid());
  ::kill(attacker, SIGKILL);
  ::waitpid(attacker, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  honest.Check("slowloris");
  std::printf("daemon fds %zu -> %zu after the deadline\n", before.fds, during.fds);
  EXPECT_LE(during.fds, before.fds + 4);
  EXPECT_LE(during.threads, before.threads);

  // After hello: a connection may idle between frames, but not stop inside one.
  auto idle = Client::Connect(socket);
  ASSERT_TRUE(idle.ok());
  const int partial = ConnectUnix(socket);
  const std::string hello = wire::EncodeFrame("{\"op\":\"hello\",\"version\":1}");
  ASSERT_EQ(::send(partial, hello.data(), hello.size(), MSG_NOSIGNAL), (ssize_t)hello.size());
  char reply[4096];
  ASSERT_GT(::recv(partial, reply, sizeof reply, 0), 0);
  ASSERT_EQ(::send(partial, "\x20\x00", 2, MSG_NOSIGNAL), 2);  // half a frame header
  EXPECT_TRUE(ClosedByPeer(partial, 2000ms));
  ::close(partial);
  EXPECT_TRUE((*idle)->Ping().ok());  // idle > the frame deadline, still served
  EXPECT_EQ(Metric("tierkv_control_disconnects_total", {"reason=\"frame_timeout\""}), 1);

  // A client that sends requests but never reads the replies: once the socket
  // buffers are full the daemon's write stalls, and the write deadline drops it.
  const int deaf = ConnectUnix(socket);
  ASSERT_EQ(::send(deaf, hello.data(), hello.size(), MSG_NOSIGNAL), (ssize_t)hello.size());
  ASSERT_GT(::recv(deaf, reply, sizeof reply, 0), 0);
  std::string pings;
  for (int i = 0; i < 512; ++i) pings += wire::EncodeFrame("{\"op\":\"stats\"}");
  const auto until = std::chrono::steady_clock::now() + 3s;
  size_t stalls = 0;
  while (std::chrono::steady_clock::now() < until && stalls < 20) {
    if (::send(deaf, pings.data(), pings.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      if (errno != EAGAIN) break;  // closed by the daemon
      ++stalls;
      std::this_thread::sleep_for(10ms);
    }
  }
  std::this_thread::sleep_for(800ms);
  EXPECT_EQ(Metric("tierkv_control_disconnects_total", {"reason=\"write_timeout\""}), 1);
  ::close(deaf);
  EXPECT_TRUE((*idle)->Ping().ok());
}

// 1 MiB frames of "[[[[..." from two clients in a loop, and frames just under
// control.max_frame_bytes, nested or flat, from two more.
TEST_F(DosTest, NestedFramesFromTwoClients) {
  StartDaemon("");
  const Footprint before = Measure(daemon_->pid());
  std::atomic<bool> stop{false};
  std::atomic<size_t> sent{0}, answered{0}, refused{0};
  auto attack = [&](std::string body) {
    while (!stop) {
      auto c = Client::Connect(daemon_->socket_path());
      if (!c.ok()) continue;
      while (!stop) {
        ++sent;
        auto r = internal::CallRaw(**c, body);
        if (!r.ok()) break;  // closed: a frame over the limit, or max_consecutive_errors
        ++answered;
        const std::string error = (*r).value("error", "");
        for (const char* why : {"deeper than", "values", "max_frame_bytes"}) {
          if (error.find(why) != std::string::npos) {
            ++refused;
            break;
          }
        }
      }
    }
  };
  const size_t max_frame = 64 << 10;  // control.max_frame_bytes
  std::string flat = "[";
  while (flat.size() < max_frame - 4) flat += "0,";
  flat += "0]";
  Pinger honest(daemon_->socket_path());
  std::vector<std::thread> attackers;
  for (int i = 0; i < 2; ++i) attackers.emplace_back(attack, std::string(1 << 20, '['));
  attackers.emplace_back(attack, std::string(max_frame, '['));
  attackers.emplace_back(attack, flat);
  std::this_thread::sleep_for(2s);
  const Footprint during = Measure(daemon_->pid());
  stop = true;
  for (auto& t : attackers) t.join();
  honest.Check("1 MiB nesting frames");
  std::printf("attack frames sent %zu, answered %zu, refused %zu; RSS %lu -> %lu KiB\n", sent.load(),
              answered.load(), refused.load(), (unsigned long)before.rss_kib, (unsigned long)during.rss_kib);
  EXPECT_GE(answered.load(), 20u);
  EXPECT_EQ(refused.load(), answered.load());
  const std::string m = HttpGet(metrics_url_);
  EXPECT_GE(MetricValue(m, "tierkv_control_disconnects_total", {"reason=\"bad_frame\""}), 1);
  EXPECT_LT(during.rss_kib, before.rss_kib + 64 * 1024);
  EXPECT_LE(during.threads, before.threads);
}

// Channels until refused: the global caps (and per uid) on channels and their memory.
TEST_F(DosTest, ChannelsUntilRefused) {
  StartDaemon(
      "[limits]\nmax_channels = 6\nmax_channels_per_uid = 3\nmax_channel_bytes = 67108864\n"
      "max_channel_bytes_per_uid = 16777216\n[data_plane]\ndefault_staging_bytes = 1048576\n");
  NamespaceSpec spec;
  spec.name = "ns";
  spec.model = {2, 4, 2, 16, 16, DType::kF32};
  spec.acl.uids = {kNobody, ::geteuid()};
  ASSERT_TRUE(admin_->CreateNamespace(spec).ok());
  const Footprint before = Measure(daemon_->pid());
  Pinger honest(daemon_->socket_path());
  if (::geteuid() == 0) {
    // Another user: three channels (limits.max_channels_per_uid), then refused.
    EXPECT_EQ(RunAs(kNobody, [&] {
                auto c = Client::Connect(daemon_->socket_path());
                if (!c.ok() || !(*c)->Attach("ns").ok()) return 1;
                std::vector<std::unique_ptr<DataChannel>> mine;
                for (int i = 0; i < 10; ++i) {
                  auto ch = (*c)->OpenChannel("ns");
                  if (!ch.ok()) {
                    const bool right = ch.status().code() == StatusCode::kResourceExhausted &&
                                       ch.status().message().find("limits.max_channels_per_uid") != std::string::npos;
                    return right && mine.size() == 3 ? 0 : 2;
                  }
                  mine.push_back(std::move(ch).value());
                }
                return 3;
              }),
              0);
  }
  for (int i = 0; i < 100 && Metric("tierkv_channels", {}) != 0; ++i) std::this_thread::sleep_for(10ms);
  // Many connections, each opening channels until the daemon refuses.
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::unique_ptr<DataChannel>> channels;
  Status last;
  for (int i = 0; i < 10 && last.ok(); ++i) {
    clients.push_back(Client::Connect(daemon_->socket_path()).value());
    ASSERT_TRUE(clients.back()->Attach("ns").ok());
    for (int j = 0; j < 4; ++j) {
      auto ch = clients.back()->OpenChannel("ns");
      if (!ch.ok()) {
        last = ch.status();
        break;
      }
      channels.push_back(std::move(ch).value());
    }
  }
  EXPECT_EQ(channels.size(), 6u);
  EXPECT_EQ(last.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(last.message().find("limits.max_channels"), std::string::npos) << last.ToString();
  const Footprint during = Measure(daemon_->pid());
  EXPECT_LE(during.threads, before.threads + 6);
  EXPECT_EQ(Metric("tierkv_channels", {}), 6);
  // Memory: one big channel over limits.max_channel_bytes after the others are gone.
  channels.clear();
  clients.clear();
  std::this_thread::sleep_for(100ms);
  auto c = Client::Connect(daemon_->socket_path()).value();
  ASSERT_TRUE(c->Attach("ns").ok());
  auto big = c->OpenChannel("ns", {.staging_bytes = 48 << 20});
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  auto more = c->OpenChannel("ns", {.staging_bytes = 32 << 20});
  EXPECT_EQ(more.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(more.status().message().find("limits.max_channel_bytes"), std::string::npos);
  honest.Check("channels until refused");
  std::printf("daemon threads %zu -> %zu with 6 channels; RSS %lu -> %lu KiB\n", before.threads, during.threads,
              (unsigned long)before.rss_kib, (unsigned long)during.rss_kib);
  EXPECT_LE(Metric("tierkv_channel_bytes", {}), 64 << 20);
}

}  // namespace
}  // namespace tierkv
