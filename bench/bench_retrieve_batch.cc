// tierkv_bench_retrieve --batch / --clients (bench_retrieve_batch.h): batched
// Retrieve against B separate calls, and the aggregate Retrieve throughput of
// several client processes at once (issue 12, decision 0011).
//
// Setup: one fresh tierkvd, B (or N) sequences of `tokens` tokens in one layer of
// the bench model. Payloads are shared: sequence 1's blocks are put as prefix blocks
// and every other sequence loads that prefix (LoadPrefix), so 64 sequences at 32K
// tokens need 128 MiB of blocks, not 8 GiB; each sequence still has its own
// summaries (the scoring reads B times the summary bytes) and its own query.
#include "bench/bench_retrieve_batch.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "bench/bench_util.h"
#include "client/client_internal.h"
#include "common/checksum.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv::bench {
namespace {

const ModelSpec kModel{1, 32, 8, 128, 32, DType::kBF16};
constexpr uint64_t kShortSeq = 1000;  // 4 blocks: a Retrieve of a few microseconds of work
constexpr size_t kQueryFloats = 32 * 128;

// A daemon holding `seqs` sequences of `blocks` blocks (prefix-shared payloads).
struct Fixture {
  testing::TempDir dir{"bench-retrieve-batch"};
  std::unique_ptr<testing::DaemonProcess> daemon;
  std::unique_ptr<Client> client;
  std::unique_ptr<DataChannel> ch;
};

bool SetRetriever(Client& c, const std::string& method) {
  return internal::Call(c, {{"op", "set_policy"}, {"namespace", "bench"}, {"policy", {{"retriever", method}}}}).ok();
}

bool Setup(Fixture* f, uint32_t seqs, uint32_t blocks, uint32_t workers) {
  const uint64_t bytes = uint64_t{blocks + 64} * kModel.BlockBytes();
  f->daemon = std::make_unique<testing::DaemonProcess>(
      testing::DaemonBinary(TIERKVD_PATH), f->dir.path(), "log_level = \"warning\"\n",
      "[storage]\ngpu_bytes = " + std::to_string(bytes) + "\nhost_bytes = " + std::to_string(bytes) +
          "\ndisk_bytes = 0\n" +
          // Only when asked: a daemon of before the batch (TIERKVD=...) has no [retrieval].
          (workers ? "[retrieval]\nworkers = " + std::to_string(workers) + "\n" : std::string()));
  if (!f->daemon->Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", f->daemon->Log().c_str()), false;
  f->client = std::move(Client::Connect(f->daemon->socket_path())).value();
  NamespaceSpec spec;
  spec.name = "bench";
  spec.model = kModel;
  if (!f->client->CreateNamespace(spec).ok() || !f->client->Attach("bench").ok()) return false;
  auto opened = f->client->OpenChannel("bench", {.staging_bytes = 32 << 20});
  if (!opened.ok()) return false;
  f->ch = std::move(opened).value();
  std::vector<int32_t> tokens(size_t{blocks} * kModel.block_tokens);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7 + 1);
  const std::vector<uint64_t> hashes = PrefixBlockHashes(tokens, kModel.block_tokens);
  std::mt19937 rng(blocks);
  std::vector<std::byte> block(kModel.BlockBytes());
  std::fprintf(stderr, "storing %u blocks, linking them into %u sequences...\n", blocks, seqs);
  for (uint32_t b = 0; b < blocks; ++b) {
    auto* h = reinterpret_cast<uint16_t*>(block.data());
    for (size_t i = 0; i < block.size() / 2; ++i) h[i] = static_cast<uint16_t>(0x3c00 + (rng() & 0x3ff));
    if (!f->ch->Put(1, 0, b, block, hashes[b]).ok()) return std::fprintf(stderr, "put failed\n"), false;
  }
  for (uint64_t s = 2; s <= seqs; ++s) {
    auto loaded = f->ch->LoadPrefix(s, tokens);
    if (!loaded.ok() || *loaded != tokens.size()) return std::fprintf(stderr, "load_prefix failed\n"), false;
  }
  for (uint32_t b = 0; b < 4; ++b) {  // a short sequence beside them (G has 64 slots to spare)
    if (!f->ch->Put(kShortSeq, 0, b, block).ok()) return std::fprintf(stderr, "put failed\n"), false;
  }
  return true;
}

// CPU time of every thread of `pid` so far (ns, /proc/PID/task/*/schedstat): what
// the daemon spent, whatever else runs on the machine.
uint64_t CpuNs(pid_t pid) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(t.path() / "schedstat");
    uint64_t ns = 0;
    if (in >> ns) total += ns;
  }
  return total;
}

// CPU time of `pid` so far (ns, /proc/PID/stat utime + stime, clock ticks): unlike
// CpuNs it keeps the time of threads that exited (the channels of clients gone).
uint64_t ProcessCpuNs(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(line.substr(paren + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return (utime + stime) * (1000000000ull / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK)));
}

