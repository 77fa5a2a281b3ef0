// Helpers shared by the benchmark programs: percentiles, a printed table, JSON out.
#pragma once

#include <chrono>
#include <cstdint>
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

inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace tierkv::bench
