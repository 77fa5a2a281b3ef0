// Incremental indexes (Retriever::Extend, issue 12 item 5): a retriever built
// on the first T0 tokens and extended to T selects as the contract says; cluster
// extends to exactly what a build with prompt T0 gives; vq keeps its codebooks
// and stays close to a full rebuild; methods without an incremental path
// rebuild; spann assigns new blocks to its postings and re-clusters in the
// background (SpannExtend* below); bad calls are refused.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <list>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "eval/eval_metrics.h"
#include "eval/trace.h"
#include "index/faiss_util.h"
#include "index/block_scoring.h"
#include "index/retriever_factory.h"
#include "index/spann_retriever.h"
#include "kernels/half.h"
#include "tests/util/retriever_test_trace.h"

namespace tierkv::index {
namespace {

class ExtendTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPrefix = 1200;
  static constexpr uint32_t kBt = 16;

  void SetUp() override {
    SetFaissThreads(1);
    auto t = RetrieverTestTrace(1);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    trace_ = std::move(t).value();
    full_ = LayerKeysOf(trace_.info, trace_.layers[0]);
    // The first kPrefix tokens of every KV head, contiguous per head.
    const uint32_t kv = full_.num_kv_heads, d = full_.head_dim;
    for (const auto* src : {&trace_.layers[0].keys, &trace_.layers[0].keys_pre, &trace_.layers[0].values}) {
      std::vector<float> out;
      for (uint32_t g = 0; g < kv; ++g) {
        const float* from = src->data() + size_t{g} * full_.num_tokens * d;
        out.insert(out.end(), from, from + kPrefix * d);
      }
      prefix_data_.push_back(std::move(out));
    }
    prefix_ = full_;
    prefix_.num_tokens = kPrefix;
    prefix_.keys = prefix_data_[0].data();
    prefix_.keys_pre = prefix_data_[1].data();
    prefix_.values = prefix_data_[2].data();
    size_t n = 0;
    while (n < full_.sentence_starts.size() && full_.sentence_starts[n] < kPrefix) ++n;
    prefix_.sentence_starts = full_.sentence_starts.subspan(0, n);
  }
  // A view of the first n tokens of the full layer (owned by the fixture).
  LayerKeys Cut(uint64_t n) {
    const uint32_t d = full_.head_dim;
    cuts_.emplace_back();
    auto& data = cuts_.back();
    for (const float* src : {full_.keys, full_.keys_pre, full_.values}) {
      std::vector<float> out;
      for (uint32_t g = 0; g < full_.num_kv_heads; ++g) {
        out.insert(out.end(), src + size_t{g} * full_.num_tokens * d, src + (size_t{g} * full_.num_tokens + n) * d);
      }
      data.push_back(std::move(out));
    }
    LayerKeys v = full_;
    v.num_tokens = n;
    v.keys = data[0].data(), v.keys_pre = data[1].data(), v.values = data[2].data();
    size_t s = 0;
    while (s < full_.sentence_starts.size() && full_.sentence_starts[s] < n) ++s;
    v.sentence_starts = full_.sentence_starts.subspan(0, s);
    return v;
  }
  RetrieverParams Params(uint64_t prompt, bool sample) const {
    return TraceBuildParams(trace_, 0, kBt, prompt, sample ? 2 : 0);
  }
  std::unique_ptr<Retriever> Make(const char* spec, Granularity g = Granularity::kLayer) {
    auto r = MakeRetriever(spec, g);
    EXPECT_TRUE(r.ok()) << spec;
    return std::move(r).value();
  }
  // Selections of every step at a 10% budget, per KV head lists.
  std::vector<std::vector<std::vector<uint32_t>>> SelectAll(Retriever* r) {
    std::vector<std::vector<std::vector<uint32_t>>> out;
    for (uint64_t s = 0; s < trace_.info.num_steps(); ++s) {
      const QueryView q = StepQuery(trace_.info, trace_.layers[0], s);
      const uint64_t visible = VisibleBlocks(q.position, kBt);
      std::vector<std::vector<uint32_t>> sel;
      Status st = r->SelectHeads(q, static_cast<uint32_t>(visible / 10), AlwaysKeptBlocks(q.position, kBt, 4, 64),
                                 &sel);
      EXPECT_TRUE(st.ok()) << st.ToString();
      out.push_back(sel);
    }
    return out;
  }
  double MeanMass(Retriever* r) {
    double sum = 0;
    const auto all = SelectAll(r);
    for (uint64_t s = 0; s < all.size(); ++s) {
      const QueryView q = StepQuery(trace_.info, trace_.layers[0], s);
      ExactAttention ex;
      EXPECT_TRUE(ComputeExactAttention(full_, q, &ex).ok());
      SelectionMetrics m;
      EXPECT_TRUE(
          EvaluateHeadSelection(full_, q, ex, kBt, all[s], AlwaysKeptBlocks(q.position, kBt, 4, 64), 1, &m).ok());
      sum += m.mass_recall;
    }
    return sum / static_cast<double>(all.size());
  }

