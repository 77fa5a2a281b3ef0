// Helpers for the GPU tests: skip without a device, move vectors to and from
// device memory, assert on Status/Result.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "kernels/gpu_runtime.h"

#define ASSERT_OK(expr)                                  \
  do {                                                   \
    const ::tierkv::Status _s = (expr);                  \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                              \
  auto TIERKV_CONCAT(_r_, __LINE__) = (expr);                                        \
  ASSERT_TRUE(TIERKV_CONCAT(_r_, __LINE__).ok())                                     \
      << #expr << ": " << TIERKV_CONCAT(_r_, __LINE__).status().ToString();          \
  lhs = std::move(TIERKV_CONCAT(_r_, __LINE__)).value()

#define SKIP_WITHOUT_GPU()                                                               \
  do {                                                                                   \
    if (::tierkv::kernels::GpuCount() == 0) GTEST_SKIP() << "no CUDA device: " << ::tierkv::kernels::DescribeGpus(); \
  } while (0)

namespace tierkv::kernels::testing {

// A device copy of `v` (at least one byte is allocated, so empty vectors work).
template <typename T>
Result<DeviceBuffer> ToDevice(const std::vector<T>& v) {
  ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(std::max<size_t>(1, v.size() * sizeof(T))));
  RETURN_IF_ERROR(Copy(b.data(), v.data(), v.size() * sizeof(T), CopyKind::kHostToDevice));
  return b;
}

inline Result<DeviceBuffer> ToDevice(const void* data, size_t bytes) {
  ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(std::max<size_t>(1, bytes)));
  RETURN_IF_ERROR(Copy(b.data(), data, bytes, CopyKind::kHostToDevice));
  return b;
}

// n elements of T read back from device memory at `ptr`.
template <typename T>
Result<std::vector<T>> FromDevice(const void* ptr, size_t n) {
  std::vector<T> v(n);
  RETURN_IF_ERROR(DeviceSynchronize());
  RETURN_IF_ERROR(Copy(v.data(), ptr, n * sizeof(T), CopyKind::kDeviceToHost));
  return v;
}

// A device buffer of `bytes` filled with `poison` bytes (to catch unwritten outputs).
inline Result<DeviceBuffer> PoisonedDevice(size_t bytes, int poison = 0x7f) {
  ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(std::max<size_t>(1, bytes)));
  RETURN_IF_ERROR(MemsetAsync(b.data(), poison, b.size(), nullptr));
  RETURN_IF_ERROR(DeviceSynchronize());
  return b;
}

}  // namespace tierkv::kernels::testing
