// Token-granular append (ring op kAppend): tokens go into the open last block of
// (sequence, layer); the block is stored as it fills (zero-padded, readable at once)
// and summarized for retrieval when full (sealed). An append continues exactly where
// the last one stopped — after the last whole block put, or the last appended token:
// gaps and overlaps are refused, naming the position expected.
// docs/decisions/0015-namespace-lifecycle.md.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <utility>

#include "common/mutex.h"
#include "common/status.h"
#include "storage/block_store.h"

namespace tierkv::daemon {

class RetrievalIndex;

class OpenBlocks {
 public:
  struct Result {
    uint32_t sealed = 0;  // blocks that became full (summarized) in this append
    uint64_t next = 0;    // the token the next append starts at (also set on a refused gap)
    bool gap = false;     // refused: `first` is not `next`
  };
  // Appends `tokens` tokens of (seq, layer) starting at token `first`; `payload` is
  // K then V, [kv_heads][tokens][head_dim] each. kInvalidArgument (message names the
  // expected token) when `first` is not where the sequence's layer ends; then the
  // result is OK with gap = true and next = the token expected.
  tierkv::Result<Result> Append(storage::BlockStore& store, RetrievalIndex& retrieval, uint64_t seq, uint32_t layer,
                                uint64_t first, uint32_t tokens, std::span<const std::byte> payload);
  // A whole-block put or a closed sequence ends the open block(s).
  void Forget(uint64_t seq, uint32_t layer);
  void Forget(uint64_t seq);

 private:
  Mutex mu_;  // one append per namespace at a time (they are small)
  std::map<std::pair<uint64_t, uint32_t>, uint64_t> next_token_ GUARDED_BY(mu_);
};

}  // namespace tierkv::daemon
