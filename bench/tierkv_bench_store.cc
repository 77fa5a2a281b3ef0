// tierkv_bench_store: the BlockStore's figures (BENCHMARKS.md targets).
//
//   lookup   RAM per stored block (BlockStore::MetadataBytes, the tiers' slot
//            bookkeeping, and the process RSS delta) and lookup time (Get of a
//            resident block, Acquire + Release of acquire_blocks blocks) for each
//            store size (default 1M and 10M tiny 64-byte blocks, all resident; each
//            size measured in a fresh child process). Target: <= 64 bytes per block
//            outside RocksDB; lookups at 10M no slower than log(10M)/log(1M) = 1.17x
//            of 1M.
//   promote  D -> H -> G promotion through Acquire(wait) of promote_batch random
//            D-only blocks (one batched D read, H -> G copies), against a raw
//            io_uring random-read loop over a file of the same size, same queue
//            depth, O_DIRECT, in the same run (ABBA rounds). Target: >= 90% of raw.
//   host     H-tier put/get of whole blocks through the BlockStore against memcpy.
//
// Run: tierkv_bench_store [--json out.json] [--dir DIR] ... (--help lists all).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bench/bench_store.h"
#include "bench/bench_util.h"

namespace tierkv::bench {
namespace {

using Json = nlohmann::json;

void PrintHelp() {
  std::cout <<
      "tierkv_bench_store: BlockStore metadata memory and lookup scaling, D->H->G promotion vs the raw\n"
      "device (same run), H-tier put/get vs memcpy. Prints tables; --json writes the figures.\n\n"
      "  --dir DIR            scratch space, must accept O_DIRECT (default $TMPDIR or /tmp)\n"
      "  --blocks A,B,..      store sizes of the lookup case (default 1000000,10000000)\n"
      "  --lookups N          Gets per measurement (default 2000000; Acquires: N / acquire-blocks)\n"
      "  --disk-blocks N      tiny blocks demoted to D for the D-resident metadata figure; 0 skips (default 200000)\n"
      "  --acquire-blocks N   blocks per Acquire in the lookup case (default 16)\n"
      "  --promote-mib N      data set of the promotion case, MiB (default 512)\n"
      "  --promote-batch N    blocks per Acquire in the promotion case (default 64)\n"
      "  --block-kib N        block size of the promotion and H cases, multiple of 4 (default 128)\n"
      "  --qd N               D tier and raw loop queue depth (default 32)\n"
      "  --zero-copy 0|1      D tier transfers straight from/to H slots (1) or via its bounce buffers (default 1)\n"
      "  --h-blocks N         blocks of the H case (default 1024)\n"
      "  --seconds S          per timed measurement (default 0.5)\n"
      "  --rounds R           alternations; medians reported (default 3)\n"
      "  --cases LIST         any of lookup,promote,host,threads (default all)\n"
      "  --json PATH          write the results as JSON\n"
      "  --help               this text\n";
}


bool ParseArgs(int argc, char** argv, StoreBenchConfig* c, std::string* json) {
  c->dir = bench::DefaultScratchDir();
  const bool parsed = bench::ParseFlagValues(argc, argv, PrintHelp, [&](const std::string& a, const std::string& v) {
    if (a == "--dir") c->dir = v;
    else if (a == "--json") *json = v;
    else if (a == "--blocks") c->blocks = bench::ParseUintList(v);
    else if (a == "--lookups") c->lookups = std::stoull(v);
    else if (a == "--disk-blocks") c->disk_blocks = std::stoull(v);
    else if (a == "--acquire-blocks") c->acquire_blocks = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--promote-mib") c->promote_mib = std::stoull(v);
    else if (a == "--promote-batch") c->promote_batch = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--block-kib") c->block_kib = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--qd") c->queue_depth = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--zero-copy") c->zero_copy = std::stoi(v) != 0;
    else if (a == "--h-blocks") c->h_blocks = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--seconds") c->seconds = std::stod(v);
    else if (a == "--rounds") c->rounds = std::stoi(v);
    else if (a == "--cases") {
      c->run_lookup = v.find("lookup") != std::string::npos;
      c->run_promote = v.find("promote") != std::string::npos;
      c->run_host = v.find("host") != std::string::npos;
      c->run_threads = v.find("threads") != std::string::npos;
    } else {
      return false;
    }
    return true;
  });
  if (!parsed) return false;
  for (uint64_t n : c->blocks) {
    if (n == 0 || n > (1ull << 31)) return std::cerr << "--blocks: each in [1, 2^31]\n", false;
  }
  if (c->lookups == 0 || c->acquire_blocks == 0 || c->promote_mib == 0 || c->promote_batch == 0 ||
      c->block_kib == 0 || c->block_kib % 4 != 0 || c->block_kib > 16384 || c->queue_depth == 0 ||
      c->h_blocks == 0 || c->seconds <= 0 || c->rounds < 1 || c->blocks_per_sequence == 0) {
    std::cerr << "sizes, counts and times must be positive (block-kib a multiple of 4, <= 16384)\n";
    return false;
  }
  return true;
}

void PrintLookup(const Json& lookup) {
  std::printf("\nMetadata: tiny 64-byte blocks, all resident (G); bytes per block outside RocksDB\n");
  std::vector<std::vector<std::string>> rows;
  for (const Json& r : lookup["memory"]) {
    if (r.contains("error")) {
      rows.push_back({"error: " + r["error"].get<std::string>()});
      continue;
    }
    const double n = r["blocks"].get<double>();
    const double index = r["store_metadata_bytes"].get<double>() / n;
    const double tier = r["g_tier_metadata_bytes"].get<double>() / r["g_tier_slots"].get<double>();
    rows.push_back({Fmt(n, 0), Fmt(index, 1), Fmt(tier, 1), Fmt(index + tier, 1),
                    Fmt(r["rss_anon_delta_bytes"].get<double>() / n, 1),
                    Fmt(r["rss_shmem_delta_bytes"].get<double>() / n, 1), Fmt(r["puts_per_second"].get<double>() / 1e6, 2)});
  }
  PrintTable({"blocks", "index B/blk", "G/H tier B/slot", "sum", "RSS anon B/blk", "RSS shm B/blk (payload)",
              "Mput/s"},
             rows);
  if (lookup.contains("disk_resident")) {
    const Json& d = lookup["disk_resident"];
    if (d.contains("error")) {
      std::printf("D-resident: error: %s\n", d["error"].get<std::string>().c_str());
    } else {
      const double index = d["index_bytes_per_block"].get<double>(), tier = d["d_tier_bytes_per_slot"].get<double>();
      std::printf("D-resident (%llu blocks on D, %llu in memory): index %.1f B/blk + D tier %.1f B/slot = %.1f B/blk\n",
                  static_cast<unsigned long long>(d["on_disk"].get<uint64_t>()),
                  static_cast<unsigned long long>(d["in_memory"].get<uint64_t>()), index, tier, index + tier);
    }
  }
  std::printf("\nLookups (one thread, random keys, sizes side by side in ABBA rounds; ratios paired per round)\n");
  rows.clear();
  const Json& t = lookup["timings"];
  if (t.is_object() && t.contains("error")) {
    std::printf("error: %s\n", t["error"].get<std::string>().c_str());
    return;
  }
  for (const Json& r : t) {
    const double n = r["blocks"].get<double>();
    const double log_ratio = std::log(n) / std::log(t[0]["blocks"].get<double>());
    rows.push_back({Fmt(n, 0), Fmt(r["get_ns_median"].get<double>(), 0), Fmt(r["acquire_ns_median"].get<double>(), 0),
                    Fmt(r["acquire_ns_per_block_median"].get<double>(), 0),
                    Fmt(r["acquire1_ns_median"].get<double>(), 0), Fmt(r["get_vs_first_median"].get<double>()),
                    Fmt(r["acquire_vs_first_median"].get<double>()), Fmt(r["acquire1_vs_first_median"].get<double>()),
                    Fmt(log_ratio), Fmt(r.value("raw_chain_ns_median", 0.0), 0),
                    Fmt(r.value("raw_chain_vs_first_median", 0.0)), std::to_string(r["errors"].get<uint64_t>())});
  }
  PrintTable({"blocks", "Get ns", "Acquire ns", "ns/blk", "Acquire(1) ns", "Get x", "Acquire x", "Acquire(1) x",
              "log(n) x", "raw chain ns", "raw chain x", "errors"},
             rows);
  std::printf("raw chain: the same dependent random loads (ref, meta, slot state, slot record, 64-byte payload) over\n"
              "arrays of the store's sizes under a mutex, no store: the memory hierarchy's own growth from size to size.\n");
}

void PrintPromote(const Json& r) {
  std::printf("\nPromotion from D (%llu blocks of %llu KiB per call, random order, engine %s) vs raw io_uring "
              "random reads (QD as the D tier), same run, medians of paired rounds\n",
              static_cast<unsigned long long>(r.value("batch", 0ull)),
              static_cast<unsigned long long>(r["block_bytes"].get<uint64_t>() / 1024),
              r["engine"].get<std::string>().c_str());
  PrintTable({"path", "GB/s", "vs raw", "vs raw@slot (IOPS)", "CPU us/blk"},
             {{"raw (payload size)", Fmt(r["raw_gbps_median"].get<double>()), "1.00", "", ""},
              {"raw@slot (4K header + payload)", Fmt(r["raw_at_slot_gbps_median"].get<double>()), "", "1.00", ""},
              {"D->H   Prefetch", Fmt(r["d_to_h_gbps_median"].get<double>()), Fmt(r["d_to_h_vs_raw_median"].get<double>()),
               Fmt(r["d_to_h_vs_raw_at_slot_median"].get<double>()), Fmt(r["d_to_h_cpu_us_per_block"].get<double>(), 1)},
              {"D->H->G Acquire(wait)", Fmt(r["d_to_g_gbps_median"].get<double>()),
               Fmt(r["d_to_g_vs_raw_median"].get<double>()), Fmt(r["d_to_g_vs_raw_at_slot_median"].get<double>()),
               Fmt(r["d_to_g_cpu_us_per_block"].get<double>(), 1)}});
  auto range = [&](const char* key) {
    std::vector<double> v = r[key].get<std::vector<double>>();
    if (v.empty()) return std::string("-");
    std::sort(v.begin(), v.end());
    return Fmt(v.front()) + ".." + Fmt(v.back());
  };
  std::printf("per-round ratios to raw: D->H %s, D->H->G %s\n", range("d_to_h_vs_raw").c_str(),
              range("d_to_g_vs_raw").c_str());
  std::printf("acquired blocks on G: %.2f; missing: %llu; fill %.2f GB/s with %llu D write batches for %llu blocks; "
              "spot checks wrong: %llu of %llu\n",
              r["share_on_gpu"].get<double>(), static_cast<unsigned long long>(r["missing"].get<uint64_t>()),
              r["fill_gbps"].get<double>(), static_cast<unsigned long long>(r["d_write_batches"].get<uint64_t>()),
              static_cast<unsigned long long>(r["d_writes"].get<uint64_t>()),
              static_cast<unsigned long long>(r["spot_wrong"].get<uint64_t>()),
              static_cast<unsigned long long>(r["spot_checked"].get<uint64_t>()));
}

void PrintHost(const Json& r) {
  std::printf("\nH tier through the BlockStore, %llu blocks of %llu KiB (%s)\n",
              static_cast<unsigned long long>(r["blocks"].get<uint64_t>()),
              static_cast<unsigned long long>(r["block_bytes"].get<uint64_t>() / 1024),
              r["pinned"].get<bool>() ? "pinned" : "not pinned");
  const double put = r["put_gbps_median"], get = r["get_gbps_median"];
  const double mput = r["memcpy_put_gbps_median"], mget = r["memcpy_get_gbps_median"];
  PrintTable({"op", "store GB/s", "memcpy GB/s", "ratio"},
             {{"put", Fmt(put), Fmt(mput), Fmt(put / mput)}, {"get", Fmt(get), Fmt(mget), Fmt(get / mget)}});
}

void PrintThreads(const Json& r) {
  std::printf("\nPut/get from several threads through one BlockStore, %llu KiB blocks in H, %llu per thread; "
              "copies under the store's mutex (before decision 0020) vs with it dropped, ABBA rounds, medians\n",
              static_cast<unsigned long long>(r["block_bytes"].get<uint64_t>() / 1024),
              static_cast<unsigned long long>(r["blocks_per_thread"].get<uint64_t>()));
  std::vector<std::vector<std::string>> rows;
  for (const Json& x : r["rows"]) {
    rows.push_back({std::to_string(x["threads"].get<uint32_t>()), x["op"].get<std::string>(),
                    Fmt(x["locked_gbps_median"].get<double>()), Fmt(x["unlocked_gbps_median"].get<double>()),
                    Fmt(x["ratio_median"].get<double>())});
  }
  PrintTable({"threads", "op", "locked GB/s", "unlocked GB/s", "unlocked/locked"}, rows);
  std::printf("errors: %llu; CPUs: %u\n", static_cast<unsigned long long>(r["errors"].get<uint64_t>()),
              r["nproc"].get<uint32_t>());
}

}  // namespace
}  // namespace tierkv::bench

int main(int argc, char** argv) {
  using namespace tierkv::bench;
  StoreBenchConfig c;
  std::string json_path;
  if (!ParseArgs(argc, argv, &c, &json_path)) return 2;
  nlohmann::json doc = {{"bench", "tierkv_bench_store"}, {"dir", c.dir}, {"rounds", c.rounds}};
  if (c.run_lookup) {
    doc["lookup"] = RunLookupCase(c);
    PrintLookup(doc["lookup"]);
  }
  if (c.run_promote) {
    doc["promote"] = RunPromoteCase(c);
    doc["promote"]["batch"] = c.promote_batch;
    PrintPromote(doc["promote"]);
  }
  if (c.run_host) {
    doc["host"] = RunHostCase(c);
    PrintHost(doc["host"]);
  }
  if (c.run_threads) {
    doc["threads"] = RunThreadsCase(c);
    PrintThreads(doc["threads"]);
  }
  if (!WriteJson(json_path, doc)) {
    std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
    return 1;
  }
  return 0;
}
