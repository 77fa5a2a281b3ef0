// libFuzzer entry point (clang, -DTIERKV_LIBFUZZER=ON): coverage-guided fuzzing of
// the control service.   build/fuzz/tests/fuzz/tierkv_control_fuzzer -runs=100000
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tierkv::fuzz::FuzzControl(data, size);
  return 0;
}
