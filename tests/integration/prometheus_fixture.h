// The operations stack of deploy/ for integration tests: a real tierkvd with its
// metrics on a fixed loopback port (the same after a restart) and a real Prometheus
// scraping it every second with the shipped scrape config and alert rules.
// Prometheus applies new scrape targets about 5 s after it starts, so a test
// binary shares one stack between its tests where it can.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/prometheus_process.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv::testing {

// The model of these tests: 4 KiB blocks (f32, 2 KV heads x 16 tokens x 16 dims, K and V).
inline constexpr uint32_t kOpsLayers = 2, kOpsQHeads = 4, kOpsKvHeads = 2, kOpsHeadDim = 16, kOpsBlockTokens = 16;
inline const ModelSpec kOpsModel{kOpsLayers, kOpsQHeads, kOpsKvHeads, kOpsHeadDim, kOpsBlockTokens, DType::kF32};

// Random block contents, deterministic per (seq, layer, block).
inline std::vector<std::byte> OpsBlock(uint64_t seq, uint32_t layer, uint32_t block) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer * 131 + block));
  std::normal_distribution<float> n(0.f, 0.1f);
  std::vector<float> f(kOpsModel.BlockBytes() / 4);
  for (auto& x : f) x = n(rng);
  std::vector<std::byte> b(kOpsModel.BlockBytes());
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

class OpsStack {
 public:
  static constexpr int kScrapeSeconds = 1;

  // Starts tierkvd (extra config `sections` besides [metrics]) and Prometheus, and
  // waits for the first scrape. Reports failures through gtest (check HasFatalFailure).
  void Start(const std::string& sections = "") {
    std::filesystem::create_directories(dir_.Sub("daemon"));
    std::filesystem::create_directories(dir_.Sub("prometheus"));
    bool started = false;
    for (int attempt = 0; attempt < 3 && !started; ++attempt) {  // the free port may be taken meanwhile
      metrics_port_ = FreeLoopbackPort();
      ASSERT_GT(metrics_port_, 0);
      target_ = "127.0.0.1:" + std::to_string(metrics_port_);
      daemon_ = std::make_unique<DaemonProcess>(TIERKVD_PATH, dir_.Sub("daemon"), "log_level = \"warning\"\n",
                                                "[metrics]\nlisten = \"" + target_ + "\"\n" + sections);
      started = daemon_->Start();
    }
    ASSERT_TRUE(started) << daemon_->Log();
    prom_ = std::make_unique<PrometheusProcess>(dir_.Sub("prometheus"), TIERKV_DEPLOY_DIR);
    ASSERT_TRUE(prom_->Configure(target_, kScrapeSeconds)) << prom_->error();
    ASSERT_TRUE(prom_->Start()) << prom_->error();
    ASSERT_TRUE(PrometheusProcess::WaitFor([&] { return prom_->Scalar("up{job=\"tierkv\"}") == 1; },
                                           std::chrono::seconds(15)))
        << prom_->Log();
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_->socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Creates namespace `name` with budgets of g, h, d blocks (D slots take 8 KiB) and
  // `acl_uids` (empty: the caller).
  void CreateNamespace(const std::string& name, uint64_t g, uint64_t h, uint64_t d,
                       std::vector<uint32_t> acl_uids = {}) {
    auto admin = Connect();
    ASSERT_NE(admin, nullptr);
    NamespaceSpec spec;
    spec.name = name;
    spec.model = kOpsModel;
    spec.budgets = {g * 4096, h * 4096, d * 8192};
    spec.acl.uids = std::move(acl_uids);
    auto r = admin->CreateNamespace(spec);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  std::unique_ptr<DataChannel> Channel(Client& c, const std::string& ns) {
    EXPECT_TRUE(c.Attach(ns).ok());
    auto ch = c.OpenChannel(ns, {.staging_bytes = 1 << 20});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }

  // Runs tierkvctl against the daemon; returns its exit status, output in *out.
  int Ctl(std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), {"--socket", daemon_->socket_path()});
    return RunProgram(TIERKVCTL_PATH, args, out);
  }

  DaemonProcess& daemon() { return *daemon_; }
  PrometheusProcess& prom() { return *prom_; }
  const std::string& target() const { return target_; }

 private:
  TempDir dir_{"ops"};
  int metrics_port_ = 0;
  std::string target_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<PrometheusProcess> prom_;
};

}  // namespace tierkv::testing
