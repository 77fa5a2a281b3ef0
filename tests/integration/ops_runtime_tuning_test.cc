// Integration, end to end: an operator tunes a namespace at run time with
// `tierkvctl policy set` while a client keeps putting and getting blocks, and
// watches the effect in a real Prometheus scraping the daemon every second:
// the new watermarks are in the first scrape after the change (tierkv_policy,
// tierkv_policy_changes_total), G drains (tierkv_demotions_total grows, G usage
// falls under the new high watermark), the client never sees an error, and after
// a daemon restart the policy is the same, in the metrics and in behaviour.
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "tests/integration/prometheus_fixture.h"

namespace tierkv {
namespace {

using nlohmann::json;
using testing::OpsBlock;
using testing::PrometheusProcess;

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A client that keeps writing sequences of kSeqBlocks blocks, reads back blocks of
// the sequence it writes, and closes old sequences so that the live set stays
// about kLiveSequences * kSeqBlocks blocks (more than G holds, less than G + H).
class Writer {
 public:
  static constexpr uint32_t kSeqBlocks = 8, kLiveSequences = 16;

  Writer(std::unique_ptr<Client> client, std::unique_ptr<DataChannel> ch)
      : client_(std::move(client)), ch_(std::move(ch)), thread_([this] { Run(); }) {}
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t ops() const { return ops_; }
  uint64_t errors() const { return errors_; }
  const std::string& first_error() const { return first_error_; }

 private:
  void Run() {
    std::vector<std::byte> out(ch_->block_bytes());
    const uint64_t first = next_seq_;
    for (uint64_t seq = first; !stop_; seq = ++next_seq_) {
      for (uint32_t b = 0; b < kSeqBlocks && !stop_; ++b) {
        Check(ch_->Put(seq, 0, b, OpsBlock(seq, 0, b)), "put");
        const uint32_t back = static_cast<uint32_t>((seq * 31 + b) % (b + 1));
        Status st = ch_->Get(seq, 0, back, out);
        if (st.ok() && out != OpsBlock(seq, 0, back)) st = Corruption("get returned other bytes");
        Check(st, "get");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      // Only its own: blocks of a previous daemon's G and H did not survive its restart.
      if (seq >= first + kLiveSequences) Check(ch_->CloseSequence(seq - kLiveSequences), "close");
    }
  }
  void Check(const Status& st, const char* what) {
    ++ops_;
    if (st.ok()) return;
    if (errors_++ == 0) first_error_ = std::string(what) + ": " + st.ToString();
  }

  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ops_{0}, errors_{0};
  std::string first_error_;
  inline static std::atomic<uint64_t> next_seq_{1};  // fresh sequences across writers
  std::thread thread_;
};

class OpsRuntimeTuningTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kGpuBlocks = 64;
  static constexpr const char* kGpuShare =
      "tierkv_tier_used_bytes{namespace=\"tune\",tier=\"G\"} / tierkv_tier_capacity_bytes{namespace=\"tune\",tier=\"G\"}";
  static constexpr const char* kGpuUsed = "tierkv_tier_used_bytes{namespace=\"tune\",tier=\"G\"}";
  static constexpr double kGpuBytes = kGpuBlocks * 4096.0;
  static constexpr double kNewHigh = 0.3;
  // Puts land on G before the migrator (woken every 20 ms) demotes: a few blocks of slack.
  static constexpr double kSlack = 4.0 / kGpuBlocks;

  std::unique_ptr<Writer> StartWriter() {
    auto c = stack_.Connect();
    auto ch = stack_.Channel(*c, "tune");
    return ch ? std::make_unique<Writer>(std::move(c), std::move(ch)) : nullptr;
  }

  // Raw samples [unix time, value] of `selector` scraped in the last `seconds`.
  std::vector<std::pair<double, double>> Samples(const std::string& selector, int seconds) {
    std::vector<std::pair<double, double>> out;
    const json reply = stack_.prom().Api("query?query=" + testing::UrlEncode(selector + "[" + std::to_string(seconds) + "s]"));
    if (reply.is_null() || reply["data"]["result"].size() != 1) return out;
    for (const auto& v : reply["data"]["result"][0]["values"]) {
      out.emplace_back(v[0].get<double>(), std::stod(v[1].get<std::string>()));
    }
    return out;
  }

  // Value of the first sample of `selector` scraped after unix time `t` (waits for it).
  double FirstSampleAfter(const std::string& selector, double t) {
    double value = NAN;
    PrometheusProcess::WaitFor(
        [&] {
          for (const auto& [ts, v] : Samples(selector, 30)) {
            if (ts > t) return value = v, true;
          }
          return false;
        },
        std::chrono::seconds(10));
    return value;
  }

  // G usage seen by the daemon itself (tierkvctl usage --json).
  double DaemonGpuShare() {
    std::string out;
    if (stack_.Ctl({"--json", "usage", "tune"}, &out) != 0) return NAN;
    const json u = json::parse(out, nullptr, false);
    if (u.is_discarded()) return NAN;
    if (!u.is_array() || u.size() != 1) return NAN;
    const auto& g = u[0]["tiers"]["G"];
    return g["used_slots"].get<double>() / g["slots"].get<double>();
  }

