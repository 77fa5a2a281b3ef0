// bench_kernels: times the kernels of tierkv_kernels in the shape of BENCHMARKS.md
// (32 q heads / 8 KV heads / head_dim 128 / bf16 blocks, f16 summaries / 32-token blocks / 10% budget)
// at 32K, 128K and 1M tokens of context, on the CPU references and, when a CUDA
// device exists, on the GPU. Prints a table and writes JSON.
//
//   bench_kernels [--json PATH] [--contexts 32768,131072,1048576] [--min-ms 300]
//
// CPU figures: wall time of one call (median over repetitions), one thread.
// GPU figures: CUDA events around one call after warm-up (median).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/f16_rows.h"

namespace tierkv::kernels {
namespace {

constexpr uint32_t kQHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlockTokens = 32, kVqSubspaces = 16;
constexpr double kBudget = 0.10;

struct Options {
  std::string json_path = "bench/out/bench_kernels.json";
  std::vector<uint32_t> contexts = {32768, 131072, 1048576};
  double min_ms = 300;
};

struct Row {
  std::string name;
  std::string backend;
  uint32_t context = 0;
  double median_us = 0, min_us = 0;
  int reps = 0;
  double bytes = 0;  // bytes the call must read + write (for GB/s)
  std::string note;
};

Row MakeRow(std::string name, const char* backend, uint32_t context) {
  Row r;
  r.name = std::move(name);
  r.backend = backend;
  r.context = context;
  return r;
}

// Median and min of a call's duration in microseconds; repeats until min_ms of
// total time (at least 3 and at most 1000 repetitions) after one warm-up call.
template <typename F>
void TimeIt(const Options& o, F&& call, Row* row) {
  call();  // warm-up
  std::vector<double> us;
  double total = 0;
  while ((total < o.min_ms * 1000 || us.size() < 3) && us.size() < 1000) {
    const double t = call();
    us.push_back(t);
    total += t;
  }
  std::sort(us.begin(), us.end());
  row->median_us = us[us.size() / 2];
  row->min_us = us.front();
  row->reps = static_cast<int>(us.size());
}

// Wall time of f() in microseconds.
template <typename F>
double WallUs(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_kernels: %s failed: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

std::vector<uint16_t> RandomHalf16(std::mt19937_64& rng, size_t n, float lo, float hi, DType dtype) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = dtype == DType::kF16 ? FloatToF16(d(rng)) : FloatToBf16(d(rng));
  return v;
}
std::vector<uint16_t> RandomBf16(std::mt19937_64& rng, size_t n, float lo, float hi) {
  return RandomHalf16(rng, n, lo, hi, DType::kBF16);
}

// The summaries' dtype: f16, as the daemon's minmax and mean retrievers keep them
// (decision 0029); the KV blocks are bf16.
constexpr DType kSummaryDType = DType::kF16;

// Host-side inputs of one context length.
struct Inputs {
  uint32_t tokens = 0, blocks = 0, k = 0;
  std::vector<float> query;               // [32][128]
  std::vector<uint16_t> min_keys, max_keys, mean_keys;  // [blocks][8][128] kSummaryDType
  std::vector<uint8_t> codes;             // [blocks][8][32][16]
  std::vector<float> lut;                 // [32][16][256]
  std::vector<uint8_t> always;            // sinks + recent window
  std::vector<uint16_t> arena;            // k + 8 selected blocks, K then V, bf16
};

Inputs MakeInputs(uint32_t tokens, std::mt19937_64& rng) {
  Inputs in;
  in.tokens = tokens;
  in.blocks = tokens / kBlockTokens;
  in.k = std::max<uint32_t>(1, static_cast<uint32_t>(std::lround(in.blocks * kBudget)));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  in.query.resize(kQHeads * kHeadDim);
  for (auto& x : in.query) x = u(rng);
  const size_t summary = size_t{in.blocks} * kKvHeads * kHeadDim;
  in.min_keys = RandomHalf16(rng, summary, -1.f, 0.f, kSummaryDType);
  in.max_keys = RandomHalf16(rng, summary, 0.f, 1.f, kSummaryDType);
  in.mean_keys = RandomHalf16(rng, summary, -0.5f, 0.5f, kSummaryDType);
  in.codes.resize(size_t{in.blocks} * kKvHeads * kBlockTokens * kVqSubspaces);
  for (auto& c : in.codes) c = static_cast<uint8_t>(rng());
  in.lut.resize(size_t{kQHeads} * kVqSubspaces * 256);
  for (auto& x : in.lut) x = u(rng);
  in.always.assign(in.blocks, 0);
  for (uint32_t b = 0; b < in.blocks; ++b) in.always[b] = b < 1 || b + 4 >= in.blocks;  // 1 sink + 4 recent
  const size_t block_elems = size_t{2} * kKvHeads * kBlockTokens * kHeadDim;
  in.arena = RandomBf16(rng, block_elems * (in.k + 8), -1.f, 1.f);
  return in;
}

ScoreArgs MakeScoreArgs(ScoreMode mode, const Inputs& in, const void* q, const void* mn, const void* mx,
                        const void* mean, const void* codes, const void* lut, float* scores) {
  ScoreArgs a;
  a.mode = mode;
  a.num_q_heads = kQHeads;
  a.num_kv_heads = kKvHeads;
  a.head_dim = kHeadDim;
  a.num_blocks = in.blocks;
  a.query = static_cast<const float*>(q);
  a.summary_dtype = kSummaryDType;
  a.min_keys = mn;
  a.max_keys = mx;
  a.mean_keys = mean;
  a.block_tokens = kBlockTokens;
  a.num_tokens = in.tokens;
  a.num_subspaces = kVqSubspaces;
  a.codes = static_cast<const uint8_t*>(codes);
  a.lut = static_cast<const float*>(lut);
  a.scores = scores;
  return a;
}

TopKArgs MakeTopKArgs(const Inputs& in, const float* scores, const uint8_t* always, uint32_t* idx) {
  TopKArgs t;
  t.scores = scores;
  t.num_blocks = in.blocks;
  t.k = in.k;
  t.always = always;
  t.out_indices = idx;
  return t;
}

AttentionArgs MakeAttentionArgs(const Inputs& in, const void* q, const void* arena, const uint32_t* slots,
                                float* out) {
  AttentionArgs a;
  a.kv_dtype = DType::kBF16;
  a.num_q_heads = kQHeads;
  a.num_kv_heads = kKvHeads;
  a.head_dim = kHeadDim;
  a.block_tokens = kBlockTokens;
  a.query = static_cast<const float*>(q);
  a.num_blocks = in.k;
  a.slot_base = arena;
  a.slot_bytes = size_t{2} * kKvHeads * kBlockTokens * kHeadDim * 2;
  a.num_slots = in.k + 8;
  a.slot_indices = slots;
  a.out = out;
  return a;
}

// k distinct slots out of the k + 8 of the arena, in a scattered order.
std::vector<uint32_t> SelectedSlots(const Inputs& in) {
  std::vector<uint32_t> slots(in.k + 8);
  for (uint32_t i = 0; i < slots.size(); ++i) slots[i] = i;
  std::mt19937_64 rng(in.k);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(in.k);
  return slots;
}

// Bytes each scoring mode reads: summaries (f16) or codes, plus scores.
double ScoreBytes(ScoreMode mode, const Inputs& in) {
  const double summary = double(in.blocks) * kKvHeads * kHeadDim * 2;
  switch (mode) {
    case ScoreMode::kMinMax:
      return 2 * summary;
    case ScoreMode::kMean:
      return summary;
    case ScoreMode::kVqLut:
      return double(in.blocks) * kKvHeads * kBlockTokens * kVqSubspaces;
  }
  return 0;
}

const char* ModeName(ScoreMode m) {
  return m == ScoreMode::kMinMax ? "minmax" : m == ScoreMode::kMean ? "mean" : "vq_lut";
}

void BenchCpu(const Options& o, const Inputs& in, std::vector<Row>* rows) {
  std::vector<float> scores(in.blocks), out(kQHeads * kHeadDim);
  std::vector<uint32_t> idx(in.k);
  for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean, ScoreMode::kVqLut}) {
    const ScoreArgs sa = MakeScoreArgs(mode, in, in.query.data(), in.min_keys.data(), in.max_keys.data(),
                                       in.mean_keys.data(), in.codes.data(), in.lut.data(), scores.data());
    const TopKArgs ta = MakeTopKArgs(in, scores.data(), in.always.data(), idx.data());
    Row r = MakeRow(std::string("score_") + ModeName(mode) + "+topk", "cpu", in.tokens);
    r.bytes = ScoreBytes(mode, in);
    TimeIt(o, [&] { return WallUs([&] { Check(ScoreBlocks(Backend::kCpu, sa), "score"), Check(TopK(Backend::kCpu, ta), "topk"); }); }, &r);
    rows->push_back(r);
  }
  Row t = MakeRow("topk_only", "cpu", in.tokens);
  const TopKArgs ta = MakeTopKArgs(in, scores.data(), in.always.data(), idx.data());
  TimeIt(o, [&] { return WallUs([&] { Check(TopK(Backend::kCpu, ta), "topk"); }); }, &t);
  rows->push_back(t);

