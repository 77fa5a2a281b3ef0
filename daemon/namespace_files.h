// What a namespace leaves on disk besides its registry record: its D data file
// (a directory per namespace id) and its manifest records (blocks, prefix blocks,
// prefix links, sequence owners, policy). delete-namespace removes them; at start
// the daemon sweeps the leftovers of namespaces no longer registered (a crash in
// the middle of a delete). docs/decisions/0015-namespace-lifecycle.md.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ids.h"
#include "common/status.h"
#include "storage/manifest.h"

namespace tierkv::daemon {

// The directory of a namespace's D tier: storage.disk_dir (default data_dir/disk) / ns<ID>.
std::string NamespaceDiskDir(const Config& config, NamespaceId id);
// With several devices (storage.disk_dirs): one directory per device, <dir>/ns<ID>,
// which replace NamespaceDiskDir; empty otherwise.
std::vector<std::string> NamespaceStripedDiskDirs(const Config& config, NamespaceId id);

// The D geometry recorded in an existing namespace directory (its first slab's
// superblock): the tier's slot count, or nullopt when no slab exists yet.
Result<std::optional<uint32_t>> RecordedDiskSlots(const std::string& dir);

// Deletes every manifest record of namespace `id` except its registry record, in
// one batch; returns how many.
Result<uint64_t> DeleteNamespaceRecords(storage::Manifest* manifest, NamespaceId id);

// Removes the namespace's D directories (one per device); returns the bytes its files held (0 when absent).
Result<uint64_t> RemoveNamespaceFiles(const Config& config, NamespaceId id);

// Start-up sweep: removes the D directories and manifest records of namespace ids
// not in `registered` (left by a delete that a crash interrupted). Logs what it did.
Status SweepDeletedNamespaces(const Config& config, storage::Manifest* manifest,
                              const std::set<NamespaceId>& registered);

}  // namespace tierkv::daemon