  Trace trace_;
  LayerKeys full_, prefix_;
  std::vector<std::vector<float>> prefix_data_;
  std::list<std::vector<std::vector<float>>> cuts_;
};

TEST_F(ExtendTest, ClusterExtendsToWhatABuildWithThatPromptGives) {
  for (Granularity g : {Granularity::kLayer, Granularity::kKvHead}) {
    auto grown = Make("cluster:size=32,seg=16", g);
    auto fresh = Make("cluster:size=32,seg=16", g);
    ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok());
    const size_t before = grown->IndexBytes();
    ASSERT_TRUE(grown->Extend(full_).ok());
    EXPECT_GT(grown->IndexBytes(), before);
    ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
    EXPECT_EQ(grown->IndexBytes(), fresh->IndexBytes());
    EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get())) << GranularityName(g);
  }
}

TEST_F(ExtendTest, ClusterExtendsInSteps) {
  auto grown = Make("cluster:size=32,seg=16,out=1");
  auto fresh = Make("cluster:size=32,seg=16,out=1");
  ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok());
  // Grow through a view of the full layer cut at 1300 tokens (a partial segment and block).
  std::vector<float> k, kp, v;
  const uint32_t d = full_.head_dim;
  for (uint32_t g = 0; g < full_.num_kv_heads; ++g) {
    for (auto [dst, src] : {std::pair{&k, full_.keys}, std::pair{&kp, full_.keys_pre}, std::pair{&v, full_.values}}) {
      dst->insert(dst->end(), src + size_t{g} * full_.num_tokens * d, src + (size_t{g} * full_.num_tokens + 1303) * d);
    }
  }
  LayerKeys mid = full_;
  mid.num_tokens = 1303;
  mid.keys = k.data(), mid.keys_pre = kp.data(), mid.values = v.data();
  ASSERT_TRUE(grown->Extend(mid).ok());
  ASSERT_TRUE(grown->Extend(full_).ok());
  ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
  EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get()));
}

TEST_F(ExtendTest, VqEncodesNewTokensWithItsCodebooks) {
  for (Granularity g : {Granularity::kLayer, Granularity::kKvHead}) {
    for (const char* spec :
         {"vq:m=8,train=512,iters=4", "vq:m=8,rope=post,bits=4,train=512,iters=4", "vq:m=8,train=512,iters=4,exact=0.02"}) {
      auto grown = Make(spec, g);
      auto fresh = Make(spec, g);
      ASSERT_TRUE(grown->Build(prefix_, Params(0, true)).ok());
      const size_t before = grown->IndexBytes();
      ASSERT_TRUE(grown->Extend(full_).ok());
      EXPECT_GT(grown->IndexBytes(), before) << spec;
      ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, true)).ok());
      const bool exact = std::string(spec).find("exact=") != std::string::npos;
      // With exact=F the extended index keeps the new tokens above the build's
      // error threshold, not the top share of all tokens: sizes differ.
      if (!exact) {
        EXPECT_EQ(grown->IndexBytes(), fresh->IndexBytes()) << spec;
      }
      const double g_mass = MeanMass(grown.get()), f_mass = MeanMass(fresh.get());
      std::printf("%s/%s: mass recall extended %.4f, rebuilt %.4f\n", spec, GranularityName(g), g_mass, f_mass);
      // Windowed RoPE codes pre-RoPE keys, whose distribution does not move
      // with the position: new tokens code as well as in a rebuild. Post-RoPE
      // codebooks trained on earlier positions fit later keys less (measured
      // 0.09 below a rebuild per head here): they need the periodic
      // background re-training issue 12 item 5 asks for.
      const bool post = std::string(spec).find("rope=post") != std::string::npos;
      EXPECT_GT(g_mass, f_mass - (post ? 0.15 : exact ? 0.08 : 0.05)) << spec << " " << GranularityName(g);
      // Extending to the same length changes nothing.
      const auto again = SelectAll(grown.get());
      ASSERT_TRUE(grown->Extend(full_).ok());
      EXPECT_EQ(SelectAll(grown.get()), again);
    }
  }
}

