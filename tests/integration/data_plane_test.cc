// Integration: put/get/retrieve/prefix over the shared-memory data plane of the real
// tierkvd, many clients at once, and a client killed mid-step.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "common/checksum.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 2, kQHeads = 4, kKvHeads = 2, kHeadDim = 16, kBlockTokens = 16;
const ModelSpec kModel{kLayers, kQHeads, kKvHeads, kHeadDim, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB

// Block contents: small random keys/values, deterministic per (seq, layer, block).
std::vector<std::byte> MakeBlock(uint64_t seq, uint32_t layer, uint32_t block, float needle = 0.f) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer * 131 + block));
  std::normal_distribution<float> n(0.f, 0.1f);
  std::vector<float> f(kBlockBytes / 4);
  for (auto& x : f) x = n(rng);
  if (needle != 0.f) {
    // Every key of the block points along +1 in every dimension.
    for (size_t i = 0; i < size_t{kKvHeads} * kBlockTokens * kHeadDim; ++i) f[i] = needle;
  }
  std::vector<std::byte> b(kBlockBytes);
  std::memcpy(b.data(), f.data(), kBlockBytes);
  return b;
}

// The needle test's sequence 5, layer 1: 40 blocks, block 17 the needle.
constexpr uint32_t kNeedleBlocks = 40, kNeedle = 17;
std::vector<std::byte> NeedleBlock(uint32_t b) { return MakeBlock(5, 1, b, b == kNeedle ? 1.f : 0.f); }
void PutNeedleSequence(DataChannel& ch) {
  for (uint32_t b = 0; b < kNeedleBlocks; ++b) ASSERT_TRUE(ch.Put(5, 1, b, NeedleBlock(b)).ok());
}

class DataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    admin_ = Connect();
    NamespaceSpec spec;
    spec.name = "ns";
    spec.model = kModel;
    // Tiny tiers so that blocks move: 8 blocks of G, 16 of H, 256 of D.
    spec.budgets = {8 * 4096, 16 * 4096, 256 * 8192};
    ASSERT_TRUE(admin_->CreateNamespace(spec).ok());
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_.socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  std::unique_ptr<DataChannel> Channel(Client& c) {
    EXPECT_TRUE(c.Attach("ns").ok());
    auto ch = c.OpenChannel("ns", {.staging_bytes = 1 << 20});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }

  testing::TempDir dir_{"dataplane"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path()};
  std::unique_ptr<Client> admin_;
};

