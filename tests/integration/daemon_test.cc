// Integration: the real tierkvd binary on a temporary directory and socket.
#include <gtest/gtest.h>

#include <ctime>
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"
#include "tierkv/tierkv.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;
using testing::HttpGet;
using testing::MetricValue;
using wire::Json;

NamespaceSpec Spec(const std::string& name, uint32_t kv_heads = 4, std::vector<uint32_t> uids = {}) {
  NamespaceSpec s;
  s.name = name;
  s.model = {4, 8, kv_heads, 64, 16, DType::kF16};
  s.acl.uids = std::move(uids);
  return s;
}

std::unique_ptr<Client> Connect(const DaemonProcess& d) {
  auto c = Client::Connect(d.socket_path());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

// A raw connection for sending what the client library never would.
class RawConn {
 public:
  explicit RawConn(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConn() { ::close(fd_); }
  void Send(const std::string& bytes) { ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), (ssize_t)bytes.size()); }
  void SendFrame(const std::string& body) { Send(wire::EncodeFrame(body)); }
  // The next reply, or a null Json when the connection closed.
  Json Reply() {
    uint8_t h[4];
    if (!ReadAll(reinterpret_cast<char*>(h), 4)) return nullptr;
    std::string body(wire::DecodeFrameLength(h), '\0');
    if (!ReadAll(body.data(), body.size())) return nullptr;
    return Json::parse(body);
  }
  bool Closed() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool ReadAll(char* p, size_t n) {
    while (n > 0) {
      ssize_t r = ::recv(fd_, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fd_;
};

class DaemonTest : public ::testing::Test {
 protected:
  testing::TempDir dir_{"daemon"};
};

TEST_F(DaemonTest, TwoClientsAttachAndTheMetricsMove) {
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start()) << d.Log();
  auto admin = Connect(d);
  ASSERT_TRUE(admin);
  auto created = admin->CreateNamespace(Spec("llama"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto a = Connect(d), b = Connect(d);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Attach("llama").ok());
  auto info = b->Attach("llama");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->spec.model, Spec("llama").model);
  EXPECT_TRUE(a->Ping().ok());

  auto stats = admin->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->clients_attached, 2u);
  EXPECT_EQ(stats->connections, 3u);
  ASSERT_FALSE(stats->metrics_url.empty());
  const std::string metrics = HttpGet(stats->metrics_url);
  ASSERT_FALSE(metrics.empty()) << "no /metrics at " << stats->metrics_url;
  EXPECT_EQ(MetricValue(metrics, "tierkv_clients_attached"), 2);
  EXPECT_EQ(MetricValue(metrics, "tierkv_control_connections"), 3);
  EXPECT_EQ(MetricValue(metrics, "tierkv_namespaces"), 1);
  EXPECT_EQ(MetricValue(metrics, "tierkv_control_requests_total", {"op=\"attach\""}), 2);
  EXPECT_EQ(MetricValue(metrics, "tierkv_control_requests_total", {"op=\"hello\""}), 3);
  EXPECT_EQ(MetricValue(metrics, "tierkv_build_info", {"version=\"" TIERKV_VERSION "\""}), 1);
  // The daemon's own process, as /proc tells it.
  const auto proc = testing::Measure(d.pid());
  EXPECT_NEAR(MetricValue(metrics, "process_resident_memory_bytes"), 1024.0 * proc.rss_kib, 512.0 * proc.rss_kib);
  EXPECT_NEAR(MetricValue(metrics, "process_open_fds"), double(proc.fds), 8);
  EXPECT_NEAR(MetricValue(metrics, "process_threads"), double(proc.threads), 4);
  EXPECT_GT(MetricValue(metrics, "process_cpu_seconds_total"), 0);
  EXPECT_GT(MetricValue(metrics, "process_max_fds"), 0);
  EXPECT_NEAR(MetricValue(metrics, "process_start_time_seconds"), double(::time(nullptr)), 600);

  a.reset();  // a client leaving is seen at once
  auto after = admin->Stats();
  ASSERT_TRUE(after.ok());
  for (int i = 0; i < 100 && after.ok() && after->clients_attached != 1; ++i) after = admin->Stats();
  EXPECT_EQ(after->clients_attached, 1u);
  EXPECT_EQ(d.Stop(), 0) << d.Log();
}

TEST_F(DaemonTest, TierkvctlAnswers) {
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string out;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "status"}, &out), 0) << out;
  EXPECT_NE(out.find("tierkvd " TIERKV_VERSION), std::string::npos) << out;
  EXPECT_NE(out.find("metrics           http://127.0.0.1:"), std::string::npos) << out;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH,
                                {"--socket", d.socket_path(), "create-namespace", "m", "2", "4", "2", "32", "16", "bf16"},
                                &out), 0) << out;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "namespaces"}, &out), 0);
  EXPECT_NE(out.find("dtype=bf16"), std::string::npos) << out;
  EXPECT_EQ(out.find("granularity=head"), std::string::npos) << out;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH,
                                {"--socket", d.socket_path(), "create-namespace", "h", "2", "4", "2", "32", "16", "bf16",
                                 "granularity=head"},
                                &out), 0) << out;
  ASSERT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "namespaces"}, &out), 0);
  EXPECT_NE(out.find("granularity=head"), std::string::npos) << out;
  EXPECT_NE(testing::RunProgram(TIERKVCTL_PATH,
                                {"--socket", d.socket_path(), "create-namespace", "g", "2", "4", "2", "32", "16", "bf16",
                                 "granularity=token"},
                                &out), 0);
  EXPECT_NE(out.find("granularity"), std::string::npos) << out;
  EXPECT_NE(testing::RunProgram(TIERKVCTL_PATH,
                                {"--socket", d.socket_path(), "create-namespace", "m", "0", "4", "2", "32", "16", "bf16"},
                                &out), 0);
  EXPECT_NE(out.find("num_layers"), std::string::npos) << out;
  EXPECT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "ping"}, &out), 0);
  EXPECT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "shutdown"}, &out), 0) << out;
  for (int i = 0; i < 500 && d.Running(); ++i) usleep(10000);
  EXPECT_FALSE(d.Running());
  EXPECT_EQ(d.Stop(), 0) << d.Log();
  EXPECT_NE(testing::RunProgram(TIERKVCTL_PATH, {"--socket", d.socket_path(), "ping"}, &out), 0);
}