std::vector<std::vector<float>> Queries(uint32_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<std::vector<float>> q(n, std::vector<float>(kQueryFloats));
  for (auto& v : q)
    for (auto& x : v) x = nd(rng);
  return q;
}

// One layer's retrieval for B sequences: batched (one call) or B separate calls.
Result<double> TimeLayer(DataChannel& ch, const std::vector<std::vector<float>>& q, uint32_t budget, bool batched) {
  const auto t0 = std::chrono::steady_clock::now();
  if (batched) {
    std::vector<DataChannel::BatchItem> items;
    for (size_t i = 0; i < q.size(); ++i) items.push_back({i + 1, q[i], budget, 0});
    ASSIGN_OR_RETURN(DataChannel::BatchRetrieval r, ch.RetrieveBatch(0, items));
    const double s = SecondsSince(t0);
    if (r.served != q.size()) return Internal("batch served " + std::to_string(r.served));
    RETURN_IF_ERROR(ch.Release(r.lease));
    return s;
  }
  std::vector<uint64_t> leases;
  for (size_t i = 0; i < q.size(); ++i) {
    ASSIGN_OR_RETURN(DataChannel::Retrieval r, ch.Retrieve(i + 1, 0, q[i], budget));
    leases.push_back(r.lease);
  }
  const double s = SecondsSince(t0);
  for (uint64_t l : leases) RETURN_IF_ERROR(ch.Release(l));
  return s;
}

// One layer's zero-copy get of blocks [0, count) for B sequences: one AcquireBatch or
// B Acquire calls (decision 0028).
Result<double> TimeAcquire(DataChannel& ch, uint32_t b, uint32_t count, bool batched) {
  const auto t0 = std::chrono::steady_clock::now();
  if (batched) {
    std::vector<DataChannel::AcquireItem> items;
    for (uint32_t i = 0; i < b; ++i) items.push_back({i + 1, 0, count});
    ASSIGN_OR_RETURN(DataChannel::BatchRetrieval r, ch.AcquireBatch(0, items));
    const double s = SecondsSince(t0);
    if (r.served != b) return Internal("acquire batch served " + std::to_string(r.served));
    RETURN_IF_ERROR(ch.Release(r.lease));
    return s;
  }
  std::vector<uint64_t> leases;
  for (uint32_t i = 0; i < b; ++i) {
    ASSIGN_OR_RETURN(DataChannel::Retrieval r, ch.Acquire(i + 1, 0, 0, count));
    leases.push_back(r.lease);
  }
  const double s = SecondsSince(t0);
  for (uint64_t l : leases) RETURN_IF_ERROR(ch.Release(l));
  return s;
}
}  // namespace

int RunBatchMode(const BatchOptions& o) {
  const uint32_t blocks = static_cast<uint32_t>(o.tokens / kModel.block_tokens), budget = std::max(1u, blocks / 10);
  uint32_t max_b = 1;
  for (uint64_t b : o.batches) max_b = std::max<uint32_t>(max_b, static_cast<uint32_t>(b));
  Fixture f;
  if (!Setup(&f, max_b, blocks, o.workers)) return 1;
  std::mt19937 rng(7);
  std::vector<std::vector<std::string>> rows;
  nlohmann::json doc{{"benchmark", "retrieve_batch"}, {"tokens", o.tokens}, {"steps", o.steps},
                     {"budget_blocks", budget}, {"workers", o.workers}};
  const pid_t pid = f.daemon->pid();
  // "acquire": the zero-copy get of the budget's blocks (no scoring), AcquireBatch vs B Acquires.
  for (const std::string method : {"mean", "minmax", "acquire"}) {
    if (method != "acquire" && !SetRetriever(*f.client, method)) return 1;
    double one_call = 0;
    for (uint64_t b : o.batches) {
      std::vector<double> wall[2];  // [0] batched, [1] B separate calls
      double cpu_us[2] = {0, 0};   // the daemon's CPU time per layer
      for (int mode = 0; mode < 2; ++mode) {
        uint64_t cpu0 = 0;
        for (int s = 0; s < o.steps + 3; ++s) {
          if (s == 3) cpu0 = CpuNs(pid);
          const auto q = Queries(static_cast<uint32_t>(b), rng);
          auto t = method == "acquire" ? TimeAcquire(*f.ch, static_cast<uint32_t>(b), budget, mode == 0)
                                       : TimeLayer(*f.ch, q, budget, mode == 0);
          if (!t.ok()) return std::fprintf(stderr, "retrieve: %s\n", t.status().ToString().c_str()), 1;
          if (s >= 3) wall[mode].push_back(*t * 1e6);
        }
        cpu_us[mode] = (CpuNs(pid) - cpu0) * 1e-3 / o.steps;
      }
      const double pb = Percentile(wall[0], 50), ps = Percentile(wall[1], 50);
      if (b == 1) one_call = ps;
      rows.push_back({method, std::to_string(b), Fmt(pb, 0), Fmt(ps, 0), Fmt(ps / pb, 2),
                      one_call > 0 ? Fmt(pb / one_call, 1) : "-", Fmt(cpu_us[0], 0), Fmt(cpu_us[1], 0)});
      doc["results"].push_back({{"retriever", method}, {"batch", b}, {"batched_p50_us", pb},
                                {"separate_p50_us", ps}, {"batched_p99_us", Percentile(wall[0], 99)},
                                {"separate_p99_us", Percentile(wall[1], 99)}, {"one_call_p50_us", one_call},
                                {"batched_daemon_cpu_us", cpu_us[0]}, {"separate_daemon_cpu_us", cpu_us[1]}});
    }
  }
  f.daemon->Stop();
  std::printf("tierkv_bench_retrieve --batch: one layer for B sequences, %lu tokens each, budget %u blocks, "
              "retrieval.workers %u, %d steps (p50)\n\n", o.tokens, budget, o.workers, o.steps);
  PrintTable({"retriever", "B", "batched us", "B calls us", "speedup", "batched / one call", "daemon CPU us batched",
              "daemon CPU us B calls"},
             rows);
  WriteJson(o.json_path, doc);
  return 0;
}

