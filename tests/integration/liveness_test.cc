// Integration: a client notices a dead tierkvd at once (kUnavailable well under the
// reply timeout) and reconnects to a restarted one (decision 0010).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "tests/util/daemon_process.h"
#include "tests/util/namespace_client.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using Clock = std::chrono::steady_clock;
using testing::DaemonProcess;

const ModelSpec kModel{2, 4, 2, 16, 16, DType::kF32};
// Meaningful against the 10 s reply timeout; generous for a loaded 2-core machine.
constexpr auto kBound = std::chrono::milliseconds(1000);

std::vector<std::byte> Block(float v) {
  std::vector<float> f(kModel.BlockBytes() / sizeof(float), v);
  std::vector<std::byte> b(kModel.BlockBytes());
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

// SIGSTOPs pid and waits until every thread of it is stopped (kill() only queues the
// signal: a worker thread spinning on the ring could still serve a request).
bool StopProcess(pid_t pid) {
  if (::kill(pid, SIGSTOP) != 0) return false;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (int attempt = 0; attempt < 500; ++attempt) {
    bool all = true;
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t paren = line.rfind(')');
      if (paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'T') all = false;
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

class LivenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    auto c = testing::ConnectWithNamespace(daemon_.socket_path(), spec);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    auto ch = client_->OpenChannel("ns");
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = std::move(ch).value();
    ASSERT_TRUE(ch_->Put(1, 0, 0, Block(0.5f)).ok());
  }

  testing::TempDir dir_{"liveness"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
};

TEST_F(LivenessTest, KilledDaemonFailsAPendingRetrieveAtOnceAndReconnectWorks) {
  auto second = client_->OpenChannel("ns");
  ASSERT_TRUE(second.ok());
  // Stop the daemon so the Retrieve stays in flight, then kill it while the client waits.
  ASSERT_TRUE(StopProcess(daemon_.pid()));
  Clock::time_point killed;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    killed = Clock::now();
    daemon_.Kill();
  });
  const std::vector<float> query(kModel.num_q_heads * kModel.head_dim, 1.f);
  auto r = ch_->Retrieve(1, 0, query, 4);
  const auto returned = Clock::now();
  killer.join();
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  std::printf("pending Retrieve failed %lld ms after SIGKILL: %s\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(returned - killed).count()),
              r.status().ToString().c_str());
  EXPECT_LT(returned - killed, kBound) << "pending Retrieve took "
      << std::chrono::duration_cast<std::chrono::milliseconds>(returned - killed).count() << " ms";
  EXPECT_NE(r.status().message().find("Reconnect"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(client_->connected());

  // Later calls, on this channel, another channel of the client and the client itself.
  const auto t0 = Clock::now();
  EXPECT_EQ(ch_->Put(1, 0, 1, Block(1.f)).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*second)->Noop().code(), StatusCode::kUnavailable);
  EXPECT_EQ(client_->Ping().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - t0, kBound);

  // No daemon yet: Reconnect fails and the client stays as it was.
  EXPECT_FALSE(client_->Reconnect().ok());
  EXPECT_EQ(client_->Ping().code(), StatusCode::kUnavailable);

  // Restart on the same directory and socket: Reconnect re-attaches "ns".
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  Status st = client_->Reconnect();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(client_->connected());
  EXPECT_TRUE(client_->Ping().ok());
  auto ch = client_->OpenChannel("ns");  // no Attach: Reconnect did it
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  ASSERT_TRUE((*ch)->Put(2, 0, 0, Block(2.f)).ok());
  std::vector<std::byte> out(kModel.BlockBytes());
  ASSERT_TRUE((*ch)->Get(2, 0, 0, out).ok());
  EXPECT_EQ(out, Block(2.f));
  auto again = (*ch)->Retrieve(2, 0, query, 4);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*ch)->Release(again->lease).ok());
  // The channels of the dead connection stay dead.
  EXPECT_EQ(ch_->Noop().code(), StatusCode::kUnavailable);
}

TEST_F(LivenessTest, GpuPathRetrievalInFlightFailsWithUnavailable) {
  // The GPU path (emulated with host memory when the daemon has no GPU).
  auto gpu = client_->OpenChannel("ns", {.gpu = true});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  const std::vector<float> query(kModel.num_q_heads * kModel.head_dim, 1.f);
  if (!(*gpu)->gpu_path_emulated()) GTEST_SKIP() << "device path: the query must be device memory";
  ASSERT_TRUE(StopProcess(daemon_.pid()));
  ASSERT_TRUE((*gpu)->StartRetrieveOnGpu(1, 0, query.data(), query.size(), 4, nullptr).ok());
  daemon_.Kill();
  const auto t0 = Clock::now();
  auto r = (*gpu)->FinishRetrieveOnGpu(nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_LT(Clock::now() - t0, kBound);
  // Not "finish the previous retrieval first": the daemon is gone.
  EXPECT_EQ((*gpu)->StartRetrieveOnGpu(1, 0, query.data(), query.size(), 4, nullptr).code(),
            StatusCode::kUnavailable);
}

TEST_F(LivenessTest, StoppedDaemonFailsTheNextCallAtOnce) {
  ASSERT_EQ(daemon_.Stop(), 0) << daemon_.Log();
  const auto t0 = Clock::now();
  Status st = ch_->Noop();  // the daemon exited while the channel was idle
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  EXPECT_LT(Clock::now() - t0, kBound);
  EXPECT_EQ(client_->Attach("ns").status().code(), StatusCode::kUnavailable);
}

TEST_F(LivenessTest, ReconnectOnALiveConnectionReplacesIt) {
  const uint64_t old_session = client_->session_id();
  ASSERT_TRUE(client_->Reconnect().ok());
  EXPECT_NE(client_->session_id(), old_session);
  Status st = ch_->Noop();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  auto ch = client_->OpenChannel("ns");
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  EXPECT_TRUE((*ch)->Noop().ok());
}

TEST_F(LivenessTest, ChannelOfAClosedClientFailsWithUnavailable) {
  client_.reset();
  const auto t0 = Clock::now();
  EXPECT_EQ(ch_->Noop().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - t0, kBound);
}

}  // namespace
}  // namespace tierkv
