// Recovery scan of D-tier slab files (DESIGN §3): lists what every slot holds so the
// BlockStore can cross-check the manifest at start (a slot the manifest maps must
// hold the same key and generation; anything else is treated as missing).
//
// Freeing a slot does not erase it, so a scan also lists slots whose block has since
// been freed or rewritten elsewhere: the manifest is the authority, the scan the
// evidence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/slot_format.h"
#include "storage/tier.h"

namespace tierkv::storage {

struct ScannedSlot {
  SlotId slot = kInvalidSlot;  // global slot id
  SlotInfo info;
};

struct DamagedSlot {
  SlotId slot = kInvalidSlot;
  Status status;  // kCorruption (bad header, torn/damaged payload) or kIOError (unreadable)
};

struct SlabScanOptions {
  // Read and checksum every payload (finds torn writes) instead of headers only.
  bool verify_payload = true;  // Default: true
};

struct SlabScan {
  SlabSuperblock superblock{};
  std::vector<ScannedSlot> valid;     // in slot order
  std::vector<DamagedSlot> damaged;   // in slot order
  uint64_t empty = 0;                 // slots never written
};

// Scans one slab file. Errors: kNotFound (no file), kCorruption (bad superblock or
// wrong file size), kIOError. Damage to individual slots is reported in the result.
Result<SlabScan> ScanSlabFile(const std::string& path, const SlabScanOptions& options = {});

}  // namespace tierkv::storage