  const std::vector<uint32_t> slots = SelectedSlots(in);
  const AttentionArgs aa = MakeAttentionArgs(in, in.query.data(), in.arena.data(), slots.data(), out.data());
  Row at = MakeRow("attention_on_selection", "cpu", in.tokens);
  at.bytes = double(in.k) * aa.slot_bytes;
  at.note = std::to_string(in.k) + " blocks";
  TimeIt(o, [&] { return WallUs([&] { Check(DecodeAttention(Backend::kCpu, aa), "attention"); }); }, &at);
  rows->push_back(at);
}

void BenchCpuBlockOps(const Options& o, const Inputs& in, std::vector<Row>* rows) {
  const size_t block_bytes = size_t{2} * kKvHeads * kBlockTokens * kHeadDim * 2;
  // Gather the selection (k blocks) from the arena into a destination.
  std::vector<uint8_t> dst(block_bytes * in.k);
  std::vector<const void*> src(in.k);
  std::vector<void*> dptr(in.k);
  const std::vector<uint32_t> slots = SelectedSlots(in);
  for (uint32_t i = 0; i < in.k; ++i) {
    src[i] = reinterpret_cast<const uint8_t*>(in.arena.data()) + slots[i] * block_bytes;
    dptr[i] = dst.data() + size_t{i} * block_bytes;
  }
  Row g = MakeRow("gather_selection", "cpu", in.tokens);
  g.bytes = 2.0 * block_bytes * in.k;
  g.note = std::to_string(in.k) + " x " + std::to_string(block_bytes >> 10) + " KiB";
  TimeIt(o, [&] { return WallUs([&] { Check(Gather(Backend::kCpu, {src.data(), dptr.data(), in.k, block_bytes}), "gather"); }); }, &g);
  rows->push_back(g);
  if (in.tokens != o.contexts.front()) return;  // per-block costs do not depend on the context
  std::vector<uint16_t> mn(kKvHeads * kHeadDim), mx(mn.size()), mean(mn.size());
  SummaryArgs sa;
  sa.key_dtype = DType::kBF16;
  sa.summary_dtype = kSummaryDType;
  sa.num_kv_heads = kKvHeads;
  sa.block_tokens = kBlockTokens;
  sa.head_dim = kHeadDim;
  sa.num_blocks = 1;
  sa.keys = in.arena.data();
  sa.min_out = mn.data();
  sa.max_out = mx.data();
  sa.mean_out = mean.data();
  Row s = MakeRow("summary_per_block", "cpu", 0);
  s.bytes = block_bytes / 2.0;
  TimeIt(o, [&] { return WallUs([&] { Check(BuildSummaries(Backend::kCpu, sa), "summary"); }); }, &s);
  rows->push_back(s);
  // tierkvd's put path (the minmax index): the block's bf16 K reduced to f32 min and
  // max rows, stored as f16; and what it did before (session 12): K converted to a
  // fresh f32 array first, then reduced.
  std::vector<float> fmn(mn.size()), fmx(mn.size());
  SummaryArgs pa = sa;
  pa.summary_dtype = DType::kF32;
  pa.min_out = fmn.data();
  pa.max_out = fmx.data();
  pa.mean_out = nullptr;
  auto put_summary = [&](const SummaryArgs& args) {
    Check(BuildSummaries(Backend::kCpu, args), "summary");
    FloatRowToF16(fmn.data(), fmn.size(), Rounding::kDown, mn.data());
    FloatRowToF16(fmx.data(), fmx.size(), Rounding::kUp, mx.data());
  };
  Row p = MakeRow("put_summary_minmax", "cpu", 0);
  p.bytes = block_bytes / 2.0;
  p.note = std::string("bf16 K reduced as stored, ") + std::string(CpuVectorUnit());
  TimeIt(o, [&] { return WallUs([&] { put_summary(pa); }); }, &p);
  rows->push_back(p);
  Row pf = MakeRow("put_summary_minmax_via_f32", "cpu", 0);
  pf.bytes = block_bytes / 2.0;
  pf.note = "K converted to f32 first";
  TimeIt(o, [&] {
    return WallUs([&] {
      std::vector<float> keys(size_t{kKvHeads} * kBlockTokens * kHeadDim);
      LoadRowAsFloat(in.arena.data(), DType::kBF16, 0, keys.size(), keys.data());
      SummaryArgs f = pa;
      f.key_dtype = DType::kF32;
      f.keys = keys.data();
      put_summary(f);
    });
  }, &pf);
  rows->push_back(pf);
  const QuantShape shape{kKvHeads, kBlockTokens, kHeadDim};
  auto lk = GetQuantLayout(KiviKeySpec(32), shape);
  auto lv = GetQuantLayout(KiviValueSpec(32), shape);
  Check(lk.status(), "layout");
  std::vector<uint32_t> pk(lk->total_bytes / 4 + 1), pv(lv->total_bytes / 4 + 1);
  const uint16_t* k = in.arena.data();
  const uint16_t* v = k + shape.rows * shape.tokens * shape.channels;
  Row q = MakeRow("kivi2_quantize_per_block", "cpu", 0);
  q.bytes = block_bytes;
  q.note = std::to_string(lk->total_bytes + lv->total_bytes) + " B packed";
  TimeIt(o, [&] {
    return WallUs([&] {
      Check(Quantize(Backend::kCpu, {KiviKeySpec(32), shape, DType::kBF16, k, pk.data()}), "quantize");
      Check(Quantize(Backend::kCpu, {KiviValueSpec(32), shape, DType::kBF16, v, pv.data()}), "quantize");
    });
  }, &q);
  rows->push_back(q);
}