TEST_F(DataPlaneTest, PutGetAcrossAllTiers) {
  auto c = Connect();
  auto ch = Channel(*c);
  ASSERT_EQ(ch->block_bytes(), kBlockBytes);
  constexpr uint32_t kBlocks = 60;  // more than G + H: the rest goes to disk
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    std::vector<std::byte> all;
    for (uint32_t b = 0; b < kBlocks; ++b) {
      auto blk = MakeBlock(1, layer, b);
      all.insert(all.end(), blk.begin(), blk.end());
    }
    Status st = ch->Put(1, layer, 0, all);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t b = 0; b < kBlocks; ++b) {
      std::vector<std::byte> out(kBlockBytes);
      Status st = ch->Get(1, layer, b, out);
      ASSERT_TRUE(st.ok()) << st.ToString() << " block " << b;
      ASSERT_TRUE(out == MakeBlock(1, layer, b)) << "layer " << layer << " block " << b;
    }
  }
  auto usage = internal::Call(*admin_, {{"op", "usage"}, {"namespace", "ns"}});
  ASSERT_TRUE(usage.ok());
  const auto& ns = (*usage)["namespaces"][0];
  EXPECT_EQ(ns["blocks"], 2 * kBlocks);
  EXPECT_GT(ns["tiers"]["D"]["used_slots"].get<int>(), 0) << usage->dump();
  std::vector<std::byte> out(kBlockBytes);
  EXPECT_EQ(ch->Get(1, 0, 999, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(ch->Get(2, 0, 0, out).code(), StatusCode::kNotFound);
}

TEST_F(DataPlaneTest, RetrieveFindsTheNeedleAndPinsTheSelection) {
  auto c = Connect();
  auto ch = Channel(*c);
  PutNeedleSequence(*ch);
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto r = ch->Retrieve(5, 1, query, /*budget=*/6);  // 1 sink + 4 recent + 1 chosen
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->blocks.size(), 6u);
  std::vector<uint32_t> got;
  for (const auto& b : r->blocks) got.push_back(b.block);
  EXPECT_EQ(got, (std::vector<uint32_t>{0, kNeedle, 36, 37, 38, 39}));
  // The table points at the real bytes in the shared arenas.
  for (const auto& b : r->blocks) {
    auto bytes = ch->BlockBytes(b);
    ASSERT_EQ(bytes.size(), kBlockBytes);
    EXPECT_EQ(std::memcmp(bytes.data(), NeedleBlock(b.block).data(), kBlockBytes), 0)
        << "block " << b.block << " tier " << int(b.tier);
  }
  // Pinned blocks cannot be rewritten until released.
  EXPECT_EQ(ch->Put(5, 1, kNeedle, MakeBlock(9, 9, 9)).code(), StatusCode::kBusy);
  ASSERT_TRUE(ch->Release(r->lease).ok());
  EXPECT_EQ(ch->Release(r->lease).code(), StatusCode::kNotFound);
  EXPECT_EQ(ch->Release(12345).code(), StatusCode::kNotFound);
  // Free again (the migrator may pin it for a moment while it copies it down a tier).
  Status rewrite;
  for (int i = 0; i < 50 && !(rewrite = ch->Put(5, 1, kNeedle, MakeBlock(9, 9, 9))).ok(); ++i) usleep(10000);
  EXPECT_TRUE(rewrite.ok()) << rewrite.ToString();
  // Policies change the retriever at run time.
  ASSERT_TRUE(internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"retriever", "exact"}}}}).ok());
  EXPECT_EQ(ch->Retrieve(5, 7, query, 6).status().code(), StatusCode::kInvalidArgument);  // no layer 7
  EXPECT_EQ(ch->Retrieve(6, 1, query, 6).status().code(), StatusCode::kNotFound);      // no sequence 6
  std::vector<float> bad = query;
  bad[3] = NAN;
  EXPECT_EQ(ch->Retrieve(5, 1, bad, 6).status().code(), StatusCode::kInvalidArgument);
  auto exact = ch->Retrieve(5, 1, query, 6);
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  ASSERT_TRUE(ch->Release(exact->lease).ok());
}

// Acquire: a zero-copy Get. The refs point at the blocks' bytes, wherever they
// were (old blocks of this sequence sit on D and are brought in), pinned until
// Release; a range reaching past the sequence pins nothing.
TEST_F(DataPlaneTest, AcquirePinsARangeInPlace) {
  auto c = Connect();
  auto ch = Channel(*c);
  PutNeedleSequence(*ch);
  auto r = ch->Acquire(5, 1, 2, 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->blocks.size(), 4u);
  EXPECT_EQ(r->missing, 0u);
  for (uint32_t i = 0; i < 4; ++i) {
    const auto& b = r->blocks[i];
    EXPECT_EQ(b.block, 2 + i);
    std::vector<std::byte> got(kBlockBytes);
    ASSERT_TRUE(ch->CopyBlock(b, got).ok());
    EXPECT_TRUE(got == NeedleBlock(b.block)) << "block " << b.block << " tier " << int(b.tier);
  }
  EXPECT_EQ(ch->Put(5, 1, 3, MakeBlock(9, 9, 9)).code(), StatusCode::kBusy);  // pinned
  // The next read gives the previous lease back in the same round trip.
  auto next = ch->Acquire(5, 1, 6, 2, r->lease);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->blocks.size(), 2u);
  EXPECT_EQ(ch->Release(r->lease).code(), StatusCode::kNotFound);
  EXPECT_EQ(ch->Acquire(5, 1, 6, 2, r->lease).status().code(), StatusCode::kNotFound);  // not held: nothing pinned
  ASSERT_TRUE(ch->Release(next->lease).ok());
  // Past the end: NotFound, and block 38 stays writable (nothing was pinned).
  EXPECT_EQ(ch->Acquire(5, 1, 38, 4).status().code(), StatusCode::kNotFound);
  Status rewrite;
  for (int i = 0; i < 50 && !(rewrite = ch->Put(5, 1, 38, NeedleBlock(38))).ok(); ++i) usleep(10000);
  EXPECT_TRUE(rewrite.ok()) << rewrite.ToString();
  EXPECT_EQ(ch->Acquire(6, 1, 0, 1).status().code(), StatusCode::kNotFound);         // no sequence 6
  EXPECT_EQ(ch->Acquire(5, 7, 0, 1).status().code(), StatusCode::kInvalidArgument);  // no layer 7
  EXPECT_EQ(ch->Acquire(5, 1, 0, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ch->Acquire(5, 1, 0, (1 << 20) / 16 + 1).status().code(), StatusCode::kInvalidArgument);  // table > staging
  // Raw descriptors the library would not send: a range that wraps, a table area too small.
  dp::RingRequest raw{};
  raw.op = dp::Op::kAcquire;
  raw.seq = 5;
  raw.layer = 1;
  raw.block = UINT32_MAX;
  raw.count = 2;
  raw.length = 32;
  EXPECT_EQ(internal::Call(*ch, raw).status().code(), StatusCode::kInvalidArgument);
  raw.block = 0;
  raw.length = 16;
  EXPECT_EQ(internal::Call(*ch, raw).status().code(), StatusCode::kInvalidArgument);
}

