// Gather/Scatter: the CUDA kernel against the CPU reference on random data, with
// sources in mapped pinned host memory (zero-copy) and in device memory, sizes
// that are and are not multiples of 16 bytes and of the 16 KiB tile, misaligned
// addresses, and poisoned gaps between destination blocks (catches overruns).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include <sys/mman.h>
#include <unistd.h>

#include "kernels/gather.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/unit/kernels_test_util.h"

namespace tierkv::kernels {
namespace {

using testing::FromDevice;
using testing::RandomBytes;

constexpr uint8_t kPoison = 0xA5;

enum class Where { kPinnedHost, kDevice };

// One memory region addressable by kernels, plus its host-visible mirror for the
// CPU reference.
struct Region {
  PinnedHostBuffer pinned;
  DeviceBuffer device;
  char* dev = nullptr;  // kernel address of byte 0
  std::vector<uint8_t> mirror;
};

Status MakeRegion(Where where, const std::vector<uint8_t>& init, Region* r) {
  r->mirror = init;
  if (where == Where::kPinnedHost) {
    ASSIGN_OR_RETURN(r->pinned, PinnedHostBuffer::Allocate(init.size()));
    std::memcpy(r->pinned.host(), init.data(), init.size());
    r->dev = static_cast<char*>(r->pinned.device());
  } else {
    ASSIGN_OR_RETURN(r->device, DeviceBuffer::Allocate(init.size()));
    RETURN_IF_ERROR(Copy(r->device.data(), init.data(), init.size(), CopyKind::kHostToDevice));
    r->dev = static_cast<char*>(r->device.data());
  }
  return OkStatus();
}

Result<std::vector<uint8_t>> ReadRegion(Where where, const Region& r) {
  RETURN_IF_ERROR(DeviceSynchronize());
  std::vector<uint8_t> out(r.mirror.size());
  if (where == Where::kPinnedHost) {
    std::memcpy(out.data(), r.pinned.host(), out.size());
  } else {
    RETURN_IF_ERROR(Copy(out.data(), r.device.data(), out.size(), CopyKind::kDeviceToHost));
  }
  return out;
}

struct Case {
  size_t block_bytes;
  uint32_t n;
  size_t src_misalign, dst_misalign;
  Where src_where, dst_where;
  bool arrays_on_device;  // pointer arrays in device memory instead of pinned host
};

// Runs one case through kCuda and kCpu and compares the whole destination region.
void RunCase(const Case& c, std::mt19937_64& rng, bool scatter) {
  SCOPED_TRACE(::testing::Message() << "block_bytes=" << c.block_bytes << " n=" << c.n << " src_misalign="
                                    << c.src_misalign << " dst_misalign=" << c.dst_misalign << " src_pinned="
                                    << (c.src_where == Where::kPinnedHost) << " dst_pinned="
                                    << (c.dst_where == Where::kPinnedHost) << " arrays_on_device="
                                    << c.arrays_on_device);
  const size_t stride = c.block_bytes + 64 + 16;  // gaps of >= 64 poisoned bytes
  const size_t region_bytes = 64 + size_t{c.n} * stride + 64;
  Region src, dst;
  ASSERT_OK(MakeRegion(c.src_where, RandomBytes(rng, region_bytes), &src));
  ASSERT_OK(MakeRegion(c.dst_where, std::vector<uint8_t>(region_bytes, kPoison), &dst));

  // Shuffled slots on both sides: block i reads slot sp[i] and writes slot dp[i].
  std::vector<uint32_t> sp(c.n), dp(c.n);
  for (uint32_t i = 0; i < c.n; ++i) sp[i] = dp[i] = i;
  std::shuffle(sp.begin(), sp.end(), rng);
  std::shuffle(dp.begin(), dp.end(), rng);
  std::vector<const void*> gpu_src(c.n), cpu_src(c.n);
  std::vector<void*> gpu_dst(c.n), cpu_dst(c.n);
  for (uint32_t i = 0; i < c.n; ++i) {
    const size_t so = 64 + sp[i] * stride + c.src_misalign, d_o = 64 + dp[i] * stride + c.dst_misalign;
    gpu_src[i] = src.dev + so;
    gpu_dst[i] = dst.dev + d_o;
    cpu_src[i] = src.mirror.data() + so;
    cpu_dst[i] = dst.mirror.data() + d_o;
  }
  // The pointer arrays must be device-accessible.
  const size_t arr_bytes = size_t{c.n} * sizeof(void*);
  PinnedHostBuffer pinned_arrays;
  DeviceBuffer device_arrays;
  const void* const* src_arr;
  void* const* dst_arr;
  if (c.arrays_on_device) {
    ASSERT_OK_AND_ASSIGN(device_arrays, DeviceBuffer::Allocate(2 * arr_bytes));
    ASSERT_OK(Copy(device_arrays.data(), gpu_src.data(), arr_bytes, CopyKind::kHostToDevice));
    ASSERT_OK(Copy(static_cast<char*>(device_arrays.data()) + arr_bytes, gpu_dst.data(), arr_bytes,
                   CopyKind::kHostToDevice));
    src_arr = static_cast<const void* const*>(device_arrays.data());
    dst_arr = reinterpret_cast<void* const*>(static_cast<char*>(device_arrays.data()) + arr_bytes);
  } else {
    ASSERT_OK_AND_ASSIGN(pinned_arrays, PinnedHostBuffer::Allocate(2 * arr_bytes));
    std::memcpy(pinned_arrays.host(), gpu_src.data(), arr_bytes);
    std::memcpy(static_cast<char*>(pinned_arrays.host()) + arr_bytes, gpu_dst.data(), arr_bytes);
    src_arr = static_cast<const void* const*>(pinned_arrays.device());
    dst_arr = reinterpret_cast<void* const*>(static_cast<char*>(pinned_arrays.device()) + arr_bytes);
  }
  ASSERT_OK_AND_ASSIGN(GpuStream stream, GpuStream::Create());
  const BlockCopyArgs gpu_args{src_arr, dst_arr, c.n, c.block_bytes};
  const BlockCopyArgs cpu_args{cpu_src.data(), cpu_dst.data(), c.n, c.block_bytes};
  if (scatter) {
    ASSERT_OK(Scatter(Backend::kCuda, gpu_args, &stream));
    ASSERT_OK(Scatter(Backend::kCpu, cpu_args));
  } else {
    ASSERT_OK(Gather(Backend::kCuda, gpu_args, &stream));
    ASSERT_OK(Gather(Backend::kCpu, cpu_args));
  }
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> got, ReadRegion(c.dst_where, dst));
  ASSERT_EQ(got.size(), dst.mirror.size());
  size_t first_diff = got.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != dst.mirror[i]) {
      first_diff = i;
      break;
    }
  }
  ASSERT_EQ(first_diff, got.size()) << "first differing byte at offset " << first_diff;
  // The source was not modified.
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> src_after, ReadRegion(c.src_where, src));
  ASSERT_TRUE(src_after == src.mirror);
}

