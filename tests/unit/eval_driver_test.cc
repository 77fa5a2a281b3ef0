// The evaluation driver over synthetic traces, in memory and through a trace file.
#include "eval/eval_driver.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "index/exact_retriever.h"
#include "index/retriever_factory.h"
#include "eval/synthetic.h"

namespace tierkv::index {
namespace {

SyntheticParams Small() {
  SyntheticParams p;
  p.num_tokens = 1536;
  p.num_steps = 12;
  p.num_q_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 32;
  return p;
}

EvalOptions Options() {
  EvalOptions o;
  o.budgets = {EvalBudget::Fraction(0.05), EvalBudget::Fraction(0.1), EvalBudget::Fraction(0.2),
               EvalBudget::Blocks(40), EvalBudget::Fraction(1.0)};
  return o;
}

TEST(EvalBudgetTest, ResolvesWithinOneAndVisible) {
  EXPECT_EQ(EvalBudget::Fraction(0.1).Resolve(96), 10u);  // ceil(9.6)
  EXPECT_EQ(EvalBudget::Fraction(0.1).Resolve(100), 10u);
  EXPECT_EQ(EvalBudget::Fraction(0.01).Resolve(5), 1u);
  EXPECT_EQ(EvalBudget::Fraction(1.0).Resolve(7), 7u);
  EXPECT_EQ(EvalBudget::Blocks(64).Resolve(20), 20u);
  EXPECT_EQ(EvalBudget::Blocks(64).Resolve(200), 64u);
  EXPECT_EQ(EvalBudget::Fraction(0.05).ToString(), "5%");
  EXPECT_EQ(EvalBudget::Blocks(64).ToString(), "64 blocks");
}

TEST(EvalDriverTest, ExactRetrieverReportIsConsistent) {
  auto gen = SyntheticGenerator::Create(Small());
  ASSERT_TRUE(gen.ok());
  ExactRetriever exact;
  auto report = RunEval(gen->get(), &exact, Options());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->retriever, "exact");
  EXPECT_EQ(report->layers, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(report->index_bytes, 2u * (2 * 1536 * 32 * 4));
  ASSERT_EQ(report->budgets.size(), 5u);
  const uint64_t block_bytes = 2 * 2 * 16 * 32 * 2;  // K+V, 2 KV heads, 16 tokens, d 32, f16
  double prev_mass = 0.0;
  for (const BudgetMetrics& b : report->budgets) {
    EXPECT_EQ(b.evaluations, 2u * 12);
    EXPECT_EQ(b.topk_recall, 1.0) << b.budget.ToString();  // the oracle agrees with itself
    EXPECT_GE(b.mass_recall, prev_mass - 1e-12);
    EXPECT_LE(b.min_mass_recall, b.mass_recall);
    EXPECT_LE(b.min_head_mass_recall, b.min_mass_recall);
    EXPECT_NEAR(b.bytes_selected, b.selected_blocks * block_bytes, 1e-6);
    EXPECT_LT(b.bytes_retrieved, b.bytes_selected);
    EXPECT_EQ(b.layer_mass_recall.size(), 2u);
    EXPECT_GT(b.visible_blocks, 90.0);
    prev_mass = b.mass_recall;
  }
  const BudgetMetrics& all = report->budgets.back();
  EXPECT_NEAR(all.mass_recall, 1.0, 1e-5);
  EXPECT_NEAR(all.output_rel_error, 0.0, 1e-5);
  EXPECT_NEAR(all.kl_divergence, 0.0, 1e-5);
  EXPECT_NEAR(all.selected_blocks, all.visible_blocks, 1e-9);
  // A 10% budget of the oracle holds most of the mass of this generator.
  EXPECT_GT(report->budgets[1].mass_recall, 0.85);
  EXPECT_GT(report->budgets[1].output_rel_error, 0.0);

  const nlohmann::json j = EvalReportToJson(*report);
  EXPECT_EQ(j["retriever"], "exact");
  EXPECT_EQ(j["budgets"].size(), 5u);
  EXPECT_EQ(j["budgets"][1]["budget"], "10%");
  EXPECT_EQ(j["options"]["kv_dtype"], "f16");
  const std::string table = FormatEvalTable({*report});
  EXPECT_NE(table.find("exact"), std::string::npos);
  EXPECT_NE(table.find("40 blocks"), std::string::npos);
  EXPECT_NE(table.find("mass_rec"), std::string::npos);
}

TEST(EvalDriverTest, FileTraceGivesTheSameReportAsTheGenerator) {
  auto gen = SyntheticGenerator::Create(Small());
  ASSERT_TRUE(gen.ok());
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tierkv_eval_" + std::to_string(::getpid()) + ".trace")).string();
  auto trace = (*gen)->GenerateAll();
  ASSERT_TRUE(trace.ok());
  ASSERT_TRUE(WriteTrace(path, *trace, TraceDType::kF32).ok());
  auto reader = TraceReader::Open(path);
  ASSERT_TRUE(reader.ok());
  EvalOptions o = Options();
  o.layers = {1};
  o.step_stride = 3;
  ExactRetriever a, b;
  auto from_gen = RunEval(gen->get(), &a, o);
  auto from_file = RunEval(reader->get(), &b, o);
  std::filesystem::remove(path);
  ASSERT_TRUE(from_gen.ok() && from_file.ok());
  ASSERT_EQ(from_file->budgets[0].evaluations, 4u);  // steps 0, 3, 6, 9 of layer 1
  for (size_t i = 0; i < o.budgets.size(); ++i) {
    EXPECT_EQ(from_gen->budgets[i].mass_recall, from_file->budgets[i].mass_recall);
    EXPECT_EQ(from_gen->budgets[i].output_rel_error, from_file->budgets[i].output_rel_error);
  }
}

// The exact attention shared between retrievers (ExactAttentionCache) gives the same
// figures as computing it per run; a cache too small for an entry still does.
TEST(EvalDriverTest, ASharedExactAttentionCacheChangesNoFigure) {
  auto gen = SyntheticGenerator::Create(Small());
  ASSERT_TRUE(gen.ok());
  EvalOptions o = Options();
  o.step_stride = 2;
  for (uint64_t cap : {uint64_t{1} << 30, uint64_t{1}}) {
    ExactAttentionCache cache(cap);
    auto conc = MeasureConcentration(gen->get(), o, &cache), conc_plain = MeasureConcentration(gen->get(), o);
    ASSERT_TRUE(conc.ok() && conc_plain.ok());
    EXPECT_EQ(conc->tokens_for_90, conc_plain->tokens_for_90);
    EXPECT_EQ(conc->blocks_for_90_layer, conc_plain->blocks_for_90_layer);
    EXPECT_EQ(conc->cross_group_correlation, conc_plain->cross_group_correlation);
    for (const char* spec : {"minmax", "mean:r=4", "exact"}) {
      for (Granularity g : {Granularity::kLayer, Granularity::kKvHead}) {
        auto cached = MakeRetriever(spec, g), plain = MakeRetriever(spec, g);
        ASSERT_TRUE(cached.ok() && plain.ok());
        auto with = RunEval(gen->get(), cached->get(), o, &cache);
        auto without = RunEval(gen->get(), plain->get(), o);
        ASSERT_TRUE(with.ok() && without.ok()) << spec;
        for (size_t i = 0; i < o.budgets.size(); ++i) {
          EXPECT_EQ(with->budgets[i].mass_recall, without->budgets[i].mass_recall) << spec << " cap " << cap;
          EXPECT_EQ(with->budgets[i].topk_recall, without->budgets[i].topk_recall) << spec;
          EXPECT_EQ(with->budgets[i].output_rel_error, without->budgets[i].output_rel_error) << spec;
        }
      }
    }
    const uint64_t scored = 2 * 6;  // 2 layers x steps 0, 2, ..., 10
    EXPECT_EQ(cache.misses(), cap > 1 ? scored : 7 * scored);  // the concentration's, then the 6 runs'
    EXPECT_EQ(cache.hits(), cap > 1 ? 6 * scored : 0u);
  }
}

TEST(EvalDriverTest, BadOptionsAreRefused) {
  auto gen = SyntheticGenerator::Create(Small());
  ASSERT_TRUE(gen.ok());
  ExactRetriever r;
  EvalOptions o;
  o.layers = {2};
  EXPECT_EQ(RunEval(gen->get(), &r, o).status().code(), StatusCode::kInvalidArgument);
  o = EvalOptions();
  o.budgets = {EvalBudget::Fraction(0.0)};
  EXPECT_EQ(RunEval(gen->get(), &r, o).status().code(), StatusCode::kInvalidArgument);
  o = EvalOptions();
  o.budgets.clear();
  EXPECT_EQ(RunEval(gen->get(), &r, o).status().code(), StatusCode::kInvalidArgument);
  o = EvalOptions();
  o.block_tokens = 0;
  EXPECT_EQ(RunEval(gen->get(), &r, o).status().code(), StatusCode::kInvalidArgument);
  o = EvalOptions();
  o.step_stride = 0;
  EXPECT_EQ(RunEval(gen->get(), &r, o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::index
