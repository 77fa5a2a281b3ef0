// Constructors of the IoEngine implementations, for io_engine_factory.cc only.
#pragma once

#include <memory>

#include "io/io_engine.h"

namespace tierkv::io::internal {

// pread/pwrite engine. Always available.
Result<std::unique_ptr<IoEngine>> NewPsyncEngine(const IoEngineOptions& options);

// io_uring engine. kNotSupported when the kernel refuses io_uring_queue_init.
// Defined only when liburing is compiled in (io_engine_uring.cc); called only by
// io_engine_factory.cc under TIERKV_HAVE_URING.
Result<std::unique_ptr<IoEngine>> NewUringEngine(const IoEngineOptions& options);

}  // namespace tierkv::io::internal
