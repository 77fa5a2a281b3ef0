// Integration: data-plane channels (memfd rings passed with SCM_RIGHTS) against the
// real tierkvd.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    admin_ = Connect();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = {2, 4, 2, 16, 16, DType::kF32};
    ASSERT_TRUE(admin_->CreateNamespace(spec).ok());
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_.socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }

  uint64_t Connections() { return admin_->Stats()->connections; }

  testing::TempDir dir_{"channel"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> admin_;
};

TEST_F(ChannelTest, NoopRoundTrips) {
  auto c = Connect();
  EXPECT_FALSE(c->OpenChannel("ns").ok());  // not attached yet
  ASSERT_TRUE(c->Attach("ns").ok());
  auto ch = c->OpenChannel("ns", {.request_entries = 64, .completion_entries = 64, .staging_bytes = 1 << 20});
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  EXPECT_EQ(internal::Staging(**ch).size(), 1u << 20);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE((*ch)->Noop().ok()) << i;
  // Pipelined: many in flight, completions in order.
  for (uint64_t i = 1; i <= 64; ++i) ASSERT_TRUE(internal::Submit(**ch, {.tag = i}).ok());
  for (uint64_t i = 1; i <= 64; ++i) {
    auto comp = internal::WaitCompletion(**ch);
    ASSERT_TRUE(comp.ok());
    EXPECT_EQ(comp->tag, i);
  }
}

TEST_F(ChannelTest, BadChannelOptionsAreRefused) {
  auto c = Connect();
  ASSERT_TRUE(c->Attach("ns").ok());
  EXPECT_EQ(c->OpenChannel("ns", {.request_entries = 100}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->OpenChannel("ns", {.request_entries = 1u << 30}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->OpenChannel("ns", {.staging_bytes = uint64_t{1} << 40}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(c->OpenChannel("other").status().code(), StatusCode::kNotFound);  // no such namespace
  EXPECT_TRUE(c->Ping().ok());
}

TEST_F(ChannelTest, BadDescriptorsGetErrorCompletions) {
  auto c = Connect();
  ASSERT_TRUE(c->Attach("ns").ok());
  auto ch = c->OpenChannel("ns", {.staging_bytes = 1 << 16});
  ASSERT_TRUE(ch.ok());
  auto expect = [&](dp::RingRequest req, StatusCode code, dp::Detail detail) {
    ASSERT_TRUE(internal::Submit(**ch, req).ok());
    auto comp = internal::WaitCompletion(**ch);
    ASSERT_TRUE(comp.ok());
    EXPECT_EQ(comp->status, static_cast<uint8_t>(code));
    EXPECT_EQ(comp->detail, static_cast<uint8_t>(detail));
  };
  expect({.version = 0, .op = static_cast<dp::Op>(99)}, StatusCode::kInvalidArgument, dp::Detail::kOp);
  expect({.op = dp::Op::kGet, .offset = 1 << 16, .length = 1}, StatusCode::kInvalidArgument, dp::Detail::kRange);
  expect({.op = dp::Op::kGet, .offset = UINT64_MAX, .length = 2}, StatusCode::kInvalidArgument, dp::Detail::kRange);
  // A descriptor with a foreign version (written straight into the ring).
  dp::RingRequest bad{};
  bad.op = dp::Op::kNoop;
  ASSERT_TRUE(internal::Submit(**ch, bad).ok());  // Submit stamps the version: patch it in the ring afterwards is racy,
  ASSERT_TRUE(internal::WaitCompletion(**ch).ok());  // so only check that a well-formed one still works.
  EXPECT_TRUE((*ch)->Noop().ok());
}

TEST_F(ChannelTest, AClientCorruptingItsRingIsDisconnected) {
  auto c = Connect();
  ASSERT_TRUE(c->Attach("ns").ok());
  auto ch = c->OpenChannel("ns");
  ASSERT_TRUE(ch.ok());
  ASSERT_TRUE((*ch)->Noop().ok());
  const auto& h = internal::Header(**ch);
  auto* control = reinterpret_cast<RingControl*>(internal::Staging(**ch).data() - h.staging_offset + h.request_offset);
  control->head.store(control->head.load() + 100000);  // claims far more entries than the ring holds
  control->doorbell.fetch_add(1);
  internal::FutexWakeAll(&control->doorbell);
  Status st;
  for (int i = 0; i < 200 && (st = c->Ping()).ok(); ++i) usleep(10000);
  EXPECT_FALSE(st.ok()) << "the daemon kept a client that corrupted its ring";
  EXPECT_TRUE(admin_->Ping().ok());
}

TEST_F(ChannelTest, ADeadClientIsReclaimed) {
  const uint64_t before = Connections();
  pid_t pid = fork();
  if (pid == 0) {
    auto c = Client::Connect(daemon_.socket_path());
    if (!c.ok() || !(*c)->Attach("ns").ok()) _exit(1);
    auto ch = (*c)->OpenChannel("ns");
    if (!ch.ok() || !(*ch)->Noop().ok()) _exit(2);
    kill(getpid(), SIGKILL);  // dies holding an open channel
  }
  int status;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  uint64_t now = Connections();
  for (int i = 0; i < 200 && now != before; ++i) {
    usleep(10000);
    now = Connections();
  }
  EXPECT_EQ(now, before);
  EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
}

TEST_F(ChannelTest, TooManyChannelsAreRefused) {
  auto c = Connect();
  ASSERT_TRUE(c->Attach("ns").ok());
  std::vector<std::unique_ptr<DataChannel>> chans;
  Status last;
  for (int i = 0; i < 20; ++i) {
    auto ch = c->OpenChannel("ns", {.staging_bytes = 4096});
    if (!ch.ok()) {
      last = ch.status();
      break;
    }
    chans.push_back(std::move(ch).value());
  }
  EXPECT_EQ(chans.size(), 16u);
  EXPECT_EQ(last.code(), StatusCode::kResourceExhausted);
  for (auto& ch : chans) EXPECT_TRUE(ch->Noop().ok());
}

}  // namespace
}  // namespace tierkv
