#include "daemon/head_layout.h"

#include <cstring>

namespace tierkv::daemon {

void SplitHeads(const HeadLayout& l, uint32_t n, std::span<const std::byte> in, std::span<std::byte> out) {
  const size_t lb = l.layer_bytes(), hb = l.head_bytes(), row = l.row_bytes;
  for (uint32_t i = 0; i < n; ++i) {
    const std::byte* k = in.data() + i * lb;
    const std::byte* v = k + l.kv * row;
    for (uint32_t h = 0; h < l.kv; ++h) {
      std::byte* dst = out.data() + (size_t{h} * n + i) * hb;
      std::memcpy(dst, k + h * row, row);
      std::memcpy(dst + row, v + h * row, row);
    }
  }
}

void JoinHead(const HeadLayout& l, uint32_t h, std::span<const std::byte> head_block, std::span<std::byte> layer_block) {
  const size_t row = l.row_bytes;
  std::memcpy(layer_block.data() + h * row, head_block.data(), row);
  std::memcpy(layer_block.data() + (size_t{l.kv} + h) * row, head_block.data() + row, row);
}

}  // namespace tierkv::daemon
