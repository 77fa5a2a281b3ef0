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
// down (counted, never an error for the caller).
uint32_t FetchPrefixFromRemote(NamespaceRuntime& rt, std::span<const uint64_t> hashes, uint32_t first,
                               std::vector<std::vector<std::string>>* blocks);

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
