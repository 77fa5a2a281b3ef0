// open_channel's descriptors (issue 16): an error reply never carries one, and no
// descriptor leaks whichever step fails. Drives a ControlService with real
// namespace runtimes (memfd arenas) and makes each step in turn run out of
// descriptors by lowering RLIMIT_NOFILE.
#include <sys/resource.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "daemon/control_service.h"
#include "daemon/runtimes.h"
#include "tests/util/temp_dir.h"

namespace tierkv::daemon {
namespace {

using wire::Json;

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n - 1;  // the iterator's own descriptor
}

class ControlChannelFdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.daemon.data_dir = dir_.path();
    config_.storage.gpu_bytes = 1 << 20;
    config_.storage.host_bytes = 1 << 20;
    config_.storage.disk_bytes = 0;
    auto m = storage::Manifest::Open(dir_.Sub("manifest"));
    ASSERT_TRUE(m.ok());
    manifest_ = std::move(m).value();
    auto r = NamespaceRegistry::Load(manifest_.get(), 16);
    ASSERT_TRUE(r.ok());
    registry_ = std::move(r).value();
    runtimes_ = std::make_unique<Runtimes>(config_, manifest_.get());
    service_ = std::make_unique<ControlService>(config_, registry_.get(), &metrics_, [] {}, runtimes_.get());
    SessionState admin = Hello(0);
    Json ns{{"name", "ns"},
            {"model",
             {{"num_layers", 2}, {"num_q_heads", 4}, {"num_kv_heads", 2}, {"head_dim", 16}, {"block_tokens", 16},
              {"dtype", "f32"}}}};
    ASSERT_TRUE(service_->Handle(admin, Json{{"op", "create_namespace"}, {"namespace", ns}}.dump()).body["ok"]);
    service_->CloseSession(admin);
  }

  SessionState Hello(uint32_t uid) {
    SessionState s = service_->OpenSession({1234, uid, uid});
    service_->Handle(s, Json{{"op", "hello"}, {"version", wire::kProtocolVersion}}.dump());
    return s;
  }

  testing::TempDir dir_{"control-fds"};
  Config config_;
  Metrics metrics_;
  std::unique_ptr<storage::Manifest> manifest_;
  std::unique_ptr<NamespaceRegistry> registry_;
  std::unique_ptr<Runtimes> runtimes_;
  std::unique_ptr<ControlService> service_;
};

TEST_F(ControlChannelFdsTest, AnErrorReplyNeverCarriesADescriptorAndNoneLeaks) {
#if defined(__SANITIZE_ADDRESS__)
  // UBSan's vptr check reads memory through a pipe: with no descriptor left it reports
  // every virtual object as invalid (a false "invalid vptr"). The release suite runs it.
  GTEST_SKIP() << "needs descriptors the sanitizer runtime takes; run by the release suite";
#endif
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  const size_t baseline = OpenFds();
  int highest = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  }
  size_t errors = 0, successes = 0;
  // From "no descriptor left at all" to "plenty": each step of open_channel (the
  // channel memfd, its dup, the two arenas reopened read-only) fails in turn.
  for (rlim_t limit = baseline; limit <= static_cast<rlim_t>(highest) + 12; ++limit) {
    SessionState s = Hello(0);
    ASSERT_TRUE(service_->Handle(s, Json{{"op", "attach"}, {"namespace", "ns"}}.dump()).body["ok"]);
    rlimit low = saved;
    low.rlim_cur = limit;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    ControlService::Reply r = service_->Handle(s, Json{{"op", "open_channel"}, {"namespace", "ns"}}.dump());
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    if (r.body.value("ok", false)) {
      ++successes;
      EXPECT_EQ(r.fds.size(), 3u) << "channel, H arena, emulated G arena";
    } else {
      ++errors;
      EXPECT_TRUE(r.fds.empty()) << "limit " << limit << ": error reply " << r.body.dump() << " carries "
                                 << r.fds.size() << " descriptor(s)";
    }
    for (int fd : r.fds) ::close(fd);  // what the transport does once sent
    service_->CloseSession(s);
    EXPECT_EQ(OpenFds(), baseline) << "limit " << limit << ": " << r.body.dump();
  }
  EXPECT_GE(errors, 3u) << "every step should have been made to fail once";
  EXPECT_GE(successes, 1u);
  EXPECT_EQ(service_->channel_stats().requests.load(), 0u);
}

}  // namespace
}  // namespace tierkv::daemon
