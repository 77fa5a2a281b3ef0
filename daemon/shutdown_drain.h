// Shutdown drain: once the daemon has stopped serving clients (every connection and
// channel closed, so no put runs and every lease is released), the blocks of every
// namespace whose current version is not on D are written back to D
// (BlockStore::Drain), for at most storage.shutdown_drain_s, so that the next start
// recovers them (docs/operations.md, "What a stop keeps";
// docs/decisions/0009-drain-on-shutdown.md).
//
// Logs the plan, progress about every second (blocks written / total, MB/s) and a
// final line: what was written, what was left and why. Never fails the shutdown.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {

struct DrainTotals {
  uint64_t pending = 0, written = 0, left = 0, bytes = 0, links = 0;
  bool timed_out = false;
  double seconds = 0;
};

// Namespaces are drained one after another under one deadline (now + limit); a
// limit of 0 drains nothing and logs what is lost.
DrainTotals DrainOnShutdown(const std::vector<NamespaceRuntime*>& runtimes, std::chrono::seconds limit,
                            std::chrono::milliseconds progress_every = std::chrono::seconds(1));

}  // namespace tierkv::daemon
