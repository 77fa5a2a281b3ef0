// Integration: tierkvd serves what index/ selects (docs/decisions/0019).
//
// For each trigger of the namespace policy (every, drift, every_n — set with
// set_policy together with drift_tau and trigger_every) and each retriever the
// daemon indexes at put time (minmax, mean, mean:r=2) or over its key copy (the
// exact oracle), a decode-like run is served by a real tierkvd: a prompt, then a
// block put every few steps, a block rewritten, queries that drift slowly and
// jump now and then, a step now and then asking for a larger budget; also the
// default drift_tau and head_combine max. The same run is replayed on index::MakeRetriever +
// index::TriggerBank over the same keys, a step at n blocks being the
// evaluation's step at position n * block_tokens - 1; every step's block table
// must equal the replay's selection. A namespace of granularity head
// (docs/decisions/0023) is replayed on the per-KV-head retriever of the same
// method and TriggerBank::SelectHeads: every head's run of the table must equal
// that head's selection.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>

#include "client/client_internal.h"
#include "index/retriever_factory.h"
#include "index/trigger.h"
#include "tests/util/daemon_process.h"
#include "tests/util/namespace_client.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kQHeads = 8, kKvHeads = 2, kHeadDim = 32, kBlockTokens = 8;
constexpr uint32_t kPrompt = 24, kSteps = 36, kBudget = 6, kSinks = 1, kWindow = 2;
const ModelSpec kModel{1, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
constexpr size_t kKeyFloats = size_t{kKvHeads} * kBlockTokens * kHeadDim;  // K of one block

struct Case {
  const char* retriever;
  const char* trigger;       // the policy's name
  uint32_t every = 4;        // trigger_every
  double tau = 0.9;          // drift_tau; kDefaultTau: not set (the policy's default)
  const char* combine = "softmax_sum";  // head_combine
  bool per_head = false;     // the namespace's granularity is head
};
constexpr double kDefaultTau = -2;

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string s = std::string(info.param.retriever) + "_" + info.param.trigger +
                  (info.param.tau == kDefaultTau ? "_default_tau" : "") +
                  (std::string(info.param.combine) == "max" ? "_max" : "") + (info.param.per_head ? "_per_head" : "");
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

// A block: K then V, f32. Keys have a per-block direction (so blocks score apart).
std::vector<float> RandomBlock(std::mt19937& rng) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> f(kModel.BlockBytes() / sizeof(float));
  std::vector<float> dir(kHeadDim);
  for (float& x : dir) x = 1.5f * n(rng);
  for (size_t i = 0; i < f.size(); ++i) f[i] = 0.5f * n(rng) + (i < kKeyFloats ? dir[i % kHeadDim] : 0.f);
  return f;
}

class RetrievalEquivalenceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    spec.granularity = GetParam().per_head ? Granularity::kKvHead : Granularity::kLayer;
    spec.budgets = {64 * kModel.BlockBytes(), 64 * kModel.BlockBytes(), 256 * kModel.BlockBytes()};
    auto c = testing::ConnectWithNamespace(daemon_.socket_path(), spec);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
    auto ch = client_->OpenChannel("ns", {.staging_bytes = 1 << 20});
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = std::move(ch).value();
  }

  void SetPolicy(const Case& c) {
    wire::Json p = {{"retriever", c.retriever},  {"trigger", c.trigger},   {"trigger_every", c.every},
                    {"head_combine", c.combine}, {"sink_blocks", kSinks}, {"recent_window", kWindow}};
    if (c.tau != kDefaultTau) p["drift_tau"] = c.tau;
    auto r = internal::Call(*client_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", p}});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Stores block b (retrying while the migrator pins it for a moment) and keeps a copy.
  void Put(uint32_t b, std::vector<float> block) {
    std::vector<std::byte> bytes(kModel.BlockBytes());
    std::memcpy(bytes.data(), block.data(), bytes.size());
    Status st;
    for (int i = 0; i < 100 && !(st = ch_->Put(1, 0, b, bytes)).ok(); ++i) usleep(10000);
    ASSERT_TRUE(st.ok()) << st.ToString();
    if (b >= blocks_.size()) blocks_.resize(b + 1);
    blocks_[b] = std::move(block);
  }

  // The daemon's selection for one step, one list per table head (the lease is
  // released). Each entry's bytes are checked against the block it names.
  std::vector<std::vector<uint32_t>> Served(const std::vector<float>& q, uint32_t budget) {
    auto r = ch_->Retrieve(1, 0, q, budget);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    std::vector<std::vector<uint32_t>> got(ch_->table_heads());
    for (const auto& b : r->blocks) {
      EXPECT_LT(b.head, got.size());
      if (b.head >= got.size()) continue;
      EXPECT_TRUE(got[b.head].empty() || got[b.head].back() < b.block) << "a head's run is ascending";
      got[b.head].push_back(b.block);
      EXPECT_TRUE(EntryHoldsBlock(b)) << "block " << b.block << " head " << b.head;
    }
    EXPECT_TRUE(ch_->Release(r->lease).ok());
    return got;
  }

  // The entry's bytes are the K and V rows of its head (every head: per layer).
  bool EntryHoldsBlock(const DataChannel::BlockRef& ref) const {
    const auto bytes = ch_->BlockBytes(ref);
    if (ref.block >= blocks_.size() || bytes.size() != ch_->entry_bytes()) return false;
    const std::vector<float>& f = blocks_[ref.block];
    const size_t heads = ch_->table_heads(), row = f.size() / 2 / kKvHeads;  // one head's K (or V)
    if (heads == 1) return std::memcmp(bytes.data(), f.data(), bytes.size()) == 0;
    return std::memcmp(bytes.data(), f.data() + ref.head * row, row * sizeof(float)) == 0 &&
           std::memcmp(bytes.data() + row * sizeof(float), f.data() + (kKvHeads + ref.head) * row,
                       row * sizeof(float)) == 0;
  }

  // The layer's keys as index/ views them: [kv][tokens][d].
  std::vector<float> LayerKeys() const {
    const size_t tokens = blocks_.size() * kBlockTokens;
    std::vector<float> keys(kKvHeads * tokens * kHeadDim);
    for (size_t b = 0; b < blocks_.size(); ++b) {
      for (size_t g = 0; g < kKvHeads; ++g) {
        std::copy_n(blocks_[b].data() + g * kBlockTokens * kHeadDim, kBlockTokens * kHeadDim,
                    keys.data() + (g * tokens + b * kBlockTokens) * kHeadDim);
      }
    }
    return keys;
  }

  testing::TempDir dir_{"equivalence"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> ch_;
  std::vector<std::vector<float>> blocks_;
};

TEST_P(RetrievalEquivalenceTest, ServedSelectionsEqualTheTriggerBankAndRetrieverOfIndex) {
  const Case c = GetParam();
  SetPolicy(c);
  std::mt19937 rng(7);
  for (uint32_t b = 0; b < kPrompt; ++b) Put(b, RandomBlock(rng));

  // The replay: the same policy as index/ configs.
  index::TriggerConfig tc;
  const std::string name = c.trigger;
  tc.kind = name == "drift"     ? index::TriggerConfig::Kind::kDrift
            : name == "every_n" ? index::TriggerConfig::Kind::kEveryN
                                : index::TriggerConfig::Kind::kEveryStep;
  if (c.tau != kDefaultTau) tc.tau = c.tau;  // else index/'s default: the daemon's too
  tc.every_n = c.every;
  tc.post_rope = true;
  index::TriggerBank bank(tc);
  auto made = index::MakeRetriever(c.retriever, c.per_head ? index::Granularity::kKvHead : index::Granularity::kLayer);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<index::Retriever> retriever = std::move(made).value();
  index::RetrieverParams params;
  params.block_tokens = kBlockTokens;
  params.num_q_heads = kQHeads;
  params.head_combine = std::string(c.combine) == "max" ? index::HeadCombine::kMax : index::HeadCombine::kSum;

  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> q(size_t{kQHeads} * kHeadDim);
  for (float& x : q) x = n(rng);
  uint32_t reused_and_different = 0;
  for (uint32_t step = 0; step < kSteps; ++step) {
    if (step > 0 && step % 4 == 0) Put(static_cast<uint32_t>(blocks_.size()), RandomBlock(rng));  // decode
    if (step == 17) Put(5, RandomBlock(rng));                                                      // a rewrite
    if (step % 9 == 8) {
      for (float& x : q) x = n(rng);  // a new topic: the query jumps
    } else {
      for (float& x : q) x += 0.15f * n(rng);  // drifts slowly
    }
    const uint32_t blocks = static_cast<uint32_t>(blocks_.size());
    const uint32_t budget = kBudget + (step % 5 == 3 ? 3 : 0);  // a step may ask for more
    const std::vector<float> keys = LayerKeys();
    index::LayerKeys view;
    view.num_kv_heads = kKvHeads;
    view.head_dim = kHeadDim;
    view.num_tokens = uint64_t{blocks} * kBlockTokens;
    view.keys = keys.data();
    ASSERT_TRUE(retriever->Build(view, params).ok());
    std::vector<uint32_t> always = {0};
    for (uint32_t b = blocks - kWindow; b < blocks; ++b) always.push_back(b);
    index::QueryView qv;
    qv.num_q_heads = kQHeads;
    qv.head_dim = kHeadDim;
    qv.q = q.data();
    qv.position = uint64_t{blocks} * kBlockTokens - 1;
    std::vector<std::vector<uint32_t>> want, fresh;
    bool retrieved = false;
    ASSERT_TRUE(bank.SelectHeads(1, 0, retriever.get(), qv, budget, always, &want, &retrieved).ok());
    ASSERT_TRUE(retriever->SelectHeads(qv, budget, always, &fresh).ok());
    if (!retrieved && fresh != want) ++reused_and_different;
    EXPECT_EQ(Served(q, budget), want) << "step " << step << (retrieved ? " (retrieved)" : " (reused)");
  }
  // The run exercised the trigger: reuse where it should, and a reuse that a
  // daemon retrieving every step would have failed.
  if (name == "every") {
    EXPECT_EQ(bank.stats().skipped, 0u);
  } else {
    EXPECT_GT(bank.stats().taken, 2u);
    EXPECT_GT(bank.stats().skipped, 2u);
    EXPECT_GT(reused_and_different, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Triggers, RetrievalEquivalenceTest,
    ::testing::Values(Case{"minmax", "every"}, Case{"minmax", "drift", 4, 0.95}, Case{"minmax", "every_n", 3},
                      Case{"mean", "every"}, Case{"mean", "drift", 4, 0.95}, Case{"mean", "every_n", 3},
                      Case{"mean:r=2", "drift", 4, 0.95}, Case{"exact", "every"}, Case{"exact", "drift", 4, 0.95},
                      Case{"exact", "every_n", 5}, Case{"minmax", "drift", 4, kDefaultTau},
                      Case{"exact", "every", 4, 0.9, "max"}, Case{"mean", "every_n", 3, 0.9, "max"},
                      Case{"minmax", "every", 4, 0.9, "softmax_sum", true},
                      Case{"minmax", "drift", 4, 0.95, "softmax_sum", true},
                      Case{"mean", "every_n", 3, 0.9, "softmax_sum", true},
                      Case{"exact", "drift", 4, 0.95, "max", true},
                      Case{"mean:r=2", "every", 4, 0.9, "softmax_sum", true}),
    CaseName);

}  // namespace
}  // namespace tierkv
