#include "bench/bench_util.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace tierkv::bench {

double Percentile(std::vector<double> s, double p) {
  if (s.empty()) return 0;
  std::sort(s.begin(), s.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(s.size())));
  return s[std::min(s.size() - 1, rank == 0 ? 0 : rank - 1)];
}

void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size());
  for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < w.size(); ++i) {
      std::printf("%s%-*s", i ? "  " : "", static_cast<int>(w[i]), i < r.size() ? r[i].c_str() : "");
    }
    std::printf("\n");
  };
  line(header);
  std::vector<std::string> rule;
  for (size_t x : w) rule.push_back(std::string(x, '-'));
  line(rule);
  for (const auto& r : rows) line(r);
  std::fflush(stdout);
}

bool WriteJson(const std::string& path, nlohmann::json doc) {
  if (path.empty()) return true;
  utsname u{};
  uname(&u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  doc["machine"] = {{"host", host}, {"cores", sysconf(_SC_NPROCESSORS_ONLN)}, {"kernel", u.release}};
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  return static_cast<bool>(out);
}

std::string Fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::vector<uint64_t> ParseUintList(const std::string& list) {
  std::vector<uint64_t> out;
  for (size_t p = 0; p < list.size();) {
    size_t q = list.find(',', p);
    if (q == std::string::npos) q = list.size();
    out.push_back(std::stoull(list.substr(p, q - p)));
    p = q + 1;
  }
  return out;
}

std::string DefaultScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp ? tmp : "/tmp";
}

bool ParseFlagValues(int argc, char** argv, const std::function<void()>& print_help,
                     const std::function<bool(const std::string& flag, const std::string& value)>& set) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      print_help();
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << a << "\n";
      return false;
    }
    const std::string v = argv[++i];
    try {
      if (!set(a, v)) {
        std::cerr << "unknown flag " << a << " (--help)\n";
        return false;
      }
    } catch (const std::exception& e) {
      std::cerr << "bad value for " << a << ": " << v << " (" << e.what() << ")\n";
      return false;
    }
  }
  return true;
}

}  // namespace tierkv::bench
