// The GPU runtime's behaviour without a device (this machine, CI, CUDA=OFF builds):
// every device call fails cleanly with kNotSupported and nothing crashes.
#include <gtest/gtest.h>

#include "kernels/backend.h"
#include "kernels/gather.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::kernels {
namespace {

class KernelsNoDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (GpuCount() > 0) GTEST_SKIP() << "a CUDA device is present: " << DescribeGpus();
  }
};

template <typename T>
void ExpectNotSupported(const Result<T>& r) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotSupported) << r.status().ToString();
}

void ExpectNotSupported(const Status& s) { EXPECT_EQ(s.code(), StatusCode::kNotSupported) << s.ToString(); }

TEST_F(KernelsNoDeviceTest, QueriesReportNoDevice) {
  EXPECT_EQ(GpuCount(), 0);
  EXPECT_EQ(QueryGpu(0).index, -1);
  EXPECT_EQ(QueryGpu(-1).index, -1);
  EXPECT_FALSE(DescribeGpus().empty());
  EXPECT_EQ(DefaultBackend(), Backend::kCpu);
  EXPECT_TRUE(CheckBackend(Backend::kCpu, "x").ok());
  ExpectNotSupported(CheckBackend(Backend::kCuda, "x"));
}

TEST_F(KernelsNoDeviceTest, FactoriesReturnNotSupported) {
  ExpectNotSupported(DeviceBuffer::Allocate(4096));
  ExpectNotSupported(PinnedHostBuffer::Allocate(4096));
  std::vector<char> mem(8192);
  ExpectNotSupported(HostRegistration::Register(mem.data(), mem.size()));
  ExpectNotSupported(IpcMemMapping::Open(IpcMemHandle{}));
  ExpectNotSupported(GpuStream::Create());
  ExpectNotSupported(GpuEvent::Create(GpuEvent::Kind::kInterprocess));
  ExpectNotSupported(GpuEvent::OpenIpc(IpcEventHandle{}));
  ExpectNotSupported(SetDevice(0));
  ExpectNotSupported(DeviceSynchronize());
}

TEST_F(KernelsNoDeviceTest, CopiesReturnNotSupported) {
  std::vector<char> a(64, 1), b(64, 2);
  ExpectNotSupported(Copy(a.data(), b.data(), a.size(), CopyKind::kHostToDevice));
  ExpectNotSupported(CopyAsync(a.data(), b.data(), a.size(), CopyKind::kDefault, nullptr));
  ExpectNotSupported(MemsetAsync(a.data(), 0, a.size(), nullptr));
  EXPECT_EQ(a[0], 1);  // nothing was touched
}

TEST_F(KernelsNoDeviceTest, EmptyObjectsAreSafe) {
  // Default-constructed (never created) objects: methods fail, destructors are no-ops.
  GpuStream stream;
  GpuEvent event;
  EXPECT_FALSE(stream.Synchronize().ok());
  EXPECT_FALSE(event.Record(&stream).ok());
  EXPECT_FALSE(event.ExportIpc().ok());
  EXPECT_FALSE(GpuEvent::ElapsedMs(event, event).ok());
  DeviceBuffer buf;
  EXPECT_EQ(buf.data(), nullptr);
  EXPECT_FALSE(buf.ExportIpc().ok());
  DeviceBuffer moved = std::move(buf);
  EXPECT_EQ(moved.size(), 0u);
}

TEST_F(KernelsNoDeviceTest, CudaKernelsReturnNotSupported) {
  std::vector<char> a(64, 1), b(64, 2);
  const void* src[] = {a.data()};
  void* dst[] = {b.data()};
  ExpectNotSupported(Gather(Backend::kCuda, {src, dst, 1, 64}));
  ExpectNotSupported(Scatter(Backend::kCuda, {src, dst, 1, 64}));
  EXPECT_EQ(b[0], 2);
}

TEST(KernelsRuntimeTest, CompiledInMatchesBuild) {
#ifdef TIERKV_WITH_CUDA
  EXPECT_TRUE(CudaCompiledIn());
#else
  EXPECT_FALSE(CudaCompiledIn());
  EXPECT_EQ(GpuCount(), 0);
#endif
}

TEST(KernelsRuntimeTest, BackendNames) {
  EXPECT_EQ(BackendName(Backend::kCpu), "cpu");
  EXPECT_EQ(BackendName(Backend::kCuda), "cuda");
}

}  // namespace
}  // namespace tierkv::kernels
