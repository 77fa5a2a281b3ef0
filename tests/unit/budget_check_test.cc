// Budgets that cannot brick the daemon (issue 14): the plan of a namespace's tiers
// and the checks against a machine given explicitly.
#include <gtest/gtest.h>

#include "daemon/budget_check.h"

namespace tierkv::daemon {
namespace {

NamespaceSpec Spec(Budgets b) {
  NamespaceSpec s;
  s.name = "n";
  s.model = {2, 4, 2, 16, 16, DType::kF32};  // 4 KiB blocks
  s.budgets = b;
  return s;
}

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(BudgetCheckTest, PlanUsesTheBudgetsOrTheConfigDefaults) {
  Config c;
  const TierPlan p = PlanTiers(Spec({0, 8 * 4096, 0}), c, /*gpu_emulated=*/true);
  EXPECT_EQ(p.block_bytes, 4096u);
  EXPECT_EQ(p.g_slots, c.storage.gpu_bytes / 4096);
  EXPECT_EQ(p.h_slots, 8u);
  EXPECT_GT(p.d_slots, 0u);
  EXPECT_EQ(p.host_memory_bytes, (p.g_slots + 8) * (4096 + kMetadataBytesPerSlot));
  // A real G tier costs no host memory but its metadata.
  const TierPlan real = PlanTiers(Spec({0, 8 * 4096, 0}), c, false);
  EXPECT_EQ(real.host_memory_bytes, 8 * 4096 + (real.g_slots + 8) * kMetadataBytesPerSlot);
}

TEST(BudgetCheckTest, EachLimitRefusesWithItsKey) {
  Config c;
  const MachineResources m{16 * kGiB, 100 * kGiB, true};
  auto check = [&](Budgets b) {
    const NamespaceSpec s = Spec(b);
    return CheckPlan(s, PlanTiers(s, c, true), c, m);
  };
  EXPECT_TRUE(check({1 * kGiB, 2 * kGiB, 8 * kGiB}).ok());
  Status st = check({uint64_t{1} << 50, uint64_t{1} << 50, 0});
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("namespace_limits.max_slots_per_tier"), std::string::npos) << st.ToString();
  st = check({4 * kGiB, 12 * kGiB, 0});  // 16 GiB + metadata > 90% of 16 GiB
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("namespace_limits.max_memory_percent"), std::string::npos) << st.ToString();
  st = check({1 * kGiB, 1 * kGiB, 101 * kGiB});
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("free"), std::string::npos) << st.ToString();
  EXPECT_EQ(check({1024, 1 * kGiB, 0}).code(), StatusCode::kInvalidArgument);  // G below one block
  // At a restart the disk is not checked (the slab files hold their space already).
  const NamespaceSpec s = Spec({1 * kGiB, 1 * kGiB, 101 * kGiB});
  EXPECT_TRUE(CheckPlan(s, PlanTiers(s, c, true), c, {16 * kGiB, 0, false}).ok());
  // The limits come from the config.
  c.namespace_limits.max_memory_percent = 100;
  EXPECT_TRUE(check({4 * kGiB, 11 * kGiB, 0}).ok());
  c.namespace_limits.max_slots_per_tier = 1000;
  EXPECT_EQ(check({4 * kGiB, 11 * kGiB, 0}).code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace tierkv::daemon
