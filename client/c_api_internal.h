// Shared by the C API's files (c_api.cc: the control plane, c_api_channel.cc: the
// data plane): the handles behind the opaque C types and the error reporting.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/data_plane.h"
#include "common/model_spec.h"
#include "common/namespace_spec.h"
#include "common/status.h"
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
// Checks a tierkv_*_options struct's struct_size (the caller's sizeof).
Status CheckStructSize(uint32_t got, size_t want, const char* type);

}  // namespace tierkv::capi