TEST_F(ExtendTest, OtherMethodsRebuild) {
  for (const char* spec : {"minmax", "mean:r=4", "sentence", "exact"}) {
    auto grown = Make(spec);
    auto fresh = Make(spec);
    ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok()) << spec;
    ASSERT_TRUE(grown->Extend(full_).ok()) << spec;
    ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
    EXPECT_EQ(SelectAll(grown.get()), SelectAll(fresh.get())) << spec;
  }
}

// ---- spann (issue 12 item 5): assignment to the existing postings, background re-clustering.

// The vectors spann indexes for block b of KV head g (mean key + r - 1
// representatives, f16-rounded), computed here from the keys.
std::vector<float> BlockVectors(const LayerKeys& l, uint32_t g, uint64_t b, uint32_t bt, uint32_t r) {
  const uint64_t begin = b * bt, end = std::min(l.num_tokens, begin + bt);
  std::vector<float> mean(l.head_dim), reps(size_t{r} * l.head_dim);
  MeanKey(l, g, begin, end, mean.data());
  PickRepresentatives(l, g, begin, end, mean.data(), r, RepPick::kKCenter, reps.data());
  for (float& v : reps) v = kernels::F16ToFloat(kernels::FloatToF16(v));
  return reps;
}

struct PostingEntry {
  uint32_t block;
  std::vector<float> v;
  bool operator==(const PostingEntry&) const = default;
};

// Every posting of the index in use: [g * k + c] -> entries.
std::vector<std::vector<PostingEntry>> ReadPostings(SpannRetriever* r, uint32_t d) {
  std::vector<uint32_t> ids(r->store()->num_postings());
  for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
  std::vector<std::span<const uint8_t>> raw;
  EXPECT_TRUE(r->store()->ReadBatch(ids, &raw).ok());
  std::vector<std::vector<PostingEntry>> out(ids.size());
  const size_t eb = sizeof(uint32_t) + size_t{d} * 2;
  for (size_t i = 0; i < raw.size(); ++i) {
    for (size_t at = 0; at + eb <= raw[i].size(); at += eb) {
      PostingEntry e;
      std::memcpy(&e.block, raw[i].data() + at, 4);
      for (uint32_t c = 0; c < d; ++c) {
        uint16_t h;
        std::memcpy(&h, raw[i].data() + at + 4 + 2 * c, 2);
        e.v.push_back(kernels::F16ToFloat(h));
      }
      out[i].push_back(std::move(e));
    }
  }
  return out;
}

SpannRetriever* AsSpann(Retriever* r) { return dynamic_cast<SpannRetriever*>(r); }

// Releases a held re-clustering thread however the test ends (declared after
// the retriever, so it runs before the retriever's destructor joins the thread).
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  bool done = false;
  void Open() {
    if (!done) open.set_value(), done = true;
  }
  ~Gate() { Open(); }
};

