// tierkv_bench_durable: write-through puts acknowledged durable per second through
// the client API against a real tierkvd, with group commit off (one fdatasync and one
// synced manifest write per put: the behaviour before issue 16), on with the data and
// the manifest synced one after the other (group_commit_overlap = false) and on with
// them synced at once (the default), measured in the same run. Target (issue 16): >= 10x with 4 writers and 8-64 KiB blocks.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "storage/side_thread.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkv_bench_durable [options]

Starts three tierkvd (the one built beside this program) on temporary directories
($TMPDIR, default /tmp: put it on the disk you want to measure): [storage]
group_commit = false; true with group_commit_overlap = false (two syncs in a row per
commit); true with the defaults (one sync's wait). It alternates between them. For each block size it creates a namespace whose
policy is write-through, and for each number of writers (one client connection and
channel each, one thread each) and blocks per put, puts blocks for the given time
and counts those acknowledged durable (on D, fdatasynced, recorded in the manifest).
Each writer cycles over 256 block positions of its own sequence (rewrites go to
fresh D slots, so D does not fill up).

  --seconds S          per slice (default 0.5)
  --rounds R           slices of each kind per cell, alternated (default 6)
  --block-kib A,B,..   block sizes (default 8,16,64)
  --writers A,B,..     concurrent writers (default 1,4)
  --per-put A,B,..     blocks per put request (default 1,16)
  --disk-engine E      auto | io_uring | psync (default auto)
  --json PATH          write the results as JSON
)";

using namespace tierkv;
using Clock = std::chrono::steady_clock;

std::vector<uint32_t> ParseList(const std::string& s) {
  std::vector<uint32_t> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = s.find(',', at);
    out.push_back(static_cast<uint32_t>(std::stoul(s.substr(at, comma - at))));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

constexpr int kNumArms = 3;  // group commit off; on with two syncs in a row; on

struct Cell {
  uint32_t kib = 0, writers = 0, per_put = 0;
  double seconds = 0, blocks_per_s = 0, puts_per_s = 0;
  uint64_t not_durable = 0;
  double commits_per_put = 0;
};

std::string NsName(uint32_t kib) { return "dur" + std::to_string(kib); }

// One measurement: `writers` threads put for `seconds`; blocks acknowledged durable per second.
Cell Measure(const std::string& socket, uint32_t kib, uint32_t writers, uint32_t per_put, double seconds,
             uint64_t seq_base) {
  const size_t bb = size_t{kib} << 10;
  std::vector<std::unique_ptr<Client>> conns;
  std::vector<std::unique_ptr<DataChannel>> chans;
  for (uint32_t w = 0; w < writers; ++w) {
    conns.push_back(std::move(Client::Connect(socket)).value());
    if (!conns.back()->Attach(NsName(kib)).ok()) std::abort();
    auto ch = conns.back()->OpenChannel(NsName(kib), {.staging_bytes = std::max<uint64_t>(bb * per_put, 1 << 20)});
    if (!ch.ok()) std::fprintf(stderr, "open channel: %s\n", ch.status().ToString().c_str()), std::abort();
    chans.push_back(std::move(ch).value());
  }
  std::vector<std::byte> payload(bb * per_put);
  std::mt19937 rng(kib * 131 + writers);
  for (auto& b : payload) b = static_cast<std::byte>(rng());
  std::atomic<uint64_t> durable_blocks{0}, puts{0}, not_durable{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> ts;
  for (uint32_t w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      while (!go.load()) std::this_thread::yield();
      constexpr uint32_t kWindow = 256;
      for (uint64_t k = 0; !stop.load(); ++k) {
        const uint32_t first = static_cast<uint32_t>((k * per_put) % kWindow);
        bool durable = false;
        const Status st = chans[w]->Put(seq_base + w, 0, first, payload, 0, &durable);
        if (!st.ok()) std::fprintf(stderr, "put: %s\n", st.ToString().c_str()), std::abort();
        ++puts;
        if (durable) {
          durable_blocks += per_put;
        } else {
          not_durable += per_put;
        }
      }
    });
  }
  const auto t0 = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double s = bench::SecondsSince(t0);
  for (uint32_t w = 0; w < writers; ++w) chans[w]->CloseSequence(seq_base + w).IgnoreError();
  Cell c{kib, writers, per_put};
  c.seconds = s;
  c.blocks_per_s = durable_blocks.load() / s;
  c.puts_per_s = puts.load() / s;
  c.not_durable = not_durable.load();
  return c;
}

