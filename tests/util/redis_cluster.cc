#include "tests/util/redis_cluster.h"

#include "storage/remote/redis_connection.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace tierkv::testing {
namespace {
using namespace std::chrono_literals;

// Free loopback ports (the sockets stay bound until all are picked).
std::vector<int> FreePorts(size_t n) {
  std::vector<int> fds, ports;
  for (size_t i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ports.push_back(0);
    } else {
      ports.push_back(ntohs(a.sin_port));
    }
    fds.push_back(fd);
  }
  for (int fd : fds) close(fd);
  return ports;
}

std::string ReplyText(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_NIL: return "(nil)";
    case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::string s;
      for (size_t i = 0; i < r->elements; ++i) s += (i ? "\n" : "") + ReplyText(r->element[i]);
      return s;
    }
    default: return std::string(r->str, r->len);
  }
}

bool InPath(const char* prog) {
  return std::system((std::string("command -v ") + prog + " >/dev/null 2>&1").c_str()) == 0;
}
}  // namespace

bool RedisCluster::Available() { return InPath("redis-server") && InPath("redis-cli"); }

RedisCluster::RedisCluster(int masters, int replicas, bool tls) : masters_(masters), replicas_(replicas), tls_(tls) {
  const size_t n = static_cast<size_t>(masters * (1 + replicas));
  const std::vector<int> p = FreePorts(2 * n);
  ports_.assign(p.begin(), p.begin() + n);
  bus_ports_.assign(p.begin() + n, p.end());
  pids_.assign(n, -1);
}

RedisCluster::~RedisCluster() { KillAll(); }

pid_t RedisCluster::Spawn(size_t node) {
  const std::string port = std::to_string(ports_[node]);
  const std::string dir = dir_.Sub("n" + port);
  std::filesystem::create_directories(dir);
  std::vector<std::string> args = {
      "redis-server", "--port", port, "--cluster-port", std::to_string(bus_ports_[node]), "--bind", "127.0.0.1",
      "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
      "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
      "--logfile", dir + "/redis.log", "--cluster-replica-validity-factor", "0"};
  if (tls_) {
    args[2] = "0";
    for (const std::string& a : {std::string("--tls-port"), port, std::string("--tls-cluster"), std::string("yes"),
                                 std::string("--tls-replication"), std::string("yes"), std::string("--tls-cert-file"),
                                 dir_.Sub("node.crt"), std::string("--tls-key-file"), dir_.Sub("node.key"),
                                 std::string("--tls-ca-cert-file"), dir_.Sub("ca.crt"),
                                 std::string("--tls-auth-clients"), std::string("yes")}) {
      args.push_back(a);
    }
  }
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that crashes leaves no server behind
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp("redis-server", argv.data());
    _exit(127);
  }
  // Wait for it to answer.
  for (int i = 0; i < 200 && pid > 0; ++i) {
    if (Command(node, {"PING"}) == "PONG") return pid;
    std::this_thread::sleep_for(10ms);
  }
  return pid;
}

storage::remote::TlsOptions RedisCluster::tls_options() const {
  return {dir_.Sub("ca.crt"), dir_.Sub("node.crt"), dir_.Sub("node.key"), ""};
}

std::string RedisCluster::MakeCertificates() {
  const std::string d = dir_.path();
  std::ofstream(dir_.Sub("san.cnf")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  // P-256 keys: fast to make; 2 days is more than any test.
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string cmd =
      "cd '" + d + "' && openssl req -x509" + ec + " -keyout ca.key -out ca.crt -days 2 -subj /CN=tierkv-test-ca" +
      " && openssl req -x509" + ec + " -keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=tierkv-other-ca" +
      " && openssl req" + ec + " -keyout node.key -out node.csr -subj /CN=localhost" +
      " && openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out node.crt -days 2" +
      " -extfile san.cnf";
  if (std::system(("(" + cmd + ") > '" + d + "/certs.log' 2>&1").c_str()) != 0) {
    std::ifstream f(dir_.Sub("certs.log"));
    return "openssl could not make the test certificates: " + std::string(std::istreambuf_iterator<char>(f), {});
  }
  auto ctx = storage::remote::TlsContext::Create(tls_options());
  if (!ctx.ok()) return ctx.status().ToString();
  tls_ctx_ = std::move(*ctx);
  return "";
}

std::string RedisCluster::Start(std::chrono::milliseconds timeout) {
  if (tls_) {
    if (std::string e = MakeCertificates(); !e.empty()) return e;
  }
  for (size_t i = 0; i < size(); ++i) {
    if (ports_[i] == 0 || bus_ports_[i] == 0) return "no free port";
    pids_[i] = Spawn(i);
    if (Command(i, {"PING"}) != "PONG") return "redis-server on " + address(i) + " did not start: " + Log(i);
  }
  std::string cmd = "redis-cli";
  if (tls_) {
    const storage::remote::TlsOptions t = tls_options();
    cmd += " --tls --cacert " + t.ca_file + " --cert " + t.cert_file + " --key " + t.key_file;
  }
  cmd += " --cluster create";
  for (size_t i = 0; i < size(); ++i) cmd += " " + address(i);
  cmd += " --cluster-replicas " + std::to_string(replicas_) + " --cluster-yes > " + dir_.Sub("create.log") + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream f(dir_.Sub("create.log"));
    return "redis-cli --cluster create failed: " + std::string(std::istreambuf_iterator<char>(f), {});
  }
  if (!WaitOk(timeout)) return "the cluster did not become ok";
  // Every master has its replicas (the failover tests need them).
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (size_t i = 0; i < size(); ++i) {
    while (IsMaster(i)) {
      const std::string info = Command(i, {"INFO", "replication"});
      if (info.find("connected_slaves:" + std::to_string(replicas_)) != std::string::npos &&
          (replicas_ == 0 || info.find("state=online") != std::string::npos)) {
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) return "replicas of " + address(i) + " did not sync";
      std::this_thread::sleep_for(20ms);
    }
  }
  return "";
}