TEST_F(ExtendTest, SpannExtendAssignsNewBlocksToTheNearestPostings) {
  const std::string scratch = std::string(TIERKV_TEST_SCRATCH_DIR);
  std::filesystem::create_directories(scratch);
  // balance=0: the primary posting is the nearest centroid, so the expected
  // postings of each vector follow from the centroids alone; no re-clustering.
  for (const std::string& spec : {std::string("spann:size=8,balance=0,rebalance=0,skew=1000"),
                                  "spann:size=8,balance=0,rebalance=0,skew=1000,store=file,dir=" + scratch}) {
    for (uint64_t cut : {uint64_t{1200}, uint64_t{1203}}) {  // ends on a block; ends in a partial block
      SCOPED_TRACE(spec + " from " + std::to_string(cut));
      auto made = Make(spec.c_str());
      SpannRetriever* r = AsSpann(made.get());
      ASSERT_NE(r, nullptr);
      ASSERT_TRUE(r->Build(Cut(cut), Params(0, false)).ok());
      const uint32_t d = full_.head_dim, KV = full_.num_kv_heads, k = r->clusters_per_head();
      const auto before = ReadPostings(r, d);
      std::vector<std::vector<float>> cents;
      for (uint32_t g = 0; g < KV; ++g) cents.emplace_back(r->centroids(g).begin(), r->centroids(g).end());
      ASSERT_TRUE(r->Extend(full_).ok());
      const uint64_t first = cut / kBt, blocks = full_.num_tokens / kBt;
      EXPECT_EQ(r->clusters_per_head(), k);
      EXPECT_EQ(r->rebalances(), 0u);
      EXPECT_FALSE(r->rebalancing());
      EXPECT_EQ(r->assigned_vectors(), (blocks - (cut + kBt - 1) / kBt) * 2);
      for (uint32_t g = 0; g < KV; ++g) EXPECT_TRUE(std::ranges::equal(r->centroids(g), cents[g]));
      const auto after = ReadPostings(r, d);
      ASSERT_EQ(after.size(), before.size());
      // Old blocks keep their entries, in their order.
      for (size_t p = 0; p < after.size(); ++p) {
        std::vector<PostingEntry> old_before, old_after;
        for (const auto& e : before[p]) if (e.block < first) old_before.push_back(e);
        for (const auto& e : after[p]) if (e.block < first) old_after.push_back(e);
        EXPECT_EQ(old_after, old_before) << "posting " << p;
      }
      // New vectors (block `first` re-summarized when it was partial) sit in the
      // nearest posting plus those within (1 + eps) of it, at most 4 in all.
      uint64_t checked = 0;
      for (uint32_t g = 0; g < KV; ++g) {
        for (uint64_t b = first; b < blocks; ++b) {
          const std::vector<float> want = BlockVectors(full_, g, b, kBt, 2);
          size_t entries_of_b = 0;
          for (uint32_t c = 0; c < k; ++c) {
            for (const auto& e : after[g * k + c]) entries_of_b += e.block == b;
          }
          size_t expected_total = 0;
          for (uint32_t j = 0; j < 2; ++j) {
            const float* x = want.data() + size_t{j} * d;
            std::vector<std::pair<double, uint32_t>> dist;
            for (uint32_t c = 0; c < k; ++c) {
              double s = 0;
              for (uint32_t i = 0; i < d; ++i) s += std::pow(double(x[i]) - cents[g][size_t{c} * d + i], 2);
              dist.emplace_back(std::sqrt(s), c);
            }
            std::sort(dist.begin(), dist.end());
            const double limit = 1.1 * dist[0].first;
            std::vector<uint32_t> expect{dist[0].second}, got;
            bool near_limit = false;
            for (size_t i = 1; i < std::min<size_t>(8, k) && expect.size() < 4; ++i) {
              near_limit |= std::abs(dist[i].first - limit) < 1e-4 * limit;
              if (dist[i].first <= limit) expect.push_back(dist[i].second);
            }
            expected_total += expect.size();
            for (uint32_t c = 0; c < k; ++c) {
              for (const auto& e : after[g * k + c]) {
                if (e.block == b && std::equal(e.v.begin(), e.v.end(), x)) got.push_back(c);
              }
            }
            std::sort(expect.begin(), expect.end());
            if (!near_limit) {
              EXPECT_EQ(got, expect) << "head " << g << " block " << b << " vector " << j;
            }
            ++checked;
          }
          if (!HasFailure()) {
            EXPECT_EQ(entries_of_b, expected_total) << "block " << b;
          }
        }
      }
      EXPECT_EQ(checked, (blocks - first) * 2 * KV);
    }
  }
}

