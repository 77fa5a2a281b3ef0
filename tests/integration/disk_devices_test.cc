// Integration: a real tierkvd whose D tier stripes over two dirs (storage.disk_dirs):
// blocks pushed down to D come back from both devices, each device has slab files,
// and the metrics carry one series per device (label device).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

constexpr uint32_t kBlockTokens = 16;
const ModelSpec kModel{2, 4, 2, 16, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB

std::vector<std::byte> MakeBlock(uint32_t block) {
  std::mt19937 rng(block * 31 + 7);
  std::vector<std::byte> b(kBlockBytes);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

TEST(DiskDevicesTest, BlocksStripeOverEveryDirAndComeBack) {
  testing::TempDir dir("diskdevs");
  const std::string d0 = dir.path() + "/nvme0", d1 = dir.path() + "/nvme1";
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "",
                                "[storage]\ngpu_bytes = 4194304\nhost_bytes = 8388608\ndisk_bytes = 16777216\n"
                                "disk_dirs = [\"" + d0 + "\", \"" + d1 + "\"]\n");
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  auto c = Client::Connect(daemon.socket_path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  NamespaceSpec spec;
  spec.name = "ns";
  spec.model = kModel;
  spec.budgets = {4 * 4096, 8 * 4096, 256 * 8192};  // most blocks end up on D only
  ASSERT_TRUE((*c)->CreateNamespace(spec).ok());
  ASSERT_TRUE((*c)->Attach("ns").ok());
  auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 20});
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  constexpr uint32_t kBlocks = 64;
  for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE((*ch)->Put(1, 0, b, MakeBlock(b)).ok());
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t b = 0; b < kBlocks; ++b) {
    ASSERT_TRUE((*ch)->Get(1, 0, b, out).ok()) << "block " << b;
    EXPECT_EQ(out, MakeBlock(b)) << "block " << b;
  }
  for (const std::string& d : {d0, d1}) {  // one folder per namespace under each dir, with its slabs
    bool slab = false;
    for (const auto& e : std::filesystem::recursive_directory_iterator(d)) {
      slab = slab || e.path().filename() == "slab-00000.tkv";
    }
    EXPECT_TRUE(slab) << d;
  }
  const std::string m = testing::HttpGet((*c)->Stats()->metrics_url);
  using testing::MetricValue;
  const std::string ns = "namespace=\"ns\"";
  for (const char* dev : {"device=\"0\"", "device=\"1\""}) {
    EXPECT_GT(MetricValue(m, "tierkv_disk_device_writes_total", {ns, dev}), 0) << dev << "\n" << m;
    EXPECT_GT(MetricValue(m, "tierkv_disk_device_reads_total", {ns, dev}), 0) << dev;
    EXPECT_EQ(MetricValue(m, "tierkv_disk_device_failed", {ns, dev}), 0) << dev;
    EXPECT_EQ(MetricValue(m, "tierkv_disk_device_io_errors_total", {ns, dev}), 0) << dev;
  }
  EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
}

// A resident H (storage.prefault; a pinned H on GPU machines) is registered with the
// D tier's io_uring engines: blocks of 64 KiB and more move between H and D as
// fixed-buffer transfers (tierkv_disk_transfers_total{path="fixed"}) and come back
// exact. A lazily committed H is not registered (path="pinned").
TEST(DiskDevicesTest, AResidentHostArenaMovesBlocksAsFixedTransfers) {
  const ModelSpec model{2, 4, 2, 128, 64, DType::kF32};  // 128 KiB blocks
  const size_t block_bytes = model.BlockBytes();
  for (const bool prefault : {true, false}) {
    testing::TempDir dir("diskfixed");
    testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "",
                                  std::string("[storage]\nprefault = ") + (prefault ? "true" : "false") + "\n");
    ASSERT_TRUE(daemon.Start()) << daemon.Log();
    auto c = Client::Connect(daemon.socket_path());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = model;
    spec.budgets = {4 * block_bytes, 8 * block_bytes, 64 * (block_bytes + 4096)};
    ASSERT_TRUE((*c)->CreateNamespace(spec).ok());
    ASSERT_TRUE((*c)->Attach("ns").ok());
    auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 4 << 20});
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    constexpr uint32_t kBlocks = 32;  // most end up on D only
    auto block = [&](uint32_t b) {
      std::mt19937 rng(b * 17 + 3);
      std::vector<std::byte> v(block_bytes);
      for (auto& x : v) x = static_cast<std::byte>(rng());
      return v;
    };
    for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE((*ch)->Put(1, 0, b, block(b)).ok());
    std::vector<std::byte> out(block_bytes);
    for (uint32_t b = 0; b < kBlocks; ++b) {
      ASSERT_TRUE((*ch)->Get(1, 0, b, out).ok()) << "block " << b;
      EXPECT_EQ(out, block(b)) << "block " << b;
    }
    const std::string m = testing::HttpGet((*c)->Stats()->metrics_url);
    const std::string ns = "namespace=\"ns\"";
    const double fixed = testing::MetricValue(m, "tierkv_disk_transfers_total", {ns, "path=\"fixed\""});
    const double pinned = testing::MetricValue(m, "tierkv_disk_transfers_total", {ns, "path=\"pinned\""});
    // The gets read blocks the daemon wrote to D: their payloads alone.
    EXPECT_GT(testing::MetricValue(m, "tierkv_disk_payload_only_reads_total", {ns}), 0) << m;
    if (prefault) {
      EXPECT_GT(fixed, 0) << m;
    } else {
      EXPECT_EQ(fixed, 0) << m;
      EXPECT_GT(pinned, 0) << m;
    }
    EXPECT_EQ(daemon.Stop(), 0) << daemon.Log();
  }
}

}  // namespace
}  // namespace tierkv
