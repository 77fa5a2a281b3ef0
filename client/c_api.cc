// The C API (tierkv/tierkv.h) over tierkv::Client.
#include "tierkv/tierkv.h"

#include <algorithm>
#include <memory>
#include <string>

#include "client/client_internal.h"
#include "tierkv/client.h"

struct tierkv_client {
  std::unique_ptr<tierkv::Client> client;
  std::string last_error;
  std::string text;  // storage for returned strings
};

struct tierkv_channel {
  std::unique_ptr<tierkv::DataChannel> channel;
  std::string last_error;
};

namespace {
static_assert(TIERKV_INTERNAL == static_cast<int>(tierkv::StatusCode::kInternal));
static_assert(TIERKV_PERMISSION_DENIED == static_cast<int>(tierkv::StatusCode::kPermissionDenied));

template <typename Handle>
tierkv_status Report(Handle* c, const tierkv::Status& st) {
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
  c->text = r->json;
  return c->text.c_str();
}

const char* tierkv_last_error(const tierkv_client* c) { return c ? c->last_error.c_str() : "client is NULL"; }

const char* tierkv_status_name(tierkv_status s) {
  return tierkv::StatusCodeName(static_cast<tierkv::StatusCode>(s)).data();
}

tierkv_status tierkv_open_channel(tierkv_client* c, const char* name, uint64_t staging_bytes, tierkv_channel** out) {
  if (!c || !out) return TIERKV_INVALID_ARGUMENT;
  if (!c->client) return NeedConnection(c);
  if (!name) return Report(c, tierkv::InvalidArgument("name is NULL"));
  tierkv::Client::ChannelOptions o;
  o.staging_bytes = staging_bytes;
  auto r = c->client->OpenChannel(name, o);
  if (!r.ok()) return Report(c, r.status());
  auto* ch = new (std::nothrow) tierkv_channel();
  if (!ch) return Report(c, tierkv::ResourceExhausted("out of memory"));
  ch->channel = std::move(r).value();
  *out = ch;
  return Report(c, tierkv::OkStatus());
}

void tierkv_channel_free(tierkv_channel* ch) { delete ch; }

uint64_t tierkv_block_bytes(const tierkv_channel* ch) { return ch ? ch->channel->block_bytes() : 0; }

tierkv_status tierkv_put(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, const void* data,
                         size_t bytes, uint64_t prefix_hash) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!data && bytes) return Report(ch, tierkv::InvalidArgument("data is NULL"));
  return Report(ch, ch->channel->Put(seq, layer, first, {static_cast<const std::byte*>(data), bytes}, prefix_hash));
}

tierkv_status tierkv_get(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, void* out, size_t bytes) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!out && bytes) return Report(ch, tierkv::InvalidArgument("out is NULL"));
  return Report(ch, ch->channel->Get(seq, layer, first, {static_cast<std::byte*>(out), bytes}));
}

tierkv_status tierkv_retrieve(tierkv_channel* ch, uint64_t seq, uint32_t layer, const float* query,
                              size_t query_floats, uint32_t budget, tierkv_block_ref* out, uint32_t* count,
                              uint64_t* lease) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!query || !out || !count || !lease) return Report(ch, tierkv::InvalidArgument("NULL argument"));
  auto r = ch->channel->Retrieve(seq, layer, {query, query_floats}, budget);
  if (!r.ok()) return Report(ch, r.status());
  *count = static_cast<uint32_t>(std::min<size_t>(r->blocks.size(), budget));
  for (uint32_t i = 0; i < *count; ++i) {
    const auto& b = r->blocks[i];
    auto bytes = ch->channel->BlockBytes(b);
    out[i] = {b.block, b.tier, b.offset, bytes.empty() ? nullptr : bytes.data()};
  }
  *lease = r->lease;
  return Report(ch, tierkv::OkStatus());
}

tierkv_status tierkv_release(tierkv_channel* ch, uint64_t lease) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  return Report(ch, ch->channel->Release(lease));
}

tierkv_status tierkv_close_sequence(tierkv_channel* ch, uint64_t seq) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  return Report(ch, ch->channel->CloseSequence(seq));
}

tierkv_status tierkv_lookup_prefix(tierkv_channel* ch, const int32_t* tokens, size_t n, uint32_t* cached) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if ((!tokens && n) || !cached) return Report(ch, tierkv::InvalidArgument("NULL argument"));
  auto r = ch->channel->LookupPrefix({tokens, n});
  if (r.ok()) *cached = *r;
  return Report(ch, r.status());
}

tierkv_status tierkv_load_prefix(tierkv_channel* ch, uint64_t seq, const int32_t* tokens, size_t n,
                                 uint32_t* loaded) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if ((!tokens && n) || !loaded) return Report(ch, tierkv::InvalidArgument("NULL argument"));
  auto r = ch->channel->LoadPrefix(seq, {tokens, n});
  if (r.ok()) *loaded = *r;
  return Report(ch, r.status());
}

const char* tierkv_channel_last_error(const tierkv_channel* ch) { return ch ? ch->last_error.c_str() : "channel is NULL"; }

}  // extern "C"