TEST(GatherGpuTest, MatchesCpuAcrossSizesCountsAndAlignments) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(42);
  const size_t sizes[] = {1, 15, 16, 17, 100, 4096, 16383, 16384, 16385, 65536 + 7, 131072};
  const uint32_t counts[] = {1, 7, 300};
  const size_t misaligns[][2] = {{0, 0}, {8, 8}, {4, 12}, {1, 1}, {3, 0}};
  for (size_t bytes : sizes) {
    for (uint32_t n : counts) {
      for (const auto& m : misaligns) {
        RunCase({bytes, n, m[0], m[1], Where::kPinnedHost, Where::kDevice, false}, rng, false);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(GatherGpuTest, DeviceToDeviceAndDeviceResidentArrays) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(43);
  for (size_t bytes : {size_t{17}, size_t{16384}, size_t{(1 << 20) + 3}}) {
    RunCase({bytes, 5, 0, 0, Where::kDevice, Where::kDevice, true}, rng, false);
    RunCase({bytes, 5, 16, 2, Where::kPinnedHost, Where::kDevice, true}, rng, false);
    if (HasFatalFailure()) return;
  }
}

TEST(GatherGpuTest, LargeBlocksManyTiles) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(44);
  // 64 blocks of 1 MiB + 3 bytes: 65 tiles each, more tiles than the grid cap.
  RunCase({(size_t{1} << 20) + 3, 64, 0, 0, Where::kPinnedHost, Where::kDevice, false}, rng, false);
}

TEST(ScatterGpuTest, MatchesCpuIntoPinnedHost) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(45);
  for (size_t bytes : {size_t{1}, size_t{31}, size_t{4096}, size_t{16385}, size_t{131072}}) {
    for (uint32_t n : {1u, 64u}) {
      RunCase({bytes, n, 0, 0, Where::kDevice, Where::kPinnedHost, false}, rng, true);
      RunCase({bytes, n, 2, 6, Where::kDevice, Where::kPinnedHost, true}, rng, true);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(GatherGpuTest, NullEntriesAreSkippedOnDevice) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(46);
  const size_t bytes = 4096 + 1;
  std::vector<uint8_t> data = RandomBytes(rng, 2 * bytes);
  ASSERT_OK_AND_ASSIGN(PinnedHostBuffer src, PinnedHostBuffer::Allocate(2 * bytes));
  std::memcpy(src.host(), data.data(), data.size());
  ASSERT_OK_AND_ASSIGN(DeviceBuffer dst, testing::PoisonedDevice(2 * bytes, kPoison));
  ASSERT_OK_AND_ASSIGN(PinnedHostBuffer arrays, PinnedHostBuffer::Allocate(4 * sizeof(void*)));
  auto** a = static_cast<void**>(arrays.host());
  a[0] = static_cast<char*>(src.device());
  a[1] = nullptr;  // src of block 1
  a[2] = dst.data();
  a[3] = static_cast<char*>(dst.data()) + bytes;
  auto** dev = static_cast<void**>(arrays.device());
  ASSERT_OK(Gather(Backend::kCuda, {const_cast<const void* const*>(dev), dev + 2, 2, bytes}));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> got, FromDevice<uint8_t>(dst.data(), 2 * bytes));
  EXPECT_EQ(0, std::memcmp(got.data(), data.data(), bytes));
  EXPECT_TRUE(std::all_of(got.begin() + bytes, got.end(), [](uint8_t b) { return b == kPoison; }));
}

TEST(GatherGpuTest, PageableArraysAreRefused) {
  SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(DeviceBuffer a, DeviceBuffer::Allocate(64));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer b, DeviceBuffer::Allocate(64));
  std::vector<const void*> src = {a.data()};  // pageable host arrays: not device-accessible
  std::vector<void*> dst = {b.data()};
  EXPECT_EQ(Gather(Backend::kCuda, {src.data(), dst.data(), 1, 64}).code(), StatusCode::kInvalidArgument);
  // The context is still healthy.
  ASSERT_OK(DeviceSynchronize());
}

