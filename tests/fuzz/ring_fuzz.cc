// Fuzz target over data-plane descriptors: every request goes through the same
// checks a channel worker applies (ProcessRequest) into a real namespace runtime
// (memfd G/H arenas, O_DIRECT D tier, RocksDB manifest).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "daemon/data_ops.h"
#include "fuzz_targets.h"
#include "tests/util/temp_dir.h"

namespace tierkv::fuzz {
namespace {

constexpr size_t kStaging = 64 << 10;

struct RingHarness {
  testing::TempDir dir{"fuzz-ring"};
  std::unique_ptr<storage::Manifest> manifest;
  std::unique_ptr<daemon::NamespaceRuntime> runtime;
  std::unique_ptr<daemon::NamespaceOps> ops;
  daemon::ChannelStats stats;
  std::vector<uint8_t> staging = std::vector<uint8_t>(kStaging);

  RingHarness() {
    Config config;
    config.daemon.data_dir = dir.path();
    config.storage.put_wait_ms = 1;  // full tiers answer at once
    manifest = std::move(storage::Manifest::Open(dir.Sub("manifest"))).value();
    daemon::NamespaceRecord rec;
    rec.id = 1;
    rec.spec.name = "fuzz";
    rec.spec.model = RingModel();
    rec.spec.budgets = {8 * 4096, 16 * 4096, 64 * 8192};
    auto rt = daemon::NamespaceRuntime::Open(rec, config, manifest.get());
    if (!rt.ok()) {
      std::fprintf(stderr, "fuzz harness: %s\n", rt.status().ToString().c_str());
      std::abort();
    }
    runtime = std::move(rt).value();
    ops = std::make_unique<daemon::NamespaceOps>(runtime.get(), daemon::NamespaceOps::Latency{});
  }
};

RingHarness& Harness() {
  static RingHarness* h = new RingHarness();
  return *h;
}
}  // namespace

ModelSpec RingModel() { return {2, 4, 2, 16, 16, DType::kF32}; }  // 4 KiB blocks

bool FuzzRing(const uint8_t* data, size_t size) {
  RingHarness& h = Harness();
  bool any_ok = false;
  // The input: a staging fill byte, then 64-byte descriptors.
  if (size > 0) std::memset(h.staging.data(), data[0], 4096);
  for (size_t off = 1; off + sizeof(dp::RingRequest) <= size; off += sizeof(dp::RingRequest)) {
    dp::RingRequest req;
    std::memcpy(&req, data + off, sizeof req);
    dp::RingCompletion c = daemon::ProcessRequest(req, h.staging, h.ops.get(), &h.stats);
    if (c.status > static_cast<uint8_t>(StatusCode::kInternal) || c.tag != req.tag) {
      std::fprintf(stderr, "fuzz invariant violated: bad completion\n");
      std::abort();
    }
    any_ok = any_ok || c.status == 0;
  }
  return any_ok;
}

std::vector<dp::RingRequest> RingSeeds() {
  const uint64_t bb = RingModel().BlockBytes();
  const uint32_t qbytes = 4 * 16 * 4;
  return {
      {.version = dp::kVersion, .op = dp::Op::kPut, .seq = 1, .layer = 0, .block = 0, .count = 2, .length = 2 * bb},
      {.version = dp::kVersion, .op = dp::Op::kPut, .seq = 1, .layer = 1, .block = 3, .count = 1, .length = bb},
      {.version = dp::kVersion, .op = dp::Op::kPut, .flags = dp::kFlagPrefixBlock, .seq = 2, .count = 1, .length = bb,
       .arg = 77},
      {.version = dp::kVersion, .op = dp::Op::kGet, .seq = 1, .layer = 0, .count = 1, .offset = 8192, .length = bb},
      {.version = dp::kVersion, .op = dp::Op::kRetrieve, .seq = 1, .layer = 0, .count = 4, .length = qbytes + 64},
      {.version = dp::kVersion, .op = dp::Op::kRelease, .arg = 1},
      {.version = dp::kVersion, .op = dp::Op::kCloseSequence, .seq = 1},
      {.version = dp::kVersion, .op = dp::Op::kLookupPrefix, .count = 32, .length = 128},
      {.version = dp::kVersion, .op = dp::Op::kLoadPrefix, .seq = 3, .count = 32, .length = 128},
      {.version = dp::kVersion, .op = dp::Op::kNoop},
      // Entries from the staging fill byte (mostly refused per entry), the table area at 1 KiB.
      {.version = dp::kVersion, .op = dp::Op::kRetrieveBatch, .layer = 0, .count = 2, .length = 4096, .arg = 1024},
      // Batched Acquire and Put (decision 0028): entries from the fill byte, the rest of 4 KiB as table/payload.
      {.version = dp::kVersion, .op = dp::Op::kAcquireBatch, .layer = 1, .count = 2, .length = 4096},
      {.version = dp::kVersion, .op = dp::Op::kPutBatch, .layer = 0, .count = 1, .length = 4096},
  };
}

dp::RingRequest MutateRequest(const dp::RingRequest& in, Mutator& m) {
  dp::RingRequest r = in;
  static const uint64_t kValues[] = {0, 1, 2, 3, 15, 16, 4095, 4096, 4097, 8192, 65535, 65536, 1u << 20,
                                     UINT32_MAX, UINT32_MAX - 1, uint64_t{1} << 32, UINT64_MAX, UINT64_MAX - 4095};
  const int edits = 1 + static_cast<int>(m.Next() % 3);
  for (int e = 0; e < edits; ++e) {
    const uint64_t v = m.Next() % 3 == 0 ? m.Next() : kValues[m.Next() % std::size(kValues)];
    switch (m.Next() % 11) {
      case 0: r.version = static_cast<uint16_t>(m.Next() % 4 ? dp::kVersion : v); break;
      case 1: r.op = static_cast<dp::Op>(m.Next() % (static_cast<uint16_t>(dp::kLastOp) + 2)); break;
      case 2: r.flags = static_cast<uint32_t>(m.Next() % 2 ? dp::kFlagPrefixBlock : v); break;
      case 3: r.seq = m.Next() % 2 ? m.Next() % 4 : v; break;
      case 4: r.layer = static_cast<uint32_t>(m.Next() % 2 ? m.Next() % 3 : v); break;
      case 5: r.block = static_cast<uint32_t>(m.Next() % 2 ? m.Next() % 40 : v); break;
      case 6: r.count = static_cast<uint32_t>(m.Next() % 2 ? m.Next() % 20 : v); break;
      case 7: r.offset = m.Next() % 2 ? (m.Next() % 16) * 4096 : v; break;
      case 8: r.length = m.Next() % 2 ? (m.Next() % 16) * 4096 : v; break;
      case 9: r.arg = m.Next() % 2 ? m.Next() % 8 : v; break;
      default: r.tag = m.Next(); break;
    }
  }
  return r;
}

}  // namespace tierkv::fuzz
