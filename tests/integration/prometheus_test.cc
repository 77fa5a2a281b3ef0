// Integration: a real Prometheus (Debian's `prometheus`) scrapes a real tierkvd with
// the shipped scrape config and alert rules (deploy/prometheus/); after work through
// the client API the series carry the expected labels, every query of the shipped
// Grafana dashboard returns data, every alert rule evaluates, and two alerts fire.
#include <fstream>
#include <thread>
#include <map>
#include <set>

#include "tests/integration/prometheus_fixture.h"

namespace tierkv {
namespace {

using nlohmann::json;
using testing::OpsBlock;
using testing::PrometheusProcess;

std::set<std::string> LabelValues(const json& result, const std::string& label) {
  std::set<std::string> out;
  for (const auto& s : result) out.insert(s["metric"].value(label, ""));
  return out;
}

// Alerts named `name` in `state` ("pending" or "firing") whose labels include `labels`.
int CountAlerts(const PrometheusProcess& prom, const std::string& name, const std::string& state,
                const std::map<std::string, std::string>& labels) {
  const json reply = prom.Api("alerts");
  if (reply.is_null()) return 0;
  int n = 0;
  for (const auto& a : reply["data"]["alerts"]) {
    bool match = a["labels"].value("alertname", "") == name && a.value("state", "") == state;
    for (const auto& [k, v] : labels) match = match && a["labels"].value(k, "") == v;
    n += match;
  }
  return n;
}

// One tierkvd and one Prometheus for the whole suite (ctest runs this binary as one
// test); each test works in its own namespace.
class PrometheusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new testing::OpsStack;
    // A small frame limit lets a test provoke a bad_frame disconnect cheaply.
    stack_->Start("[control]\nmax_frame_bytes = 4096\n");
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(stack_, nullptr);
    ASSERT_EQ(stack_->prom().Scalar("up"), 1) << "the stack did not start";
  }

  PrometheusProcess& prom() { return stack_->prom(); }

  // In namespace `ns` (8 blocks of G, 16 of H, 256 of D, so that blocks move
  // G -> H -> D): puts, gets, a get miss, retrievals and a policy change.
  void DoWork(const std::string& ns) {
    stack_->CreateNamespace(ns, 8, 16, 256);
    auto c = stack_->Connect();
    auto ch = stack_->Channel(*c, ns);
    ASSERT_NE(ch, nullptr);
    for (uint32_t layer = 0; layer < kLayers; ++layer) {
      for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE(ch->Put(1, layer, b, OpsBlock(1, layer, b)).ok());
    }
    std::vector<std::byte> out(ch->block_bytes());
    for (uint32_t b = 0; b < kBlocks; ++b) {
      ASSERT_TRUE(ch->Get(1, 0, b, out).ok());
      ASSERT_TRUE(out == OpsBlock(1, 0, b)) << b;
    }
    EXPECT_EQ(ch->Get(1, 0, 999, out).code(), StatusCode::kNotFound);
    std::vector<float> q(size_t{testing::kOpsQHeads} * testing::kOpsHeadDim, 1.f);
    for (int i = 0; i < 3; ++i) {
      auto r = ch->Retrieve(1, 1, q, 6);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_TRUE(ch->Release(r->lease).ok());
    }
    std::string text;
    ASSERT_EQ(stack_->Ctl({"policy", "set", ns, "eviction=lfu"}, &text), 0) << text;
    // Prometheus has scraped all of it.
    ASSERT_TRUE(PrometheusProcess::WaitFor(
        [&] { return prom().Scalar("tierkv_puts_total{namespace=\"" + ns + "\"}") == kLayers * kBlocks; },
        std::chrono::seconds(10)));
  }

  // One request refused with PermissionDenied: a namespace whose ACL lists another uid.
  void Refuse() {
    stack_->CreateNamespace("locked", 1, 1, 1, {4242});
    auto c = stack_->Connect();
    EXPECT_EQ(c->Attach("locked").status().code(), StatusCode::kPermissionDenied);
  }

  static constexpr uint32_t kLayers = testing::kOpsLayers, kBlocks = 40;
  static inline testing::OpsStack* stack_ = nullptr;
};

