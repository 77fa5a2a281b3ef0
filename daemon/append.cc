#include "daemon/append.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "daemon/retrieval.h"

namespace tierkv::daemon {

tierkv::Result<OpenBlocks::Result> OpenBlocks::Append(storage::BlockStore& store, RetrievalIndex& retrieval,
                                                      uint64_t seq, uint32_t layer, uint64_t first, uint32_t tokens,
                                                      std::span<const std::byte> payload) {
  const ModelSpec& m = store.model();
  const size_t elem = DTypeBytes(m.dtype);
  const size_t row = size_t{m.head_dim} * elem;  // one token of one head
  const uint32_t bt = m.block_tokens;
  if (tokens == 0) return InvalidArgument("append: no tokens");
  if (payload.size() != size_t{2} * m.num_kv_heads * tokens * row) {
    return InvalidArgument("append: " + std::to_string(tokens) + " tokens need " +
                           std::to_string(size_t{2} * m.num_kv_heads * tokens * row) + " bytes (K then V, " +
                           "[kv_heads][tokens][head_dim]), got " + std::to_string(payload.size()));
  }
  MutexLock lock(&mu_);
  const auto key = std::make_pair(seq, layer);
  auto it = next_token_.find(key);
  const uint64_t next = it != next_token_.end() ? it->second : uint64_t{store.SequenceBlocks(seq, layer)} * bt;
  Result r;
  r.next = next;
  if (first != next) {
    r.gap = true;
    return r;
  }
  if ((first + tokens + bt - 1) / bt > store.max_blocks_per_sequence()) {
    return InvalidArgument("append: past the last block");
  }
  std::vector<std::byte> block(m.BlockBytes());
  for (uint32_t done = 0; done < tokens;) {
    const uint64_t pos = first + done;
    const auto index = static_cast<uint32_t>(pos / bt);
    const auto offset = static_cast<uint32_t>(pos % bt);
    const uint32_t k = std::min(tokens - done, bt - offset);
    if (offset == 0) {
      std::fill(block.begin(), block.end(), std::byte{0});
    } else {
      RETURN_IF_ERROR(store.Get(seq, layer, index, block));  // the open block so far
    }
    for (uint32_t kv = 0; kv < 2 * m.num_kv_heads; ++kv) {  // K heads, then V heads
      std::memcpy(block.data() + (size_t{kv} * bt + offset) * row, payload.data() + (size_t{kv} * tokens + done) * row,
                  size_t{k} * row);
    }
    RETURN_IF_ERROR(store.Put(seq, layer, index, block));
    if (offset + k == bt) {  // sealed: summarized and indexed like a whole-block put
      RETURN_IF_ERROR(retrieval.OnPut(seq, layer, index, block));
      ++r.sealed;
    }
    done += k;
    next_token_[key] = r.next = pos + k;  // what is stored so far (a failure above leaves it consistent)
  }
  return r;
}

void OpenBlocks::Forget(uint64_t seq, uint32_t layer) {
  MutexLock lock(&mu_);
  next_token_.erase({seq, layer});
}

void OpenBlocks::Forget(uint64_t seq) {
  MutexLock lock(&mu_);
  next_token_.erase(next_token_.lower_bound({seq, 0}), next_token_.upper_bound({seq, UINT32_MAX}));
}

}  // namespace tierkv::daemon
