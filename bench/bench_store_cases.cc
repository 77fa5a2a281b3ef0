// The cases of tierkv_bench_store; see bench/bench_store.h.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_disk_raw.h"
#include "bench/bench_store.h"
#include "storage/block_store.h"

namespace tierkv::bench {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using storage::BlockStore;
using storage::BlockStoreOptions;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

uint64_t Next(uint64_t& s) {  // xorshift64: cheap next to the lookups it feeds
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Resident set of this process, from /proc/self/status (kB).
struct Rss {
  uint64_t anon_kb = 0, file_kb = 0, shmem_kb = 0;
};

Rss ReadRss() {
  Rss r;
  std::ifstream f("/proc/self/status");
  std::string key;
  uint64_t value;
  while (f >> key) {
    if (key == "RssAnon:" && f >> value) r.anon_kb = value;
    else if (key == "RssFile:" && f >> value) r.file_kb = value;
    else if (key == "RssShmem:" && f >> value) r.shmem_kb = value;
  }
  return r;
}

// A directory removed with its contents at scope exit.
struct Scratch {
  std::string path;
  Scratch(const std::string& base, const std::string& tag)
      : path(base + "/tierkv-bench-store-" + tag + "-" + std::to_string(getpid())) {
    std::filesystem::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

[[noreturn]] void Die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "tierkv_bench_store: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) Die(what, r.status());
  return std::move(r).value();
}

// A model whose blocks are block_kib KiB: 8 KV heads of 128 channels, bf16.
ModelSpec BigModel(uint32_t block_kib) { return {1, 32, 8, 128, block_kib / 4, DType::kBF16}; }

// Pushes every block down to D (clean blocks just leave memory).
void DemoteAll(BlockStore* store) {
  storage::Policy p = store->policy(), tiny = p;
  tiny.gpu = {0.001, 0.001};
  tiny.host = {0.001, 0.001};
  store->SetPolicy(tiny);
  store->MigrateOnce();
  store->SetPolicy(p);
}

// ---- lookups and metadata ----

struct LookupTimes {
  double get_ns = 0, acquire_ns = 0, acquire1_ns = 0, raw_ns = 0;
  uint64_t errors = 0;
};

// The memory a Get of the store touches at random, without the store: per sequence
// an array of block refs, 40-byte metas in chunks of 4096, a slot state byte, an
// 8-byte slot record and the 64-byte payload per block (the sizes of
// storage/block_index.h and the arena tier). A lookup follows the same dependent
// chain under a mutex, as the store does (ref -> meta -> state -> record -> payload
// copy): how much that alone grows from one size to
// the next is the floor the memory hierarchy sets for the store's lookups.
class RawChain {
 public:
  RawChain(uint64_t n, uint64_t per_seq) : per_seq_(per_seq), states_(n, 1), records_(n), payload_(n * kPayload) {
    for (uint64_t s = 0; s * per_seq < n; ++s) {
      auto& refs = refs_.emplace_back(std::min(per_seq, n - s * per_seq));
      std::iota(refs.begin(), refs.end(), static_cast<uint32_t>(s * per_seq));
    }
    for (uint64_t i = 0; i < n; i += kChunk) metas_.push_back(std::make_unique<Meta[]>(kChunk));
    for (uint64_t i = 0; i < n; ++i) {
      metas_[i / kChunk][i % kChunk].slot = static_cast<uint32_t>(i);
      records_[i] = i * kPayload;
    }
  }
  // ns per lookup of `lookups` random blocks of n.
  double Time(uint64_t n, uint64_t lookups, uint64_t seed) {
    uint64_t rng = seed | 1, sum = 0;
    std::byte out[kPayload];
    const auto t0 = Clock::now();
    for (uint64_t k = 0; k < lookups; ++k) {
      const uint64_t i = Next(rng) % n;
      std::lock_guard lock(mu_);
      const uint32_t ref = refs_[i / per_seq_][i % per_seq_];
      const Meta& m = metas_[ref / kChunk][ref % kChunk];
      if (states_[m.slot] == 0) continue;
      std::memcpy(out, payload_.data() + records_[m.slot], kPayload);
      sum += static_cast<uint64_t>(out[k % kPayload]);
    }
    const double ns = Since(t0) * 1e9 / static_cast<double>(lookups);
    sink_ += sum;
    return ns;
  }

 private:
  struct Meta {
    uint64_t pad[4];
    uint32_t slot, pad2;
  };
  static_assert(sizeof(Meta) == 40);
  static constexpr uint64_t kChunk = 4096, kPayload = 64;
  const uint64_t per_seq_;
  std::vector<std::vector<uint32_t>> refs_;
  std::vector<std::unique_ptr<Meta[]>> metas_;
  std::vector<uint8_t> states_;
  std::vector<uint64_t> records_;
  std::vector<std::byte> payload_;
  std::mutex mu_;
  uint64_t sink_ = 0;
};

// One measurement of each kind over a store of n blocks, random keys.
LookupTimes TimeLookups(const StoreBenchConfig& c, BlockStore* store, uint64_t n, uint64_t seed) {
  const uint64_t seqs = (n + c.blocks_per_sequence - 1) / c.blocks_per_sequence;
  std::vector<std::byte> out(store->model().BlockBytes());
  LookupTimes t;
  uint64_t rng = seed | 1;
  auto t0 = Clock::now();
  for (uint64_t k = 0; k < c.lookups; ++k) {
    const uint64_t i = Next(rng) % n;
    t.errors += !store->Get(i / c.blocks_per_sequence + 1, 0, i % c.blocks_per_sequence, out).ok();
  }
  t.get_ns = Since(t0) * 1e9 / static_cast<double>(c.lookups);
  // A retrieval step: acquire_blocks blocks of one sequence.
  const uint64_t acquires = std::max<uint64_t>(1, c.lookups / c.acquire_blocks);
  std::vector<uint32_t> want(c.acquire_blocks);
  t0 = Clock::now();
  for (uint64_t k = 0; k < acquires; ++k) {
    const uint64_t s = Next(rng) % seqs;
    const uint64_t in_seq = std::min<uint64_t>(c.blocks_per_sequence, n - s * c.blocks_per_sequence);
    for (auto& w : want) w = static_cast<uint32_t>(Next(rng) % in_seq);
    auto lease = store->Acquire(s + 1, 0, want, storage::MissMode::kWait);
    if (!lease.ok() || lease->blocks.size() != want.size()) ++t.errors;
    if (lease.ok()) t.errors += !store->Release(lease->id).ok();
  }
  t.acquire_ns = Since(t0) * 1e9 / static_cast<double>(acquires);
  // One random block per Acquire: the placement lookup alone (no block data touched).
  t0 = Clock::now();
  for (uint64_t k = 0; k < c.lookups; ++k) {
    const uint64_t i = Next(rng) % n;
    const uint32_t one = static_cast<uint32_t>(i % c.blocks_per_sequence);
    auto lease = store->Acquire(i / c.blocks_per_sequence + 1, 0, std::span<const uint32_t>(&one, 1),
                                storage::MissMode::kWait);
    if (!lease.ok() || lease->blocks.size() != 1) ++t.errors;
    if (lease.ok()) t.errors += !store->Release(lease->id).ok();
  }
  t.acquire1_ns = Since(t0) * 1e9 / static_cast<double>(c.lookups);
  return t;
}

// A store of n tiny blocks, every one resident on G (an emulated G is a memfd like
// H): lookups hit memory.
struct TinyStore {
  std::unique_ptr<storage::Manifest> manifest;
  std::unique_ptr<storage::ArenaTier> g, h;
  std::unique_ptr<BlockStore> store;
  double fill_seconds = 0;
  ~TinyStore() { store.reset(); }
};

std::unique_ptr<TinyStore> FillTinyStore(const StoreBenchConfig& c, const std::string& dir, uint64_t n,
                                         Rss* before) {
  auto t = std::make_unique<TinyStore>();
  t->manifest = Must(storage::Manifest::Open(dir + "/manifest-" + std::to_string(n)), "manifest");
  const ModelSpec model{1, 1, 1, 8, 2, DType::kF16};  // 64-byte blocks: this case is about metadata
  const auto cap = static_cast<uint32_t>(model.BlockBytes());
  if (before) *before = ReadRss();
  t->g = Must(storage::CreateEmulatedGpuTier({"G", static_cast<uint32_t>(n + n / 100 + 64), cap}), "G tier");
  t->h = Must(storage::CreateHostTier({"H", 1024, cap, storage::PinMode::kOff}), "H tier");
  BlockStoreOptions o;
  o.ns = 1;
  o.model = model;
  o.policy.sink_blocks = 0;
  o.policy.recent_window = 0;
  o.policy.gpu = {1.0, 1.0};
  o.migrator_thread = false;
  t->store = Must(BlockStore::Open(o, t->g.get(), t->h.get(), nullptr, t->manifest.get()), "BlockStore");
  std::vector<std::byte> payload(cap, std::byte{0x5a});
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    std::memcpy(payload.data(), &i, sizeof i);
    Status st = t->store->Put(i / c.blocks_per_sequence + 1, 0, static_cast<uint32_t>(i % c.blocks_per_sequence),
                              payload);
    if (!st.ok()) Die("put", st);
  }
  t->fill_seconds = Since(t0);
  return t;
}

// Memory of one store size, alone in this process.
Json MemoryInProcess(const StoreBenchConfig& c, uint64_t n) {
  Scratch dir(c.dir, "memory");
  Rss before;
  auto t = FillTinyStore(c, dir.path, n, &before);
  const Rss after = ReadRss();
  return {{"blocks", n},
          {"block_bytes", t->store->model().BlockBytes()},
          {"fill_seconds", t->fill_seconds},
          {"puts_per_second", static_cast<double>(n) / t->fill_seconds},
          {"store_metadata_bytes", t->store->MetadataBytes()},
          {"g_tier_metadata_bytes", t->g->MetadataBytes()},
          {"g_tier_slots", t->g->num_slots()},
          {"h_tier_metadata_bytes", t->h->MetadataBytes()},
          {"rss_anon_delta_bytes", (after.anon_kb - before.anon_kb) * 1024},
          {"rss_shmem_delta_bytes", (after.shmem_kb - before.shmem_kb) * 1024},
          {"on_gpu", t->g->used_slots()}};
}

// Metadata of blocks that live on D only: n tiny blocks put (write-back) and
// demoted through small G/H tiers into a D tier of n slots.
Json DiskResidentInProcess(const StoreBenchConfig& c, uint64_t n) {
  Scratch dir(c.dir, "disk-resident");
  const ModelSpec model{1, 1, 1, 8, 2, DType::kF16};
  const auto cap = static_cast<uint32_t>(model.BlockBytes());
  auto manifest = Must(storage::Manifest::Open(dir.path + "/manifest"), "manifest");
  auto g = Must(storage::CreateEmulatedGpuTier({"G", 256, cap}), "G tier");
  auto h = Must(storage::CreateHostTier({"H", 4096, cap, storage::PinMode::kOff}), "H tier");
  storage::DiskTierOptions d;
  d.dir = dir.path + "/d";
  d.num_slots = static_cast<uint32_t>(n + 64);
  d.slot_capacity = cap;
  d.queue_depth = c.queue_depth;
  auto disk = Must(storage::DiskTier::Open(d), "D tier");
  BlockStoreOptions o;
  o.ns = 1;
  o.model = model;
  o.policy.sink_blocks = 0;
  o.policy.recent_window = 0;
  o.demote_batch = 256;
  o.put_wait = std::chrono::seconds(60);
  auto store = Must(BlockStore::Open(o, g.get(), h.get(), disk.get(), manifest.get()), "BlockStore");
  std::vector<std::byte> payload(cap, std::byte{0x33});
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    Status st = store->Put(i / c.blocks_per_sequence + 1, 0, static_cast<uint32_t>(i % c.blocks_per_sequence),
                           payload);
    if (!st.ok()) Die("put", st);
  }
  DemoteAll(store.get());
  const double seconds = Since(t0);
  const uint64_t on_d = disk->used_slots(), in_memory = g->used_slots() + h->used_slots();
  // The index's own bytes, less the G/H owner maps (sized by those tiers' slots, not
  // by blocks): what each D-resident block costs, plus the D tier's per-slot bytes.
  const size_t owner_maps = (size_t{g->num_slots()} + h->num_slots()) * sizeof(storage::BlockRef);
  return {{"blocks", n},
          {"on_disk", on_d},
          {"in_memory", in_memory},
          {"seconds", seconds},
          {"store_metadata_bytes", store->MetadataBytes()},
          {"memory_tier_owner_map_bytes", owner_maps},
          {"d_tier_metadata_bytes", disk->MetadataBytes()},
          {"d_tier_slots", disk->num_slots()},
          {"index_bytes_per_block", static_cast<double>(store->MetadataBytes() - owner_maps) / static_cast<double>(n)},
          {"d_tier_bytes_per_slot", static_cast<double>(disk->MetadataBytes()) / disk->num_slots()}};
}

// Every size side by side in one process, in ABBA order per round, so that the
// ratios between sizes are paired (the machine is shared and noisy).
Json TimingsInProcess(const StoreBenchConfig& c) {
  Scratch dir(c.dir, "lookup");
  std::vector<std::unique_ptr<TinyStore>> stores;
  std::vector<std::unique_ptr<RawChain>> raws;
  for (uint64_t n : c.blocks) {
    stores.push_back(FillTinyStore(c, dir.path, n, nullptr));
    raws.push_back(std::make_unique<RawChain>(n, c.blocks_per_sequence));
  }
  const size_t k = stores.size();
  std::vector<std::vector<LookupTimes>> times(k);
  for (int round = 0; round < c.rounds; ++round) {
    for (size_t step = 0; step < k; ++step) {
      const size_t i = round % 2 == 0 ? step : k - 1 - step;
      LookupTimes t = TimeLookups(c, stores[i]->store.get(), c.blocks[i], 77 + round);
      t.raw_ns = raws[i]->Time(c.blocks[i], c.lookups, 77 + round);
      times[i].push_back(t);
    }
  }
  Json sizes = Json::array();
  for (size_t i = 0; i < k; ++i) {
    std::vector<double> get, acq, one, raw, get_ratio, acq_ratio, one_ratio, raw_ratio;
    uint64_t errors = 0;
    for (size_t r = 0; r < times[i].size(); ++r) {
      const LookupTimes& t = times[i][r];
      get.push_back(t.get_ns);
      acq.push_back(t.acquire_ns);
      one.push_back(t.acquire1_ns);
      get_ratio.push_back(t.get_ns / times[0][r].get_ns);
      acq_ratio.push_back(t.acquire_ns / times[0][r].acquire_ns);
      one_ratio.push_back(t.acquire1_ns / times[0][r].acquire1_ns);
      raw.push_back(t.raw_ns);
      raw_ratio.push_back(t.raw_ns / times[0][r].raw_ns);
      errors += t.errors;
    }
    sizes.push_back({{"blocks", c.blocks[i]},
                     {"get_ns", get},
                     {"acquire_ns", acq},
                     {"acquire1_ns", one},
                     {"get_ns_median", Median(get)},
                     {"acquire_ns_median", Median(acq)},
                     {"acquire_ns_per_block_median", Median(acq) / c.acquire_blocks},
                     {"acquire1_ns_median", Median(one)},
                     {"get_vs_first_median", Median(get_ratio)},
                     {"acquire_vs_first_median", Median(acq_ratio)},
                     {"acquire1_vs_first_median", Median(one_ratio)},
                     {"raw_chain_ns_median", Median(raw)},
                     {"raw_chain_vs_first_median", Median(raw_ratio)},
                     {"errors", errors}});
  }
  return sizes;
}

// Runs fn in a forked child (a clean heap for RSS deltas) and returns its JSON.
Json InChild(const std::function<Json()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return {{"error", "pipe failed"}};
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const std::string s = fn().dump();
    for (size_t done = 0; done < s.size();) {
      const ssize_t w = write(fds[1], s.data() + done, s.size() - done);
      if (w <= 0) _exit(3);
      done += static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string s;
  char buf[4096];
  for (ssize_t r; (r = read(fds[0], buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(r));
  close(fds[0]);
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || s.empty()) {
    return {{"error", "the measuring child failed (status " + std::to_string(status) + ")"}};
  }
  return Json::parse(s);
}

}  // namespace

Json RunLookupCase(const StoreBenchConfig& c) {
  Json memory = Json::array();
  for (uint64_t n : c.blocks) memory.push_back(InChild([&] { return MemoryInProcess(c, n); }));
  Json out = {{"memory", memory}, {"timings", InChild([&] { return TimingsInProcess(c); })}};
  if (c.disk_blocks > 0) out["disk_resident"] = InChild([&] { return DiskResidentInProcess(c, c.disk_blocks); });
  return out;
}

namespace {

// ---- promotion ----

struct PromoteSetup {
  std::unique_ptr<storage::ArenaTier> g, h;
  std::unique_ptr<storage::DiskTier> d;
  std::unique_ptr<storage::Manifest> manifest;
  std::unique_ptr<BlockStore> store;
  uint32_t blocks = 0;
  ~PromoteSetup() { store.reset(); }
};

std::unique_ptr<PromoteSetup> OpenPromote(const StoreBenchConfig& c, const std::string& dir, Json* info) {
  auto s = std::make_unique<PromoteSetup>();
  const ModelSpec model = BigModel(c.block_kib);
  const auto cap = static_cast<uint32_t>(model.BlockBytes());
  s->blocks = static_cast<uint32_t>(c.promote_mib * 1024 / c.block_kib);
  const uint32_t mem_slots = 4 * c.promote_batch;
  s->g = Must(storage::CreateEmulatedGpuTier({"G", mem_slots, cap}), "G tier");
  s->h = Must(storage::CreateHostTier({"H", mem_slots, cap, storage::PinMode::kAuto}), "H tier");
  storage::DiskTierOptions d;
  d.dir = dir + "/d";
  d.num_slots = s->blocks + 64;
  d.slot_capacity = cap;
  d.queue_depth = c.queue_depth;
  d.zero_copy = c.zero_copy;
  s->d = Must(storage::DiskTier::Open(d), "D tier");
  s->manifest = Must(storage::Manifest::Open(dir + "/manifest"), "manifest");
  BlockStoreOptions o;
  o.ns = 1;
  o.model = model;
  o.policy.sink_blocks = 0;
  o.policy.recent_window = 0;
  o.demote_batch = c.queue_depth;
  s->store = Must(BlockStore::Open(o, s->g.get(), s->h.get(), s->d.get(), s->manifest.get()), "BlockStore");
  // Fill: puts beyond G + H wait for the migrator's batched demotions to D.
  std::vector<std::byte> payload(cap);
  std::mt19937_64 rng(1);
  for (auto& b : payload) b = static_cast<std::byte>(rng() & 0x3f);  // finite bf16 values
  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < s->blocks; ++i) {
    std::memcpy(payload.data(), &i, sizeof i);
    if (Status st = s->store->Put(1, 0, i, payload); !st.ok()) Die("fill put", st);
  }
  const double fill_s = Since(t0);
  DemoteAll(s->store.get());
  const auto& st = s->store->stats();
  *info = {{"blocks", s->blocks},
           {"block_bytes", cap},
           {"engine", s->d->engine_name()},
           {"fill_seconds", fill_s},
           {"fill_gbps", static_cast<double>(s->blocks) * cap / fill_s / 1e9},
           {"d_writes", st.disk_writes.load()},
           {"d_write_batches", st.disk_write_batches.load()}};
  return s;
}

// One pass over every block (all on D only) in a random order, promote_batch blocks
// per call: Acquire(wait) (D -> H -> G) or Prefetch (D -> H).
Sample PromotePass(const StoreBenchConfig& c, PromoteSetup* s, bool to_gpu, uint64_t seed, uint64_t* on_gpu,
                   uint64_t* missing) {
  DemoteAll(s->store.get());
  std::vector<uint32_t> order(s->blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  const uint64_t d_to_h0 = s->store->stats().bytes_d_to_h.load();
  Sample sample;
  const auto t0 = Clock::now();
  const double cpu0 = ThreadCpuSeconds();
  for (size_t at = 0; at < order.size(); at += c.promote_batch) {
    const size_t k = std::min<size_t>(c.promote_batch, order.size() - at);
    const std::span<const uint32_t> batch(order.data() + at, k);
    sample.ops += k;
    if (!to_gpu) {
      auto n = s->store->Prefetch(1, 0, batch);
      if (!n.ok()) Die("prefetch", n.status());
      *missing += k - *n;
      continue;
    }
    auto lease = s->store->Acquire(1, 0, batch, storage::MissMode::kWait);
    if (!lease.ok()) Die("acquire", lease.status());
    for (const auto& b : lease->blocks) *on_gpu += b.where == storage::Where::kGpu;
    *missing += lease->missing.size();
    if (Status st = s->store->Release(lease->id); !st.ok()) Die("release", st);
  }
  sample.seconds = Since(t0);
  sample.cpu_seconds = ThreadCpuSeconds() - cpu0;
  sample.bytes = s->store->stats().bytes_d_to_h.load() - d_to_h0;
  return sample;
}

Json SamplesJson(const std::vector<Sample>& v) {
  Json a = Json::array();
  for (const Sample& s : v) a.push_back({{"ops", s.ops}, {"bytes", s.bytes}, {"seconds", s.seconds}, {"gbps", s.gbps()}});
  return a;
}

std::vector<double> Gbps(const std::vector<Sample>& v) {
  std::vector<double> out;
  for (const Sample& s : v) out.push_back(s.gbps());
  return out;
}

}  // namespace

Json RunPromoteCase(const StoreBenchConfig& c) {
  Scratch dir(c.dir, "promote");
  Json info;
  auto s = OpenPromote(c, dir.path, &info);
  const uint64_t cap = s->store->model().BlockBytes();
  const uint64_t stride = storage::DiskSlotStride(static_cast<uint32_t>(cap));
  auto raw = RawUringFile::Create(dir.path + "/raw.bin", uint64_t{s->blocks} * cap, static_cast<uint32_t>(cap),
                                  c.queue_depth, false);
  auto raw_slot = RawUringFile::Create(dir.path + "/raw_slot.bin", uint64_t{s->blocks} * stride,
                                       static_cast<uint32_t>(stride), c.queue_depth, false);
  if (raw.ok() && raw_slot.ok()) {
    if (Status st = (*raw)->Fill(); !st.ok()) Die("raw fill", st);
    if (Status st = (*raw_slot)->Fill(); !st.ok()) Die("raw fill", st);
  }
  std::vector<Sample> raw_s, raw_slot_s, to_h_s, to_g_s;
  std::vector<double> ratio_h, ratio_g, ratio_slot_h, ratio_slot_g;
  uint64_t on_gpu = 0, missing = 0, promoted = 0;
  // A warm-up pass; the raw loop then runs as long as one pass of the store takes,
  // so both see the (bursty, shared) device over the same span of time.
  const double pass_seconds = PromotePass(c, s.get(), false, 99, &on_gpu, &missing).seconds;
  missing = 0;
  for (int round = 0; round < c.rounds; ++round) {
    // ABBA: raw first on even rounds, the store first on odd ones.
    for (int step = 0; step < 2; ++step) {
      const bool do_raw = (step == 0) == (round % 2 == 0);
      if (do_raw && raw.ok() && raw_slot.ok()) {
        raw_s.push_back(Must((*raw)->Run(true, pass_seconds), "raw read"));
        raw_slot_s.push_back(Must((*raw_slot)->Run(true, pass_seconds), "raw read"));
      } else if (!do_raw) {
        to_h_s.push_back(PromotePass(c, s.get(), false, round, &on_gpu, &missing));
        uint64_t unused = 0;
        to_g_s.push_back(PromotePass(c, s.get(), true, round, &on_gpu, &unused));
        promoted += to_g_s.back().ops;
        missing += unused;
      }
    }
    if (raw.ok() && raw_slot.ok()) {
      ratio_h.push_back(to_h_s.back().gbps() / raw_s.back().gbps());
      ratio_g.push_back(to_g_s.back().gbps() / raw_s.back().gbps());
      ratio_slot_h.push_back(to_h_s.back().iops() / raw_slot_s.back().iops());
      ratio_slot_g.push_back(to_g_s.back().iops() / raw_slot_s.back().iops());
    }
  }
  info["raw"] = SamplesJson(raw_s);
  info["raw_at_slot"] = SamplesJson(raw_slot_s);
  info["d_to_h"] = SamplesJson(to_h_s);
  info["d_to_g"] = SamplesJson(to_g_s);
  info["raw_gbps_median"] = Median(Gbps(raw_s));
  info["raw_at_slot_gbps_median"] = Median(Gbps(raw_slot_s));
  info["d_to_h_gbps_median"] = Median(Gbps(to_h_s));
  info["d_to_g_gbps_median"] = Median(Gbps(to_g_s));
  info["d_to_h_vs_raw_median"] = Median(ratio_h);
  info["d_to_h_vs_raw"] = ratio_h;
  info["d_to_g_vs_raw"] = ratio_g;
  info["d_to_g_vs_raw_median"] = Median(ratio_g);
  info["d_to_h_vs_raw_at_slot_median"] = Median(ratio_slot_h);
  info["d_to_g_vs_raw_at_slot_median"] = Median(ratio_slot_g);
  info["share_on_gpu"] = promoted ? static_cast<double>(on_gpu) / static_cast<double>(promoted) : 0.0;
  info["missing"] = missing;
  info["d_to_h_cpu_us_per_block"] = to_h_s.empty() ? 0.0 : to_h_s.back().cpu_us_per_op();
  info["d_to_g_cpu_us_per_block"] = to_g_s.empty() ? 0.0 : to_g_s.back().cpu_us_per_op();
  if (!raw.ok()) info["raw_error"] = raw.status().ToString();
  // The data promoted is the data put: spot-check some blocks byte for byte.
  std::vector<std::byte> out(cap);
  uint64_t checked = 0, wrong = 0;
  for (uint32_t i = 0; i < s->blocks; i += std::max<uint32_t>(1, s->blocks / 64), ++checked) {
    uint32_t got = UINT32_MAX;
    if (s->store->Get(1, 0, i, out).ok()) std::memcpy(&got, out.data(), sizeof got);
    wrong += got != i;
  }
  info["spot_checked"] = checked;
  info["spot_wrong"] = wrong;
  return info;
}

Json RunHostCase(const StoreBenchConfig& c) {
  const ModelSpec model = BigModel(c.block_kib);
  const auto cap = static_cast<uint32_t>(model.BlockBytes());
  Scratch dir(c.dir, "host");
  auto manifest = Must(storage::Manifest::Open(dir.path + "/manifest"), "manifest");
  auto g = Must(storage::CreateEmulatedGpuTier({"G", 16, cap}), "G tier");
  auto h = Must(storage::CreateHostTier({"H", c.h_blocks + 16, cap, storage::PinMode::kAuto}), "H tier");
  BlockStoreOptions o;
  o.ns = 1;
  o.model = model;
  o.policy.sink_blocks = 0;
  o.policy.recent_window = 0;
  o.policy.gpu = {0.01, 0.01};  // everything after the first block goes to H
  o.migrator_thread = false;
  auto store = Must(BlockStore::Open(o, g.get(), h.get(), nullptr, manifest.get()), "BlockStore");
  std::vector<std::byte> payload(cap), out(cap);
  std::mt19937_64 rng(2);
  for (auto& b : payload) b = static_cast<std::byte>(rng());
  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < c.h_blocks; ++i) {
    if (Status st = store->Put(1, 0, i, payload); !st.ok()) Die("put", st);
  }
  const double fill_s = Since(t0);
  auto timed = [&](auto&& op) {
    Sample s;
    uint64_t r = 12345;
    const auto start = Clock::now();
    while (Since(start) < c.seconds) {
      for (int k = 0; k < 64; ++k, ++s.ops) op(static_cast<uint32_t>(Next(r) % c.h_blocks));
    }
    s.seconds = Since(start);
    s.bytes = s.ops * cap;
    return s;
  };
  std::vector<Sample> put, get, mput, mget;
  uint64_t errors = 0;
  for (int round = 0; round < c.rounds; ++round) {
    put.push_back(timed([&](uint32_t i) { errors += !store->Put(1, 0, i, payload).ok(); }));
    mput.push_back(timed([&](uint32_t i) { std::memcpy(h->SlotAddress(i % h->num_slots()), payload.data(), cap); }));
    get.push_back(timed([&](uint32_t i) { errors += !store->Get(1, 0, i, out).ok(); }));
    mget.push_back(timed([&](uint32_t i) { std::memcpy(out.data(), h->SlotAddress(i % h->num_slots()), cap); }));
  }
  return {{"blocks", c.h_blocks},
          {"block_bytes", cap},
          {"pinned", h->pinned()},
          {"fill_gbps", static_cast<double>(c.h_blocks) * cap / fill_s / 1e9},
          {"put", SamplesJson(put)},
          {"get", SamplesJson(get)},
          {"memcpy_put", SamplesJson(mput)},
          {"memcpy_get", SamplesJson(mget)},
          {"put_gbps_median", Median(Gbps(put))},
          {"get_gbps_median", Median(Gbps(get))},
          {"memcpy_put_gbps_median", Median(Gbps(mput))},
          {"memcpy_get_gbps_median", Median(Gbps(mget))},
          {"on_host", h->used_slots()},
          {"errors", errors}};
}

namespace {

// T threads, each putting (or getting) random blocks of its own sequence for
// `seconds`; aggregate payload bytes per second.
double TimedThreads(BlockStore* store, uint32_t threads, uint32_t per_thread, size_t cap, double seconds, bool put,
                    uint64_t* errors) {
  std::atomic<uint64_t> ops{0}, errs{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (uint32_t t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<std::byte> buf(cap, std::byte{static_cast<unsigned char>(t + 1)});
      uint64_t r = 777 + t, n = 0, e = 0;
      while (!go.load()) std::this_thread::yield();
      const auto start = Clock::now();
      while (Since(start) < seconds) {
        for (int k = 0; k < 16; ++k, ++n) {
          const auto i = static_cast<uint32_t>(Next(r) % per_thread);
          e += !(put ? store->Put(100 + t, 0, i, buf) : store->Get(100 + t, 0, i, buf)).ok();
        }
      }
      ops += n;
      errs += e;
    });
  }
  const auto t0 = Clock::now();
  go = true;
  for (auto& t : ts) t.join();
  *errors += errs.load();
  return static_cast<double>(ops.load()) * cap / Since(t0) / 1e9;
}

}  // namespace