// Without a GPU the GPU path of Retrieve runs emulated (DESIGN §2: the same code
// with the G tier in host memory): the same client calls and descriptors, the
// exchange buffer a memfd, host pointers for the query and the table.
TEST_F(DataPlaneTest, TheGpuPathRunsEmulatedWithoutAGpu) {
  if (kernels::GpuCount() > 0) GTEST_SKIP() << "a GPU is present: tests/gpu covers the device GPU path";
  auto c = Connect();
  auto host = Channel(*c);
  PutNeedleSequence(*host);
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto want = host->Retrieve(5, 1, query, 6);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_TRUE(host->Release(want->lease).ok());

  auto opened = c->OpenChannel("ns", {.gpu = true, .gpu_exchange_bytes = 8192});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  DataChannel& gpu = **opened;
  ASSERT_TRUE(gpu.gpu_path_emulated());
  for (int step = 0; step < 2; ++step) {  // the second reuses the exchange
    ASSERT_TRUE(gpu.StartRetrieveOnGpu(5, 1, query.data(), query.size(), 6, nullptr).ok());
    auto r = gpu.FinishRetrieveOnGpu(nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->count, want->blocks.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r->table) % 16, 0u);
    for (uint32_t i = 0; i < r->count; ++i) {
      const dp::BlockTableEntry e = r->table[i];
      EXPECT_EQ(e.block, want->blocks[i].block);
      auto bytes = gpu.BlockBytes({e.block, e.tier, e.offset});
      ASSERT_EQ(bytes.size(), kBlockBytes);
      EXPECT_EQ(std::memcmp(bytes.data(), NeedleBlock(e.block).data(), kBlockBytes), 0) << "block " << e.block;
    }
    ASSERT_TRUE(gpu.Release(r->lease).ok());
  }
  // Misuse: a table larger than the exchange, finishing nothing, two in flight.
  EXPECT_EQ(gpu.StartRetrieveOnGpu(5, 1, query.data(), query.size(), 1000, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu.FinishRetrieveOnGpu(nullptr).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(gpu.StartRetrieveOnGpu(5, 1, query.data(), query.size(), 6, nullptr).ok());
  EXPECT_EQ(gpu.StartRetrieveOnGpu(5, 1, query.data(), query.size(), 6, nullptr).code(), StatusCode::kInvalidArgument);
  auto r = gpu.FinishRetrieveOnGpu(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(gpu.Release(r->lease).ok());
  // An error completion (no such sequence), then a good step.
  ASSERT_TRUE(gpu.StartRetrieveOnGpu(99, 1, query.data(), query.size(), 6, nullptr).ok());
  EXPECT_EQ(gpu.FinishRetrieveOnGpu(nullptr).status().code(), StatusCode::kNotFound);
  // A raw descriptor naming a range outside the exchange buffer.
  dp::RingRequest raw{};
  raw.op = dp::Op::kRetrieve;
  raw.flags = dp::kFlagGpu;
  raw.seq = 5;
  raw.layer = 1;
  raw.count = 1;
  raw.offset = 8192 - 64;
  raw.length = 4096;
  EXPECT_EQ(internal::Call(gpu, raw).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(gpu.StartRetrieveOnGpu(5, 1, query.data(), query.size(), 6, nullptr).ok());
  r = gpu.FinishRetrieveOnGpu(nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->count, 6u);
  ASSERT_TRUE(gpu.Release(r->lease).ok());
  const std::string m = testing::HttpGet(admin_->Stats()->metrics_url);
  EXPECT_EQ(testing::MetricValue(m, "tierkv_retrieval_gpu_steps_total", {"namespace=\"ns\""}), 4);
}

// The daemon's checks of open_channel's GPU fields, and of the GPU flag on a host
// channel, for clients that skip the library's.
TEST_F(DataPlaneTest, GpuRequestsTheDaemonCannotServeAreRefused) {
  if (kernels::GpuCount() > 0) GTEST_SKIP() << "a GPU is present: tests/gpu covers the device GPU path";
  auto c = Connect();
  ASSERT_TRUE(c->Attach("ns").ok());
  auto bad_hex = internal::Call(*c, {{"op", "open_channel"}, {"namespace", "ns"}, {"gpu_worker_event", "not hex"}});
  EXPECT_EQ(bad_hex.status().code(), StatusCode::kInvalidArgument) << bad_hex.status().ToString();
  auto bad_flag = internal::Call(*c, {{"op", "open_channel"}, {"namespace", "ns"}, {"gpu", "yes"}});
  EXPECT_EQ(bad_flag.status().code(), StatusCode::kInvalidArgument) << bad_flag.status().ToString();
  auto zero = internal::Call(*c, {{"op", "open_channel"}, {"namespace", "ns"}, {"gpu", true}, {"gpu_exchange_bytes", 0}});
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument) << zero.status().ToString();
  // A worker with a GPU against a daemon without one.
  auto no_gpu = internal::Call(*c, {{"op", "open_channel"}, {"namespace", "ns"}, {"gpu_worker_event", std::string(128, '0')}});
  EXPECT_EQ(no_gpu.status().code(), StatusCode::kNotSupported);
  EXPECT_NE(no_gpu.status().message().find("emulated"), std::string::npos) << no_gpu.status().ToString();
  // A GPU retrieve on a host channel, and the GPU flag on another op.
  auto ch = c->OpenChannel("ns", {.staging_bytes = 1 << 20});
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  ASSERT_TRUE((*ch)->Put(3, 0, 0, MakeBlock(3, 0, 0)).ok());
  dp::RingRequest req{};
  req.op = dp::Op::kRetrieve;
  req.flags = dp::kFlagGpu;
  req.seq = 3;
  req.count = 1;
  req.offset = 1ull << 40;  // names the (absent) exchange buffer, not staging
  req.length = 4096;
  auto retrieve = internal::Call(**ch, req);
  EXPECT_EQ(retrieve.status().code(), StatusCode::kNotSupported) << retrieve.status().ToString();
  req.op = dp::Op::kGet;
  req.offset = 0;
  req.length = kBlockBytes;
  EXPECT_EQ(internal::Call(**ch, req).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*ch)->StartRetrieveOnGpu(3, 0, nullptr, 64, 1, nullptr).code(), StatusCode::kInvalidArgument);
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto host = (*ch)->Retrieve(3, 0, query, 1);
  ASSERT_TRUE(host.ok()) << host.status().ToString();
  EXPECT_TRUE((*ch)->Release(host->lease).ok());
}

// Any index/ retriever serves Retrieve: built over the keys read back, rebuilt only
// when unindexed blocks would leave the recent window.
TEST_F(DataPlaneTest, IndexRetrieversServeRetrieve) {
  auto c = Connect();
  auto ch = Channel(*c);
  constexpr uint32_t kBlocks = 40, kIndexNeedle = 11;
  for (uint32_t b = 0; b < kBlocks; ++b) {
    ASSERT_TRUE(ch->Put(8, 0, b, MakeBlock(8, 0, b, b == kIndexNeedle ? 1.f : 0.f)).ok());
  }
  std::vector<float> query(size_t{kQHeads} * kHeadDim, 1.f);
  auto bad = internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"retriever", "vq:bogus=1"}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("retriever"), std::string::npos) << bad.status().ToString();
  for (const char* spec : {"mean:r=2", "sentence", "spann:eps2=0.2"}) {
    auto set = internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"retriever", spec}}}});
    ASSERT_TRUE(set.ok()) << spec << ": " << set.status().ToString();
    auto r = ch->Retrieve(8, 0, query, 6);
    ASSERT_TRUE(r.ok()) << spec << ": " << r.status().ToString();
    std::vector<uint32_t> got;
    for (const auto& b : r->blocks) got.push_back(b.block);
    EXPECT_EQ(got.size(), 6u) << spec;
    EXPECT_NE(std::find(got.begin(), got.end(), 39u), got.end()) << spec << ": recent block missing";
    if (std::string(spec) != "sentence") {  // span means may dilute a needle by design (docs/retrieval-eval.md)
      EXPECT_NE(std::find(got.begin(), got.end(), kIndexNeedle), got.end()) << spec << ": needle missing";
    }
    ASSERT_TRUE(ch->Release(r->lease).ok());
  }
  // New blocks within the recent window are served without a rebuild, and selected.
  ASSERT_TRUE(ch->Put(8, 0, kBlocks, MakeBlock(8, 0, kBlocks)).ok());
  auto r = ch->Retrieve(8, 0, query, 6);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks.back().block, kBlocks);
  ASSERT_TRUE(ch->Release(r->lease).ok());
}

