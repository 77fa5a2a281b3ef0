// Fuzz targets shared by the seeded GoogleTest driver (CI, under ASan/UBSan) and the
// libFuzzer entry points (clang builds: -DTIERKV_LIBFUZZER=ON).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/data_plane.h"
#include "common/model_spec.h"
#include <string>
#include <vector>

namespace tierkv::fuzz {

// Feeds one input to a ControlService as a request body on a long-lived session
// and checks the reply is a well-formed object. Aborts on any violated invariant.
// Returns whether the service accepted the input (reply ok).
bool FuzzControl(const uint8_t* data, size_t size);

// Valid requests to mutate from.
std::vector<std::string> ControlSeeds();

// Feeds a staging fill byte and a run of 64-byte ring descriptors to a real
// namespace runtime through the channel's request checks. Returns whether any
// request succeeded. Aborts on an invalid completion.
bool FuzzRing(const uint8_t* data, size_t size);
ModelSpec RingModel();

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

// Valid descriptors of every op, and a field-aware mutation of one.
std::vector<dp::RingRequest> RingSeeds();
dp::RingRequest MutateRequest(const dp::RingRequest& in, Mutator& m);

}  // namespace tierkv::fuzz
