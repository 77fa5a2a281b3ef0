// Seeded fuzzing of the control service, run by ctest (label unit, so the ASan/UBSan
// preset runs it too). TIERKV_FUZZ_ITERATIONS overrides the number of inputs.
#include <gtest/gtest.h>

#include <cstdlib>

#include "fuzz_targets.h"

namespace tierkv::fuzz {
namespace {

uint64_t Iterations(uint64_t fallback) {
  const char* env = std::getenv("TIERKV_FUZZ_ITERATIONS");
  return env ? std::strtoull(env, nullptr, 10) : fallback;
}

TEST(ControlFuzzTest, SeededMutationsNeverBreakTheService) {
  const auto seeds = ControlSeeds();
  Mutator m(12345);
  std::vector<std::string> corpus = seeds;
  const uint64_t n = Iterations(20000);
  uint64_t accepted = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const std::string& base = corpus[m.Next() % corpus.size()];
    std::string input = m.Mutate(base, seeds);
    const bool ok = FuzzControl(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    accepted += ok;
    // Accepted mutants join the corpus: they reach deeper than the seeds.
    if (ok && corpus.size() < 512) corpus.push_back(std::move(input));
  }
  // The seeds themselves, in order, still work after all that.
  for (const auto& s : seeds) FuzzControl(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  std::printf("ran %llu control inputs, %llu accepted\n", static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(accepted));
  EXPECT_GT(accepted, n / 100) << "the mutator no longer reaches past the parser";
}

TEST(RingFuzzTest, MutatedDescriptorsNeverBreakTheDataPlane) {
  const auto seeds = RingSeeds();
  Mutator m(777);
  const uint64_t n = Iterations(20000) / 4;  // each run does disk I/O: a quarter of the control inputs
  uint64_t accepted = 0;
  for (uint64_t i = 0; i < n; ++i) {
    // A short run of descriptors: mutated seeds, sometimes intact ones between them.
    std::string input(1, static_cast<char>(m.Next()));
    const int len = 1 + static_cast<int>(m.Next() % 4);
    for (int k = 0; k < len; ++k) {
      dp::RingRequest r = seeds[m.Next() % seeds.size()];
      if (m.Next() % 4 != 0) r = MutateRequest(r, m);
      input.append(reinterpret_cast<const char*>(&r), sizeof r);
    }
    accepted += FuzzRing(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::printf("ran %llu descriptor runs, %llu with an accepted request\n", static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(accepted));
  EXPECT_GT(accepted, n / 10);
}

}  // namespace
}  // namespace tierkv::fuzz
