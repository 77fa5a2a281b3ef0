// Shared by the C API's files (c_api.cc: the control plane, c_api_channel.cc: the
// data plane): the handles behind the opaque C types and the error reporting.
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/data_plane.h"
#include "common/model_spec.h"
#include "common/namespace_spec.h"
#include "common/status.h"
#include "client/client_internal.h"
#include "common/wire.h"
#include "tierkv/client.h"
#include "tierkv/tierkv.h"

struct tierkv_client {
  std::unique_ptr<tierkv::Client> client;
  std::string last_error;
  std::string text;                                 // storage for returned strings
  std::map<std::string, tierkv::ModelSpec> models;  // of the namespaces attached or created here
};

struct tierkv_channel {
  std::unique_ptr<tierkv::DataChannel> channel;
  std::string last_error;
  std::vector<std::string> batch_errors;  // per item of the last tierkv_retrieve_batch
  tierkv::ModelSpec model;
};

namespace tierkv::capi {

template <typename Handle>
tierkv_status Report(Handle* h, const Status& st) {
  h->last_error = st.ok() ? "" : st.ToString();
  return static_cast<tierkv_status>(st.code());
}

Status NotConnected();
tierkv_status NeedConnection(tierkv_client* c);
ModelSpec ToSpec(const tierkv_model_spec& m);
void FromSpec(const ModelSpec& s, tierkv_model_spec* m);
Status StructSizeError(uint32_t got, size_t min, size_t max, const char* type);

// Copies a caller's tierkv_*_options into *out, this library's version of it. The
// caller's struct_size names its version: a shorter one (an older header, at least
// `min_bytes`, the size in ABI version 2) is zero-extended (fields appended later
// mean "default" at zero); a longer one (a newer header than this library) is refused.
template <typename T>
Status CopyOptions(const T* in, size_t min_bytes, const char* type, T* out) {
  std::memset(out, 0, sizeof *out);
  const uint32_t size = in->struct_size;
  if (size < min_bytes || size > sizeof *out) return StructSizeError(size, min_bytes, sizeof *out, type);
  std::memcpy(out, in, size);
  out->struct_size = sizeof *out;
  return OkStatus();
}

}  // namespace tierkv::capi
