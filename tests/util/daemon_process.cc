#include "tests/util/daemon_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace tierkv::testing {

std::string DaemonBinary(const char* built) {
  const char* env = std::getenv("TIERKVD");
  return env != nullptr && *env != '\0' ? env : built;
}

namespace {
bool SocketAnswers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

DaemonProcess::DaemonProcess(std::string binary, std::string dir, std::string daemon_keys, std::string sections)
    : binary_(DaemonBinary(binary.c_str())), dir_(std::move(dir)), socket_(dir_ + "/tierkvd.sock"), config_(dir_ + "/tierkvd.toml") {
  std::ofstream out(config_);
  out << "[daemon]\ndata_dir = \"" << dir_ << "/data\"\n" << daemon_keys << "\n";
  if (daemon_keys.find("socket_path") == std::string::npos) out << "socket_path = \"" << socket_ << "\"\n";
  out << sections << "\n";
  if (sections.find("[metrics]") == std::string::npos) out << "[metrics]\nlisten = \"127.0.0.1:0\"\n";
  // Small tiers: tests create many namespaces, each preallocating its D slab files.
  if (sections.find("[storage]") == std::string::npos) {
    out << "[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\n";
  }
}

DaemonProcess::~DaemonProcess() { Kill(); }

bool DaemonProcess::Start(std::chrono::milliseconds timeout) {
  pid_ = ::fork();
  if (pid_ == 0) {
    int log = ::open((dir_ + "/tierkvd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, STDERR_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::execl(binary_.c_str(), binary_.c_str(), "--config", config_.c_str(), nullptr);
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Running()) return false;
    if (SocketAnswers(socket_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool DaemonProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = DecodeWait(status);
    pid_ = -1;
    return false;
  }
  return true;
}

int DaemonProcess::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Running()) return exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_status_ = DecodeWait(status);
  pid_ = -1;
}

std::string DaemonProcess::Log() const {
  std::ifstream in(dir_ + "/tierkvd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int RunProgram(const std::string& binary, const std::vector<std::string>& args, std::string* output) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    ::close(pipefd[0]);
    std::vector<char*> argv{const_cast<char*>(binary.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  output->clear();
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) output->append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return DecodeWait(status);
}

std::string HttpGet(const std::string& url) {
  // http://host:port/path
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return "";
  std::string rest = url.substr(prefix.size());
  auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash), path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1))));
  if (::inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &addr.sin_addr) != 1) return "";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + hostport + "\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return "";
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto body = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.find(" 200 ") == std::string::npos || body == std::string::npos) return "";
  return resp.substr(body + 4);
}

double MetricValue(const std::string& text, const std::string& name, const std::vector<std::string>& labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    bool all = true;
    for (const auto& l : labels) all = all && line.find(l) != std::string::npos;
    if (!all) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

Footprint Measure(pid_t pid) {
  Footprint f;
  const std::string proc = "/proc/" + std::to_string(pid);
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(proc + "/task")) ++f.threads;
  for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
    ++f.fds;
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.find(".sst") != std::string::npos) ++f.table_fds;  // also "NNN.sst (deleted)"
  }
  std::ifstream status(proc + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) f.rss_kib = std::stoull(line.substr(6));
  }
  return f;
}

}  // namespace tierkv::testing