// The device alone, in the same run: each of `writers` threads writes its per_put
// blocks (one O_DIRECT pwrite, cycling over 256 block positions of its own region of
// one preallocated file in `dir`) and fdatasyncs them, as a put without group commit
// would with no manifest at all; concurrent fdatasyncs merge in the kernel as they
// may. Blocks synced per second.
double MeasureRaw(const std::string& dir, uint32_t kib, uint32_t writers, uint32_t per_put, double seconds) {
  const size_t bb = size_t{kib} << 10, region = bb * 256;
  const std::string path = dir + "/raw-" + std::to_string(kib);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  if (fd < 0 || posix_fallocate(fd, 0, static_cast<off_t>(region * writers)) != 0) {
    std::fprintf(stderr, "raw file %s: %s\n", path.c_str(), std::strerror(errno));
    std::abort();
  }
  std::atomic<uint64_t> synced{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (uint32_t w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      void* buf = nullptr;
      if (posix_memalign(&buf, 4096, bb * per_put) != 0) std::abort();
      std::memset(buf, 0x5a + static_cast<int>(w), bb * per_put);
      for (uint64_t k = 0; !stop.load(); ++k) {
        const size_t at = ((k * per_put) % (256 - per_put + 1)) * bb;
        if (pwrite(fd, buf, bb * per_put, static_cast<off_t>(w * region + at)) != static_cast<ssize_t>(bb * per_put) ||
            fdatasync(fd) != 0) {
          std::perror("raw write");
          std::abort();
        }
        synced += per_put;
      }
      std::free(buf);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  const double s = bench::SecondsSince(t0);
  close(fd);
  unlink(path.c_str());
  return static_cast<double>(synced.load()) / s;
}

// What a commit's two syncs cost on this device, no daemon: a 16-slot O_DIRECT
// overwrite + fdatasync (the D data), a 2 KiB append + fdatasync (RocksDB's WAL),
// each alone, both at once (the append on a side thread, as the daemon's
// manifest writer), and one after the other. Microseconds
// per pair (or per op alone), mean over `iters`.
struct SyncPair {
  double data = 0, wal = 0, at_once = 0, in_a_row = 0;
};

SyncPair MeasureSyncPair(const std::string& dir, int iters) {
  const size_t bytes = 16 * (8192 + 512);
  const std::string data_path = dir + "/pair-data", wal_path = dir + "/pair-wal";
  const int data = open(data_path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  const int wal = open(wal_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  void* buf = nullptr;
  if (data < 0 || wal < 0 || posix_memalign(&buf, 4096, bytes) != 0) std::abort();
  std::memset(buf, 0x5a, bytes);
  if (pwrite(data, buf, bytes, 0) != static_cast<ssize_t>(bytes) || fdatasync(data) != 0) std::abort();
  char record[2048];
  std::memset(record, 0x33, sizeof record);
  auto data_op = [&] {
    if (pwrite(data, buf, bytes, 0) != static_cast<ssize_t>(bytes) || fdatasync(data) != 0) std::abort();
  };
  auto wal_op = [&] {
    if (write(wal, record, sizeof record) != static_cast<ssize_t>(sizeof record) || fdatasync(wal) != 0) std::abort();
  };
  auto time = [&](auto&& op) {
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) op();
    return bench::SecondsSince(t0) * 1e6 / iters;
  };
  SyncPair p;
  p.data = time(data_op);
  p.wal = time(wal_op);
  storage::SideThread side;  // as the daemon's manifest writer
  p.at_once = time([&] {
    side.Run(wal_op);
    data_op();
    side.Wait();
  });
  p.in_a_row = time([&] {
    data_op();
    wal_op();
  });
  std::free(buf);
  close(data);
  close(wal);
  unlink(data_path.c_str());
  unlink(wal_path.c_str());
  return p;
}

double Commits(const std::string& metrics_url, uint32_t kib) {
  return testing::MetricValue(testing::HttpGet(metrics_url), "tierkv_disk_commits_total",
                              {"namespace=\"" + NsName(kib) + "\""});
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.5;
  int rounds = 6;
  std::vector<uint32_t> kibs = {8, 16, 64}, writers = {1, 4}, per_puts = {1, 16};
  std::string json_path, engine = "auto";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help") return std::fputs(kUsage, stdout), 0;
    if (a == "--seconds" && i + 1 < argc) seconds = std::stod(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::stoi(argv[++i]));
    else if (a == "--block-kib" && i + 1 < argc) kibs = ParseList(argv[++i]);
    else if (a == "--writers" && i + 1 < argc) writers = ParseList(argv[++i]);
    else if (a == "--per-put" && i + 1 < argc) per_puts = ParseList(argv[++i]);
    else if (a == "--disk-engine" && i + 1 < argc) engine = argv[++i];
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else return std::fprintf(stderr, "unknown argument %s (see --help)\n", a.c_str()), 2;
  }
  for (uint32_t k : kibs) {
    if (k == 0 || k % 4 != 0 || k > 4096) return std::fprintf(stderr, "--block-kib: multiples of 4 up to 4096\n"), 2;
  }
  std::printf("tierkv_bench_durable: %d alternated slices of %.2f s each way per cell, write-through, blocks "
              "acknowledged durable per second\n\n", rounds, seconds);
  nlohmann::json doc{{"benchmark", "durable_puts"}, {"seconds", seconds}, {"rounds", rounds}};
  std::vector<std::unique_ptr<testing::TempDir>> dirs;
  std::vector<std::unique_ptr<testing::DaemonProcess>> daemons;
  std::vector<std::string> metrics;
  const char* kArms[kNumArms] = {"group_commit = false\n", "group_commit = true\ngroup_commit_overlap = false\n",
                                 "group_commit = true\n"};
  for (int grouped = 0; grouped < kNumArms; ++grouped) {
    dirs.push_back(std::make_unique<testing::TempDir>("bench-durable"));
    daemons.push_back(std::make_unique<testing::DaemonProcess>(
        TIERKVD_PATH, dirs.back()->path(), "log_level = \"warning\"\n",
        std::string("[storage]\ngpu_bytes = 67108864\nhost_bytes = 268435456\ndisk_bytes = 1073741824\n"
                    "prefault = false\nshutdown_drain_s = 0\ndisk_engine = \"" + engine + "\"\n") +
            kArms[grouped]));
    testing::DaemonProcess& daemon = *daemons.back();
    if (!daemon.Start()) return std::fprintf(stderr, "tierkvd did not start:\n%s\n", daemon.Log().c_str()), 1;
    auto admin = Client::Connect(daemon.socket_path());
    if (!admin.ok()) return std::fprintf(stderr, "%s\n", admin.status().ToString().c_str()), 1;
    for (uint32_t kib : kibs) {
      NamespaceSpec spec;
      spec.name = NsName(kib);
      spec.model = {1, 1, 1, 128, kib * 2, DType::kF16};  // 2 (K, V) x 128 x 2 bytes = 512 bytes per token
      auto created = (*admin)->CreateNamespace(spec);
      if (!created.ok()) return std::fprintf(stderr, "%s\n", created.status().ToString().c_str()), 1;
      auto set = (*admin)->SetPolicy(spec.name, R"({"write": "write-through"})");
      if (!set.ok()) return std::fprintf(stderr, "%s\n", set.status().ToString().c_str()), 1;
    }
    auto stats = (*admin)->Stats();
    if (!stats.ok()) return std::fprintf(stderr, "%s\n", stats.status().ToString().c_str()), 1;
    metrics.push_back(stats->metrics_url);
  }
  struct Key {
    uint32_t kib, writers, per_put;
  };
  std::vector<Key> keys;
  for (uint32_t kib : kibs) {
    for (uint32_t w : writers) {
      for (uint32_t p : per_puts) keys.push_back({kib, w, p});
    }
  }
  // Each cell alternates short slices without and with group commit, `rounds` of
  // each, so that both see the same machine (a shared disk's fdatasync latency
  // drifts); a cell's rate is its blocks over its time, all slices together.
  std::vector<Cell> cells[kNumArms];  // [arm][cell]
  std::vector<double> raw_blocks_per_s;  // [cell]: the device alone (MeasureRaw)
  uint64_t seq_base = 1000;
  for (const Key& k : keys) {
    double blocks[kNumArms] = {}, puts[kNumArms] = {}, commits[kNumArms] = {}, secs[kNumArms] = {}, raw = 0;
    uint64_t not_durable[kNumArms] = {};
    for (int round = 0; round < rounds; ++round) {
      for (int grouped = 0; grouped < kNumArms; ++grouped) {
        const double commits0 = Commits(metrics[grouped], k.kib);
        const Cell c = Measure(daemons[grouped]->socket_path(), k.kib, k.writers, k.per_put, seconds, seq_base);
        commits[grouped] += Commits(metrics[grouped], k.kib) - commits0;
        seq_base += k.writers;
        blocks[grouped] += c.blocks_per_s * c.seconds;
        puts[grouped] += c.puts_per_s * c.seconds;
        secs[grouped] += c.seconds;
        not_durable[grouped] += c.not_durable;
      }
      raw += MeasureRaw(dirs[0]->path(), k.kib, k.writers, k.per_put, seconds) / rounds;
    }
    raw_blocks_per_s.push_back(raw);
    for (int grouped = 0; grouped < kNumArms; ++grouped) {
      Cell c{k.kib, k.writers, k.per_put};
      c.seconds = secs[grouped];
      c.blocks_per_s = blocks[grouped] / secs[grouped];
      c.puts_per_s = puts[grouped] / secs[grouped];
      c.not_durable = not_durable[grouped];
      c.commits_per_put = puts[grouped] > 0 ? commits[grouped] / puts[grouped] : 0;
      cells[grouped].push_back(c);
    }
    std::fprintf(stderr, "  %u KiB x%u writers x%u per put: %.0f -> %.0f -> %.0f durable blocks/s\n", k.kib,
                 k.writers, k.per_put, cells[0].back().blocks_per_s, cells[1].back().blocks_per_s,
                 cells[2].back().blocks_per_s);
  }
  for (auto& d : daemons) d->Stop();
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < cells[0].size(); ++i) {
    const Cell& off = cells[0][i];
    const Cell& two_syncs = cells[1][i];
    const Cell& on = cells[2][i];
    const double x = off.blocks_per_s > 0 ? on.blocks_per_s / off.blocks_per_s : 0;
    // Today's one writer, one block per put, same block size (the issue's baseline).
    double one = 0;
    for (const Cell& c : cells[0]) {
      if (c.kib == on.kib && c.writers == 1 && c.per_put == 1) one = c.blocks_per_s;
    }
    const double x1 = one > 0 ? on.blocks_per_s / one : 0;
    rows.push_back({std::to_string(on.kib), std::to_string(on.writers), std::to_string(on.per_put),
                    bench::Fmt(off.blocks_per_s, 0), bench::Fmt(two_syncs.blocks_per_s, 0),
                    bench::Fmt(on.blocks_per_s, 0), bench::Fmt(raw_blocks_per_s[i], 0),
                    bench::Fmt(on.blocks_per_s / raw_blocks_per_s[i], 2),
                    bench::Fmt(two_syncs.blocks_per_s > 0 ? on.blocks_per_s / two_syncs.blocks_per_s : 0, 2),
                    bench::Fmt(x, 1) + "x", one > 0 ? bench::Fmt(x1, 1) + "x" : "-",
                    bench::Fmt(two_syncs.commits_per_put, 2), bench::Fmt(on.commits_per_put, 2),
                    std::to_string(off.not_durable + two_syncs.not_durable + on.not_durable)});
    doc["results"].push_back({{"block_kib", on.kib},
                              {"writers", on.writers},
                              {"blocks_per_put", on.per_put},
                              {"durable_blocks_per_s_without_group_commit", off.blocks_per_s},
                              {"durable_blocks_per_s_group_commit_two_syncs", two_syncs.blocks_per_s},
                              {"durable_blocks_per_s_with_group_commit", on.blocks_per_s},
                              {"speedup", x},
                              {"vs_one_writer_one_block_before", x1},
                              {"raw_synced_blocks_per_s", raw_blocks_per_s[i]},
                              {"disk_commits_per_put_two_syncs", two_syncs.commits_per_put},
                              {"puts_per_s_with_group_commit", on.puts_per_s},
                              {"disk_commits_per_put_with_group_commit", on.commits_per_put},
                              {"disk_commits_per_put_without_group_commit", off.commits_per_put},
                              {"not_durable_blocks", off.not_durable + two_syncs.not_durable + on.not_durable}});
  }
  bench::PrintTable({"block KiB", "writers", "blocks/put", "blk/s before", "blk/s grouped, 2 syncs", "blk/s after",
                     "raw blk/s", "after/raw", "after/2 syncs", "after/before", "after/1 writer before", "commits/put 2 syncs", "commits/put after",
                     "not durable"},
                    rows);
  std::printf("\nbefore: [storage] group_commit = false (one fdatasync + one synced manifest batch per put);\n"
              "grouped, 2 syncs: group commit, data synced then the manifest (group_commit_overlap = false);\n"
              "after: group commit with the defaults (data and manifest synced at once). after/1 writer\n"
              "before: against one writer putting one block at a time without group commit (the issue's\n"
              "baseline). raw: the same writers writing the same blocks to a file of\n"
              "their own with O_DIRECT and fdatasync each time, no daemon, no manifest (the device's synced-write\n"
              "rate). target: >= 10x with 4 writers, 8-64 KiB blocks\n");
  // The device's two syncs (what a commit makes), no daemon.
  const SyncPair pair = MeasureSyncPair(dirs[0]->path(), 300);
  std::printf("\nthe device's two syncs, no daemon (us): 16 x 8.5 KiB O_DIRECT write + fdatasync %.0f; 2 KiB append +\n"
              "fdatasync %.0f; both at once (a side thread) %.0f; one after the other %.0f\n",
              pair.data, pair.wal, pair.at_once, pair.in_a_row);
  doc["sync_pair_us"] = {{"data_write_sync", pair.data}, {"wal_append_sync", pair.wal},
                         {"at_once", pair.at_once}, {"in_a_row", pair.in_a_row}};
  bench::WriteJson(json_path, doc);
  return 0;
}
