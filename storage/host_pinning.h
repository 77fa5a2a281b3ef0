// Pinning of the H tier's arena for GPU DMA (cudaHostRegister, DESIGN §3): the one
// place where the storage module asks the GPU runtime to pin host memory.
#pragma once

#include "common/status.h"
#include "storage/arena_tier.h"

namespace tierkv::storage {

// Pins tier's arena per `mode` (cudaHostRegister, mapped and portable, through
// kernels::HostRegistration) and keeps the registration alive in the tier
// (ArenaTier::HoldUntilDestroyed; tier->pinned() says so). Without a GPU, kAuto
// does nothing and kRequired fails with kNotSupported naming why; with one, a
// failed registration fails kRequired and leaves kAuto unpinned with a warning.
// kOff does nothing. REQUIRES: tier->memory().host_accessible().
Status PinHostTier(PinMode mode, ArenaTier* tier);

}  // namespace tierkv::storage
