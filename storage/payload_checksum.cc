#include "storage/payload_checksum.h"

#include "common/checksum.h"

namespace tierkv::storage {
namespace {

using Fn = uint64_t (*)(const void*, size_t);

uint64_t Baseline(const void* data, size_t n) { return Checksum64(data, n, 0); }

struct Choice {
  Fn fn;
  std::string_view name;
};

Choice Choose() {
#if defined(TIERKV_CHECKSUM_X86_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {internal::PayloadChecksumAvx512, "avx512"};
  if (__builtin_cpu_supports("avx2")) return {internal::PayloadChecksumAvx2, "avx2"};
#endif
  return {Baseline, "baseline"};
}

const Choice& Chosen() {
  static const Choice c = Choose();
  return c;
}

}  // namespace

uint64_t PayloadChecksum(const void* data, size_t n) { return Chosen().fn(data, n); }

std::string_view PayloadChecksumPath() { return Chosen().name; }

}  // namespace tierkv::storage
