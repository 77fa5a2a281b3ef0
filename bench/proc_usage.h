// CPU time and context switches of a process, for benchmarks that compare two
// servers on a shared machine by what each costs per operation, not only by wall
// time (a machine with fewer cores than runnable threads makes wall time a measure
// of scheduling as much as of work).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace tierkv::bench {

struct Usage {
  double cpu_s = 0;       // user + system
  uint64_t switches = 0;  // voluntary + involuntary context switches
};

inline Usage operator-(const Usage& a, const Usage& b) { return {a.cpu_s - b.cpu_s, a.switches - b.switches}; }

// Every live thread of `pid`: /proc/PID/task/*/schedstat (ns) and status (switches).
// Threads that exited are not counted: snapshot while the threads of interest run.
inline Usage ThreadsUsage(pid_t pid) {
  Usage u;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream sched(t.path() / "schedstat");
    uint64_t ns = 0;
    if (sched >> ns) u.cpu_s += static_cast<double>(ns) * 1e-9;
    std::ifstream status(t.path() / "status");
    for (std::string line; std::getline(status, line);) {
      const auto colon = line.find(':');
      if (colon == std::string::npos || line.find("ctxt_switches") == std::string::npos) continue;
      u.switches += std::stoull(line.substr(colon + 1));
    }
  }
  return u;
}

// This process, exited threads included (getrusage).
inline Usage SelfUsage() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return {secs(r.ru_utime) + secs(r.ru_stime), static_cast<uint64_t>(r.ru_nvcsw + r.ru_nivcsw)};
}

}  // namespace tierkv::bench