Json RunThreadsCase(const StoreBenchConfig& c) {
  const ModelSpec model = BigModel(c.block_kib);
  const auto cap = static_cast<uint32_t>(model.BlockBytes());
  constexpr uint32_t kMaxThreads = 4;
  const uint32_t per_thread = std::max<uint32_t>(1, c.h_blocks / kMaxThreads);
  Scratch dir(c.dir, "threads");
  struct Store {
    std::unique_ptr<storage::Manifest> manifest;
    std::unique_ptr<storage::ArenaTier> g, h;
    std::unique_ptr<BlockStore> store;
  };
  auto open = [&](bool unlocked) {
    Store s;
    const std::string sub = dir.path + (unlocked ? "/unlocked" : "/locked");
    std::filesystem::create_directories(sub);
    s.manifest = Must(storage::Manifest::Open(sub + "/manifest"), "manifest");
    s.g = Must(storage::CreateEmulatedGpuTier({"G", 16, cap}), "G tier");
    s.h = Must(storage::CreateHostTier({"H", kMaxThreads * per_thread + 16, cap, storage::PinMode::kAuto}), "H tier");
    BlockStoreOptions o;
    o.ns = 1;
    o.model = model;
    o.policy.sink_blocks = 0;
    o.policy.recent_window = 0;
    o.policy.gpu = {0.01, 0.01};
    o.migrator_thread = false;
    o.unlocked_copy_bytes = unlocked ? BlockStoreOptions{}.unlocked_copy_bytes : SIZE_MAX;
    s.store = Must(BlockStore::Open(o, s.g.get(), s.h.get(), nullptr, s.manifest.get()), "BlockStore");
    std::vector<std::byte> payload(cap, std::byte{1});
    for (uint32_t t = 0; t < kMaxThreads; ++t) {
      for (uint32_t i = 0; i < per_thread; ++i) {
        if (Status st = s.store->Put(100 + t, 0, i, payload); !st.ok()) Die("put", st);
      }
    }
    return s;
  };
  Store stores[2] = {open(false), open(true)};  // [0] under the lock, [1] unlocked
  uint64_t errors = 0;
  Json rows = Json::array();
  for (uint32_t threads : {1u, kMaxThreads}) {
    for (bool put : {true, false}) {
      std::vector<double> gbps[2], ratio;
      for (int round = 0; round < c.rounds; ++round) {
        // ABBA: the order alternates so that drift in the machine's load hits both.
        double r[2];
        for (int k = 0; k < 2; ++k) {
          const int which = (round % 2 == 0) ? k : 1 - k;
          r[which] = TimedThreads(stores[which].store.get(), threads, per_thread, cap, c.seconds, put, &errors);
        }
        gbps[0].push_back(r[0]);
        gbps[1].push_back(r[1]);
        ratio.push_back(r[1] / r[0]);
      }
      rows.push_back({{"threads", threads},
                      {"op", put ? "put" : "get"},
                      {"locked_gbps", gbps[0]},
                      {"unlocked_gbps", gbps[1]},
                      {"ratio", ratio},
                      {"locked_gbps_median", Median(gbps[0])},
                      {"unlocked_gbps_median", Median(gbps[1])},
                      {"ratio_median", Median(ratio)}});
    }
  }
  return {{"block_bytes", cap}, {"blocks_per_thread", per_thread}, {"rows", rows}, {"errors", errors},
          {"nproc", std::thread::hardware_concurrency()}};
}

}  // namespace tierkv::bench
