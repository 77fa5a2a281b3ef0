// tierkv_bench_retrieve: Retrieve round trip per layer on the CPU path — client
// posts a query, the daemon scores every block's summary, selects the top 10%
// (sinks and recent window included), pins the selection and returns the block
// table — at 32K and 128K tokens, for the min/max and mean-key retrievers.
#include <cstdio>
#include <random>
#include <string>

#include "bench/bench_util.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_retrieve [--contexts 32768,131072] [--steps N] [--json PATH]

Starts tierkvd beside this program, stores one layer of a sequence (32 q heads,
8 KV heads, head_dim 128, bf16, 32-token blocks: 128 KiB per block) for each
context length, then times N Retrieve round trips (budget 10% of the blocks) per
retriever (minmax, mean) and reports p50/p99 in microseconds, with the daemon's
own select/acquire split from its metrics.
)";
using namespace tierkv;
const ModelSpec kModel{1, 32, 8, 128, 32, DType::kBF16};

std::vector<uint32_t> ParseList(const std::string& s) {
  std::vector<uint32_t> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    v.push_back(static_cast<uint32_t>(std::stoul(s.substr(pos, comma - pos))));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<uint32_t> contexts = {32768, 131072};
  int steps = 200;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--contexts" && i + 1 < argc) contexts = ParseList(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  uint32_t max_blocks = 0;
  for (uint32_t c : contexts) max_blocks = std::max(max_blocks, c / kModel.block_tokens);
  const uint64_t bytes = uint64_t{max_blocks + 64} * 131072;
  testing::TempDir dir("bench-retrieve");
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path(), "log_level = \"warning\"\n",
                                "[storage]\ngpu_bytes = " + std::to_string(bytes / 2) +
                                    "\nhost_bytes = " + std::to_string(bytes) + "\ndisk_bytes = 0\n");
  if (!daemon.Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", daemon.Log().c_str()), 1;
  auto client = std::move(Client::Connect(daemon.socket_path())).value();
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = kModel;
  if (!client->CreateNamespace(spec).ok() || !client->Attach("bench").ok()) return 1;
  auto ch = std::move(client->OpenChannel("bench", {.staging_bytes = 16 << 20})).value();

  std::mt19937 rng(1);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<std::byte> block(kModel.BlockBytes());
  std::vector<float> query(size_t{kModel.num_q_heads} * kModel.head_dim);
  nlohmann::json doc{{"benchmark", "retrieve"}, {"steps", steps}};
  std::vector<std::vector<std::string>> rows;
  uint64_t seq = 0;
  for (uint32_t ctx : contexts) {
    const uint32_t blocks = ctx / kModel.block_tokens;
    ++seq;
    std::fprintf(stderr, "storing %u blocks (%u tokens)...\n", blocks, ctx);
    for (uint32_t b = 0; b < blocks; ++b) {
      auto* h = reinterpret_cast<uint16_t*>(block.data());
      for (size_t i = 0; i < block.size() / 2; ++i) h[i] = static_cast<uint16_t>(0x3c00 + (rng() & 0x3ff));  // ~[1,2)
      if (!ch->Put(seq, 0, b, block).ok()) return std::fprintf(stderr, "put failed\n"), 1;
    }
    for (const char* method : {"minmax", "mean"}) {
      if (!client->Call({{"op", "set_policy"}, {"namespace", "bench"}, {"policy", {{"retriever", method}}}}).ok()) {
        return 1;
      }
      std::vector<double> us;
      const uint32_t budget = std::max(1u, blocks / 10);
      for (int s = 0; s < steps + 10; ++s) {
        for (auto& q : query) q = n(rng);
        auto t0 = std::chrono::steady_clock::now();
        auto r = ch->Retrieve(seq, 0, query, budget);
        const double dt = bench::SecondsSince(t0) * 1e6;
        if (!r.ok()) return std::fprintf(stderr, "retrieve: %s\n", r.status().ToString().c_str()), 1;
        if (!ch->Release(r->lease).ok()) return 1;
        if (s >= 10) us.push_back(dt);
      }
      const double p50 = bench::Percentile(us, 50), p99 = bench::Percentile(us, 99);
      rows.push_back({std::to_string(ctx), method, std::to_string(budget), bench::Fmt(p50, 1), bench::Fmt(p99, 1)});
      doc["results"].push_back(
          {{"tokens", ctx}, {"retriever", method}, {"budget_blocks", budget}, {"p50_us", p50}, {"p99_us", p99}});
    }
    if (!ch->CloseSequence(seq).ok()) return 1;
  }
  std::printf("tierkv_bench_retrieve: Retrieve round trip per layer, CPU path, %d steps\n\n", steps);
  bench::PrintTable({"tokens", "retriever", "budget", "p50 us", "p99 us"}, rows);
  bench::WriteJson(json_path, doc);
  daemon.Stop();
  return 0;
}