#define CHECK_OK(expr) Check((expr), #expr)

// Device copies of one context's inputs.
struct DeviceInputs {
  DeviceBuffer query, min_keys, max_keys, mean_keys, codes, lut, always, arena, slots, scores, idx, out;
};

template <typename T>
DeviceBuffer Upload(const std::vector<T>& v) {
  auto b = DeviceBuffer::Allocate(std::max<size_t>(1, v.size() * sizeof(T)));
  Check(b.status(), "cudaMalloc");
  Check(Copy(b->data(), v.data(), v.size() * sizeof(T), CopyKind::kHostToDevice), "upload");
  return std::move(b).value();
}

DeviceBuffer Zeros(size_t bytes) {
  auto b = DeviceBuffer::Allocate(bytes);
  Check(b.status(), "cudaMalloc");
  Check(MemsetAsync(b->data(), 0, bytes, nullptr), "memset");
  return std::move(b).value();
}

// One timed GPU call: events around f() on `stream`.
struct GpuTimer {
  GpuStream stream;
  GpuEvent start, end;
  template <typename F>
  double Us(F&& f) {
    Check(start.Record(&stream), "record");
    f();
    Check(end.Record(&stream), "record");
    Check(end.Synchronize(), "sync");
    auto ms = GpuEvent::ElapsedMs(start, end);
    Check(ms.status(), "elapsed");
    return *ms * 1000.0;
  }
};

