#include <gtest/gtest.h>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"

namespace tierkv {
namespace {

TEST(CApiTest, ACProgramDrivesTheDataPlane) {
  testing::TempDir dir("capi");
  testing::DaemonProcess d(TIERKVD_PATH, dir.path());
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string out;
  EXPECT_EQ(testing::RunProgram(C_API_SMOKE_PATH, {d.socket_path()}, &out), 0) << out;
  EXPECT_EQ(d.Stop(), 0) << d.Log();
}

}  // namespace
}  // namespace tierkv
