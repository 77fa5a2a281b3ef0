#include "daemon/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <fstream>
#include <sstream>
#include <string>

namespace tierkv::daemon {
namespace {

prometheus::MetricFamily One(const char* name, const char* help, prometheus::MetricType type, double value) {
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  return prometheus::MetricFamily{name, help, type, {m}};
}

size_t OpenFds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
    if (n > 0) --n;  // the directory stream's own descriptor
  }
  return n;
}

// /proc/self/stat fields after the command name (which may hold spaces): state is
// field 3; utime 14, stime 15, num_threads 20, starttime 22 (clock ticks since boot),
// vsize 23 (bytes), rss 24 (pages).
struct Stat {
  double cpu_s = 0, threads = 0, start_s = 0, vsize = 0, rss_bytes = 0;
};

Stat ReadStat() {
  Stat s;
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return s;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::string field[22];  // fields 3..24
  for (auto& f : field) rest >> f;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  auto num = [&](int field_no) { return std::strtod(field[field_no - 3].c_str(), nullptr); };
  s.cpu_s = (num(14) + num(15)) / tick;
  s.threads = num(20);
  double boot = 0;  // seconds since the epoch at boot: /proc/stat btime
  std::ifstream st("/proc/stat");
  for (std::string key; st >> key;) {
    if (key == "btime") {
      st >> boot;
      break;
    }
    st.ignore(1 << 20, '\n');
  }
  s.start_s = boot + num(22) / tick;
  s.vsize = num(23);
  s.rss_bytes = num(24) * page;
  return s;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessMetrics::Collect() const {
  using prometheus::MetricType;
  const Stat s = ReadStat();
  rlimit fds{};
  ::getrlimit(RLIMIT_NOFILE, &fds);
  return {
      One("process_resident_memory_bytes", "Resident memory of tierkvd", MetricType::Gauge, s.rss_bytes),
      One("process_virtual_memory_bytes", "Virtual memory of tierkvd", MetricType::Gauge, s.vsize),
      One("process_cpu_seconds_total", "User and system CPU time of tierkvd", MetricType::Counter, s.cpu_s),
      One("process_open_fds", "Open file descriptors", MetricType::Gauge, static_cast<double>(OpenFds())),
      One("process_max_fds", "Descriptor limit (RLIMIT_NOFILE)", MetricType::Gauge, static_cast<double>(fds.rlim_cur)),
      One("process_threads", "Threads of tierkvd", MetricType::Gauge, s.threads),
      One("process_start_time_seconds", "Start time since the epoch", MetricType::Gauge, s.start_s),
  };
}

}  // namespace tierkv::daemon
