// tierkvd: the tierkv KV-cache storage daemon.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "common/config.h"
#include "common/log.h"
#include "daemon/daemon.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkvd [options]

The tierkv daemon: keeps the KV cache of LLM inference engines in GPU memory, pinned
host memory and NVMe, and serves it to the workers attached over a Unix socket.

Options:
  --config PATH            TOML config file (default: the embedded defaults, which
                           deploy/tierkvd.toml documents key by key)
  --check-config           parse the config and exit (0 when valid)
  --print-default-config   print the embedded default config and exit
  --version                print the version and exit
  --help                   print this help and exit

Signals: SIGTERM or SIGINT stop the daemon cleanly (exit status 0): clients are
disconnected, the blocks not yet on the disk tier are written to it for at most
storage.shutdown_drain_s seconds, the manifest is flushed.
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tierkvd: %s\n", msg.c_str());
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  // Freed memory stays in the allocator up to 64 MiB per arena instead of going back
  // to the kernel at every free of the heap's top: the remote tier's workers (and the
  // channel workers) allocate and free tens of MiB per batch, and giving it back each
  // time costs one page fault per 4 KiB on the next batch (perf: most of an R fetch).
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("tierkvd %s\n", TIERKV_VERSION);
      return 0;
    } else if (a == "--print-default-config") {
      std::cout << tierkv::EmbeddedDefaultConfig();
      return 0;
    } else if (a == "--check-config") {
      check_only = true;
    } else if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else {
      return Fail("unknown argument '" + a + "' (see --help)");
    }
  }

  auto config = config_path.empty() ? tierkv::ParseConfig(tierkv::EmbeddedDefaultConfig(), "embedded defaults")
                                    : tierkv::LoadConfigFile(config_path);
  if (!config.ok()) return Fail("bad config: " + config.status().message());
  if (check_only) {
    std::printf("config %s is valid\n", config_path.empty() ? "(embedded defaults)" : config_path.c_str());
    return 0;
  }
  tierkv::LogLevel level = tierkv::LogLevel::kInfo;
  tierkv::ParseLogLevel(config->daemon.log_level, &level);
  tierkv::SetLogLevel(level);
  LOG(INFO) << "config: " << (config_path.empty() ? "embedded defaults" : config_path);

  tierkv::daemon::Daemon daemon(std::move(config).value());
  if (tierkv::Status st = daemon.Start(); !st.ok()) {
    LOG(ERROR) << "start failed: " << st.ToString();
    return 1;
  }
  if (tierkv::Status st = daemon.Run(); !st.ok()) {
    LOG(ERROR) << "stopped with an error: " << st.ToString();
    return 1;
  }
  return 0;
}
