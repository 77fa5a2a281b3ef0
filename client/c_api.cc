// The C API (tierkv/tierkv.h) over tierkv::Client.
#include "tierkv/tierkv.h"

#include <memory>
#include <string>

#include "tierkv/client.h"

struct tierkv_client {
  std::unique_ptr<tierkv::Client> client;
  std::string last_error;
  std::string text;  // storage for returned strings
};

namespace {
static_assert(TIERKV_INTERNAL == static_cast<int>(tierkv::StatusCode::kInternal));
static_assert(TIERKV_PERMISSION_DENIED == static_cast<int>(tierkv::StatusCode::kPermissionDenied));

tierkv_status Report(tierkv_client* c, const tierkv::Status& st) {
  c->last_error = st.ok() ? "" : st.ToString();
  return static_cast<tierkv_status>(st.code());
}

tierkv_status NeedConnection(tierkv_client* c) {
  return Report(c, tierkv::InvalidArgument("not connected: call tierkv_connect first"));
}

tierkv::ModelSpec ToSpec(const tierkv_model_spec& m) {
  tierkv::ModelSpec s;
  s.num_layers = m.num_layers;
  s.num_q_heads = m.num_q_heads;
  s.num_kv_heads = m.num_kv_heads;
  s.head_dim = m.head_dim;
  s.block_tokens = m.block_tokens;
  s.dtype = static_cast<tierkv::DType>(m.dtype);
  return s;
}

void FromSpec(const tierkv::ModelSpec& s, tierkv_model_spec* m) {
  *m = {s.num_layers, s.num_q_heads, s.num_kv_heads, s.head_dim, s.block_tokens, static_cast<tierkv_dtype>(s.dtype)};
}
}  // namespace

extern "C" {

tierkv_client* tierkv_client_new(void) { return new (std::nothrow) tierkv_client(); }
void tierkv_client_free(tierkv_client* c) { delete c; }

tierkv_status tierkv_connect(tierkv_client* c, const char* path) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!path) return Report(c, tierkv::InvalidArgument("socket_path is NULL"));
  auto r = tierkv::Client::Connect(path);
  if (!r.ok()) return Report(c, r.status());
  c->client = std::move(r).value();
  return Report(c, tierkv::OkStatus());
}

tierkv_status tierkv_ping(tierkv_client* c) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  return Report(c, c->client->Ping());
}

tierkv_status tierkv_create_namespace(tierkv_client* c, const char* name, const tierkv_model_spec* model,
                                      uint32_t* namespace_id) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  if (!name || !model) return Report(c, tierkv::InvalidArgument("name and model must not be NULL"));
  if (model->dtype < TIERKV_F16 || model->dtype > TIERKV_F32) {
    return Report(c, tierkv::InvalidArgument("model.dtype is not a tierkv_dtype"));
  }
  tierkv::NamespaceSpec spec;
  spec.name = name;
  spec.model = ToSpec(*model);
  auto r = c->client->CreateNamespace(spec);
  if (r.ok() && namespace_id) *namespace_id = r->id;
  return Report(c, r.status());
}

tierkv_status tierkv_attach(tierkv_client* c, const char* name, uint32_t* namespace_id, tierkv_model_spec* model) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  if (!name) return Report(c, tierkv::InvalidArgument("name is NULL"));
  auto r = c->client->Attach(name);
  if (r.ok()) {
    if (namespace_id) *namespace_id = r->id;
    if (model) FromSpec(r->spec.model, model);
  }
  return Report(c, r.status());
}

const char* tierkv_stats_json(tierkv_client* c) {
  if (!c) return nullptr;
  if (!c->client) {
    NeedConnection(c);
    return nullptr;
  }
  auto r = c->client->Stats();
  if (Report(c, r.status()) != TIERKV_OK) return nullptr;
  c->text = tierkv::wire::DumpBody(r->raw);
  return c->text.c_str();
}

const char* tierkv_last_error(const tierkv_client* c) { return c ? c->last_error.c_str() : "client is NULL"; }

const char* tierkv_status_name(tierkv_status s) {
  return tierkv::StatusCodeName(static_cast<tierkv::StatusCode>(s)).data();
}

}  // extern "C"
