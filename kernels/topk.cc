// Validation, dispatch and the CPU reference of topk.h.
#include "kernels/topk.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "kernels/launch.h"
#include "kernels/topk_key.h"

namespace tierkv::kernels {
namespace {

Status Validate(const TopKArgs& a) {
  auto bad = [](const std::string& m) { return InvalidArgument("TopK: " + m); };
  if (a.num_blocks == 0 || a.num_blocks > kMaxTopKBlocks) return bad("num_blocks out of range");
  if (a.k > a.num_blocks)
    return bad("k " + std::to_string(a.k) + " > num_blocks " + std::to_string(a.num_blocks));
  if (a.scores == nullptr) return bad("null scores");
  if (a.k > 0 && a.out_indices == nullptr) return bad("null out_indices");
  return OkStatus();
}

Status TopKCpu(const TopKArgs& a) {
  const uint32_t n = a.num_blocks;
  std::vector<uint64_t> keys(n);
  for (uint32_t i = 0; i < n; ++i)
    keys[i] = internal::TopKKey(a.scores[i], a.always != nullptr && a.always[i] != 0, i);
  // The k-th largest key is the threshold; keys are distinct, so exactly k are >= it.
  std::vector<uint64_t> tmp = keys;
  std::nth_element(tmp.begin(), tmp.begin() + (a.k - 1), tmp.end(), std::greater<uint64_t>());
  const uint64_t threshold = tmp[a.k - 1];
  uint32_t out = 0;
  for (uint32_t i = 0; i < n && out < a.k; ++i) {
    if (keys[i] < threshold) continue;
    a.out_indices[out] = i;
    if (a.out_scores != nullptr) a.out_scores[out] = a.scores[i];
    ++out;
  }
  return out == a.k ? OkStatus() : Internal("TopK: selected " + std::to_string(out) + " of " + std::to_string(a.k));
}

}  // namespace

Status TopK(Backend backend, const TopKArgs& args, GpuStream* stream) {
  RETURN_IF_ERROR(CheckBackend(backend, "TopK"));
  RETURN_IF_ERROR(Validate(args));
  if (args.k == 0) return OkStatus();
  if (backend == Backend::kCuda) return internal::TopKCuda(args, stream);
  return TopKCpu(args);
}

}  // namespace tierkv::kernels