TEST_F(PrometheusTest, ScrapedSeriesCarryTheExpectedLabels) {
  DoWork("series");
  ASSERT_FALSE(HasFatalFailure());
  const std::string ns = "namespace=\"series\"";
  const json up = prom().Query("up");
  ASSERT_EQ(up.size(), 1u) << up.dump();
  EXPECT_EQ(up[0]["metric"]["job"], "tierkv");
  EXPECT_EQ(up[0]["metric"]["instance"], stack_->target());
  EXPECT_EQ(up[0]["metric"]["service"], "tierkvd");  // the static_config's label

  const json used = prom().Query("tierkv_tier_used_bytes{" + ns + "}");
  EXPECT_EQ(LabelValues(used, "tier"), (std::set<std::string>{"G", "H", "D"})) << used.dump();
  for (const auto& s : used) {
    EXPECT_EQ(s["metric"]["job"], "tierkv");
    EXPECT_EQ(s["metric"]["instance"], stack_->target());
  }
  EXPECT_EQ(prom().Scalar("tierkv_tier_capacity_bytes{" + ns + ",tier=\"G\"}"), 8 * 4096);
  EXPECT_EQ(prom().Scalar("tierkv_blocks{" + ns + "}"), kLayers * kBlocks);
  EXPECT_EQ(prom().Scalar("tierkv_gets_total{" + ns + "}"), kBlocks + 1);
  EXPECT_EQ(prom().Scalar("tierkv_get_misses_total{" + ns + "}"), 1);
  EXPECT_GE(prom().Scalar("sum(tierkv_tier_hits_total{" + ns + "})"), kBlocks);
  EXPECT_GT(prom().Scalar("tierkv_bytes_moved_total{" + ns + ",from=\"G\",to=\"H\"}"), 0);
  EXPECT_GT(prom().Scalar("tierkv_demotions_total{" + ns + ",from=\"H\",to=\"D\"}"), 0);
  EXPECT_EQ(LabelValues(prom().Query("tierkv_bytes_moved_total{" + ns + "}"), "from"),
            (std::set<std::string>{"G", "H", "D"}));

  // The retrieval histogram: one series per bucket with `le`, per phase.
  const json buckets = prom().Query("tierkv_retrieval_latency_seconds_bucket{" + ns + ",phase=\"total\"}");
  EXPECT_GE(buckets.size(), 10u);
  EXPECT_EQ(LabelValues(buckets, "le").count("+Inf"), 1u);
  EXPECT_EQ(prom().Scalar("tierkv_retrieval_latency_seconds_count{" + ns + ",phase=\"total\"}"), 3);
  EXPECT_EQ(LabelValues(prom().Query("tierkv_retrieval_latency_seconds_count{" + ns + "}"), "phase"),
            (std::set<std::string>{"select", "acquire", "total", "gpu_query", "gpu_table"}));
  const double p99 = prom().Scalar("histogram_quantile(0.99, sum by (le) (tierkv_retrieval_latency_seconds_bucket{" +
                                   ns + ",phase=\"total\"}))");
  EXPECT_GT(p99, 0);
  EXPECT_LT(p99, 1);
  EXPECT_EQ(LabelValues(prom().Query("tierkv_retrieval_triggers_total{" + ns + "}"), "result"),
            (std::set<std::string>{"taken", "skipped"}));

  // Policy: numeric fields as gauges, choices as labels, changes counted.
  EXPECT_EQ(prom().Scalar("tierkv_policy{" + ns + ",field=\"gpu_high_watermark\"}"), 0.95);
  const json info = prom().Query("tierkv_policy_info{" + ns + "}");
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0]["metric"]["eviction"], "lfu");
  EXPECT_EQ(prom().Scalar("tierkv_policy_changes_total{" + ns + "}"), 1);
  EXPECT_GE(prom().Scalar("tierkv_namespaces"), 1);
  EXPECT_EQ(prom().Query("tierkv_build_info").size(), 1u);
}

// Every query of deploy/grafana/tierkv.json, with the dashboard's variables set to
// "all", returns data once the daemon has done each kind of work.
TEST_F(PrometheusTest, EveryDashboardQueryReturnsData) {
  DoWork("dashboard");
  ASSERT_FALSE(HasFatalFailure());
  Refuse();
  {
    auto bad = stack_->Connect();  // a frame above max_frame_bytes: an error reply, then disconnected
    auto reply = internal::CallRaw(*bad, std::string(8192, ' '));
    EXPECT_TRUE(!reply.ok() || !reply->value("ok", true)) << reply->dump();
  }
  ASSERT_TRUE(PrometheusProcess::WaitFor(
      [&] { return prom().Scalar("tierkv_control_disconnects_total{reason=\"bad_frame\"}") >= 1; },
      std::chrono::seconds(10)));
  // rate() needs two samples of every series: wait for one more scrape.
  std::this_thread::sleep_for(std::chrono::seconds(2 * testing::OpsStack::kScrapeSeconds));

  std::ifstream in(std::string(TIERKV_DEPLOY_DIR) + "/grafana/tierkv.json");
  const json dash = json::parse(in);
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"$__rate_interval", "10s"}, {"$instance", ".*"}, {"$namespace", ".*"}};
  int queries = 0;
  for (const auto& panel : dash["panels"]) {
    for (const auto& target : panel.value("targets", json::array())) {
      std::string expr = target["expr"];
      for (const auto& [var, value] : vars) {
        for (size_t p; (p = expr.find(var)) != std::string::npos;) expr.replace(p, var.size(), value);
      }
      ++queries;
      EXPECT_FALSE(prom().Query(expr).empty())
          << "panel \"" << panel["title"].get<std::string>() << "\": no data for " << expr;
    }
  }
  EXPECT_GE(queries, 30);
}

