#include "daemon/budget_check.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "kernels/gpu_runtime.h"
#include "storage/arena_tier.h"
#include "storage/disk_tier.h"
#include "storage/slot_format.h"

namespace tierkv::daemon {
namespace {
std::string Mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }
}  // namespace

TierPlan PlanTiers(const NamespaceSpec& spec, const Config& config, bool gpu_emulated) {
  TierPlan p;
  p.block_bytes = static_cast<uint32_t>(spec.model.BlockBytes());
  p.mem_stride = storage::ArenaTier::SlotStride(p.block_bytes);
  p.disk_stride = storage::DiskSlotStride(p.block_bytes);
  const Budgets& b = spec.budgets;
  p.g_slots = (b.gpu_bytes ? b.gpu_bytes : config.storage.gpu_bytes) / p.mem_stride;
  p.h_slots = (b.host_bytes ? b.host_bytes : config.storage.host_bytes) / p.mem_stride;
  p.d_slots = (b.disk_bytes ? b.disk_bytes : config.storage.disk_bytes) / p.disk_stride;
  p.host_memory_bytes = (gpu_emulated ? p.g_slots * p.mem_stride : 0) + p.h_slots * p.mem_stride +
                        (p.g_slots + p.h_slots) * kMetadataBytesPerSlot;
  return p;
}

uint64_t PhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
}

Result<uint64_t> FreeDiskBytes(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path);
  std::error_code ec;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0) return FromErrno(errno, "statvfs " + p.string());
  return uint64_t(st.f_bavail) * uint64_t(st.f_frsize);
}

std::string DiskBaseDir(const Config& config) {
  if (!config.storage.disk_dirs.empty()) return config.storage.disk_dirs[0];
  return config.storage.disk_dir.empty() ? (std::filesystem::path(config.daemon.data_dir) / "disk").string()
                                         : config.storage.disk_dir;
}

Status CheckPlan(const NamespaceSpec& spec, const TierPlan& p, const Config& config, const MachineResources& m) {
  const std::string ns = "namespace '" + spec.name + "': ";
  if (p.g_slots == 0 || p.h_slots == 0) {
    return InvalidArgument(ns + "G and H budgets must hold at least one block of " + std::to_string(p.block_bytes) +
                           " bytes");
  }
  const uint64_t max_slots = config.namespace_limits.max_slots_per_tier;
  const std::pair<const char*, uint64_t> tiers[] = {{"gpu_bytes (G)", p.g_slots},
                                                    {"host_bytes (H)", p.h_slots},
                                                    {"disk_bytes (D)", p.d_slots}};
  for (const auto& [what, slots] : tiers) {
    if (slots > max_slots) {
      return ResourceExhausted(ns + "budget " + what + " makes " + std::to_string(slots) + " slots of " +
                               std::to_string(p.block_bytes) + "-byte blocks; at most " + std::to_string(max_slots) +
                               " per tier (namespace_limits.max_slots_per_tier)");
    }
  }
  const uint64_t mem_limit = m.physical_memory_bytes / 100 * config.namespace_limits.max_memory_percent;
  if (p.host_memory_bytes > mem_limit) {
    return ResourceExhausted(ns + "the budgets need " + Mib(p.host_memory_bytes) +
                             " of host memory (H arena, G arena when emulated, slot metadata); at most " +
                             std::to_string(config.namespace_limits.max_memory_percent) + "% of the " +
                             Mib(m.physical_memory_bytes) + " of physical memory may go to one namespace "
                             "(namespace_limits.max_memory_percent)");
  }
  const uint64_t disk = p.d_slots * p.disk_stride;
  if (m.check_disk && disk > m.free_disk_bytes) {
    return ResourceExhausted(ns + "budget disk_bytes needs " + Mib(disk) + " of slab files; the filesystem of " +
                             DiskBaseDir(config) + " has " + Mib(m.free_disk_bytes) + " free");
  }
  return OkStatus();
}

Status CheckBudgets(const NamespaceSpec& spec, const Config& config, bool at_creation) {
  const TierPlan plan = PlanTiers(spec, config, /*gpu_emulated=*/kernels::GpuCount() == 0);
  MachineResources m;
  m.physical_memory_bytes = PhysicalMemoryBytes();
  m.check_disk = at_creation && plan.d_slots > 0;
  if (m.check_disk && config.storage.disk_dirs.empty()) {
    ASSIGN_OR_RETURN(m.free_disk_bytes, FreeDiskBytes(DiskBaseDir(config)));
  } else if (m.check_disk) {  // striped: each dir holds 1/N of the slots, the fullest one decides
    uint64_t least = UINT64_MAX;
    for (const std::string& d : config.storage.disk_dirs) {
      ASSIGN_OR_RETURN(const uint64_t free, FreeDiskBytes(d));
      least = std::min(least, free);
    }
    m.free_disk_bytes = least * config.storage.disk_dirs.size();
  }
  return CheckPlan(spec, plan, config, m);
}

}  // namespace tierkv::daemon
