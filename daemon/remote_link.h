// The daemon's use of the remote tier R (storage/remote/remote_tier.h): starting it
// from [remote], writing a namespace's sealed full prefix blocks to it, the prefix
// lookup's fall-through to it, its state for `tierkvctl status`, and its metrics.
// docs/remote-tier.md, docs/decisions/0014-remote-tier.md.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/collectable.h>

#include "common/config.h"
#include "storage/remote/remote_tier.h"

namespace tierkv::daemon {

class NamespaceRuntime;

// Starts R from the config (seeds, password file, timeouts, pool). Null when
// [remote] is off. kInvalidArgument for a bad seed list or an unreadable password file.
Result<std::unique_ptr<storage::remote::RemoteTier>> StartRemote(const RemoteSection& config);

// After a put of a full prefix block (stored under `hash`) that was not a
// duplicate: queues it for R when the namespace uses R. Never blocks.
void WritePrefixBlockToRemote(NamespaceRuntime& rt, uint64_t hash, uint32_t layer, std::span<const std::byte> block);

// The prefix positions [first, hashes.size()) fetched from R, every layer of each:
// (*blocks)[p - first][layer] is a verified value (the block: RemotePayload of it). Stops at the first position R lacks in some layer
// (or that fails verification), and after 256 MiB of blocks (one call's bound);
// returns how many positions it has. 0 when the namespace does not use R or R is
// down (counted, never an error for the caller). keep: R keeps a copy of the values
// for the next fetch of the same blocks (a lookup, whose load follows).
uint32_t FetchPrefixFromRemote(NamespaceRuntime& rt, std::span<const uint64_t> hashes, uint32_t first,
                               std::vector<std::vector<std::string>>* blocks, bool keep);

// Whether the namespace keeps the blocks of closed sequences in R (policy
// remote_blocks = closed-sequences, remote_ttl_s > 0, R on, a model_id): then a
// local Get miss asks R, and CloseSequence writes the sequence's blocks there.
bool SequencesInRemote(NamespaceRuntime& rt);

// At CloseSequence, before the blocks are dropped: queues every block the store
// holds of `seq` (each layer, each index) for a background write to R under the
// sequence's key (sequence id, index). Reads them from the store on the caller's
// thread (a D-only block is read from D) and copies them into R's write queue;
// stops, counting the rest as dropped, when the queue is full. Returns how many
// blocks were queued. No-op unless SequencesInRemote.
uint64_t WriteClosedSequenceToRemote(NamespaceRuntime& rt, uint64_t seq);

// After a local Get or Acquire missed blocks[i] of (seq, layer): asks R for them
// in one pipelined batch (one round trip per node), verifies each value, copies
// the found ones into out[i * BlockBytes, ...) (unless out is empty: Acquire pins
// them where they are kept) and stores them in the namespace (H, then G by the
// usual placement) so that later reads are local. (*found)[i] says which were
// found. Never an error: R down, absent or corrupt values are misses (counted in
// R's stats). REQUIRES: SequencesInRemote(rt); out is empty or
// out.size() == blocks.size() * BlockBytes.
void GetSequenceBlocksFromRemote(NamespaceRuntime& rt, uint64_t seq, uint32_t layer,
                                 std::span<const uint32_t> blocks, std::span<std::byte> out,
                                 std::vector<bool>* found);

// {"state": "off" | "up" | "down" | "probing", counters...} for the stats op.
nlohmann::json RemoteStatusJson(const storage::remote::RemoteTier* remote);

// tierkv_remote_* at scrape time. REQUIRES: remote outlives the registration.
class RemoteMetrics : public prometheus::Collectable {
 public:
  explicit RemoteMetrics(const storage::remote::RemoteTier* remote) : remote_(remote) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const storage::remote::RemoteTier* const remote_;
};

}  // namespace tierkv::daemon