// The shipped rules load and evaluate without error against real series; a refused
// client and a tier held above its high watermark raise their alerts.
TEST_F(PrometheusTest, AlertRulesEvaluateAndFire) {
  // The daemon creates the PermissionDenied series on its first refusal; on a
  // Prometheus without 10 minutes of history only a later refusal is an increase.
  Refuse();
  ASSERT_TRUE(PrometheusProcess::WaitFor(
      [&] { return prom().Scalar("tierkv_control_errors_total{code=\"PermissionDenied\"}") >= 1; },
      std::chrono::seconds(10)));
  Refuse();
  EXPECT_TRUE(PrometheusProcess::WaitFor(
      [&] {
        return CountAlerts(prom(), "TierkvClientsRefused", "firing", {{"instance", stack_->target()}}) == 1;
      },
      std::chrono::seconds(10)))
      << prom().Api("alerts").dump();

  // A selection pinned on G, with the sinks and recent windows kept there: G (8
  // slots) stays full, above its 0.95 high watermark, until the lease is released.
  DoWork("alerts");
  ASSERT_FALSE(HasFatalFailure());
  auto c = stack_->Connect();
  auto ch = stack_->Channel(*c, "alerts");
  std::vector<float> q(size_t{testing::kOpsQHeads} * testing::kOpsHeadDim, 1.f);
  auto r = ch->Retrieve(1, 0, q, 6);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::map<std::string, std::string> g_of_alerts{{"namespace", "alerts"}, {"tier", "G"}};
  EXPECT_TRUE(PrometheusProcess::WaitFor(
      [&] { return CountAlerts(prom(), "TierkvTierAboveHighWatermark", "pending", g_of_alerts) == 1; },
      std::chrono::seconds(10)))
      << prom().Api("alerts").dump() << prom().Query("tierkv_tier_used_bytes{namespace=\"alerts\"}").dump();
  ASSERT_TRUE(ch->Release(r->lease).ok());

  // Every rule has been evaluated on real series without error.
  const json rules = prom().Api("rules");
  ASSERT_FALSE(rules.is_null());
  int n = 0;
  for (const auto& g : rules["data"]["groups"]) {
    for (const auto& rule : g["rules"]) {
      ++n;
      EXPECT_EQ(rule.value("health", ""), "ok") << rule.dump();
    }
  }
  EXPECT_GE(n, 10);
  EXPECT_EQ(CountAlerts(prom(), "TierkvDown", "firing", {}), 0);
  EXPECT_EQ(CountAlerts(prom(), "TierkvDiskIOErrors", "firing", {}), 0);
  EXPECT_EQ(CountAlerts(prom(), "TierkvChecksumFailures", "firing", {}), 0);
}

// promtool accepts the shipped configuration and rules, and the rules' unit tests pass.
TEST(PromtoolTest, AcceptsTheShippedFiles) {
  const std::string promtool = testing::FindProgram("promtool");
  ASSERT_FALSE(promtool.empty()) << "promtool not found (Debian package prometheus; deploy/install-deps.sh)";
  const std::string dir = std::string(TIERKV_DEPLOY_DIR) + "/prometheus/";
  std::string out;
  EXPECT_EQ(testing::RunProgram(promtool, {"check", "config", dir + "prometheus.yml"}, &out), 0) << out;
  EXPECT_EQ(testing::RunProgram(promtool, {"check", "rules", dir + "tierkv-alerts.yml"}, &out), 0) << out;
  EXPECT_EQ(testing::RunProgram(promtool, {"test", "rules", dir + "tierkv-alerts.test.yml"}, &out), 0) << out;
}

}  // namespace
}  // namespace tierkv
