// Helpers shared by the benchmark programs: percentiles, a printed table, JSON out.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tierkv::bench {

// p in [0, 100] of the samples (sorted copy; nearest rank).
double Percentile(std::vector<double> samples, double p);

// Prints rows as an aligned text table with a header line.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// Writes `doc` (with "machine" filled in: host name, cores, kernel) to path; "" skips.
bool WriteJson(const std::string& path, nlohmann::json doc);

std::string Fmt(double v, int decimals = 2);

// "32768,131072" -> {32768, 131072}. Throws std::invalid_argument on a non-number.
std::vector<uint64_t> ParseUintList(const std::string& list);

// $TMPDIR, else /tmp: where the benchmarks put their scratch files by default.
std::string DefaultScratchDir();

// Parses "--flag value" pairs: --help/-h calls print_help and exits 0; every other
// flag and its value go to set(flag, value), which returns false for an unknown
// flag and may throw (std::stoull and the like) for a bad value. Prints why and
// returns false on a missing value, an unknown flag or a bad value.
bool ParseFlagValues(int argc, char** argv, const std::function<void()>& print_help,
                     const std::function<bool(const std::string& flag, const std::string& value)>& set);

inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace tierkv::bench
