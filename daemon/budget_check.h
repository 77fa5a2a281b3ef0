// Budgets that cannot brick the daemon (issue 14, docs/security.md "Budgets").
//
// What a namespace's budgets turn into (slots per tier, arena bytes, metadata) is
// computed once here, by the same rule NamespaceRuntime::Open sizes its tiers with,
// and checked against the machine before anything is persisted or allocated:
//   - slots of any tier <= namespace_limits.max_slots_per_tier;
//   - host memory (the G arena when G is emulated, the H arena, ~kMetadataBytesPerSlot
//     of daemon memory per G/H slot) <= max_memory_percent of physical memory;
//   - at creation only, the D slab files <= the free space of their filesystem (at a
//     restart the namespace's own files hold that space already).
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"
#include "common/namespace_spec.h"
#include "common/status.h"

namespace tierkv::daemon {

// Daemon memory per G/H slot, an upper bound: Tier bookkeeping (9 B), the arena's
// slot record (16 B), the BlockStore's owner arrays of G and H (8 B), rounded up.
inline constexpr uint64_t kMetadataBytesPerSlot = 40;

struct TierPlan {
  uint32_t block_bytes = 0;
  uint64_t g_slots = 0, h_slots = 0, d_slots = 0;
  uint64_t mem_stride = 0, disk_stride = 0;
  uint64_t host_memory_bytes = 0;  // what the namespace costs in host memory (see above)
};

// The tiers `spec` asks for (budgets of 0 take the config's defaults).
// `gpu_emulated`: G lives in host memory (no GPU).
TierPlan PlanTiers(const NamespaceSpec& spec, const Config& config, bool gpu_emulated);

// The machine, as the checks see it (tests pass their own).
struct MachineResources {
  uint64_t physical_memory_bytes = 0;  // MemTotal
  uint64_t free_disk_bytes = 0;        // statvfs f_bavail * f_frsize where the slab files go
  bool check_disk = false;             // false at restart
};
uint64_t PhysicalMemoryBytes();
// Free bytes of the filesystem holding `path` (or its nearest existing parent).
Result<uint64_t> FreeDiskBytes(const std::string& path);
// Where the namespace's slab files go (the first of storage.disk_dirs, storage.disk_dir or <data_dir>/disk).
std::string DiskBaseDir(const Config& config);

// kResourceExhausted (naming the budget, the limit and the config key) when the plan
// does not fit; kInvalidArgument when a tier would hold no block at all.
Status CheckPlan(const NamespaceSpec& spec, const TierPlan& plan, const Config& config, const MachineResources& m);

// PlanTiers + CheckPlan on this machine (G emulated when there is no GPU).
Status CheckBudgets(const NamespaceSpec& spec, const Config& config, bool at_creation);

}  // namespace tierkv::daemon