namespace {
// A client process: its own connection and channel, retrieves its sequence until
// `seconds` pass after the start byte; writes its call count and p50 to `out`.
[[noreturn]] void ClientProcess(const std::string& socket, uint64_t seq, uint32_t budget, double seconds, int start,
                                int out) {
  auto client = Client::Connect(socket);
  if (!client.ok() || !(*client)->Attach("bench").ok()) _exit(2);
  auto ch = (*client)->OpenChannel("bench", {.staging_bytes = 4 << 20});
  if (!ch.ok()) _exit(3);
  std::mt19937 rng(static_cast<uint32_t>(seq));
  const auto queries = Queries(16, rng);
  char go;
  if (::read(start, &go, 1) != 1) _exit(4);
  std::vector<double> us;
  const auto t0 = std::chrono::steady_clock::now();
  while (SecondsSince(t0) < seconds) {
    const auto t = std::chrono::steady_clock::now();
    auto r = (*ch)->Retrieve(seq, 0, queries[us.size() % queries.size()], budget);
    if (!r.ok() || !(*ch)->Release(r->lease).ok()) _exit(5);
    us.push_back(SecondsSince(t) * 1e6);
  }
  const double result[2] = {static_cast<double>(us.size()), Percentile(us, 50)};
  if (::write(out, result, sizeof result) != sizeof result) _exit(6);
  _exit(0);
}

// Forks n clients on sequences 1..n, starts them together; calls/s of them all.
// *cores: the daemon's CPU time over the run / the run's wall time.
bool RunClients(const std::string& socket, pid_t daemon, uint32_t n, uint32_t budget, double seconds, double* rate,
                double* p50, double* cores) {
  int start[2], out[2];
  if (::pipe(start) != 0 || ::pipe(out) != 0) return false;
  std::vector<pid_t> pids;
  for (uint32_t i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) ClientProcess(socket, i + 1, budget, seconds, start[0], out[1]);
    pids.push_back(pid);
  }
  ::usleep(500000);  // the children connect and open their channels
  const std::string go(n, 'g');
  const uint64_t cpu0 = ProcessCpuNs(daemon);
  const auto t0 = std::chrono::steady_clock::now();
  if (::write(start[1], go.data(), n) != static_cast<ssize_t>(n)) return false;
  double calls = 0, lat = 0;
  for (uint32_t i = 0; i < n; ++i) {
    double r[2];
    if (::read(out[0], r, sizeof r) != sizeof r) return false;
    calls += r[0];
    lat += r[1] / n;
  }
  *cores = (ProcessCpuNs(daemon) - cpu0) * 1e-9 / SecondsSince(t0);
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  for (int fd : {start[0], start[1], out[0], out[1]}) ::close(fd);
  *rate = calls / seconds;
  *p50 = lat;
  return ok;
}
}  // namespace

