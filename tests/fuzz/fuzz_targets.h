// Fuzz targets shared by the seeded GoogleTest driver (CI, under ASan/UBSan) and the
// libFuzzer entry points (clang builds: -DTIERKV_LIBFUZZER=ON).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tierkv::fuzz {

// Feeds one input to a ControlService as a request body on a long-lived session
// and checks the reply is a well-formed object. Aborts on any violated invariant.
// Returns whether the service accepted the input (reply ok).
bool FuzzControl(const uint8_t* data, size_t size);

// Valid requests to mutate from.
std::vector<std::string> ControlSeeds();

// Deterministic mutator: byte flips, insertions, deletions, splices with other seeds,
// JSON-aware substitutions of numbers and strings.
class Mutator {
 public:
  explicit Mutator(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::string Mutate(const std::string& input, const std::vector<std::string>& corpus);
  uint64_t Next();

 private:
  uint64_t state_;
};

}  // namespace tierkv::fuzz
