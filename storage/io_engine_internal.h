// Constructors of the IoEngine implementations, for io_engine_factory.cc only.
#pragma once

#include <memory>

#include "storage/io_engine.h"

namespace tierkv::storage::internal {

// pread/pwrite engine. Always available.
Result<std::unique_ptr<IoEngine>> NewPsyncEngine(const IoEngineOptions& options);

#ifdef TIERKV_HAVE_URING
// io_uring engine. kNotSupported when the kernel refuses io_uring_queue_init.
Result<std::unique_ptr<IoEngine>> NewUringEngine(const IoEngineOptions& options);
#endif

}  // namespace tierkv::storage::internal
