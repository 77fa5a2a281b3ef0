// tierkv_bench_retrieve: Retrieve round trip per layer (DESIGN §5) — the client
// posts a query, the daemon scores every block's summary, selects the top 10%
// (sinks and recent window included), pins the selection, brings misses to G (or
// defers them) and returns the block table — for the min/max and mean-key
// retrievers, with every block resident on G or with ~10% of them on H.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_retrieve_batch.h"
#include "bench/bench_util.h"
#include "kernels/gpu_runtime.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_retrieve [options]

Starts tierkvd ($TIERKVD, else the build's) beside this program for each context length and scenario, stores
one layer of a sequence (32 q heads, 8 KV heads, head_dim 128, bf16, 32-token
blocks: 128 KiB per block), then times Retrieve round trips (budget: 10% of the
blocks) per retriever (minmax, mean) and reports p50/p99 in microseconds.

Scenarios:
  resident  G holds every block
  wait10    G holds ~90% of the blocks (the rest on H), miss_mode wait: the
            misses of each selection are copied H->G before the reply
  defer10   the same placement, miss_mode defer: misses are served where
            they are (H) and promoted in the background
The off-G column is the share of selected blocks the table did not place on G.
The last four columns are the daemon's own mean time per call in each phase (from its
metrics: select = trigger + scoring + top-k, acquire = pinning and bringing misses
to G, gpu_query / gpu_table = the GPU path's exchange); the round trip minus them is
the rings, the client and, on the GPU path, the streams waiting on the events.

Options:
  --contexts LIST    tokens per sequence (default 32768,131072)
  --steps N          timed round trips per retriever (default 200)
  --scenarios LIST   subset of resident,wait10,defer10 (default all)
  --gpu              the GPU path: query and block table through the channel's
                     device exchange buffer, ordered by CUDA IPC events; the time
                     includes the worker stream passing the daemon's event.
                     Without a GPU the daemon emulates the exchange in host
                     memory ("gpu-emulated": the protocol's cost, no GPU work)
  --json PATH        write the results as JSON
  --help             this text

Batch and concurrency modes (issue 12; B or N sequences of the first context
length, 32768 tokens by default, prefix-shared payloads, own summaries and queries):
  --batch LIST       per-layer time of one batched Retrieve for B sequences vs B
                     separate Retrieves, for each B in LIST (e.g. 1,8,32,64); and
                     (retriever "acquire") one AcquireBatch of the budget's blocks vs
                     B Acquires
  --clients LIST     N client processes (forked) retrieving different sequences at
                     once: aggregate Retrieves/s vs one client (e.g. 1,2,4), the
                     daemon's CPU use; then a 4-block sequence's Retrieve alone
                     and beside another client's back-to-back long Retrieves
  --seconds S        per --clients point (default 4)
  --workers N        the daemon's retrieval.workers (default 0: one per core)
  (--steps: timed layers per --batch point, default 30 in that mode)
)";
using namespace tierkv;
const ModelSpec kModel{1, 32, 8, 128, 32, DType::kBF16};
// G oscillates between storage::Policy's default low (0.85) and high (0.95)
// watermarks once it is full: about 0.9 of its slots hold blocks.
constexpr double kGpuMeanFill = 0.9;
// "resident" sizes G so that every block stays below the high watermark (0.95):
// with G at blocks + 64 slots, 128K tokens (4096 blocks) passed it, the migrator
// kept ~10% of the blocks on H and the `mean` rows paid their moves back to G.
constexpr double kGpuHighWatermark = 0.95;

struct Scenario {
  std::string name;
  double g_share;  // of the blocks that fit G
  const char* miss_mode;
};
const Scenario kScenarios[] = {{"resident", 1.0, "wait"}, {"wait10", 0.9, "wait"}, {"defer10", 0.9, "defer"}};

struct Options {
  std::vector<uint64_t> contexts = {32768, 131072};
  int steps = 200;
  std::vector<std::string> scenarios = {"resident", "wait10", "defer10"};
  bool gpu = false;
  std::string json_path;
};

// The GPU path's per-step work: query to device, start, finish, wait for the stream.
// Emulated (no GPU here): the same calls with the query and the table in host memory.
struct GpuWorker {
  bool emulated = false;
  kernels::GpuStream stream;
  kernels::DeviceBuffer query;
};

struct Step {
  uint64_t lease = 0;
  uint32_t count = 0;     // table entries
  uint32_t missing = 0;   // selected, not resident (defer mode, blocks on D)
  uint32_t on_host = 0;   // table entries served from H (host path; GPU path: see OnHost)
  const dp::BlockTableEntry* device_table = nullptr;  // GPU path
};

Result<Step> RetrieveOnce(DataChannel& ch, GpuWorker* gpu, uint64_t seq, const std::vector<float>& query,
                          uint32_t budget) {
  if (!gpu) {
    ASSIGN_OR_RETURN(DataChannel::Retrieval r, ch.Retrieve(seq, 0, query, budget));
    Step step{r.lease, static_cast<uint32_t>(r.blocks.size()), r.missing, 0, nullptr};
    for (const auto& b : r.blocks) step.on_host += b.tier != 0;
    return step;
  }
  const float* q = gpu->emulated ? query.data() : static_cast<const float*>(gpu->query.data());
  RETURN_IF_ERROR(ch.StartRetrieveOnGpu(seq, 0, q, query.size(), budget, gpu->stream.native()));
  ASSIGN_OR_RETURN(DataChannel::GpuRetrieval r, ch.FinishRetrieveOnGpu(gpu->stream.native()));
  Step step{r.lease, r.count, r.missing, 0, r.table};
  if (gpu->emulated) {
    for (uint32_t i = 0; i < r.count; ++i) step.on_host += r.table[i].tier != 0;
    step.device_table = nullptr;
    return step;
  }
  RETURN_IF_ERROR(gpu->stream.Synchronize());  // the worker's stream has passed the daemon's event
  return step;
}

// Entries of a GPU step's table served from H (read back after the timed part).
Result<uint32_t> OnHost(const Step& step) {
  if (step.device_table == nullptr) return step.on_host;
  std::vector<dp::BlockTableEntry> table(step.count);
  RETURN_IF_ERROR(kernels::Copy(table.data(), step.device_table, table.size() * sizeof(table[0]),
                                kernels::CopyKind::kDeviceToHost));
  uint32_t n = 0;
  for (const auto& e : table) n += e.tier != 0;
  return n;
}

// The daemon's own time per Retrieve phase (tierkv_retrieval_latency_seconds of the
// namespace "bench"): cumulative sums and counts, from its metrics endpoint.
constexpr const char* kPhases[] = {"select", "acquire", "gpu_query", "gpu_table"};
struct PhaseTotals {
  double sum[std::size(kPhases)] = {}, count[std::size(kPhases)] = {};
};

PhaseTotals ScrapePhases(const std::string& metrics_url) {
  PhaseTotals t;
  if (metrics_url.empty()) return t;
  const std::string text = testing::HttpGet(metrics_url);
  for (size_t i = 0; i < std::size(kPhases); ++i) {
    const std::vector<std::string> labels = {"namespace=\"bench\"", std::string("phase=\"") + kPhases[i] + "\""};
    t.sum[i] = std::max(0.0, testing::MetricValue(text, "tierkv_retrieval_latency_seconds_sum", labels));
    t.count[i] = std::max(0.0, testing::MetricValue(text, "tierkv_retrieval_latency_seconds_count", labels));
  }
  return t;
}

// Mean µs per call of each phase between two scrapes ("-" for a phase not run).
std::vector<std::string> PhaseMeans(const PhaseTotals& before, const PhaseTotals& after, nlohmann::json* out) {
  std::vector<std::string> cells;
  for (size_t i = 0; i < std::size(kPhases); ++i) {
    const double n = after.count[i] - before.count[i];
    if (n <= 0) {
      cells.push_back("-");
      continue;
    }
    const double us = (after.sum[i] - before.sum[i]) / n * 1e6;
    cells.push_back(bench::Fmt(us, 1));
    (*out)[std::string("daemon_") + kPhases[i] + "_mean_us"] = us;
  }
  return cells;
}

// One context length in one scenario: a fresh daemon, one layer stored, both retrievers timed.
bool RunOne(const Options& o, uint64_t ctx, const Scenario& sc, std::vector<std::vector<std::string>>* rows,
            nlohmann::json* doc) {
  const uint32_t blocks = static_cast<uint32_t>(ctx / kModel.block_tokens);
  const uint64_t g_slots =
      sc.g_share >= 1 ? static_cast<uint64_t>(std::ceil((blocks + 64) / kGpuHighWatermark))
                      : static_cast<uint64_t>(std::ceil(blocks * sc.g_share / kGpuMeanFill));
  testing::TempDir dir("bench-retrieve");
  testing::DaemonProcess daemon(testing::DaemonBinary(TIERKVD_PATH), dir.path(), "log_level = \"warning\"\n",
                                "[storage]\ngpu_bytes = " + std::to_string(g_slots * kModel.BlockBytes()) +
                                    "\nhost_bytes = " + std::to_string((blocks + 64) * kModel.BlockBytes()) +
                                    "\ndisk_bytes = 0\n");
  if (!daemon.Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", daemon.Log().c_str()), false;
  auto client = std::move(Client::Connect(daemon.socket_path())).value();
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = kModel;
  if (!client->CreateNamespace(spec).ok() || !client->Attach("bench").ok()) return false;
  if (!tierkv::internal::Call(*client, {{"op", "set_policy"}, {"namespace", "bench"}, {"policy", {{"miss_mode", sc.miss_mode}}}}).ok()) {
    return false;
  }
  auto opened = client->OpenChannel("bench", {.staging_bytes = 16 << 20, .gpu = o.gpu});
  if (!opened.ok()) return std::fprintf(stderr, "open_channel: %s\n", opened.status().ToString().c_str()), false;
  std::unique_ptr<DataChannel> ch = std::move(opened).value();
  std::mt19937 rng(static_cast<uint32_t>(ctx));
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<std::byte> block(kModel.BlockBytes());
  std::fprintf(stderr, "%s: storing %u blocks (%lu tokens)...\n", sc.name.c_str(), blocks, ctx);
  for (uint32_t b = 0; b < blocks; ++b) {
    auto* h = reinterpret_cast<uint16_t*>(block.data());
    for (size_t i = 0; i < block.size() / 2; ++i) h[i] = static_cast<uint16_t>(0x3c00 + (rng() & 0x3ff));  // ~[1,2)
    if (!ch->Put(1, 0, b, block).ok()) return std::fprintf(stderr, "put failed\n"), false;
  }
  std::vector<float> query(size_t{kModel.num_q_heads} * kModel.head_dim);
  GpuWorker worker;
  worker.emulated = ch->gpu_path_emulated();
  if (o.gpu && !worker.emulated) {
    worker.stream = std::move(kernels::GpuStream::Create()).value();
    worker.query = std::move(kernels::DeviceBuffer::Allocate(query.size() * sizeof(float))).value();
  }
  const uint32_t budget = std::max(1u, blocks / 10);
  const Result<DaemonStats> stats = client->Stats();
  const std::string metrics_url = stats.ok() ? stats->metrics_url : "";
  for (const char* method : {"minmax", "mean"}) {
    if (!tierkv::internal::Call(*client, {{"op", "set_policy"}, {"namespace", "bench"}, {"policy", {{"retriever", method}}}}).ok()) {
      return false;
    }
    std::vector<double> us;
    double off_g = 0;  // selected blocks not on G when the table was written
    PhaseTotals before;
    for (int s = 0; s < o.steps + 10; ++s) {
      if (s == 10) before = ScrapePhases(metrics_url);
      for (auto& q : query) q = n(rng);
      if (o.gpu && !worker.emulated && !kernels::Copy(worker.query.data(), query.data(), query.size() * sizeof(float),
                                  kernels::CopyKind::kHostToDevice).ok()) {
        return false;
      }
      auto t0 = std::chrono::steady_clock::now();
      Result<Step> r = RetrieveOnce(*ch, o.gpu ? &worker : nullptr, 1, query, budget);
      const double dt = bench::SecondsSince(t0) * 1e6;
      if (!r.ok()) return std::fprintf(stderr, "retrieve: %s\n", r.status().ToString().c_str()), false;
      Result<uint32_t> on_host = OnHost(*r);
      if (!on_host.ok() || !ch->Release(r->lease).ok()) return false;
      if (s >= 10) us.push_back(dt), off_g += r->missing + *on_host;
    }
    const double p50 = bench::Percentile(us, 50), p99 = bench::Percentile(us, 99);
    const double miss_share = off_g / (double(o.steps) * budget);
    nlohmann::json result{{"tokens", ctx},          {"scenario", sc.name}, {"retriever", method},
                          {"budget_blocks", budget}, {"p50_us", p50},         {"p99_us", p99},
                          {"off_g_share", miss_share}};
    std::vector<std::string> row = {std::to_string(ctx), sc.name, method, std::to_string(budget), bench::Fmt(p50, 1),
                                    bench::Fmt(p99, 1), bench::Fmt(100 * miss_share, 1)};
    for (std::string& cell : PhaseMeans(before, ScrapePhases(metrics_url), &result)) row.push_back(std::move(cell));
    rows->push_back(std::move(row));
    (*doc)["results"].push_back(std::move(result));
  }
  daemon.Stop();
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  Options o;
  bench::BatchOptions bo;
  bool batch_mode = false, steps_given = false, contexts_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--batch" && i + 1 < argc) bo.batches = bench::ParseUintList(argv[++i]), batch_mode = true;
    else if (a == "--clients" && i + 1 < argc) bo.clients = bench::ParseUintList(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc) bo.seconds = std::stod(argv[++i]);
    else if (a == "--workers" && i + 1 < argc) bo.workers = static_cast<uint32_t>(std::stoul(argv[++i]));
    else if (a == "--steps" && i + 1 < argc) o.steps = std::stoi(argv[++i]), steps_given = true;
    else if (a == "--contexts" && i + 1 < argc) o.contexts = bench::ParseUintList(argv[++i]), contexts_given = true;
    else if (a == "--scenarios" && i + 1 < argc) {
      o.scenarios.clear();
      for (std::string s = argv[++i]; !s.empty();) {
        const size_t comma = s.find(',');
        o.scenarios.push_back(s.substr(0, comma));
        s = comma == std::string::npos ? "" : s.substr(comma + 1);
      }
    } else if (a == "--gpu") o.gpu = true;
    else if (a == "--json" && i + 1 < argc) o.json_path = argv[++i];
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  if (batch_mode || !bo.clients.empty()) {
    if (contexts_given && !o.contexts.empty()) bo.tokens = o.contexts[0];  // else 32K
    if (steps_given) bo.steps = o.steps;
    bo.json_path = o.json_path;
    if (batch_mode && bench::RunBatchMode(bo) != 0) return 1;
    if (!bo.clients.empty() && bench::RunClientsMode(bo) != 0) return 1;
    return 0;
  }
  const bool has_gpu = kernels::GpuCount() > 0;
  const char* path = !o.gpu ? "host" : has_gpu ? "gpu" : "gpu-emulated";
  nlohmann::json doc{{"benchmark", "retrieve"}, {"steps", o.steps}, {"path", path},
                     {"device", kernels::DescribeGpus()}};
  std::vector<std::vector<std::string>> rows;
  for (const std::string& name : o.scenarios) {
    const Scenario* sc = nullptr;
    for (const Scenario& s : kScenarios) sc = s.name == name ? &s : sc;
    if (!sc) return std::fprintf(stderr, "unknown scenario %s (see --help)\n", name.c_str()), 2;
    for (uint64_t ctx : o.contexts) {
      if (!RunOne(o, ctx, *sc, &rows, &doc)) return 1;
    }
  }
  std::printf("tierkv_bench_retrieve: Retrieve round trip per layer, %s path, %d steps\n\n", path, o.steps);
  bench::PrintTable({"tokens", "scenario", "retriever", "budget", "p50 us", "p99 us", "off-G %", "select us",
                     "acquire us", "gpu_query us", "gpu_table us"},
                    rows);
  bench::WriteJson(o.json_path, doc);
  return 0;
}