TEST(GpuRuntimeGpuTest, EventsStreamsAndIpcHandles) {
  SKIP_WITHOUT_GPU();
  ASSERT_OK(SetDevice(0));
  EXPECT_EQ(SetDevice(GpuCount()).code(), StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(GpuStream s, GpuStream::Create());
  ASSERT_OK_AND_ASSIGN(GpuEvent start, GpuEvent::Create(GpuEvent::Kind::kTiming));
  ASSERT_OK_AND_ASSIGN(GpuEvent end, GpuEvent::Create(GpuEvent::Kind::kTiming));
  ASSERT_OK_AND_ASSIGN(GpuEvent ipc, GpuEvent::Create(GpuEvent::Kind::kInterprocess));
  ASSERT_OK_AND_ASSIGN(DeviceBuffer buf, DeviceBuffer::Allocate(1 << 20));
  ASSERT_OK(start.Record(&s));
  ASSERT_OK(MemsetAsync(buf.data(), 1, buf.size(), &s));
  ASSERT_OK(end.Record(&s));
  ASSERT_OK(ipc.Record(&s));
  ASSERT_OK(end.Synchronize());
  ASSERT_OK_AND_ASSIGN(float ms, GpuEvent::ElapsedMs(start, end));
  EXPECT_GE(ms, 0.f);
  ASSERT_OK_AND_ASSIGN(bool done, ipc.Query());
  ASSERT_OK(ipc.Synchronize());
  (void)done;
  // Timing events cannot be exported; interprocess ones can (the handle is opaque).
  EXPECT_EQ(start.ExportIpc().status().code(), StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(IpcEventHandle eh, ipc.ExportIpc());
  ASSERT_OK_AND_ASSIGN(IpcMemHandle mh, buf.ExportIpc());
  EXPECT_NE(eh.bytes, IpcEventHandle{}.bytes);
  EXPECT_NE(mh.bytes, IpcMemHandle{}.bytes);
  // A second stream waits on the first one's event without blocking the host.
  ASSERT_OK_AND_ASSIGN(GpuStream s2, GpuStream::Create());
  ASSERT_OK(s2.Wait(ipc));
  ASSERT_OK(s2.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> got, FromDevice<uint8_t>(buf.data(), 16));
  EXPECT_EQ(got[0], 1);
}

TEST(GpuRuntimeGpuTest, HostRegistrationMapsExistingMemory) {
  SKIP_WITHOUT_GPU();
  // A memfd shared mapping, as the H tier shares with clients (DESIGN §2).
  const size_t bytes = 1 << 20;
  const int fd = memfd_create("tierkv-gpu-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, bytes), 0);
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(base, MAP_FAILED);
  std::mt19937_64 rng(47);
  std::vector<uint8_t> data = RandomBytes(rng, bytes);
  std::memcpy(base, data.data(), bytes);
  {
    ASSERT_OK_AND_ASSIGN(HostRegistration reg, HostRegistration::Register(base, bytes));
    ASSERT_NE(reg.device(), nullptr);
    ASSERT_OK_AND_ASSIGN(DeviceBuffer dst, DeviceBuffer::Allocate(bytes));
    ASSERT_OK_AND_ASSIGN(PinnedHostBuffer arrays, PinnedHostBuffer::Allocate(2 * sizeof(void*)));
    auto** a = static_cast<void**>(arrays.host());
    a[0] = reg.device();
    a[1] = dst.data();
    auto** dev = static_cast<void**>(arrays.device());
    ASSERT_OK(Gather(Backend::kCuda, {const_cast<const void* const*>(dev), dev + 1, 1, bytes}));
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> got, FromDevice<uint8_t>(dst.data(), bytes));
    EXPECT_TRUE(got == data);
    // Registering the same range twice fails cleanly.
    EXPECT_FALSE(HostRegistration::Register(base, bytes).ok());
  }
  {
    // Unregistered by the destructor: registering again works.
    ASSERT_OK_AND_ASSIGN(HostRegistration again, HostRegistration::Register(base, bytes));
  }
  munmap(base, bytes);
  close(fd);
}

TEST(GpuRuntimeGpuTest, ErrorsBecomeStatuses) {
  SKIP_WITHOUT_GPU();
  // An absurd allocation is refused with a Status, not a crash.
  auto r = DeviceBuffer::Allocate(size_t{1} << 60);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("cudaMalloc"), std::string::npos);
  // The runtime still works afterwards (the error was not sticky).
  ASSERT_OK_AND_ASSIGN(DeviceBuffer ok, DeviceBuffer::Allocate(4096));
  EXPECT_EQ(Copy(nullptr, ok.data(), 16, CopyKind::kDeviceToHost).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::kernels
