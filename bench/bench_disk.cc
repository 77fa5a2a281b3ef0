// tierkv_bench_disk: the D tier against a plain io_uring loop on the same file
// system, with the same queue depth and O_DIRECT, measured side by side in one run
// (BENCHMARKS.md: "D->H reads through io_uring >= 90% of the raw device figure
// measured in the same run"); and H-tier put/get throughput against memcpy.
//
// Cases: sequential 1 MiB reads and writes, random 4/16/64/128/256 KiB reads and
// writes. Each case alternates three measurements for --rounds rounds and reports
// medians:
//   raw       the raw loop moving payload-sized blocks;
//   raw@slot  the raw loop moving slot-sized blocks (header sector + payload: 512 B
//             more in format v2, 4 KiB in v1), the bytes the D tier format moves;
//   tier      the D tier (ReadBatch/WriteBatch, header + checksums verified, zero-copy
//             into page-aligned buffers unless --zero-copy 0).
// ratio = tier / raw payload throughput (= IOPS ratio: same payload per op), the
// median of the per-round ratios: the figure BENCHMARKS.md targets. "vs @slot" =
// tier / raw@slot IOPS likewise: the cost of the implementation alone, without the
// format's header sector. CPU: process CPU-seconds (getrusage) per GB of payload for
// each side, and their paired ratio; the tier's batches also time their stages
// (prepare: headers, write checksums, copies, queueing; reap: submit and wait;
// finish: read verification, copies out).
//
// Run: tierkv_bench_disk [--json out.json] [--dir /tmp] ... (--help lists all).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_disk_raw.h"
#include "bench/bench_util.h"
#include "common/log.h"
#include "storage/arena_tier.h"
#include "storage/disk_tier.h"
#include "storage/payload_checksum.h"