namespace {
// p50 and p99 of Retrieves of the short sequence on `ch` for `seconds`, while (with
// `long_running`) another client process retrieves sequence 1 (the full context)
// back to back. With one lock for every sequence the short calls wait for the long
// ones; with a lock per sequence they do not.
bool Interference(Fixture& f, uint32_t budget, double seconds, bool long_running, double* p50, double* p99) {
  int start[2], out[2];
  if (::pipe(start) != 0 || ::pipe(out) != 0) return false;
  pid_t pid = -1;
  if (long_running) {
    pid = ::fork();
    if (pid == 0) ClientProcess(f.daemon->socket_path(), 1, budget, seconds + 0.5, start[0], out[1]);
    ::usleep(500000);
    if (::write(start[1], "g", 1) != 1) return false;
    ::usleep(100000);  // the long calls are under way
  }
  std::mt19937 rng(3);
  const auto q = Queries(1, rng);
  std::vector<double> us;
  const auto t0 = std::chrono::steady_clock::now();
  while (SecondsSince(t0) < seconds) {
    const auto t = std::chrono::steady_clock::now();
    auto r = f.ch->Retrieve(kShortSeq, 0, q[0], 4);
    if (!r.ok() || !f.ch->Release(r->lease).ok()) return false;
    us.push_back(SecondsSince(t) * 1e6);
    ::usleep(200);  // a sample every ~0.2 ms, not a busy loop
  }
  bool ok = true;
  if (pid > 0) {
    double r[2];
    ok = ::read(out[0], r, sizeof r) == sizeof r;
    int status = 0;
    ::waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  for (int fd : {start[0], start[1], out[0], out[1]}) ::close(fd);
  *p50 = Percentile(us, 50);
  *p99 = Percentile(us, 99);
  return ok;
}
}  // namespace

int RunClientsMode(const BatchOptions& o) {
  const uint32_t blocks = static_cast<uint32_t>(o.tokens / kModel.block_tokens), budget = std::max(1u, blocks / 10);
  uint32_t max_n = 1;
  for (uint64_t n : o.clients) max_n = std::max<uint32_t>(max_n, static_cast<uint32_t>(n));
  Fixture f;
  if (!Setup(&f, max_n, blocks, o.workers)) return 1;
  std::vector<std::vector<std::string>> rows;
  nlohmann::json doc{{"benchmark", "retrieve_clients"}, {"tokens", o.tokens}, {"seconds", o.seconds},
                     {"budget_blocks", budget}};
  // "acquire": the zero-copy get of the budget's blocks (no scoring), AcquireBatch vs B Acquires.
  for (const std::string method : {"mean", "minmax", "acquire"}) {
    if (method != "acquire" && !SetRetriever(*f.client, method)) return 1;
    double base = 0;
    for (uint64_t n : o.clients) {
      double rate = 0, p50 = 0, cores = 0;
      if (!RunClients(f.daemon->socket_path(), f.daemon->pid(), static_cast<uint32_t>(n), budget, o.seconds, &rate,
                      &p50, &cores)) {
        return std::fprintf(stderr, "a client process failed\n"), 1;
      }
      if (n == 1) base = rate;
      rows.push_back({method, std::to_string(n), Fmt(rate, 0), base > 0 ? Fmt(rate / base, 2) : "-", Fmt(p50, 0),
                      Fmt(cores, 2), Fmt(cores * 1e6 / rate, 0)});
      doc["results"].push_back({{"retriever", method}, {"clients", n}, {"calls_per_s", rate}, {"p50_us", p50},
                                {"daemon_cores", cores}});
    }
  }
  std::vector<std::vector<std::string>> irows;
  // "acquire": the zero-copy get of the budget's blocks (no scoring), AcquireBatch vs B Acquires.
  for (const std::string method : {"mean", "minmax", "acquire"}) {
    if (method != "acquire" && !SetRetriever(*f.client, method)) return 1;
    double alone[2], beside[2];
    if (!Interference(f, budget, o.seconds, false, &alone[0], &alone[1]) ||
        !Interference(f, budget, o.seconds, true, &beside[0], &beside[1])) {
      return std::fprintf(stderr, "interference run failed\n"), 1;
    }
    irows.push_back({method, Fmt(alone[0], 0), Fmt(alone[1], 0), Fmt(beside[0], 0), Fmt(beside[1], 0)});
    doc["interference"].push_back({{"retriever", method}, {"alone_p50_us", alone[0]}, {"alone_p99_us", alone[1]},
                                   {"beside_long_p50_us", beside[0]}, {"beside_long_p99_us", beside[1]}});
  }
  f.daemon->Stop();
  std::printf("tierkv_bench_retrieve --clients: client processes retrieving different sequences at once, "
              "%lu tokens each, budget %u blocks, %.1f s per point\n\n", o.tokens, budget, o.seconds);
  PrintTable({"retriever", "clients", "Retrieves/s (all)", "vs 1 client", "p50 us per call", "daemon cores busy",
              "daemon CPU us per call"},
             rows);
  std::printf("\nA 4-block sequence's Retrieve (us), alone and while another client retrieves the %lu-token "
              "sequence back to back:\n\n", o.tokens);
  PrintTable({"retriever", "alone p50", "alone p99", "beside a long one p50", "beside p99"}, irows);
  WriteJson(o.json_path, doc);
  return 0;
}

}  // namespace tierkv::bench
