// The C API (tierkv/tierkv.h) over tierkv::Client: the control plane. The data
// plane (channels) is in c_api_channel.cc.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>

#include "client/client_internal.h"
#include "tierkv/client.h"
#include "client/c_api_internal.h"

namespace tierkv::capi {
// Every C status code is its C++ StatusCode (Report casts one into the other).
static_assert(TIERKV_OK == static_cast<int>(StatusCode::kOk));
static_assert(TIERKV_NOT_FOUND == static_cast<int>(StatusCode::kNotFound));
static_assert(TIERKV_INVALID_ARGUMENT == static_cast<int>(StatusCode::kInvalidArgument));
static_assert(TIERKV_ALREADY_EXISTS == static_cast<int>(StatusCode::kAlreadyExists));
static_assert(TIERKV_RESOURCE_EXHAUSTED == static_cast<int>(StatusCode::kResourceExhausted));
static_assert(TIERKV_BUSY == static_cast<int>(StatusCode::kBusy));
static_assert(TIERKV_IO_ERROR == static_cast<int>(StatusCode::kIOError));
static_assert(TIERKV_DEVICE_ERROR == static_cast<int>(StatusCode::kDeviceError));
static_assert(TIERKV_CORRUPTION == static_cast<int>(StatusCode::kCorruption));
static_assert(TIERKV_NOT_SUPPORTED == static_cast<int>(StatusCode::kNotSupported));
static_assert(TIERKV_PERMISSION_DENIED == static_cast<int>(StatusCode::kPermissionDenied));
static_assert(TIERKV_SHUTDOWN == static_cast<int>(StatusCode::kShutdown));
static_assert(TIERKV_INTERNAL == static_cast<int>(StatusCode::kInternal));
static_assert(TIERKV_UNAVAILABLE == static_cast<int>(StatusCode::kUnavailable));

Status NotConnected() { return InvalidArgument("not connected: call tierkv_connect first"); }
tierkv_status NeedConnection(tierkv_client* c) { return Report(c, NotConnected()); }

ModelSpec ToSpec(const tierkv_model_spec& m) {
  ModelSpec s;
  s.num_layers = m.num_layers;
  s.num_q_heads = m.num_q_heads;
  s.num_kv_heads = m.num_kv_heads;
  s.head_dim = m.head_dim;
  s.block_tokens = m.block_tokens;
  s.dtype = static_cast<DType>(m.dtype);
  return s;
}

void FromSpec(const ModelSpec& s, tierkv_model_spec* m) {
  *m = {s.num_layers, s.num_q_heads, s.num_kv_heads, s.head_dim, s.block_tokens, static_cast<tierkv_dtype>(s.dtype)};
}

Status StructSizeError(uint32_t got, size_t min, size_t max, const char* type) {
  return InvalidArgument(std::string(type) + ".struct_size is " + std::to_string(got) + "; this library takes " +
                         std::to_string(min) + " to " + std::to_string(max) + " (set it to sizeof, or call " + type +
                         "_init)");
}

namespace {
constexpr size_t kNamespaceOptionsV2Bytes = 64;  // sizeof in ABI version 2 (LP64): never shrinks
static_assert(sizeof(tierkv_namespace_options) >= kNamespaceOptionsV2Bytes);
static_assert(offsetof(tierkv_namespace_options, model_id) == kNamespaceOptionsV2Bytes);  // LP64
static_assert(offsetof(tierkv_namespace_options, granularity) == kNamespaceOptionsV2Bytes + 8);

// The ops without a typed C++ method go through the client's JSON call (one place).
Result<wire::Json> CallJson(tierkv_client* c, const wire::Json& request) { return internal::Call(*c->client, request); }

// Reports st and returns NULL (the string-returning calls' failure).
const char* NullWith(tierkv_client* c, const Status& st) {
  Report(c, st);
  return nullptr;
}

// Keeps `text` as the handle's returned string, or reports the error and returns NULL.
const char* TextOrNull(tierkv_client* c, const Result<wire::Json>& r, const char* field) {
  if (Report(c, r.status()) != TIERKV_OK) return nullptr;
  auto it = r->find(field);
  if (it == r->end()) {
    Report(c, Internal(std::string("the daemon's reply has no ") + field));
    return nullptr;
  }
  c->text = wire::DumpBody(*it);
  return c->text.c_str();
}

tierkv_status CreateNamespace(tierkv_client* c, const char* name, const tierkv_model_spec* model,
                              const tierkv_namespace_options* options, uint32_t* namespace_id, int* created) {
  if (!name || !model) return Report(c, InvalidArgument("name and model must not be NULL"));
  if (model->dtype < TIERKV_F16 || model->dtype > TIERKV_F32) {
    return Report(c, InvalidArgument("model.dtype is not a tierkv_dtype"));
  }
  NamespaceSpec spec;
  spec.name = name;
  spec.model = ToSpec(*model);
  if (options) {
    tierkv_namespace_options copy;
    if (Status st = CopyOptions(options, kNamespaceOptionsV2Bytes, "tierkv_namespace_options", &copy); !st.ok()) {
      return Report(c, st);
    }
    const tierkv_namespace_options* o = &copy;
    if ((!o->uids && o->num_uids) || (!o->gids && o->num_gids)) {
      return Report(c, InvalidArgument("options.uids/gids is NULL with a nonzero count"));
    }
    if (o->num_uids > NamespaceSpec::kMaxAclEntries || o->num_gids > NamespaceSpec::kMaxAclEntries) {
      return Report(
          c, InvalidArgument("options: at most " + std::to_string(NamespaceSpec::kMaxAclEntries) + " uids and gids"));
    }
    spec.budgets = {o->gpu_bytes, o->host_bytes, o->disk_bytes};
    spec.acl.uids.assign(o->uids, o->uids + o->num_uids);
    spec.acl.gids.assign(o->gids, o->gids + o->num_gids);
    if (o->model_id) spec.model_id.assign(o->model_id, strnlen(o->model_id, NamespaceSpec::kMaxModelIdLength + 1));
    if (o->granularity > TIERKV_GRANULARITY_HEAD) {
      return Report(c, InvalidArgument("options.granularity must be TIERKV_GRANULARITY_LAYER or _HEAD"));
    }
    spec.granularity = static_cast<Granularity>(o->granularity);
  }
  auto r = c->client->CreateNamespace(spec);
  if (r.ok()) {
    if (namespace_id) *namespace_id = r->id;
    if (created) *created = r->created ? 1 : 0;
  }
  return Report(c, r.status());
}
}  // namespace
}  // namespace tierkv::capi