std::string RedisCluster::Seeds() const {
  std::string s;
  for (size_t i = 0; i < size(); ++i) s += (i ? "," : "") + address(i);
  return s;
}

std::string RedisCluster::Command(size_t node, const std::vector<std::string>& argv) const {
  using namespace std::chrono_literals;
  auto c = storage::remote::RedisConnection::Connect("127.0.0.1", ports_[node], 1000ms, 5000ms, tls_ctx_.get());
  if (!c.ok()) return "!io: " + c.status().ToString();
  auto r = (*c)->Command(argv);
  return r.ok() ? ReplyText(r->get()) : "!io: " + r.status().ToString();
}

std::string RedisCluster::NodeId(size_t node) const { return Command(node, {"CLUSTER", "MYID"}); }

bool RedisCluster::IsMaster(size_t node) const {
  return running(node) && Command(node, {"ROLE"}).rfind("master", 0) == 0;
}

int RedisCluster::MasterOf(uint16_t slot) const {
  for (size_t i = 0; i < size(); ++i) {
    if (!IsMaster(i)) continue;
    // CLUSTER COUNTKEYSINSLOT works anywhere; ask the node who owns the slot via a
    // key-less probe: CLUSTER SLOTS from its own view.
    const std::string nodes = Command(i, {"CLUSTER", "NODES"});
    std::istringstream in(nodes);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("myself") == std::string::npos) continue;
      std::istringstream f(line);
      std::string field;
      int col = 0;
      while (f >> field) {
        if (++col <= 8) continue;
        if (field[0] == '[') continue;  // migrating/importing markers
        const size_t dash = field.find('-');
        const long lo = std::stol(field.substr(0, dash));
        const long hi = dash == std::string::npos ? lo : std::stol(field.substr(dash + 1));
        if (slot >= lo && slot <= hi) return static_cast<int>(i);
      }
    }
  }
  return -1;
}

void RedisCluster::Kill(size_t node) {
  if (pids_[node] <= 0) return;
  kill(pids_[node], SIGCONT);
  kill(pids_[node], SIGKILL);
  waitpid(pids_[node], nullptr, 0);
  pids_[node] = -1;
}

std::string RedisCluster::Restart(size_t node) {
  if (running(node)) return "";
  pids_[node] = Spawn(node);
  return Command(node, {"PING"}) == "PONG" ? "" : "redis-server on " + address(node) + " did not restart";
}

void RedisCluster::Pause(bool stop) {
  for (pid_t p : pids_) {
    if (p > 0) kill(p, stop ? SIGSTOP : SIGCONT);
  }
}

void RedisCluster::Pause(size_t node, bool stop) {
  if (pids_[node] > 0) kill(pids_[node], stop ? SIGSTOP : SIGCONT);
}

void RedisCluster::KillAll() {
  for (size_t i = 0; i < size(); ++i) Kill(i);
}

std::string RedisCluster::RestartAll(std::chrono::milliseconds timeout) {
  for (size_t i = 0; i < size(); ++i) {
    if (std::string e = Restart(i); !e.empty()) return e;
  }
  return WaitOk(timeout) ? "" : "the cluster did not become ok after a restart";
}

bool RedisCluster::WaitOk(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool ok = true;
    for (size_t i = 0; i < size() && ok; ++i) {
      if (!running(i)) continue;
      ok = Command(i, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
    }
    if (ok) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

std::string RedisCluster::MoveSlot(uint16_t slot, size_t to, bool finish) {
  const int from = MasterOf(slot);
  if (from < 0) return "no master serves slot " + std::to_string(slot);
  if (static_cast<size_t>(from) == to) return "";
  const std::string s = std::to_string(slot);
  std::string r = Command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", NodeId(from)});
  if (r != "OK") return "IMPORTING: " + r;
  r = Command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", NodeId(to)});
  if (r != "OK") return "MIGRATING: " + r;
  for (;;) {
    const std::string keys = Command(from, {"CLUSTER", "GETKEYSINSLOT", s, "100"});
    if (keys.empty()) break;
    std::vector<std::string> argv = {"MIGRATE", "127.0.0.1", std::to_string(ports_[to]), "", "0", "5000", "KEYS"};
    std::istringstream in(keys);
    for (std::string k; std::getline(in, k);) argv.push_back(k);
    r = Command(from, argv);
    if (r != "OK") return "MIGRATE: " + r;
  }
  return finish ? FinishMove(slot, to) : "";
}

std::string RedisCluster::FinishMove(uint16_t slot, size_t to) {
  const std::string id = NodeId(to);
  for (size_t i = 0; i < size(); ++i) {
    if (!IsMaster(i)) continue;
    const std::string r = Command(i, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id});
    if (r != "OK") return "SETSLOT NODE on " + address(i) + ": " + r;
  }
  return "";
}

std::string RedisCluster::Log(size_t node) const {
  std::ifstream f(dir_.Sub("n" + std::to_string(ports_[node])) + "/redis.log");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace tierkv::testing