TEST_F(DataPlaneTest, MalformedDescriptorsAreRefusedAndTheClientCarriesOn) {
  auto c = Connect();
  auto ch = Channel(*c);
  auto expect = [&](dp::RingRequest req, StatusCode code, dp::Detail detail) {
    ASSERT_TRUE(internal::Submit(*ch, req).ok());
    auto comp = internal::WaitCompletion(*ch);
    ASSERT_TRUE(comp.ok());
    EXPECT_EQ(comp->status, static_cast<uint8_t>(code)) << int(req.op);
    EXPECT_EQ(comp->detail, static_cast<uint8_t>(detail)) << dp::DetailName(static_cast<dp::Detail>(comp->detail));
  };
  using dp::Op;
  expect({.op = Op::kPut, .layer = 2, .count = 1, .length = kBlockBytes}, StatusCode::kInvalidArgument, dp::Detail::kLayer);
  expect({.op = Op::kPut, .count = 1, .length = kBlockBytes - 1}, StatusCode::kInvalidArgument, dp::Detail::kLength);
  expect({.op = Op::kPut, .count = 0, .length = 0}, StatusCode::kInvalidArgument, dp::Detail::kCount);
  expect({.op = Op::kPut, .block = 0xFFFFFFF0u, .count = 1, .length = kBlockBytes}, StatusCode::kInvalidArgument,
         dp::Detail::kBlock);
  expect({.op = Op::kPut, .flags = dp::kFlagPrefixBlock, .count = 2, .length = 2 * kBlockBytes},
         StatusCode::kInvalidArgument, dp::Detail::kFlags);
  expect({.op = Op::kPut, .flags = 0x80, .count = 1, .length = kBlockBytes}, StatusCode::kInvalidArgument,
         dp::Detail::kFlags);
  expect({.op = Op::kGet, .count = 1, .length = kBlockBytes}, StatusCode::kNotFound, dp::Detail::kNotFound);
  expect({.op = Op::kRetrieve, .count = 4, .length = 8}, StatusCode::kInvalidArgument, dp::Detail::kQuery);
  expect({.op = Op::kRelease, .arg = 77}, StatusCode::kNotFound, dp::Detail::kLease);
  expect({.op = Op::kLookupPrefix, .count = 10, .length = 3}, StatusCode::kInvalidArgument, dp::Detail::kLength);
  EXPECT_TRUE(ch->Put(1, 0, 0, MakeBlock(1, 0, 0)).ok());
  EXPECT_TRUE(c->Ping().ok());
}