using tierkv::capi::NeedConnection;
using tierkv::capi::Report;

extern "C" {

tierkv_client* tierkv_client_new(void) { return new (std::nothrow) tierkv_client(); }
void tierkv_client_free(tierkv_client* c) { delete c; }
uint32_t tierkv_abi_version(void) { return TIERKV_ABI_VERSION; }

tierkv_status tierkv_connect_ex(tierkv_client* c, const char* path, const char* client_name, uint32_t timeout_ms) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!path) return Report(c, tierkv::InvalidArgument("socket_path is NULL"));
  tierkv::ClientOptions o;
  if (client_name) o.name = client_name;
  if (timeout_ms) o.timeout = std::chrono::milliseconds(timeout_ms);
  auto r = tierkv::Client::Connect(path, o);
  if (!r.ok()) return Report(c, r.status());
  c->client = std::move(r).value();
  c->models.clear();
  return Report(c, tierkv::OkStatus());
}

tierkv_status tierkv_connect(tierkv_client* c, const char* path) { return tierkv_connect_ex(c, path, nullptr, 0); }

int tierkv_is_admin(const tierkv_client* c) { return c && c->client && c->client->admin() ? 1 : 0; }

tierkv_status tierkv_reconnect(tierkv_client* c) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  return Report(c, c->client->Reconnect());
}

int tierkv_is_connected(const tierkv_client* c) { return c && c->client && c->client->connected() ? 1 : 0; }

tierkv_status tierkv_ping(tierkv_client* c) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  return Report(c, c->client->Ping());
}

tierkv_status tierkv_delete_namespace(tierkv_client* c, const char* name, int force) {
  if (!c || !name) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  return Report(c, c->client->DeleteNamespace(name, force != 0));
}

void tierkv_namespace_options_init(tierkv_namespace_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
}

tierkv_status tierkv_create_namespace_ex(tierkv_client* c, const char* name, const tierkv_model_spec* model,
                                         const tierkv_namespace_options* options, uint32_t* namespace_id,
                                         int* created) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  return tierkv::capi::CreateNamespace(c, name, model, options, namespace_id, created);
}

tierkv_status tierkv_create_namespace(tierkv_client* c, const char* name, const tierkv_model_spec* model,
                                      uint32_t* namespace_id) {
  return tierkv_create_namespace_ex(c, name, model, nullptr, namespace_id, nullptr);
}

tierkv_status tierkv_attach(tierkv_client* c, const char* name, uint32_t* namespace_id, tierkv_model_spec* model) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  if (!name) return Report(c, tierkv::InvalidArgument("name is NULL"));
  auto r = c->client->Attach(name);
  if (r.ok()) {
    c->models[name] = r->spec.model;
    if (namespace_id) *namespace_id = r->id;
    if (model) tierkv::capi::FromSpec(r->spec.model, model);
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
  c->text = r->json;
  return c->text.c_str();
}

const char* tierkv_list_namespaces_json(tierkv_client* c) {
  if (!c) return nullptr;
  if (!c->client) return tierkv::capi::NullWith(c, tierkv::capi::NotConnected());
  return tierkv::capi::TextOrNull(c, tierkv::capi::CallJson(c, {{"op", "list_namespaces"}}), "namespaces");
}

const char* tierkv_get_policy_json(tierkv_client* c, const char* name) {
  if (!c) return nullptr;
  if (!c->client) return tierkv::capi::NullWith(c, tierkv::capi::NotConnected());
  if (!name) return tierkv::capi::NullWith(c, tierkv::InvalidArgument("name is NULL"));
  return tierkv::capi::TextOrNull(c, tierkv::capi::CallJson(c, {{"op", "get_policy"}, {"namespace", name}}), "policy");
}

const char* tierkv_set_policy_json(tierkv_client* c, const char* name, const char* changes_json) {
  if (!c) return nullptr;
  if (!c->client) return tierkv::capi::NullWith(c, tierkv::capi::NotConnected());
  if (!name || !changes_json)
    return tierkv::capi::NullWith(c, tierkv::InvalidArgument("name and changes_json must not be NULL"));
  auto changes = tierkv::wire::ParseBody(changes_json);
  if (!changes.ok()) {
    Report(c, tierkv::InvalidArgument("changes_json: " + changes.status().message()));
    return nullptr;
  }
  return tierkv::capi::TextOrNull(
      c, tierkv::capi::CallJson(c, {{"op", "set_policy"}, {"namespace", name}, {"policy", *changes}}), "policy");
}

const char* tierkv_usage_json(tierkv_client* c, const char* name) {
  if (!c) return nullptr;
  if (!c->client) return tierkv::capi::NullWith(c, tierkv::capi::NotConnected());
  tierkv::wire::Json req{{"op", "usage"}};
  if (name) req["namespace"] = name;
  auto r = tierkv::capi::CallJson(c, req);
  if (Report(c, r.status()) != TIERKV_OK) return nullptr;
  r->erase("ok");
  c->text = tierkv::wire::DumpBody(*r);
  return c->text.c_str();
}

const char* tierkv_clients_json(tierkv_client* c) {
  if (!c) return nullptr;
  if (!c->client) return tierkv::capi::NullWith(c, tierkv::capi::NotConnected());
  auto r = tierkv::capi::CallJson(c, {{"op", "clients"}});
  if (Report(c, r.status()) != TIERKV_OK) return nullptr;
  r->erase("ok");
  c->text = tierkv::wire::DumpBody(*r);
  return c->text.c_str();
}

const char* tierkv_last_error(const tierkv_client* c) { return c ? c->last_error.c_str() : "client is NULL"; }

const char* tierkv_status_name(tierkv_status s) {
  return tierkv::StatusCodeName(static_cast<tierkv::StatusCode>(s)).data();
}

}  // extern "C"