TEST_F(ExtendTest, SpannSelectsTheNewBlocksAfterExtend) {
  for (Granularity gran : {Granularity::kLayer, Granularity::kKvHead}) {
    auto grown = Make("spann:size=8,rebalance=0", gran);
    auto fresh = Make("spann:size=8,rebalance=0", gran);
    ASSERT_TRUE(grown->Build(prefix_, Params(0, false)).ok());
    ASSERT_TRUE(grown->Extend(full_).ok());
    ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
    // The new blocks the rebuilt index picks outside the recent window, and how
    // many of them the extended one picks too.
    const auto g_sel = SelectAll(grown.get()), f_sel = SelectAll(fresh.get());
    uint64_t fresh_new = 0, both_new = 0;
    for (size_t s = 0; s < g_sel.size(); ++s) {
      const uint64_t window_first = (StepQuery(trace_.info, trace_.layers[0], s).position - 63) / kBt;
      for (size_t h = 0; h < f_sel[s].size(); ++h) {
        for (uint32_t b : f_sel[s][h]) {
          if (b < kPrefix / kBt || b >= window_first) continue;
          ++fresh_new;
          both_new += std::binary_search(g_sel[s][h].begin(), g_sel[s][h].end(), b);
        }
      }
    }
    const double g_mass = MeanMass(grown.get()), f_mass = MeanMass(fresh.get());
    std::printf("spann/%s: new blocks picked by a rebuild %llu, also by the extended index %llu; mass %.4f vs %.4f\n",
                GranularityName(gran), static_cast<unsigned long long>(fresh_new),
                static_cast<unsigned long long>(both_new), g_mass, f_mass);
    EXPECT_GT(fresh_new, 0u);
    EXPECT_GE(double(both_new), 0.7 * double(fresh_new)) << GranularityName(gran);
    EXPECT_GT(g_mass, f_mass - 0.03) << GranularityName(gran);
  }
}