TEST_F(DaemonTest, ProgramsHaveHelp) {
  std::string out;
  EXPECT_EQ(testing::RunProgram(TIERKVD_PATH, {"--help"}, &out), 0);
  EXPECT_NE(out.find("--config"), std::string::npos);
  EXPECT_EQ(testing::RunProgram(TIERKVCTL_PATH, {"--help"}, &out), 0);
  EXPECT_NE(out.find("namespaces"), std::string::npos);
  EXPECT_EQ(testing::RunProgram(TIERKVD_PATH, {"--version"}, &out), 0);
  EXPECT_EQ(out, "tierkvd " TIERKV_VERSION "\n");
  EXPECT_EQ(testing::RunProgram(TIERKVD_PATH, {"--print-default-config"}, &out), 0);
  EXPECT_NE(out.find("[metrics]"), std::string::npos);
  EXPECT_NE(testing::RunProgram(TIERKVD_PATH, {"--frobnicate"}, &out), 0);
}

TEST_F(DaemonTest, RestartBringsNamespacesBackFromTheManifest) {
  {
    DaemonProcess d(TIERKVD_PATH, dir_.path());
    ASSERT_TRUE(d.Start()) << d.Log();
    auto c = Connect(d);
    ASSERT_TRUE(c->CreateNamespace(Spec("kept")).ok());
    ASSERT_TRUE(c->CreateNamespace(Spec("also", 2)).ok());
    EXPECT_EQ(d.Stop(), 0) << d.Log();
  }
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start()) << d.Log();
  auto c = Connect(d);
  auto list = c->ListNamespaces();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  auto info = c->Attach("also");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->spec.model.num_kv_heads, 2u);
  EXPECT_EQ(info->id, 2u);
  EXPECT_EQ(d.Stop(), 0);
}