  testing::OpsStack stack_;
};

TEST_F(OpsRuntimeTuningTest, WatermarksChangedWhileAClientWorksShowInBehaviourMetricsAndSurviveARestart) {
  stack_.Start();
  ASSERT_FALSE(HasFatalFailure());
  stack_.CreateNamespace("tune", kGpuBlocks, 4 * kGpuBlocks, 1024);
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  // Nothing is pinned to G by position: the watermarks alone decide G's occupancy.
  ASSERT_EQ(stack_.Ctl({"policy", "set", "tune", "sink_blocks=0", "recent_window=0"}, &out), 0) << out;

  auto writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  // With the default watermarks (0.95 / 0.85) G fills up.
  ASSERT_TRUE(PrometheusProcess::WaitFor([&] { return stack_.prom().Scalar(kGpuShare) >= 0.8; }, std::chrono::seconds(15)))
      << stack_.prom().Scalar(kGpuShare);
  const double demotions_before =
      stack_.prom().Scalar("tierkv_demotions_total{namespace=\"tune\",from=\"G\",to=\"H\"}");
  const double changes_before = stack_.prom().Scalar("tierkv_policy_changes_total{namespace=\"tune\"}");
  EXPECT_EQ(stack_.prom().Scalar("tierkv_policy{namespace=\"tune\",field=\"gpu_high_watermark\"}"), 0.95);

  ASSERT_EQ(stack_.Ctl({"policy", "set", "tune", "gpu_high_watermark=0.3", "gpu_low_watermark=0.2"}, &out), 0) << out;
  const double changed_at = UnixNow();

  // The first scrape after the change shows it, and every later one too.
  EXPECT_EQ(FirstSampleAfter("tierkv_policy{namespace=\"tune\",field=\"gpu_high_watermark\"}", changed_at), 0.3);
  EXPECT_EQ(FirstSampleAfter("tierkv_policy{namespace=\"tune\",field=\"gpu_low_watermark\"}", changed_at), 0.2);
  EXPECT_EQ(FirstSampleAfter("tierkv_policy_changes_total{namespace=\"tune\"}", changed_at), changes_before + 1);
  // G drains in the background (the migrator wakes every 20 ms): the first scrape
  // a moment after the change shows the blocks gone down to H.
  const double drained_at = changed_at + 0.25;
  const double demoted =
      FirstSampleAfter("tierkv_demotions_total{namespace=\"tune\",from=\"G\",to=\"H\"}", drained_at) -
      demotions_before;
  EXPECT_GE(demoted, 0.4 * kGpuBlocks);
  EXPECT_LE(FirstSampleAfter(kGpuUsed, drained_at) / kGpuBytes, kNewHigh + kSlack);

  // While the client keeps writing, G stays under its new high watermark (a put
  // may land before the migrator runs: one block of slack).
  std::this_thread::sleep_for(std::chrono::seconds(3));
  int after = 0;
  for (const auto& [ts, used] : Samples(kGpuUsed, 30)) {
    if (ts <= drained_at) continue;
    ++after;
    EXPECT_LE(used / kGpuBytes, kNewHigh + kSlack) << "scraped at " << ts;
  }
  EXPECT_GE(after, 2);
  EXPECT_LE(DaemonGpuShare(), kNewHigh + kSlack);
  EXPECT_GT(stack_.prom().Scalar("tierkv_tier_used_bytes{namespace=\"tune\",tier=\"H\"}"), 0);
  writer->Stop();
  EXPECT_EQ(writer->errors(), 0u) << writer->first_error();
  EXPECT_GT(writer->ops(), 500u);
  writer.reset();

  // Restart: the policy comes back from the manifest, and Prometheus scrapes the
  // new process on the same address.
  const double started = stack_.prom().Scalar("tierkv_start_time_seconds");
  ASSERT_EQ(stack_.daemon().Stop(), 0);
  ASSERT_TRUE(stack_.daemon().Start()) << stack_.daemon().Log();
  ASSERT_TRUE(PrometheusProcess::WaitFor([&] { return stack_.prom().Scalar("tierkv_start_time_seconds") > started; },
                                         std::chrono::seconds(10)));
  EXPECT_EQ(stack_.prom().Scalar("tierkv_policy{namespace=\"tune\",field=\"gpu_high_watermark\"}"), 0.3);
  EXPECT_EQ(stack_.prom().Scalar("tierkv_policy{namespace=\"tune\",field=\"gpu_low_watermark\"}"), 0.2);
  EXPECT_EQ(stack_.prom().Scalar("tierkv_policy{namespace=\"tune\",field=\"recent_window\"}"), 0);
  ASSERT_EQ(stack_.Ctl({"policy", "get", "tune"}, &out), 0) << out;
  EXPECT_NE(out.find("\"gpu_high_watermark\": 0.3"), std::string::npos) << out;

  // ... and in behaviour: G fills only up to the restored high watermark.
  writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(PrometheusProcess::WaitFor([&] { return stack_.prom().Scalar(kGpuShare) >= 0.2; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double restarted_at = stack_.prom().Scalar("tierkv_start_time_seconds");
  int scrapes = 0;
  for (const auto& [ts, used] : Samples(kGpuUsed, 30)) {
    if (ts <= restarted_at) continue;
    ++scrapes;
    EXPECT_LE(used / kGpuBytes, kNewHigh + kSlack) << "scraped at " << ts;
  }
  EXPECT_GE(scrapes, 2);
  writer->Stop();
  EXPECT_EQ(writer->errors(), 0u) << writer->first_error();
}

}  // namespace
}  // namespace tierkv
