#include "tests/integration/prometheus_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/util/daemon_process.h"

namespace tierkv::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

}  // namespace

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(std::string(path ? path : "") + ":/usr/bin:/usr/sbin");
  for (std::string d; std::getline(dirs, d, ':');) {
    if (d.empty()) continue;
    const std::string candidate = d + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

PrometheusProcess::PrometheusProcess(std::string dir, std::string deploy_dir)
    : dir_(std::move(dir)), deploy_dir_(std::move(deploy_dir)), config_(dir_ + "/prometheus.yml") {}

PrometheusProcess::~PrometheusProcess() { Stop(); }

bool PrometheusProcess::Configure(const std::string& target, int interval_s) {
  std::string yml = ReadFile(deploy_dir_ + "/prometheus/prometheus.yml");
  const std::string shipped_target = "targets: [\"127.0.0.1:9464\"]";
  if (Count(yml, shipped_target) != 1) {
    error_ = "deploy/prometheus/prometheus.yml: expected one `" + shipped_target + "` to point at the test daemon";
    return false;
  }
  yml.replace(yml.find(shipped_target), shipped_target.size(), "targets: [\"" + target + "\"]");
  const std::regex interval(R"(((scrape_interval|evaluation_interval|scrape_timeout):\s*)\d+[smh])");
  if (!std::regex_search(yml, std::regex(R"(\n\s*scrape_interval:)")) ||
      !std::regex_search(yml, std::regex(R"(\n\s*evaluation_interval:)"))) {
    error_ = "deploy/prometheus/prometheus.yml: scrape_interval or evaluation_interval missing";
    return false;
  }
  yml = std::regex_replace(yml, interval, "$1@INTERVAL@");  // "$1" + digits would name group 1N
  for (size_t p; (p = yml.find("@INTERVAL@")) != std::string::npos;) {
    yml.replace(p, 10, std::to_string(interval_s) + "s");
  }
  // rule_files are relative to the config file: copy the shipped rules beside it.
  std::error_code ec;
  std::filesystem::copy_file(deploy_dir_ + "/prometheus/tierkv-alerts.yml", dir_ + "/tierkv-alerts.yml",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) {
    error_ = "cannot copy tierkv-alerts.yml: " + ec.message();
    return false;
  }
  std::ofstream(config_) << yml;
  return true;
}

bool PrometheusProcess::Start(std::chrono::milliseconds timeout) {
  const std::string binary = FindProgram("prometheus");
  if (binary.empty()) {
    error_ = "prometheus not found (Debian package prometheus; deploy/install-deps.sh installs it)";
    return false;
  }
  for (int attempt = 0; attempt < 3; ++attempt) {  // the free port may be taken meanwhile
    port_ = FreeLoopbackPort();
    pid_ = ::fork();
    if (pid_ == 0) {
      int log = ::open((dir_ + "/prometheus.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
      const std::string config = "--config.file=" + config_, tsdb = "--storage.tsdb.path=" + dir_ + "/tsdb",
                        listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
      ::execl(binary.c_str(), binary.c_str(), config.c_str(), tsdb.c_str(), listen.c_str(), "--log.level=warn",
              nullptr);
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (!HttpGet("http://127.0.0.1:" + std::to_string(port_) + "/-/ready").empty()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) break;  // running but never ready: give up
  }
  error_ = "prometheus did not become ready; its log:\n" + Log();
  Stop();
  return false;
}

void PrometheusProcess::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string PrometheusProcess::Log() const { return ReadFile(dir_ + "/prometheus.log"); }

nlohmann::json PrometheusProcess::Api(const std::string& path) const {
  const std::string body = HttpGet("http://127.0.0.1:" + std::to_string(port_) + "/api/v1/" + path);
  auto reply = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || reply.value("status", "") != "success") return nullptr;
  return reply;
}

nlohmann::json PrometheusProcess::Query(const std::string& promql) const {
  const auto reply = Api("query?query=" + UrlEncode(promql));
  if (reply.is_null() || reply["data"].value("resultType", "") != "vector") return nlohmann::json::array();
  return reply["data"]["result"];
}

double PrometheusProcess::Scalar(const std::string& promql) const {
  const auto result = Query(promql);
  if (result.size() != 1) return std::nan("");
  // A sample is [unix_time, "value"].
  return std::strtod(result[0]["value"][1].get<std::string>().c_str(), nullptr);
}

bool PrometheusProcess::WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace tierkv::testing
