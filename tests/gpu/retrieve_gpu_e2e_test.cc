// The GPU data path of Retrieve end to end (DESIGN §5): this process is the
// inference worker, a real tierkvd is the daemon. The query goes in and the block
// table comes out through the channel's device exchange buffer, ordered by CUDA IPC
// events only; the worker's host thread never waits for its stream until the test
// reads the results back.
//
// The daemon binary: $TIERKVD when set (the device bundle), else the build's.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "tests/gpu/gpu_test_util.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using kernels::testing::ToDevice;

constexpr uint32_t kLayers = 2, kQHeads = 4, kKvHeads = 2, kHeadDim = 16, kBlockTokens = 16;
const ModelSpec kModel{kLayers, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();
constexpr uint32_t kBlocks = 40, kNeedle = 17, kBudget = 6;

std::vector<std::byte> MakeBlock(uint32_t block) {
  std::mt19937 rng(block + 1);
  std::normal_distribution<float> n(0.f, 0.1f);
  std::vector<float> f(kBlockBytes / 4);
  for (auto& x : f) x = n(rng);
  if (block == kNeedle) {
    for (size_t i = 0; i < size_t{kKvHeads} * kBlockTokens * kHeadDim; ++i) f[i] = 1.f;
  }
  std::vector<std::byte> b(kBlockBytes);
  std::memcpy(b.data(), f.data(), kBlockBytes);
  return b;
}

class RetrieveGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    client_ = std::move(Client::Connect(daemon_.socket_path())).value();
    NamespaceSpec spec;
    spec.name = "gpu";
    spec.model = kModel;
    spec.budgets = {64 * kBlockBytes, 64 * kBlockBytes, 256 * 8192};
    ASSERT_TRUE(client_->CreateNamespace(spec).ok());
    ASSERT_TRUE(client_->Attach("gpu").ok());
    host_ = std::move(client_->OpenChannel("gpu", {.staging_bytes = 1 << 20})).value();
    for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE(host_->Put(1, 0, b, MakeBlock(b)).ok());
  }

  // One GPU retrieval; returns the table as the worker's stream sees it.
  std::vector<dp::BlockTableEntry> RetrieveOnGpu(DataChannel& ch, DataChannel::GpuRetrieval* out) {
    std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
    auto dq = ToDevice(query);
    EXPECT_TRUE(dq.ok());
    auto stream = kernels::GpuStream::Create();
    EXPECT_TRUE(stream.ok());
    Status st = ch.StartRetrieveOnGpu(1, 0, static_cast<const float*>(dq->data()), query.size(), kBudget,
                                      stream->native());
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto r = ch.FinishRetrieveOnGpu(stream->native());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    *out = *r;
    std::vector<dp::BlockTableEntry> table(r->count);
    // Queued behind the wait on the daemon's event: sees the table the daemon wrote.
    EXPECT_TRUE(kernels::CopyAsync(table.data(), r->table, table.size() * sizeof table[0],
                                   kernels::CopyKind::kDeviceToHost, &*stream)
                    .ok());
    EXPECT_TRUE(stream->Synchronize().ok());
    return table;
  }

  testing::TempDir dir_{"retrieve-gpu"};
  testing::DaemonProcess daemon_{testing::DaemonBinary(TIERKVD_PATH), dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> host_;
};

TEST_F(RetrieveGpuTest, TableMatchesTheHostPathAndPointsAtTheBlocksOnG) {
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto want = host_->Retrieve(1, 0, query, kBudget);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_TRUE(host_->Release(want->lease).ok());
  auto gpu = client_->OpenChannel("gpu", {.gpu = true});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  ASSERT_NE((*gpu)->gpu_arena_device(), nullptr);
  const uint64_t arena_bytes = (*gpu)->gpu_arena_device_bytes();
  ASSERT_GE(arena_bytes, kBudget * kBlockBytes);
  DataChannel::GpuRetrieval r;
  std::vector<dp::BlockTableEntry> table = RetrieveOnGpu(**gpu, &r);
  ASSERT_EQ(table.size(), want->blocks.size());
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(table[i].block, want->blocks[i].block);
    ASSERT_EQ(table[i].tier, 0) << "wait mode brings every selected block to G";
    ASSERT_LE(table[i].offset + kBlockBytes, arena_bytes);
    std::vector<std::byte> bytes(kBlockBytes);
    ASSERT_OK(kernels::Copy(bytes.data(), static_cast<std::byte*>((*gpu)->gpu_arena_device()) + table[i].offset,
                            kBlockBytes, kernels::CopyKind::kDeviceToHost));
    EXPECT_TRUE(bytes == MakeBlock(table[i].block)) << "block " << table[i].block;
  }
  EXPECT_EQ(table[1].block, kNeedle);
  ASSERT_TRUE((*gpu)->Release(r.lease).ok());
  // A second retrieval on the same channel reuses the events and the buffer.
  table = RetrieveOnGpu(**gpu, &r);
  EXPECT_EQ(table.size(), size_t{kBudget});
  ASSERT_TRUE((*gpu)->Release(r.lease).ok());
}

TEST_F(RetrieveGpuTest, MisuseIsRefusedAndTheChannelGoesOn) {
  auto gpu = client_->OpenChannel("gpu", {.gpu = true, .gpu_exchange_bytes = 4096});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  auto dq = ToDevice(std::vector<float>(size_t{kQHeads} * kHeadDim, 1.f));
  ASSERT_TRUE(dq.ok());
  const auto* q = static_cast<const float*>(dq->data());
  // A table that does not fit the 4 KiB exchange buffer.
  EXPECT_EQ((*gpu)->StartRetrieveOnGpu(1, 0, q, kQHeads * kHeadDim, 1000, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*gpu)->FinishRetrieveOnGpu(nullptr).status().code(), StatusCode::kInvalidArgument);
  ASSERT_OK((*gpu)->StartRetrieveOnGpu(1, 0, q, kQHeads * kHeadDim, kBudget, nullptr));
  EXPECT_EQ((*gpu)->StartRetrieveOnGpu(1, 0, q, kQHeads * kHeadDim, kBudget, nullptr).code(),
            StatusCode::kInvalidArgument);  // one in flight
  auto r = (*gpu)->FinishRetrieveOnGpu(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE((*gpu)->Release(r->lease).ok());
  // Unknown sequence: an error completion, and the next retrieval works.
  ASSERT_OK((*gpu)->StartRetrieveOnGpu(99, 0, q, kQHeads * kHeadDim, kBudget, nullptr));
  EXPECT_EQ((*gpu)->FinishRetrieveOnGpu(nullptr).status().code(), StatusCode::kNotFound);
  ASSERT_OK((*gpu)->StartRetrieveOnGpu(1, 0, q, kQHeads * kHeadDim, kBudget, nullptr));
  r = (*gpu)->FinishRetrieveOnGpu(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->count, kBudget);
}

}  // namespace
}  // namespace tierkv
