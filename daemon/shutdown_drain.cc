#include "daemon/shutdown_drain.h"

#include <cstdio>
#include <string>

#include "common/log.h"

namespace tierkv::daemon {
namespace {
using Clock = std::chrono::steady_clock;

std::string Mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

std::string Rate(uint64_t bytes, double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB/s", seconds > 0 ? bytes / 1e6 / seconds : 0.0);
  return buf;
}

// One namespace's outcome, when something is left or failed.
void LogLeft(const NamespaceRuntime& rt, const storage::DrainResult& r) {
  if (r.left == 0 && r.first_error.ok()) return;
  LOG(WARNING) << "shutdown drain: namespace '" << rt.record().spec.name << "': " << r.left << " of " << r.pending
               << " block(s) not written to D ("
               << (r.timed_out ? "storage.shutdown_drain_s ran out"
                               : r.first_error.ok() ? std::string("not tried") : r.first_error.ToString())
               << "); they are lost at exit";
}
}  // namespace

DrainTotals DrainOnShutdown(const std::vector<NamespaceRuntime*>& runtimes, std::chrono::seconds limit,
                            std::chrono::milliseconds progress_every) {
  DrainTotals t;
  std::vector<size_t> pending(runtimes.size());
  for (size_t i = 0; i < runtimes.size(); ++i) t.pending += pending[i] = runtimes[i]->store().BlocksNotOnDisk();
  if (t.pending == 0) {
    LOG(INFO) << "shutdown drain: every block is on D already (" << runtimes.size() << " namespace(s))";
    return t;
  }
  if (limit.count() == 0) {
    t.left = t.pending;
    LOG(WARNING) << "shutdown drain off (storage.shutdown_drain_s = 0): " << t.pending
                 << " block(s) held only in G/H are not written to D and are lost at exit";
    return t;
  }
  const auto start = Clock::now();
  const auto deadline = start + limit;
  LOG(INFO) << "shutdown drain: writing " << t.pending << " block(s) not on D back to D, " << runtimes.size()
            << " namespace(s), for at most " << limit.count() << " s (storage.shutdown_drain_s)";
  auto last_log = start;
  uint64_t written = 0, bytes = 0;
  auto progress = [&](uint64_t blocks, uint64_t b) {
    written += blocks;
    bytes += b;
    const auto now = Clock::now();
    if (now - last_log < progress_every) return;
    last_log = now;
    const double s = std::chrono::duration<double>(now - start).count();
    LOG(INFO) << "shutdown drain: " << written << " / " << t.pending << " block(s) written, " << Mb(bytes) << ", "
              << Rate(bytes, s);
  };
  for (size_t i = 0; i < runtimes.size(); ++i) {
    NamespaceRuntime& rt = *runtimes[i];
    if (pending[i] == 0) continue;
    const storage::DrainResult r = rt.store().Drain(deadline, progress);
    t.written += r.written;
    t.bytes += r.bytes;
    t.links += r.links;
    t.timed_out |= r.timed_out;
    LogLeft(rt, r);
  }
  t.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Blocks put after the plan (none: clients are gone) would make pending undercount.
  t.left = t.pending > t.written ? t.pending - t.written : 0;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f s", t.seconds);
  LOG(INFO) << "shutdown drain done: " << t.written << " of " << t.pending << " block(s) written to D ("
            << Mb(t.bytes) << " in " << secs << ", " << Rate(t.bytes, t.seconds) << "), " << t.links
            << " prefix link(s) recorded, " << t.left << " left"
            << (t.timed_out ? " (storage.shutdown_drain_s ran out)" : "");
  return t;
}

}  // namespace tierkv::daemon
