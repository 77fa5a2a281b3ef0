#include "storage/policy.h"

#include <gtest/gtest.h>

namespace tierkv::storage {
namespace {

using Json = nlohmann::json;

TEST(PolicyTest, DefaultsAreValidAndRoundTripThroughJson) {
  Policy p;
  EXPECT_TRUE(p.Validate().ok());
  auto again = ApplyPolicyChanges(Policy{}, PolicyToJson(p));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, p);
}

TEST(PolicyTest, ChangesApplyOnTopOfTheBase) {
  auto p = ApplyPolicyChanges(Policy{}, Json{{"eviction", "score"}, {"miss_mode", "defer"},
                                             {"gpu_high_watermark", 0.5}, {"gpu_low_watermark", 0.4},
                                             {"write", "write-through"}, {"compression", "kivi2"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->eviction, Eviction::kScore);
  EXPECT_EQ(p->miss_mode, MissMode::kDefer);
  EXPECT_EQ(p->write, WritePolicy::kWriteThrough);
  EXPECT_EQ(p->compression, Compression::kKivi2);
  EXPECT_DOUBLE_EQ(p->gpu.high, 0.5);
  EXPECT_EQ(p->recent_window, Policy{}.recent_window);
}

TEST(PolicyTest, BadValuesNameTheFieldAndChangeNothing) {
  const Policy base;
  struct Case {
    Json changes;
    const char* mention;
  } cases[] = {
      {{{"eviction", "random"}}, "eviction"},
      {{{"eviction", 3}}, "eviction"},
      {{{"sink_blocks", -1}}, "sink_blocks"},
      {{{"sink_blocks", "4"}}, "sink_blocks"},
      {{{"recent_window", 1u << 20}}, "recent_window"},
      {{{"gpu_high_watermark", 1.5}}, "gpu_high_watermark"},
      {{{"gpu_low_watermark", 0.99}}, "gpu_low_watermark"},  // above the high one
      {{{"host_high_watermark", 0}}, "host_high_watermark"},
      {{{"compression_group", 3}}, "compression_group"},
      {{{"miss_mode", "maybe"}}, "miss_mode"},
      {{{"colour", "blue"}}, "colour"},
      {Json::array(), "object"},
  };
  for (const auto& c : cases) {
    auto r = ApplyPolicyChanges(base, c.changes);
    ASSERT_FALSE(r.ok()) << c.changes.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.mention), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace tierkv::storage