namespace tierkv::bench {
namespace {

using storage::DiskTier;
using storage::DiskTierOptions;
using storage::ReadOp;
using storage::SlotId;
using storage::SlotTag;
using storage::WriteOp;
using Clock = std::chrono::steady_clock;

struct Config {
  std::string dir;
  std::string json;
  uint64_t file_mib = 512;
  double seconds = 0.3;
  int rounds = 5;
  bool slot_baseline = true;
  uint32_t qd_seq = 32;
  uint32_t qd_rand = 64;
  uint32_t seq_kib = 1024;
  std::vector<uint32_t> rand_kib = {4, 16, 64, 128, 256};
  io::IoEngineKind engine = io::IoEngineKind::kAuto;
  bool zero_copy = true;
  bool fixed = true;
  uint32_t fixed_min_kib = 64;
  uint16_t format_version = storage::kSlabFormatVersion;
  uint32_t header_bytes = 0;
  bool verify = true;
  bool payload_only = true;
  int verify_threads = -1;  // -1: the tier's default
  uint32_t h_kib = 128;
  uint32_t h_slots = 1024;
};

void PrintHelp() {
  std::cout <<
      "tierkv_bench_disk: D tier vs a raw io_uring loop (same file system, queue depth, O_DIRECT),\n"
      "and H tier put/get vs memcpy. Prints a table; --json writes the figures.\n\n"
      "  --dir DIR          where the test files go (default $TMPDIR or /tmp; must accept O_DIRECT)\n"
      "  --file-mib N       data set per case, MiB (default 512)\n"
      "  --seconds S        time per measurement (default 0.3)\n"
      "  --rounds R         raw/tier alternations per case; medians reported (default 5)\n"
      "  --slot-baseline 0|1  also run the raw loop at the slot's I/O size, header included (default 1)\n"
      "  --qd-seq N         queue depth of the sequential cases (default 32)\n"
      "  --qd-rand N        queue depth of the random cases (default 64)\n"
      "  --seq-kib N        sequential block size, KiB (default 1024)\n"
      "  --rand-kib A,B,..  random block sizes, KiB (default 4,16,64,128,256)\n"
      "  --engine E         D tier engine: auto | io_uring | psync (default auto)\n"
      "  --zero-copy 0|1    D tier transfers straight from/to page-aligned caller memory (default 1)\n"
      "  --fixed 0|1        register that memory with the tier's io_uring engines (fixed buffers, as the daemon\n"
      "                     does with a resident H arena; 0: the kernel pins pages per transfer) (default 1)\n"
      "  --fixed-min-kib N  payloads of at least N KiB use the registered memory (default 64)\n"
      "  --format-version V D tier slab format: 2 (header sector 512 B where accepted) or 1 (4 KiB headers) (default 2)\n"
      "  --header-bytes N   D tier header sector of format 2: 0 probes (default), 512..4096\n"
      "  --verify 0|1       D tier reads verify payload checksums (default 1; 0 isolates the I/O path)\n"
      "  --verify-threads N D tier verify pool threads; 0 verifies on the batch's thread (default: the tier's)\n"
      "  --payload-only 0|1 D tier reads of slots it wrote move the payload alone, verified against the checksum\n"
      "                     it remembers (default 1; 0 reads every header sector too, as before decision 0031)\n"
      "  --h-kib N          H tier block size, KiB (default 128)\n"
      "  --h-slots N        H tier slots; 0 skips the H tier (default 1024)\n"
      "  --json PATH        write results as JSON\n"
      "  --help             this text\n";
}

bool ParseArgs(int argc, char** argv, Config* c) {
  c->dir = bench::DefaultScratchDir();
  const bool parsed = bench::ParseFlagValues(argc, argv, PrintHelp, [&](const std::string& a, const std::string& v) {
    if (a == "--dir") c->dir = v;
    else if (a == "--json") c->json = v;
    else if (a == "--file-mib") c->file_mib = std::stoull(v);
    else if (a == "--seconds") c->seconds = std::stod(v);
    else if (a == "--rounds") c->rounds = std::stoi(v);
    else if (a == "--qd-seq") c->qd_seq = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--qd-rand") c->qd_rand = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--seq-kib") c->seq_kib = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--h-kib") c->h_kib = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--h-slots") c->h_slots = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--zero-copy") c->zero_copy = std::stoi(v) != 0;
    else if (a == "--fixed") c->fixed = std::stoi(v) != 0;
    else if (a == "--fixed-min-kib") c->fixed_min_kib = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--format-version") c->format_version = static_cast<uint16_t>(std::stoul(v));
    else if (a == "--header-bytes") c->header_bytes = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--verify") c->verify = std::stoi(v) != 0;
    else if (a == "--verify-threads") c->verify_threads = std::stoi(v);
    else if (a == "--payload-only") c->payload_only = std::stoi(v) != 0;
    else if (a == "--slot-baseline") c->slot_baseline = std::stoi(v) != 0;
    else if (a == "--engine") {
      auto k = io::ParseIoEngineKind(v);
      if (!k.ok()) throw std::invalid_argument(k.status().message());
      c->engine = *k;
    } else if (a == "--rand-kib") {
      c->rand_kib.clear();
      for (uint64_t kib : bench::ParseUintList(v)) c->rand_kib.push_back(static_cast<uint32_t>(kib));
    } else {
      return false;
    }
    return true;
  });
  if (!parsed) return false;
  if (c->file_mib == 0 || c->seconds <= 0 || c->rounds < 1 || c->qd_seq == 0 || c->qd_rand == 0 ||
      c->seq_kib == 0 || c->h_kib == 0) {
    std::cerr << "sizes, counts and times must be positive\n";
    return false;
  }
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Zeroed, page-aligned bytes (anonymous mmap).
class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(size_t n) : size_(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
    if (data_ == nullptr) size_ = 0;
  }
  PageBuffer(PageBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  PageBuffer& operator=(PageBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~PageBuffer() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  operator std::span<const std::byte>() const { return {data_, size_}; }  // NOLINT(implicit)

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

SlotTag Tag(SlotId slot, uint64_t gen) {
  SlotTag t;
  t.key.ns = 1;
  t.key.seq = slot / 64;
  t.key.index = slot % 64;
  t.generation = gen;
  return t;
}

// The D tier side of one case: a tier whose slots hold `block` payload bytes,
// prefilled (generation 1), visited in order or in a fixed shuffled order.
class TierSide {
 public:
  static Result<std::unique_ptr<TierSide>> Create(const Config& c, const std::string& dir, uint32_t block,
                                                  uint32_t qd, bool sequential) {
    DiskTierOptions o;
    o.dir = dir;
    o.slot_capacity = block;
    o.num_slots = static_cast<uint32_t>(std::max<uint64_t>(qd, (c.file_mib << 20) / (block + 4096ull)));
    o.engine = c.engine;
    o.queue_depth = qd;
    o.io_contexts = 1;
    o.zero_copy = c.zero_copy;
    o.format_version = c.format_version;
    o.header_bytes = c.header_bytes;
    o.verify_payload = c.verify;
    o.payload_only_reads = c.payload_only;
    if (c.verify_threads >= 0) o.verify_threads = static_cast<uint32_t>(c.verify_threads);
    o.max_slab_bytes = 1ull << 40;  // one slab file, like the raw side
    std::unique_ptr<TierSide> side(new TierSide(block, qd, o.num_slots));
    if (side->out_.data() == nullptr || side->payload_.data() == nullptr) return ResourceExhausted("bench buffers");
    // The destination and source buffers stand in for the H arena: registered with
    // the tier's engines (fixed-buffer transfers) as the daemon does with a resident H.
    if (c.fixed) {
      o.registered_memory = {{side->out_.data(), side->out_.size()}, {side->payload_.data(), side->payload_.size()}};
    }
    o.fixed_min_bytes = c.fixed_min_kib * 1024;
    ASSIGN_OR_RETURN(side->tier_, DiskTier::Open(o));
    side->order_.resize(side->tier_->num_slots());
    for (uint32_t i = 0; i < side->order_.size(); ++i) side->order_[i] = i;
    if (!sequential) std::shuffle(side->order_.begin(), side->order_.end(), std::mt19937_64(42));
    std::vector<SlotId> slots;
    RETURN_IF_ERROR(side->tier_->AllocateMany(side->tier_->num_slots(), &slots));
    return side;
  }

  DiskTier& tier() { return *tier_; }

  // Writes every slot once (generation 1) and syncs; untimed.
  Status Prefill() {
    for (uint32_t i = 0; i < tier_->num_slots(); i += batch_) {
      std::vector<WriteOp> ops;
      for (uint32_t s = i; s < std::min(tier_->num_slots(), i + batch_); ++s) ops.emplace_back(s, Tag(s, 1), payload_);
      RETURN_IF_ERROR(tier_->WriteBatch(ops));
    }
    return tier_->Sync();
  }

  // Reads (generation 1) or writes (generation `gen`) whole batches for `seconds`.
  Result<Sample> Run(bool read, double seconds, uint64_t gen) {
    Sample s;
    const auto t0 = Clock::now();
    const double cpu0 = ProcessCpuSeconds();
    const DiskTier::StageNanos st0 = tier_->stage_nanos();
    const uint32_t outs = static_cast<uint32_t>(out_.size() / block_);
    std::vector<ReadOp> rops;
    std::vector<WriteOp> wops;
    while (Since(t0) < seconds) {
      rops.clear();
      wops.clear();
      for (uint32_t j = 0; j < batch_; ++j) {
        const SlotId slot = order_[cursor_++ % order_.size()];
        if (read) {
          rops.emplace_back(slot, Tag(slot, 1), std::span<std::byte>(out_.data() + size_t{j % outs} * block_, block_));
        } else {
          wops.emplace_back(slot, Tag(slot, gen), payload_);
        }
      }
      RETURN_IF_ERROR(read ? tier_->ReadBatch(rops) : tier_->WriteBatch(wops));
      s.ops += batch_;
      s.bytes += uint64_t{batch_} * block_;
    }
    s.seconds = Since(t0);
    s.cpu_seconds = ProcessCpuSeconds() - cpu0;
    const DiskTier::StageNanos st1 = tier_->stage_nanos();
    s.prepare_ns = st1.prepare - st0.prepare;
    s.reap_ns = st1.reap - st0.reap;
    s.finish_ns = st1.finish - st0.finish;
    return s;
  }

 private:
  TierSide(uint32_t block, uint32_t qd, uint32_t num_slots) : block_(block) {
    // Batches of many queue depths keep the queue full most of the time. Reads land
    // in at most 64 MiB of destination buffers (a stand-in for H slots), reused
    // cyclically: the copy is done, its bytes are overwritten by later ops.
    batch_ = std::max<uint32_t>(qd, std::min<uint32_t>(8 * qd, (256u << 20) / block));
    batch_ = std::min<uint32_t>(batch_, num_slots);
    // Page-aligned, like H slots: the zero-copy path applies when enabled.
    const uint32_t outs = std::max<uint32_t>(1, std::min<uint32_t>(batch_, (64u << 20) / block));
    out_ = PageBuffer(size_t{outs} * block);
    payload_ = PageBuffer(block);
    std::mt19937_64 rng(7);
    for (size_t i = 0; i < payload_.size(); ++i) payload_.data()[i] = static_cast<std::byte>(rng());
  }

  std::unique_ptr<DiskTier> tier_;
  const uint32_t block_;
  std::vector<uint32_t> order_;
  uint64_t cursor_ = 0;
  uint32_t batch_ = 0;
  PageBuffer out_, payload_;
};

struct CaseResult {
  std::string pattern;  // "seq" | "rand"
  std::string op;       // "read" | "write"
  uint32_t block_kib = 0, qd = 0;
  std::vector<Sample> raw, raw_slot, tier;  // raw_slot: raw loop moving header + payload
  std::string error;

  static double MedianOf(const std::vector<Sample>& v, double (Sample::*f)() const) {
    std::vector<double> x;
    for (const Sample& s : v) x.push_back((s.*f)());
    return x.empty() ? 0 : Median(x);
  }
  double raw_gbps() const { return MedianOf(raw, &Sample::gbps); }
  double tier_gbps() const { return MedianOf(tier, &Sample::gbps); }
  double raw_iops() const { return MedianOf(raw, &Sample::iops); }
  double tier_iops() const { return MedianOf(tier, &Sample::iops); }
  // Median over rounds of the per-round ratio: each pair was measured side by side,
  // which cancels most of the shared machine's drift between rounds.
  static double PairedRatio(const std::vector<Sample>& num, const std::vector<Sample>& den) {
    std::vector<double> x;
    for (size_t i = 0; i < std::min(num.size(), den.size()); ++i) {
      if (den[i].iops() > 0) x.push_back(num[i].iops() / den[i].iops());
    }
    return x.empty() ? 0 : Median(x);
  }
  double ratio() const { return PairedRatio(tier, raw); }
  double raw_slot_iops() const { return MedianOf(raw_slot, &Sample::iops); }
  // Tier IOPS over the raw loop's at the slot's I/O size: what the implementation
  // costs beyond the format's extra 4 KiB per slot.
  double ratio_slot() const { return PairedRatio(tier, raw_slot); }
  double raw_cpu_us() const { return MedianOf(raw, &Sample::cpu_us_per_op); }
  double tier_cpu_us() const { return MedianOf(tier, &Sample::cpu_us_per_op); }
  double raw_cpu_gb() const { return MedianOf(raw, &Sample::cpu_s_per_gb); }
  double tier_cpu_gb() const { return MedianOf(tier, &Sample::cpu_s_per_gb); }
  // Median over rounds of tier CPU/GB over raw CPU/GB (paired like ratio()).
  double cpu_ratio() const {
    std::vector<double> x;
    for (size_t i = 0; i < std::min(tier.size(), raw.size()); ++i) {
      if (raw[i].cpu_s_per_gb() > 0) x.push_back(tier[i].cpu_s_per_gb() / raw[i].cpu_s_per_gb());
    }
    return x.empty() ? 0 : Median(x);
  }
  // Stage wall time per op of the tier, microseconds (medians).
  double stage_us(uint64_t Sample::*f) const {
    std::vector<double> x;
    for (const Sample& s : tier) {
      if (s.ops > 0) x.push_back(static_cast<double>(s.*f) / 1e3 / static_cast<double>(s.ops));
    }
    return x.empty() ? 0 : Median(x);
  }
};

// One block size and pattern: reads first (against the prefilled data), then writes.
std::vector<CaseResult> RunDiskCase(const Config& c, bool sequential, uint32_t block_kib, uint32_t qd,
                                    std::string* engine, storage::SlotLayout* layout) {
  std::vector<CaseResult> out(2);
  for (int i = 0; i < 2; ++i) {
    out[i].pattern = sequential ? "seq" : "rand";
    out[i].op = i == 0 ? "read" : "write";
    out[i].block_kib = block_kib;
    out[i].qd = qd;
  }
  auto fail = [&](const Status& st) {
    for (auto& r : out) r.error = st.ToString();
    return out;
  };
  const std::string dir = c.dir + "/tierkv-bench-disk-" + std::to_string(getpid());
  struct Cleanup {
    std::string d;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  } cleanup{dir};
  std::filesystem::create_directories(dir);
  const uint32_t block = block_kib * 1024u;
  Result<std::unique_ptr<TierSide>> tier = TierSide::Create(c, dir + "/tier", block, qd, sequential);
  if (!tier.ok()) return fail(tier.status());
  *engine = (*tier)->tier().engine_name();
  if (Status st = (*tier)->Prefill(); !st.ok()) return fail(st);
  const uint32_t num_slots = (*tier)->tier().num_slots();
  const uint32_t stride = static_cast<uint32_t>((*tier)->tier().layout().header_bytes +
                                                (*tier)->tier().layout().PaddedPayload(block));
  *layout = (*tier)->tier().layout();
  Result<std::unique_ptr<RawUringFile>> raw =
      RawUringFile::Create(dir + "/raw.bin", uint64_t{num_slots} * block, block, qd, sequential);
  if (raw.ok()) {
    if (Status st = (*raw)->Fill(); !st.ok()) return fail(st);
  }
  // The same loop moving whole slots (header + payload): the device's figure for
  // the bytes the D tier format moves.
  Result<std::unique_ptr<RawUringFile>> raw_slot = NotSupported("--slot-baseline 0");
  if (raw.ok() && c.slot_baseline) {
    raw_slot = RawUringFile::Create(dir + "/raw_slot.bin", uint64_t{num_slots} * stride, stride, qd, sequential);
    if (raw_slot.ok()) {
      if (Status st = (*raw_slot)->Fill(); !st.ok()) return fail(st);
    }
  }
  for (int i = 0; i < 2; ++i) {
    const bool read = i == 0;
    for (int round = 0; round < c.rounds; ++round) {
      // ABBA order (raw, raw@slot, tier; then tier, raw@slot, raw) so that a drift
      // of the shared machine within a round does not favour one side.
      for (int step = 0; step < 3; ++step) {
        const int which = round % 2 == 0 ? step : 2 - step;
        if (which == 2) {
          Result<Sample> t = (*tier)->Run(read, c.seconds, 2 + round);
          if (!t.ok()) return fail(t.status());
          out[i].tier.push_back(*t);
          continue;
        }
        auto& side = which == 0 ? raw : raw_slot;
        if (!side.ok()) continue;
        Result<Sample> s = side.value()->Run(read, c.seconds);
        if (!s.ok()) return fail(s.status());
        (which == 0 ? out[i].raw : out[i].raw_slot).push_back(*s);
      }
    }
    if (!raw.ok()) out[i].error = raw.status().ToString();
  }
  return out;
}

struct HostResult {
  uint32_t block_kib = 0, slots = 0;
  bool pinned = false;
  std::vector<Sample> put, get, memcpy_put, memcpy_get;
  std::string error;
};

// H tier Write/Read of whole blocks vs plain memcpy into/out of the same slots.
HostResult RunHost(const Config& c) {
  HostResult r;
  r.block_kib = c.h_kib;
  r.slots = c.h_slots;
  const uint32_t block = c.h_kib * 1024u;
  auto tier = storage::CreateHostTier({"H", c.h_slots, block, storage::PinMode::kAuto});
  if (!tier.ok()) {
    r.error = tier.status().ToString();
    return r;
  }
  storage::ArenaTier& h = **tier;
  r.pinned = h.pinned();
  std::vector<SlotId> slots;
  if (Status st = h.AllocateMany(c.h_slots, &slots); !st.ok()) {
    r.error = st.ToString();
    return r;
  }
  std::vector<std::byte> payload(block), out(block);
  std::mt19937_64 rng(3);
  for (auto& b : payload) b = static_cast<std::byte>(rng());
  auto timed = [&](const std::function<bool(uint32_t)>& op) {
    Sample s;
    const auto t0 = Clock::now();
    for (uint32_t i = 0; Since(t0) < c.seconds; ++i) {
      for (uint32_t k = 0; k < 64; ++k, ++i) {
        if (!op(i % c.h_slots)) return s;
        ++s.ops;
      }
    }
    s.seconds = Since(t0);
    s.bytes = s.ops * block;
    return s;
  };
  for (int round = 0; round < c.rounds; ++round) {
    r.put.push_back(timed([&](uint32_t s) { return h.Write(s, Tag(s, 1), payload).ok(); }));
    r.memcpy_put.push_back(timed([&](uint32_t s) {
      std::memcpy(h.SlotAddress(s), payload.data(), block);
      return true;
    }));
    r.get.push_back(timed([&](uint32_t s) { return h.Read(s, Tag(s, 1), out).ok(); }));
    r.memcpy_get.push_back(timed([&](uint32_t s) {
      std::memcpy(out.data(), h.SlotAddress(s), block);
      return true;
    }));
  }
  return r;
}

nlohmann::json SamplesJson(const std::vector<Sample>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (const Sample& s : v) {
    a.push_back({{"ops", s.ops}, {"bytes", s.bytes}, {"seconds", s.seconds}, {"cpu_seconds", s.cpu_seconds}});
  }
  return a;
}

double MedianGbps(const std::vector<Sample>& v) { return CaseResult::MedianOf(v, &Sample::gbps); }
double MedianOps(const std::vector<Sample>& v) { return CaseResult::MedianOf(v, &Sample::iops); }

// xxh3-64 (the payload checksum, storage::PayloadChecksum) over a 1 MiB buffer, one core, GB/s.
double ChecksumGbps() {
  std::vector<std::byte> buf(1u << 20);
  std::mt19937_64 rng(5);
  for (auto& b : buf) b = static_cast<std::byte>(rng());
  uint64_t sink = 0;
  const auto t0 = Clock::now();
  int n = 0;
  for (; Since(t0) < 0.1; ++n) {
    buf[n % 64] = static_cast<std::byte>(sink);  // a new input each time
    sink += storage::PayloadChecksum(buf.data(), buf.size());
  }
  const double s = Since(t0);
  return sink == 42 ? 0 : static_cast<double>(n) * static_cast<double>(buf.size()) / s / 1e9;
}

void PrintAndSave(const Config& c, const std::string& engine, const storage::SlotLayout& layout,
                  const std::vector<CaseResult>& cases, const HostResult& host) {
  const double xxh3 = ChecksumGbps();
  std::printf("\nD tier (engine %s, %s%s, slab format v%u with %u-byte slot headers, checksummed slots) vs raw "
              "io_uring loop, O_DIRECT, %s, medians of %d x %.2fs\n",
              engine.c_str(), c.zero_copy ? "zero-copy" : "bounce buffers",
              c.zero_copy && c.fixed ? (" into registered memory from " + std::to_string(c.fixed_min_kib) + " KiB").c_str()
                                     : "",
              layout.version, layout.header_bytes,
              c.dir.c_str(), c.rounds, c.seconds);
  std::printf("CPU = getrusage(RUSAGE_SELF) user+sys seconds per GB of payload; payload checksum (xxh3, %s): "
              "%.1f GB/s on one core (%.3f CPU s/GB); reads verify payloads: %s; verify pool threads: %s\n",
              std::string(storage::PayloadChecksumPath()).c_str(), xxh3, xxh3 > 0 ? 1 / xxh3 : 0,
              c.verify ? "yes" : "no (--verify 0)",
              c.verify_threads >= 0 ? std::to_string(c.verify_threads).c_str()
                                    : (std::to_string(storage::VerifyPool::DefaultThreads(1)) + " (default)").c_str());
  std::printf("%-5s %-5s %6s %3s | %8s %9s | %8s %9s %9s | %6s %9s | %-17s %5s | %s\n", "case", "op", "block",
              "qd", "raw GB/s", "tier GB/s", "raw IOPS", "raw@slot", "tier IOPS", "ratio", "vs @slot",
              "CPU s/GB raw,tier", "x raw", "tier us/op: prep reap finish");
  for (const CaseResult& r : cases) {
    if (!r.error.empty() && r.tier.empty()) {
      std::printf("%-5s %-5s %5uK %3u | error: %s\n", r.pattern.c_str(), r.op.c_str(), r.block_kib, r.qd,
                  r.error.c_str());
      continue;
    }
    std::printf("%-5s %-5s %5uK %3u | %8.3f %9.3f | %8.0f %9.0f %9.0f | %6.3f %9.3f | %8.4f %8.4f %5.2f | %5.1f %5.1f %5.1f\n",
                r.pattern.c_str(), r.op.c_str(), r.block_kib, r.qd, r.raw_gbps(), r.tier_gbps(), r.raw_iops(),
                r.raw_slot_iops(), r.tier_iops(), r.ratio(), r.ratio_slot(), r.raw_cpu_gb(), r.tier_cpu_gb(),
                r.cpu_ratio(), r.stage_us(&Sample::prepare_ns), r.stage_us(&Sample::reap_ns),
                r.stage_us(&Sample::finish_ns));
  }
  if (c.h_slots == 0) {
    std::printf("\nH tier skipped (--h-slots 0)\n");
  } else {
    std::printf("\nH tier (memfd arena%s), %u slots of %u KiB, one thread\n", host.pinned ? ", pinned" : "",
                host.slots, host.block_kib);
  }
  if (c.h_slots == 0) {
    // nothing
  } else if (!host.error.empty()) {
    std::printf("error: %s\n", host.error.c_str());
  } else {
    std::printf("%-4s | %9s %10s | %12s | %6s\n", "op", "GB/s", "ops/s", "memcpy GB/s", "ratio");
    const double pm = MedianGbps(host.memcpy_put), gm = MedianGbps(host.memcpy_get);
    std::printf("%-4s | %9.2f %10.0f | %12.2f | %6.3f\n", "put", MedianGbps(host.put), MedianOps(host.put), pm,
                pm > 0 ? MedianGbps(host.put) / pm : 0);
    std::printf("%-4s | %9.2f %10.0f | %12.2f | %6.3f\n", "get", MedianGbps(host.get), MedianOps(host.get), gm,
                gm > 0 ? MedianGbps(host.get) / gm : 0);
  }
  if (c.json.empty()) return;
  nlohmann::json j;
  j["benchmark"] = "tierkv_bench_disk";
  j["config"] = {{"dir", c.dir}, {"file_mib", c.file_mib}, {"seconds", c.seconds}, {"rounds", c.rounds},
                 {"qd_seq", c.qd_seq}, {"qd_rand", c.qd_rand}, {"engine", engine}, {"zero_copy", c.zero_copy}, {"fixed", c.fixed}, {"fixed_min_kib", c.fixed_min_kib},
                 {"format_version", layout.version}, {"header_bytes", layout.header_bytes},
                 {"cpu_clock", "getrusage RUSAGE_SELF"}, {"xxh3_gbps", xxh3}, {"verify_payload", c.verify}, {"verify_threads", c.verify_threads}, {"payload_only_reads", c.payload_only},
                 {"checksum_path", std::string(storage::PayloadChecksumPath())},
                 {"raw_baseline", RawUringCompiledIn() ? "io_uring" : "none"}, {"nproc", sysconf(_SC_NPROCESSORS_ONLN)}};
  for (const CaseResult& r : cases) {
    j["disk"].push_back({{"pattern", r.pattern}, {"op", r.op}, {"block_kib", r.block_kib}, {"qd", r.qd},
                         {"raw_gbps", r.raw_gbps()}, {"tier_gbps", r.tier_gbps()}, {"raw_iops", r.raw_iops()},
                         {"tier_iops", r.tier_iops()}, {"ratio", r.ratio()},
                         {"raw_slot_iops", r.raw_slot_iops()}, {"ratio_vs_raw_slot", r.ratio_slot()},
                         {"raw_cpu_us_per_op", r.raw_cpu_us()}, {"tier_cpu_us_per_op", r.tier_cpu_us()},
                         {"raw_cpu_s_per_gb", r.raw_cpu_gb()}, {"tier_cpu_s_per_gb", r.tier_cpu_gb()},
                         {"cpu_ratio", r.cpu_ratio()}, {"tier_prepare_us_per_op", r.stage_us(&Sample::prepare_ns)},
                         {"tier_reap_us_per_op", r.stage_us(&Sample::reap_ns)},
                         {"tier_finish_us_per_op", r.stage_us(&Sample::finish_ns)}, {"error", r.error},
                         {"raw_samples", SamplesJson(r.raw)}, {"raw_slot_samples", SamplesJson(r.raw_slot)},
                         {"tier_samples", SamplesJson(r.tier)}});
  }
  j["host_tier"] = {{"block_kib", host.block_kib}, {"slots", host.slots}, {"pinned", host.pinned},
                    {"error", host.error}, {"put_gbps", MedianGbps(host.put)}, {"get_gbps", MedianGbps(host.get)},
                    {"put_ops", MedianOps(host.put)}, {"get_ops", MedianOps(host.get)},
                    {"memcpy_put_gbps", MedianGbps(host.memcpy_put)}, {"memcpy_get_gbps", MedianGbps(host.memcpy_get)},
                    {"put_samples", SamplesJson(host.put)}, {"get_samples", SamplesJson(host.get)}};
  std::ofstream f(c.json);
  f << j.dump(2) << "\n";
  if (!f) std::fprintf(stderr, "could not write %s\n", c.json.c_str());
  else std::printf("\nwrote %s\n", c.json.c_str());
}

int Main(int argc, char** argv) {
  Config c;
  if (!ParseArgs(argc, argv, &c)) return 2;
  std::vector<CaseResult> cases;
  std::string engine = "?";
  auto add = [&](std::vector<CaseResult> v) {
    for (auto& r : v) {
      std::fprintf(stderr, "  %s %s %uK done\n", r.pattern.c_str(), r.op.c_str(), r.block_kib);
      cases.push_back(std::move(r));
    }
  };
  storage::SlotLayout layout;
  add(RunDiskCase(c, true, c.seq_kib, c.qd_seq, &engine, &layout));
  for (uint32_t kib : c.rand_kib) add(RunDiskCase(c, false, kib, c.qd_rand, &engine, &layout));
  HostResult host;
  if (c.h_slots > 0) host = RunHost(c);
  PrintAndSave(c, engine, layout, cases, host);
  for (const CaseResult& r : cases) {
    if (r.tier.empty()) return 1;
  }
  return host.error.empty() ? 0 : 1;
}

}  // namespace
}  // namespace tierkv::bench

int main(int argc, char** argv) { return tierkv::bench::Main(argc, argv); }