TEST_F(ExtendTest, SpannRebalancesInTheBackgroundWithoutBlockingSelect) {
  const char* spec = "spann:size=8,rebalance=0.1";
  auto fresh = Make(spec);
  ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
  auto made = Make(spec);
  SpannRetriever* r = AsSpann(made.get());
  Gate gate;
  r->SetRebalanceHookForTest([f = gate.opened] { f.wait(); });
  ASSERT_TRUE(r->Build(prefix_, Params(0, false)).ok());
  const uint32_t k_before = r->clusters_per_head();
  ASSERT_TRUE(r->Extend(full_).ok());  // 25% new vectors > 10%: a re-clustering starts, held by the gate
  EXPECT_TRUE(r->rebalancing());
  // Select runs (on the old index plus the assigned blocks) while the thread is held.
  auto selections = std::async(std::launch::async, [&] { return SelectAll(made.get()); });
  ASSERT_EQ(selections.wait_for(std::chrono::seconds(60)), std::future_status::ready) << "Select waited for the re-clustering";
  const auto held = selections.get();
  EXPECT_EQ(held.size(), trace_.info.num_steps());
  EXPECT_EQ(r->rebalances(), 0u);
  EXPECT_EQ(r->clusters_per_head(), k_before);
  EXPECT_GT(r->assigned_vectors(), 0u);
  gate.Open();
  // Select swaps the finished index in by itself.
  const QueryView q = StepQuery(trace_.info, trace_.layers[0], 0);
  const auto kept = AlwaysKeptBlocks(q.position, kBt, 4, 64);
  std::vector<uint32_t> sel;
  for (int i = 0; i < 6000 && r->rebalances() == 0; ++i) {
    ASSERT_TRUE(r->Select(q, 12, kept, &sel).ok());
    if (r->rebalances() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(r->rebalances(), 1u);
  EXPECT_TRUE(r->rebalance_status().ok());
  EXPECT_FALSE(r->rebalancing());
  EXPECT_EQ(r->assigned_vectors(), 0u);
  // The swapped-in index is what a fresh Build over every token gives.
  SpannRetriever* f = AsSpann(fresh.get());
  EXPECT_EQ(r->clusters_per_head(), f->clusters_per_head());
  EXPECT_NE(r->clusters_per_head(), k_before);
  EXPECT_EQ(ReadPostings(r, full_.head_dim), ReadPostings(f, full_.head_dim));
  EXPECT_EQ(SelectAll(made.get()), SelectAll(fresh.get()));
}

TEST_F(ExtendTest, SpannAssignsBlocksAddedDuringARebalanceToTheNewIndex) {
  auto made = Make("spann:size=8,rebalance=0.05");
  SpannRetriever* r = AsSpann(made.get());
  Gate gate;
  r->SetRebalanceHookForTest([f = gate.opened] { f.wait(); });
  ASSERT_TRUE(r->Build(prefix_, Params(0, false)).ok());
  ASSERT_TRUE(r->Extend(Cut(1303)).ok());  // 14 of 164 vectors new: starts one (over 1303 tokens, 82 blocks)
  ASSERT_TRUE(r->rebalancing());
  ASSERT_TRUE(r->Extend(full_).ok());  // while it runs: assigned to the old index only
  EXPECT_EQ(r->rebalances(), 0u);
  gate.Open();
  ASSERT_TRUE(r->WaitForRebalance().ok());
  EXPECT_EQ(r->rebalances(), 1u);
  EXPECT_EQ(r->clusters_per_head(), (82u * 2 + 7) / 8);
  EXPECT_EQ(r->assigned_vectors(), (100u - 82) * 2);  // 82..99 (and block 81, then partial, re-assigned)
  // Every vector of every block is in the new index, block 81 with its full-block vectors.
  const uint32_t d = full_.head_dim, k = r->clusters_per_head();
  const auto postings = ReadPostings(r, d);
  for (uint32_t g = 0; g < full_.num_kv_heads; ++g) {
    for (uint64_t b = 0; b < 100; ++b) {
      const auto want = BlockVectors(full_, g, b, kBt, 2);
      for (uint32_t j = 0; j < 2; ++j) {
        bool found = false;
        uint64_t of_block = 0;
        for (uint32_t c = 0; c < k; ++c) {
          for (const auto& e : postings[g * k + c]) {
            if (e.block != b) continue;
            ++of_block;
            found |= std::equal(e.v.begin(), e.v.end(), want.data() + size_t{j} * d);
          }
        }
        EXPECT_TRUE(found) << "head " << g << " block " << b << " vector " << j;
        EXPECT_LE(of_block, 8u) << "head " << g << " block " << b;
      }
    }
  }
  auto fresh = Make("spann:size=8,rebalance=0.05");
  ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
  EXPECT_GT(MeanMass(made.get()), MeanMass(fresh.get()) - 0.03);
}

TEST_F(ExtendTest, SpannWithoutBackgroundReclustersInsideExtend) {
  auto made = Make("spann:size=8,rebalance=0.1,bg=0");
  EXPECT_EQ(made->Name(), "spann:size=8,rebalance=0.1,bg=0");
  SpannRetriever* r = AsSpann(made.get());
  ASSERT_TRUE(r->Build(prefix_, Params(0, false)).ok());
  ASSERT_TRUE(r->Extend(full_).ok());
  EXPECT_FALSE(r->rebalancing());
  EXPECT_EQ(r->rebalances(), 1u);
  auto fresh = Make("spann:size=8,rebalance=0.1,bg=0");
  ASSERT_TRUE(fresh->Build(full_, Params(kPrefix, false)).ok());
  EXPECT_EQ(ReadPostings(r, full_.head_dim), ReadPostings(AsSpann(fresh.get()), full_.head_dim));
  // A skewed posting starts one too: skew=1 fires once a posting outgrows the
  // largest of the clustering (50 new vectors over 19 postings do that).
  auto skewed = Make("spann:size=8,rebalance=0,skew=1,bg=0");
  ASSERT_TRUE(skewed->Build(prefix_, Params(0, false)).ok());
  ASSERT_TRUE(skewed->Extend(full_).ok());
  EXPECT_EQ(AsSpann(skewed.get())->rebalances(), 1u);
}

TEST_F(ExtendTest, BadCallsAreRefused) {
  auto r = Make("vq:m=8,train=512,iters=4");
  EXPECT_EQ(r->Extend(full_).code(), StatusCode::kInvalidArgument);  // before Build
  ASSERT_TRUE(r->Build(full_, Params(0, true)).ok());
  EXPECT_EQ(r->Extend(prefix_).code(), StatusCode::kInvalidArgument);  // fewer tokens
  LayerKeys other = full_;
  other.num_kv_heads = 1;
  EXPECT_EQ(r->Extend(other).code(), StatusCode::kInvalidArgument);  // another shape
}

}  // namespace
}  // namespace tierkv::index