TEST_F(DataPlaneTest, PrefixBlocksAreSharedAcrossClients) {
  std::vector<int32_t> tokens(3 * kBlockTokens + 5);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 31 % 512);
  const auto hashes = PrefixBlockHashes(tokens, kBlockTokens);
  ASSERT_EQ(hashes.size(), 3u);
  auto a = Connect();
  auto cha = Channel(*a);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t b = 0; b < 3; ++b) ASSERT_TRUE(cha->Put(10, layer, b, MakeBlock(10, layer, b), hashes[b]).ok());
  }
  auto b = Connect();
  auto chb = Channel(*b);
  auto cached = chb->LookupPrefix(tokens);
  ASSERT_TRUE(cached.ok()) << cached.status().ToString();
  EXPECT_EQ(*cached, 3 * kBlockTokens);
  std::vector<int32_t> other = tokens;
  other[kBlockTokens + 3] += 1;  // differs in the second block
  EXPECT_EQ(*chb->LookupPrefix(other), kBlockTokens);
  auto loaded = chb->LoadPrefix(11, tokens);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, 3 * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  ASSERT_TRUE(chb->Get(11, 1, 2, out).ok());
  EXPECT_TRUE(out == MakeBlock(10, 1, 2));
  // The first sequence closes; the prefix stays for the second one.
  ASSERT_TRUE(cha->CloseSequence(10).ok());
  ASSERT_TRUE(chb->Get(11, 0, 0, out).ok());
  EXPECT_TRUE(out == MakeBlock(10, 0, 0));
  EXPECT_EQ(cha->CloseSequence(10).code(), StatusCode::kNotFound);
}