TEST_F(DaemonTest, BadInputGetsErrorsAndChangesNothing) {
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start()) << d.Log();
  auto admin = Connect(d);
  ASSERT_TRUE(admin->CreateNamespace(Spec("ns")).ok());

  // Oversized length prefix: an error reply naming the limit, then the connection closes.
  {
    RawConn raw(d.socket_path());
    raw.Send(std::string("\xff\xff\xff\x7f", 4));
    Json r = raw.Reply();
    ASSERT_FALSE(r.is_null());
    EXPECT_FALSE(r["ok"].get<bool>());
    EXPECT_NE(r["error"].get<std::string>().find("max_frame_bytes"), std::string::npos);
    EXPECT_TRUE(raw.Closed());
  }
  // On one connection: each mistake gets an error naming it, and the connection stays.
  {
    RawConn raw(d.socket_path());
    struct Case {
      std::string body;
      std::string code, mention;
    } cases[] = {
        {"{\"op\":\"ping\"}", "InvalidArgument", "hello"},
        {"{\"op\":\"hello\",\"version\":2}", "NotSupported", "version"},
        {"{\"op\":\"hello\",\"version\":1}", "", ""},
        {"{not json", "InvalidArgument", "JSON"},
        {"{\"op\":\"launch\"}", "UnknownOp", "unknown op"},
        {"{\"op\":\"create_namespace\",\"namespace\":{\"name\":\"z\",\"model\":{\"num_layers\":0,\"num_q_heads\":8,"
         "\"num_kv_heads\":4,\"head_dim\":64,\"block_tokens\":16,\"dtype\":\"f16\"}}}",
         "InvalidArgument", "num_layers"},
        {"{\"op\":\"create_namespace\",\"namespace\":{\"name\":\"z\",\"model\":{\"num_layers\":4,\"num_q_heads\":8,"
         "\"num_kv_heads\":4,\"head_dim\":99999999,\"block_tokens\":16,\"dtype\":\"f16\"}}}",
         "InvalidArgument", "head_dim"},
        {"{\"op\":\"create_namespace\",\"namespace\":{\"name\":\"ns\",\"model\":{\"num_layers\":4,\"num_q_heads\":8,"
         "\"num_kv_heads\":2,\"head_dim\":64,\"block_tokens\":16,\"dtype\":\"f16\"}}}",
         "AlreadyExists", "another model shape"},
        {"{\"op\":\"attach\",\"namespace\":\"missing\"}", "NotFound", "missing"},
    };
    for (const auto& c : cases) {
      raw.SendFrame(c.body);
      Json r = raw.Reply();
      ASSERT_FALSE(r.is_null()) << c.body;
      if (c.code.empty()) {
        EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
        continue;
      }
      EXPECT_FALSE(r["ok"].get<bool>()) << c.body;
      if (c.code != "UnknownOp") {
        EXPECT_EQ(r["code"], c.code) << r.dump();
      }
      EXPECT_NE(r["error"].get<std::string>().find(c.mention), std::string::npos) << r.dump();
    }
    raw.Send(std::string("\0\0\0\0", 4));  // an empty frame
    EXPECT_FALSE(raw.Reply()["ok"].get<bool>());
    raw.SendFrame("{\"op\":\"ping\"}");
    EXPECT_TRUE(raw.Reply()["ok"].get<bool>());
  }
  // A truncated frame followed by a hang-up.
  {
    RawConn raw(d.socket_path());
    raw.Send(std::string("\x64\0\0\0{\"op\"", 9));
  }
  // Nothing changed and the daemon still answers.
  auto list = admin->ListNamespaces();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].spec.model.num_kv_heads, 4u);
  EXPECT_TRUE(Connect(d)->Ping().ok());
  const std::string metrics = HttpGet(admin->Stats()->metrics_url);
  EXPECT_GE(MetricValue(metrics, "tierkv_control_errors_total", {"code=\"InvalidArgument\""}), 4);
  EXPECT_EQ(MetricValue(metrics, "tierkv_control_disconnects_total", {"reason=\"bad_frame\""}), 1);
  EXPECT_EQ(d.Stop(), 0) << d.Log();
}