void BenchGpu(const Options& o, const Inputs& in, GpuTimer& t, std::vector<Row>* rows) {
  DeviceInputs d{Upload(in.query), Upload(in.min_keys), Upload(in.max_keys), Upload(in.mean_keys),
                 Upload(in.codes), Upload(in.lut), Upload(in.always), Upload(in.arena),
                 Upload(SelectedSlots(in)), Zeros(in.blocks * 4), Zeros(in.k * 4), Zeros(kQHeads * kHeadDim * 4)};
  auto* scores = static_cast<float*>(d.scores.data());
  auto ws = DeviceBuffer::Allocate(4 << 20);
  Check(ws.status(), "workspace");
  for (ScoreMode mode : {ScoreMode::kMinMax, ScoreMode::kMean, ScoreMode::kVqLut}) {
    ScoreArgs sa = MakeScoreArgs(mode, in, d.query.data(), d.min_keys.data(), d.max_keys.data(),
                                 d.mean_keys.data(), d.codes.data(), d.lut.data(), scores);
    sa.workspace = ws->data();
    sa.workspace_bytes = ws->size();
    const TopKArgs ta = MakeTopKArgs(in, scores, static_cast<const uint8_t*>(d.always.data()),
                                     static_cast<uint32_t*>(d.idx.data()));
    Row r = MakeRow(std::string("score_") + ModeName(mode) + "+topk", "cuda", in.tokens);
    r.bytes = ScoreBytes(mode, in);
    TimeIt(o, [&] { return t.Us([&] { CHECK_OK(ScoreBlocks(Backend::kCuda, sa, &t.stream)), CHECK_OK(TopK(Backend::kCuda, ta, &t.stream)); }); }, &r);
    r.note = "HBM floor " + std::to_string(r.bytes / 3.35e6).substr(0, 5) + " us";
    rows->push_back(r);
  }
  const TopKArgs ta = MakeTopKArgs(in, scores, static_cast<const uint8_t*>(d.always.data()),
                                   static_cast<uint32_t*>(d.idx.data()));
  Row tk = MakeRow("topk_only", "cuda", in.tokens);
  TimeIt(o, [&] { return t.Us([&] { CHECK_OK(TopK(Backend::kCuda, ta, &t.stream)); }); }, &tk);
  rows->push_back(tk);
  AttentionArgs aa = MakeAttentionArgs(in, d.query.data(), d.arena.data(),
                                       static_cast<const uint32_t*>(d.slots.data()), static_cast<float*>(d.out.data()));
  aa.workspace = ws->data();
  aa.workspace_bytes = ws->size();
  Row at = MakeRow("attention_on_selection", "cuda", in.tokens);
  at.bytes = double(in.k) * aa.slot_bytes;
  at.note = std::to_string(in.k) + " blocks";
  TimeIt(o, [&] { return t.Us([&] { CHECK_OK(DecodeAttention(Backend::kCuda, aa, &t.stream)); }); }, &at);
  rows->push_back(at);
}