// Several processes put and read their own sequences at once; one is killed while
// it holds a lease, and its lease is released.
TEST_F(DataPlaneTest, ManyClientsAndADeadOne) {
  constexpr int kClients = 4;
  std::vector<pid_t> pids;
  for (int i = 0; i < kClients; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      auto c = Client::Connect(daemon_.socket_path());
      if (!c.ok() || !(*c)->Attach("ns").ok()) _exit(1);
      auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 18});
      if (!ch.ok()) _exit(2);
      const uint64_t seq = 100 + i;
      for (int round = 0; round < 3; ++round) {
        for (uint32_t b = 0; b < 12; ++b) {
          if (!(*ch)->Put(seq, round % kLayers, b, MakeBlock(seq, round % kLayers, b)).ok()) _exit(3);
        }
        for (uint32_t b = 0; b < 12; ++b) {
          std::vector<std::byte> out(kBlockBytes);
          Status st = (*ch)->Get(seq, round % kLayers, b, out);
          if (!st.ok() || out != MakeBlock(seq, round % kLayers, b)) {
            std::fprintf(stderr, "client %d round %d block %u: %s\n", i, round, b,
                         st.ok() ? "wrong bytes" : st.ToString().c_str());
            _exit(4);
          }
        }
      }
      std::vector<float> q(size_t{kQHeads} * kHeadDim, 0.5f);
      auto r = (*ch)->Retrieve(seq, 0, q, 8);
      if (!r.ok()) _exit(5);
      if (i == kClients - 1) kill(getpid(), SIGKILL);  // dies holding its lease
      if (!(*ch)->Release(r->lease).ok()) _exit(6);
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (int i = 0; i < kClients; ++i) {
    int status = 0;
    waitpid(pids[i], &status, 0);
    if (i == kClients - 1) {
      EXPECT_TRUE(WIFSIGNALED(status));
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "client " << i << " step " << WEXITSTATUS(status);
    }
  }
  // The dead client's pinned blocks are free again: its sequence can be rewritten.
  auto c = Connect();
  auto ch = Channel(*c);
  Status st;
  for (int i = 0; i < 100; ++i) {
    st = ch->Put(100 + kClients - 1, 0, 0, MakeBlock(1, 1, 1));
    if (st.ok()) break;
    usleep(20000);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  auto clients = internal::Call(*admin_, {{"op", "clients"}});
  ASSERT_TRUE(clients.ok());
  EXPECT_EQ((*clients)["clients"].size(), 2u) << clients->dump();  // admin_ and c
}

