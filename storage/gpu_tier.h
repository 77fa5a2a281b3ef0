// The G tier's device memory as other processes see it (CUDA IPC).
#pragma once

#include "kernels/gpu_runtime.h"
#include "storage/arena_tier.h"

namespace tierkv::storage {

// The IPC handle of a real (device-memory) G tier, for clients of its namespace to
// open with kernels::IpcMemMapping. kNotSupported for an emulated G tier.
Result<kernels::IpcMemHandle> ExportGpuArena(const ArenaTier& tier);

}  // namespace tierkv::storage