// Zero-copy gather of the selection from mapped pinned host memory into device memory.
void BenchGpuGather(const Options& o, const Inputs& in, GpuTimer& t, std::vector<Row>* rows) {
  const size_t block_bytes = size_t{2} * kKvHeads * kBlockTokens * kHeadDim * 2;
  auto host = PinnedHostBuffer::Allocate(block_bytes * (in.k + 8));
  Check(host.status(), "pinned arena");
  std::memcpy(host->host(), in.arena.data(), std::min(host->size(), in.arena.size() * 2));
  DeviceBuffer dst = Zeros(block_bytes * in.k);
  auto arrays = PinnedHostBuffer::Allocate(2 * sizeof(void*) * in.k);
  Check(arrays.status(), "pinned arrays");
  auto** a = static_cast<void**>(arrays->host());
  const std::vector<uint32_t> slots = SelectedSlots(in);
  for (uint32_t i = 0; i < in.k; ++i) {
    a[i] = static_cast<char*>(host->device()) + slots[i] * block_bytes;
    a[in.k + i] = static_cast<char*>(dst.data()) + size_t{i} * block_bytes;
  }
  auto** dev = static_cast<void**>(arrays->device());
  const GatherArgs ga{const_cast<const void* const*>(dev), dev + in.k, in.k, block_bytes};
  Row g = MakeRow("gather_selection_zero_copy", "cuda", in.tokens);
  g.bytes = double(block_bytes) * in.k;
  g.note = std::to_string(in.k) + " x " + std::to_string(block_bytes >> 10) + " KiB from pinned host";
  TimeIt(o, [&] { return t.Us([&] { CHECK_OK(Gather(Backend::kCuda, ga, &t.stream)); }); }, &g);
  rows->push_back(g);
}