TEST_F(DataPlaneTest, MetricsCountTheDataPlaneAndThePolicy) {
  auto c = Connect();
  auto ch = Channel(*c);
  for (uint32_t b = 0; b < 30; ++b) ASSERT_TRUE(ch->Put(3, 0, b, MakeBlock(3, 0, b)).ok());
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t b = 0; b < 30; ++b) ASSERT_TRUE(ch->Get(3, 0, b, out).ok());
  std::vector<float> q(size_t{kQHeads} * kHeadDim, 1.f);
  for (int i = 0; i < 3; ++i) {
    auto r = ch->Retrieve(3, 0, q, 8);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(ch->Release(r->lease).ok());
  }
  ASSERT_TRUE(internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"eviction", "lfu"}}}}).ok());
  const std::string m = testing::HttpGet(admin_->Stats()->metrics_url);
  using testing::MetricValue;
  const std::string ns = "namespace=\"ns\"";
  EXPECT_EQ(MetricValue(m, "tierkv_puts_total", {ns}), 30);
  EXPECT_EQ(MetricValue(m, "tierkv_gets_total", {ns}), 30);
  EXPECT_EQ(MetricValue(m, "tierkv_blocks", {ns}), 30);
  EXPECT_EQ(MetricValue(m, "tierkv_retrieval_steps_total", {ns}), 3);
  EXPECT_EQ(MetricValue(m, "tierkv_retrieval_selected_blocks_total", {ns}), 24);
  EXPECT_EQ(MetricValue(m, "tierkv_retrieval_scored_total", {ns, "device=\"cpu\""}) +
                MetricValue(m, "tierkv_retrieval_scored_total", {ns, "device=\"gpu\""}),
            3);  // minmax scores from summaries
  EXPECT_EQ(MetricValue(m, "tierkv_retrieval_gpu_steps_total", {ns}), 0);  // host channel
  EXPECT_GE(MetricValue(m, "tierkv_summary_device_bytes", {ns}), 0);
  EXPECT_GE(MetricValue(m, "tierkv_promotion_batches_total", {ns}), 0);     // exported (-1 when absent)
  EXPECT_EQ(MetricValue(m, "tierkv_retrieval_latency_seconds_count", {ns, "phase=\"total\""}), 3);
  EXPECT_EQ(MetricValue(m, "tierkv_tier_capacity_bytes", {ns, "tier=\"G\""}), 8 * 4096);
  const double g = MetricValue(m, "tierkv_tier_blocks", {ns, "tier=\"G\""});
  const double h = MetricValue(m, "tierkv_tier_blocks", {ns, "tier=\"H\""});
  const double d = MetricValue(m, "tierkv_tier_blocks", {ns, "tier=\"D\""});
  EXPECT_GE(g + h + d, 30) << m;  // D may also hold clean copies of blocks in memory
  EXPECT_GT(MetricValue(m, "tierkv_demotions_total", {ns, "from=\"G\""}), 0);
  EXPECT_EQ(MetricValue(m, "tierkv_policy_info", {ns, "eviction=\"lfu\""}), 1);
  EXPECT_EQ(MetricValue(m, "tierkv_policy", {ns, "field=\"recent_window\""}), 4);
  EXPECT_EQ(MetricValue(m, "tierkv_policy_changes_total", {ns}), 1);
  EXPECT_GT(MetricValue(m, "tierkv_channel_requests_total"), 60);
}

TEST_F(DataPlaneTest, TierkvctlChangesPoliciesThatSurviveARestart) {
  auto c = Connect();
  auto ch = Channel(*c);
  for (uint32_t b = 0; b < 8; ++b) ASSERT_TRUE(ch->Put(1, 0, b, MakeBlock(1, 0, b)).ok());
  auto ctl = [&](std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), {"--socket", daemon_.socket_path()});
    return testing::RunProgram(TIERKVCTL_PATH, args, out);
  };
  std::string out;
  ASSERT_EQ(ctl({"policy", "set", "ns", "gpu_high_watermark=0.5", "gpu_low_watermark=0.25", "eviction=score",
                 "retriever=mean", "sink_blocks=0", "recent_window=1"}, &out), 0) << out;
  EXPECT_NE(out.find("\"eviction\": \"score\""), std::string::npos) << out;
  // Refused: the old policy stays.
  EXPECT_NE(ctl({"policy", "set", "ns", "gpu_low_watermark=0.9"}, &out), 0);
  EXPECT_NE(out.find("gpu_low_watermark"), std::string::npos) << out;
  EXPECT_NE(ctl({"policy", "set", "ns", "colour=blue"}, &out), 0);
  ASSERT_EQ(ctl({"usage"}, &out), 0) << out;
  EXPECT_NE(out.find("ns"), std::string::npos);
  ASSERT_EQ(ctl({"clients"}, &out), 0) << out;
  EXPECT_NE(out.find("ns"), std::string::npos) << out;
  // The smaller G watermark shows in placement: G drains to its new low watermark.
  auto usage = [&] { return (*internal::Call(*admin_, {{"op", "usage"}, {"namespace", "ns"}}))["namespaces"][0]; };
  uint64_t g = 99;
  for (int i = 0; i < 100 && (g = usage()["tiers"]["G"]["used_slots"].get<uint64_t>()) > 2; ++i) usleep(10000);
  EXPECT_LE(g, 2u);
  ch.reset();
  c.reset();
  admin_.reset();
  ASSERT_EQ(daemon_.Stop(), 0);
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  ASSERT_EQ(ctl({"policy", "get", "ns"}, &out), 0) << out;
  EXPECT_NE(out.find("\"gpu_high_watermark\": 0.5"), std::string::npos) << out;
  EXPECT_NE(out.find("\"retriever\": \"mean\""), std::string::npos) << out;
}

}  // namespace
}  // namespace tierkv