TEST_F(DaemonTest, TooManyClientsAreRefusedWithAReason) {
  DaemonProcess d(TIERKVD_PATH, dir_.path(), "", "[control]\nmax_clients = 2\n[limits]\ncontrol_admin_reserved_clients = 1\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  auto a = Connect(d), b = Connect(d);
  ASSERT_TRUE(a && b);
  auto c = Client::Connect(d.socket_path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted) << c.status().ToString();
  b.reset();
  for (int i = 0; i < 100 && !c.ok(); ++i) {
    usleep(10000);
    c = Client::Connect(d.socket_path());
  }
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(d.Stop(), 0);
}

TEST_F(DaemonTest, BadConfigRefusesToStartAndNamesTheKey) {
  DaemonProcess d(TIERKVD_PATH, dir_.path(), "sokcet_mode = 1\n");
  EXPECT_FALSE(d.Start());
  EXPECT_NE(d.Stop(), 0);
  EXPECT_NE(d.Log().find("daemon.sokcet_mode"), std::string::npos) << d.Log();
}

TEST_F(DaemonTest, ASecondDaemonOnTheSameSocketIsRefused) {
  DaemonProcess first(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(first.Start()) << first.Log();
  testing::TempDir other("daemon2");
  DaemonProcess second(TIERKVD_PATH, other.path(), "socket_path = \"" + first.socket_path() + "\"\n");
  EXPECT_FALSE(second.Start());
  EXPECT_NE(second.Log().find("another daemon"), std::string::npos) << second.Log();
  EXPECT_TRUE(Connect(first)->Ping().ok());
  EXPECT_EQ(first.Stop(), 0);
}

TEST_F(DaemonTest, SocketModeIsApplied) {
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start());
  struct stat st {};
  ASSERT_EQ(::stat(d.socket_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(d.Stop(), 0);
}

// A peer with another uid (SO_PEERCRED) sees only namespaces whose ACL admits it.
TEST_F(DaemonTest, AclRefusesOtherUids) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  ::chmod(dir_.path().c_str(), 0755);
  DaemonProcess d(TIERKVD_PATH, dir_.path(), "socket_mode = 0o666\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  constexpr uint32_t kNobody = 65534;
  auto admin = Connect(d);
  ASSERT_TRUE(admin->CreateNamespace(Spec("private")).ok());
  ASSERT_TRUE(admin->CreateNamespace(Spec("for-nobody", 4, {kNobody})).ok());

  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: drop to nobody and report through the exit code.
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(10);
    tierkv_client* c = tierkv_client_new();
    if (tierkv_connect(c, d.socket_path().c_str()) != TIERKV_OK) ::_exit(11);
    if (tierkv_attach(c, "private", nullptr, nullptr) != TIERKV_PERMISSION_DENIED) ::_exit(12);
    if (std::strstr(tierkv_last_error(c), "ACL") == nullptr) ::_exit(13);
    tierkv_model_spec m{};
    uint32_t id = 0;
    if (tierkv_attach(c, "for-nobody", &id, &m) != TIERKV_OK || m.num_kv_heads != 4 || id != 2) ::_exit(14);
    if (tierkv_create_namespace(c, "mine", &m, nullptr) != TIERKV_PERMISSION_DENIED) ::_exit(15);
    tierkv_client_free(c);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child step " << WEXITSTATUS(status) << " failed";
  const std::string metrics = HttpGet(admin->Stats()->metrics_url);
  EXPECT_GE(MetricValue(metrics, "tierkv_control_errors_total", {"code=\"PermissionDenied\""}), 2);
  EXPECT_EQ(d.Stop(), 0);
}

TEST_F(DaemonTest, CApiWorksEndToEnd) {
  DaemonProcess d(TIERKVD_PATH, dir_.path());
  ASSERT_TRUE(d.Start());
  tierkv_client* c = tierkv_client_new();
  EXPECT_EQ(tierkv_ping(c), TIERKV_INVALID_ARGUMENT);  // not connected yet
  EXPECT_NE(std::string(tierkv_last_error(c)).find("not connected"), std::string::npos);
  ASSERT_EQ(tierkv_connect(c, d.socket_path().c_str()), TIERKV_OK) << tierkv_last_error(c);
  tierkv_model_spec m{2, 4, 2, 32, 16, TIERKV_BF16};
  uint32_t id = 0;
  ASSERT_EQ(tierkv_create_namespace(c, "c-api", &m, &id), TIERKV_OK) << tierkv_last_error(c);
  EXPECT_EQ(id, 1u);
  m.head_dim = 0;
  EXPECT_EQ(tierkv_create_namespace(c, "bad", &m, nullptr), TIERKV_INVALID_ARGUMENT);
  tierkv_model_spec got{};
  ASSERT_EQ(tierkv_attach(c, "c-api", nullptr, &got), TIERKV_OK);
  EXPECT_EQ(got.dtype, TIERKV_BF16);
  const char* stats = tierkv_stats_json(c);
  ASSERT_NE(stats, nullptr);
  EXPECT_NE(std::string(stats).find("\"clients_attached\":1"), std::string::npos) << stats;
  EXPECT_STREQ(tierkv_status_name(TIERKV_NOT_FOUND), "NotFound");
  tierkv_client_free(c);
  tierkv_client* nobody = tierkv_client_new();
  EXPECT_NE(tierkv_connect(nobody, (dir_.path() + "/absent.sock").c_str()), TIERKV_OK);
  tierkv_client_free(nobody);
  EXPECT_EQ(d.Stop(), 0);
}

}  // namespace
}  // namespace tierkv
