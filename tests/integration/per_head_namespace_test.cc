// Integration: a namespace of granularity head (docs/decisions/0023-per-head-namespaces.md)
// through a real tierkvd. Engines keep moving whole layer blocks (Put, Get, Append);
// the daemon stores one KV head's K and V per block and a Retrieve returns a run
// of entries per KV head. Checked: whole-block and appended bytes come back equal
// (also after a restart, from D), a Retrieve's and a RetrieveBatch's tables carry
// every head's run with the right bytes, the same bytes as a per-layer namespace
// holding the same blocks, and so does the GPU path's table (emulated without a GPU,
// through device memory and CUDA IPC on a GPU machine); specs that cannot work are
// refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>

#include "client/client_internal.h"
#include "kernels/gpu_runtime.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 2, kQHeads = 8, kKvHeads = 4, kHeadDim = 16, kBlockTokens = 4;
const ModelSpec kModel{kLayers, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
const size_t kRow = size_t{kBlockTokens} * kHeadDim;  // floats of one head's K (or V) in a block

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::span<const std::byte> Bytes(const std::vector<float>& v) { return std::as_bytes(std::span(v)); }

class PerHeadNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    Connect();
    for (const char* name : {"head", "layer"}) {
      NamespaceSpec spec;
      spec.name = name;
      spec.model = kModel;
      spec.granularity = std::string(name) == "head" ? Granularity::kKvHead : Granularity::kLayer;
      spec.budgets = {64 * kModel.BlockBytes(), 64 * kModel.BlockBytes(), 256 * kModel.BlockBytes()};
      auto r = client_->CreateNamespace(spec);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    auto p = client_->SetPolicy("head", R"({"write": "write-through", "sink_blocks": 1, "recent_window": 1})");
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    p = client_->SetPolicy("layer", R"({"sink_blocks": 1, "recent_window": 1})");
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    OpenChannels();
  }

  void Connect() {
    auto c = Client::Connect(daemon_.socket_path());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
  }
  void OpenChannels() {
    for (const char* name : {"head", "layer"}) ASSERT_TRUE(client_->Attach(name).ok());
    auto h = client_->OpenChannel("head", {.staging_bytes = 1 << 20});
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    head_ = std::move(h).value();
    auto l = client_->OpenChannel("layer", {.staging_bytes = 1 << 20});
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    layer_ = std::move(l).value();
  }

  // The K and V rows of KV head h of a layer block.
  static std::vector<float> HeadOf(const std::vector<float>& block, uint32_t h) {
    std::vector<float> out(2 * kRow);
    std::copy_n(block.data() + h * kRow, kRow, out.begin());
    std::copy_n(block.data() + (kKvHeads + h) * kRow, kRow, out.begin() + kRow);
    return out;
  }

  testing::TempDir dir_{"per-head"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> client_;
  std::unique_ptr<DataChannel> head_, layer_;
};

TEST_F(PerHeadNamespaceTest, WholeBlocksAndAppendsComeBackAsPutAlsoAfterARestart) {
  EXPECT_EQ(head_->table_heads(), kKvHeads);
  EXPECT_EQ(head_->block_bytes(), kModel.BlockBytes());
  EXPECT_EQ(head_->entry_bytes(), kModel.BlockBytes() / kKvHeads);
  EXPECT_EQ(layer_->table_heads(), 1u);
  std::mt19937 rng(3);
  const size_t floats = kModel.BlockBytes() / sizeof(float);
  const std::vector<float> blocks = Random(3 * floats, rng);  // layer 0, blocks 0..2, one put
  bool durable = false;
  ASSERT_TRUE(head_->Put(1, 0, 0, Bytes(blocks), 0, &durable).ok());
  EXPECT_TRUE(durable);
  // Layer 1 by appends of 3 and 7 tokens: [kv][tokens][d] K then V each time.
  std::vector<float> want(3 * floats, 0.f);  // 10 tokens: blocks 0 to 2 of layer 1, zero-padded
  uint64_t next = 0;
  for (uint32_t tokens : {3u, 7u}) {
    const std::vector<float> kv = Random(2 * kKvHeads * tokens * kHeadDim, rng);
    for (uint32_t t = 0; t < tokens; ++t) {
      const uint64_t pos = next + t, b = pos / kBlockTokens, o = pos % kBlockTokens;
      for (uint32_t s = 0; s < 2 * kKvHeads; ++s) {  // K heads then V heads
        std::copy_n(kv.data() + (size_t{s} * tokens + t) * kHeadDim, kHeadDim,
                    want.data() + b * floats + (size_t{s} * kBlockTokens + o) * kHeadDim);
      }
    }
    auto r = head_->Append(1, 1, next, tokens, Bytes(kv));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    next = *r;
  }
  EXPECT_EQ(next, 10u);
  auto gap = head_->Append(1, 1, 4, 1, Bytes(Random(2 * kKvHeads * kHeadDim, rng)));
  EXPECT_EQ(gap.status().code(), StatusCode::kInvalidArgument) << "an append must continue where the layer ends";

  auto check = [&](const char* when) {
    std::vector<float> got(3 * floats);
    ASSERT_TRUE(head_->Get(1, 0, 0, std::as_writable_bytes(std::span(got))).ok()) << when;
    EXPECT_EQ(got, blocks) << when;
    std::vector<float> appended(3 * floats);
    ASSERT_TRUE(head_->Get(1, 1, 0, std::as_writable_bytes(std::span(appended))).ok()) << when;
    EXPECT_EQ(appended, want) << when;
  };
  check("served");
  // Write-through: the blocks are on D; a restart recovers them under the stored layers.
  head_.reset();
  layer_.reset();
  client_.reset();
  EXPECT_EQ(daemon_.Stop(), 0);
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  Connect();
  OpenChannels();
  check("after a restart");
  std::vector<float> missing(floats);
  EXPECT_EQ(head_->Get(1, 0, 3, std::as_writable_bytes(std::span(missing))).code(), StatusCode::kNotFound);
}

TEST_F(PerHeadNamespaceTest, RetrieveAndBatchReturnARunPerHeadPointingAtThatHeadsBytes) {
  std::mt19937 rng(5);
  const size_t floats = kModel.BlockBytes() / sizeof(float);
  constexpr uint32_t kBlocks = 12, kBudget = 4;
  std::vector<std::vector<float>> blocks;
  for (uint64_t seq : {1, 2}) {
    for (uint32_t b = 0; b < kBlocks; ++b) {
      blocks.push_back(Random(floats, rng));
      ASSERT_TRUE(head_->Put(seq, 0, b, Bytes(blocks.back())).ok());
      ASSERT_TRUE(layer_->Put(seq, 0, b, Bytes(blocks.back())).ok());
    }
  }
  auto block_of = [&](uint64_t seq, uint32_t b) -> const std::vector<float>& { return blocks[(seq - 1) * kBlocks + b]; };
  auto check_run = [&](uint64_t seq, const std::vector<DataChannel::BlockRef>& refs) {
    std::vector<uint32_t> per_head(kKvHeads, 0);
    for (size_t i = 0; i < refs.size(); ++i) {
      const auto& r = refs[i];
      ASSERT_LT(r.head, kKvHeads);
      if (i > 0) {
        EXPECT_TRUE(refs[i - 1].head < r.head || (refs[i - 1].head == r.head && refs[i - 1].block < r.block))
            << "head by head, ascending within a head";
      }
      ++per_head[r.head];
      const std::vector<float> want = HeadOf(block_of(seq, r.block), r.head);
      std::vector<float> got(want.size());  // G may be a real GPU: copy wherever the entry lies
      ASSERT_TRUE(head_->CopyBlock(r, std::as_writable_bytes(std::span(got))).ok());
      EXPECT_EQ(got, want) << "block " << r.block << " head " << r.head;
    }
    for (uint32_t h = 0; h < kKvHeads; ++h) EXPECT_EQ(per_head[h], kBudget) << "head " << h;
  };
  const std::vector<float> q = Random(size_t{kQHeads} * kHeadDim, rng);
  const std::string metrics = client_->Stats()->metrics_url;
  auto steps = [&] {
    return testing::MetricValue(testing::HttpGet(metrics), "tierkv_retrieval_steps_total", {"namespace=\"head\""});
  };
  const double steps0 = steps();
  auto r = head_->Retrieve(1, 0, q, kBudget);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->blocks.size(), size_t{kBudget} * kKvHeads);
  EXPECT_EQ(steps() - steps0, 1) << "one Retrieve is one step, whatever its heads";
  check_run(1, r->blocks);
  // The sink and the recent window are kept for every head.
  for (uint32_t h = 0; h < kKvHeads; ++h) {
    const auto first = r->blocks[h * kBudget], last = r->blocks[h * kBudget + kBudget - 1];
    EXPECT_EQ(first.block, 0u);
    EXPECT_EQ(last.block, kBlocks - 1);
  }
  // A per-layer namespace over the same blocks: one run, whole blocks.
  auto l = layer_->Retrieve(1, 0, q, kBudget);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->blocks.size(), kBudget);
  for (const auto& b : l->blocks) EXPECT_EQ(b.head, 0u);
  EXPECT_TRUE(layer_->Release(l->lease).ok());
  // The pins hold until the (one) lease is released, then every head's are gone.
  EXPECT_TRUE(head_->Release(r->lease).ok());
  EXPECT_EQ(head_->Release(r->lease).code(), StatusCode::kNotFound);

  const std::vector<float> q2 = Random(size_t{kQHeads} * kHeadDim, rng);
  std::vector<DataChannel::BatchItem> items = {{1, q, kBudget, 0}, {2, q2, kBudget, 0}, {9, q2, kBudget, 0}};
  auto batch = head_->RetrieveBatch(0, items);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->served, 2u);
  check_run(1, batch->results[0].blocks);
  check_run(2, batch->results[1].blocks);
  EXPECT_EQ(batch->results[2].status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(head_->Release(batch->lease).ok());
  // Acquire (a zero-copy Get) pins a run per head too: count entries per head.
  auto a = head_->Acquire(2, 0, 3, 5);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->blocks.size(), size_t{5} * kKvHeads);
  for (size_t i = 0; i < a->blocks.size(); ++i) {
    const auto& ref = a->blocks[i];
    EXPECT_EQ(ref.head, i / 5);
    EXPECT_EQ(ref.block, 3 + i % 5);
    std::vector<float> got(2 * kRow);
    ASSERT_TRUE(head_->CopyBlock(ref, std::as_writable_bytes(std::span(got))).ok());
    EXPECT_EQ(got, HeadOf(block_of(2, ref.block), ref.head)) << "block " << ref.block << " head " << ref.head;
  }
  EXPECT_TRUE(head_->Release(a->lease).ok());
  // A staging area too small for every head's run is refused before anything is sent.
  auto big = head_->Retrieve(1, 0, q, (1 << 20) / sizeof(BlockTableEntry) / kKvHeads + 1);
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PerHeadNamespaceTest, TheGpuPathsTableIsTheHostPathsRunPerHead) {
  std::mt19937 rng(11);
  constexpr uint32_t kBlocks = 12, kBudget = 4;
  std::vector<std::vector<float>> blocks;
  for (uint32_t b = 0; b < kBlocks; ++b) {
    blocks.push_back(Random(kModel.BlockBytes() / sizeof(float), rng));
    ASSERT_TRUE(head_->Put(1, 0, b, Bytes(blocks.back())).ok());
  }
  const std::vector<float> q = Random(size_t{kQHeads} * kHeadDim, rng);
  auto want = head_->Retrieve(1, 0, q, kBudget);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_TRUE(head_->Release(want->lease).ok());

  auto opened = client_->OpenChannel("head", {.staging_bytes = 1 << 16, .gpu = true});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  DataChannel& gpu = **opened;
  const bool real = !gpu.gpu_path_emulated();
  // The query lives where the engine's would: device memory on a real GPU.
  const float* query = q.data();
  kernels::DeviceBuffer device_query;
  if (real) {
    auto buf = kernels::DeviceBuffer::Allocate(q.size() * sizeof(float));
    ASSERT_TRUE(buf.ok()) << buf.status().ToString();
    device_query = std::move(buf).value();
    ASSERT_TRUE(kernels::Copy(device_query.data(), q.data(), q.size() * sizeof(float),
                              kernels::CopyKind::kHostToDevice).ok());
    query = static_cast<const float*>(device_query.data());
  }
  ASSERT_TRUE(gpu.StartRetrieveOnGpu(1, 0, query, q.size(), kBudget, nullptr).ok());
  auto r = gpu.FinishRetrieveOnGpu(nullptr);  // the legacy default stream waits for the table
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->count, size_t{kBudget} * kKvHeads);
  std::vector<BlockTableEntry> table(r->count);
  if (real) {
    ASSERT_TRUE(kernels::Copy(table.data(), r->table, table.size() * sizeof(BlockTableEntry),
                              kernels::CopyKind::kDeviceToHost).ok());
  } else {
    std::copy_n(r->table, r->count, table.begin());
  }
  for (size_t i = 0; i < table.size(); ++i) {
    const BlockTableEntry& e = table[i];
    EXPECT_EQ(e.block, want->blocks[i].block) << "entry " << i;
    EXPECT_EQ(e.head, want->blocks[i].head) << "entry " << i;
    std::vector<float> got(2 * kRow);
    ASSERT_TRUE(gpu.CopyBlock({e.block, e.tier, e.offset, e.head}, std::as_writable_bytes(std::span(got))).ok());
    EXPECT_EQ(got, HeadOf(blocks[e.block], e.head)) << "block " << e.block << " head " << e.head;
  }
  EXPECT_TRUE(gpu.Release(r->lease).ok());
}

TEST_F(PerHeadNamespaceTest, SpecsThatCannotWorkAreRefused) {
  NamespaceSpec spec;
  spec.name = "head";
  spec.model = kModel;  // per layer: the name exists per head
  auto r = client_->CreateNamespace(spec);
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(r.status().message().find("granularity"), std::string::npos) << r.status().ToString();
  spec.name = "too-many";
  spec.granularity = Granularity::kKvHead;
  spec.model.num_layers = 300;  // 300 * 4 stored layers > ModelLimits::kMaxLayers
  r = client_->CreateNamespace(spec);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("granularity head"), std::string::npos) << r.status().ToString();
  auto bad = internal::Call(*client_, {{"op", "create_namespace"},
                                       {"namespace",
                                        {{"name", "x"},
                                         {"model", {{"num_layers", 1}, {"num_q_heads", 2}, {"num_kv_heads", 1},
                                                    {"head_dim", 8}, {"block_tokens", 4}, {"dtype", "f16"}}},
                                         {"granularity", "token"}}}});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv
