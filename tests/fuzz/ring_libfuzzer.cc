// libFuzzer entry point over data-plane descriptors (clang, -DTIERKV_LIBFUZZER=ON).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tierkv::fuzz::FuzzRing(data, size);
  return 0;
}