void PrintAndSave(const Options& o, const std::vector<Row>& rows) {
  std::printf("\n%-28s %-5s %9s %12s %12s %6s %9s  %s\n", "kernel", "impl", "context", "median_us", "min_us", "reps",
              "GB/s", "note");
  nlohmann::json j;
  j["shape"] = {{"q_heads", kQHeads}, {"kv_heads", kKvHeads}, {"head_dim", kHeadDim}, {"dtype", "bf16"},
                {"block_tokens", kBlockTokens}, {"budget", kBudget}, {"vq_subspaces", kVqSubspaces}};
  j["device"] = DescribeGpus();
  j["rows"] = nlohmann::json::array();
  for (const Row& r : rows) {
    const double gbs = r.bytes > 0 ? r.bytes / (r.median_us * 1e3) : 0;
    std::printf("%-28s %-5s %9u %12.1f %12.1f %6d %9.2f  %s\n", r.name.c_str(), r.backend.c_str(), r.context,
                r.median_us, r.min_us, r.reps, gbs, r.note.c_str());
    j["rows"].push_back({{"kernel", r.name}, {"backend", r.backend}, {"context_tokens", r.context},
                         {"median_us", r.median_us}, {"min_us", r.min_us}, {"reps", r.reps}, {"bytes", r.bytes},
                         {"gb_per_s", gbs}, {"note", r.note}});
  }
  std::ofstream f(o.json_path);
  if (!f) {
    std::fprintf(stderr, "bench_kernels: cannot write %s\n", o.json_path.c_str());
    return;
  }
  f << j.dump(2) << "\n";
  std::printf("\nwrote %s\n", o.json_path.c_str());
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--json") {
      o.json_path = v;
    } else if (k == "--min-ms") {
      o.min_ms = std::stod(v);
    } else if (k == "--contexts") {
      o.contexts.clear();
      for (size_t p = 0; p < v.size();) {
        const size_t e = std::min(v.find(',', p), v.size());
        o.contexts.push_back(static_cast<uint32_t>(std::stoul(v.substr(p, e - p))));
        p = e + 1;
      }
    } else {
      std::fprintf(stderr, "usage: bench_kernels [--json PATH] [--contexts N,N,...] [--min-ms MS]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace
}  // namespace tierkv::kernels

int main(int argc, char** argv) {
  using namespace tierkv::kernels;
  const Options o = ParseArgs(argc, argv);
  std::printf("bench_kernels: %s\n", DescribeGpus().c_str());
  std::vector<Row> rows;
  std::mt19937_64 rng(12345);
  std::unique_ptr<GpuTimer> timer;
  if (GpuCount() > 0) {
    auto s = GpuStream::Create();
    auto e0 = GpuEvent::Create(GpuEvent::Kind::kTiming), e1 = GpuEvent::Create(GpuEvent::Kind::kTiming);
    Check(s.status(), "stream");
    Check(e0.status(), "event");
    Check(e1.status(), "event");
    timer = std::make_unique<GpuTimer>(GpuTimer{std::move(s).value(), std::move(e0).value(), std::move(e1).value()});
  }
  for (uint32_t ctx : o.contexts) {
    if (ctx < kBlockTokens * 16 || ctx % kBlockTokens != 0) {
      std::fprintf(stderr, "bench_kernels: context %u must be a multiple of %u and >= %u\n", ctx, kBlockTokens,
                   kBlockTokens * 16);
      return 2;
    }
    const Inputs in = MakeInputs(ctx, rng);
    std::fprintf(stderr, "context %u tokens: %u blocks, k = %u\n", ctx, in.blocks, in.k);
    BenchCpu(o, in, &rows);
    BenchCpuBlockOps(o, in, &rows);
    if (timer) {
      BenchGpu(o, in, *timer, &rows);
      BenchGpuGather(o, in, *timer, &rows);
    }
  }
  PrintAndSave(o, rows);
  return 0;
}
