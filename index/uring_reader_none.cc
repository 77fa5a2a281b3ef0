// uring_reader.h without liburing: io_uring is not available in this build.
#include "index/uring_reader.h"

namespace tierkv::index {

Result<std::unique_ptr<UringReader>> UringReader::Create(uint32_t queue_depth) {
  return Status(StatusCode::kNotSupported, "built without liburing");
}

}  // namespace tierkv::index
