// Pinning of the H tier's arena for GPU DMA (cudaHostRegister, DESIGN §3): the one
// place where the storage module asks the GPU runtime to pin host memory.
#pragma once

#include "common/status.h"
#include "storage/arena_tier.h"

namespace tierkv::storage {

// Pins tier's arena per `mode` and keeps the registration alive in the tier
// (ArenaTier::HoldUntilDestroyed). Without a GPU, kAuto does nothing and kRequired
// fails with kNotSupported. REQUIRES: tier->memory().host_accessible().
Status PinHostTier(PinMode mode, ArenaTier* tier);

}  // namespace tierkv::storage
