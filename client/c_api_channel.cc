// The C API (tierkv/tierkv.h) over tierkv::DataChannel: the data plane. Every
// caller-supplied pointer and size is checked here before the channel sees it.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "client/c_api_internal.h"
#include "common/checksum.h"

namespace tierkv::capi {
constexpr size_t kChannelOptionsV2Bytes = 40;  // sizeof in ABI version 2 (LP64): never shrinks
static_assert(sizeof(tierkv_channel_options) >= kChannelOptionsV2Bytes);
namespace {
static_assert(sizeof(tierkv_block_table_entry) == sizeof(dp::BlockTableEntry));
static_assert(offsetof(tierkv_block_table_entry, block) == offsetof(dp::BlockTableEntry, block));
static_assert(offsetof(tierkv_block_table_entry, tier) == offsetof(dp::BlockTableEntry, tier));
static_assert(offsetof(tierkv_block_table_entry, offset) == offsetof(dp::BlockTableEntry, offset));
static_assert(offsetof(tierkv_block_table_entry, head) == offsetof(dp::BlockTableEntry, head));

// Whole blocks of the channel's size, and block indices [first, first + n) that fit uint32.
Status CheckBlocks(const tierkv_channel* ch, const char* op, uint32_t layer, uint32_t first, size_t bytes) {
  const uint64_t bb = ch->channel->block_bytes();
  if (bb == 0) return InvalidArgument(std::string(op) + ": the namespace shares no arenas with this channel");
  if (bytes == 0 || bytes % bb != 0) {
    return InvalidArgument(std::string(op) + ": " + std::to_string(bytes) + " bytes is not a whole number of " +
                           std::to_string(bb) + "-byte blocks");
  }
  if (layer >= ch->model.num_layers) {
    return InvalidArgument(std::string(op) + ": layer " + std::to_string(layer) + " is not below num_layers " +
                           std::to_string(ch->model.num_layers));
  }
  if (bytes / bb > uint64_t{std::numeric_limits<uint32_t>::max()} - first) {
    return InvalidArgument(std::string(op) + ": block indices past 2^32");
  }
  return OkStatus();
}

Status CheckQuery(const tierkv_channel* ch, const void* query, size_t floats, uint32_t budget) {
  const size_t want = size_t{ch->model.num_q_heads} * ch->model.head_dim;
  if (!query) return InvalidArgument("retrieve: query is NULL");
  if (floats != want) {
    return InvalidArgument("retrieve: the query has " + std::to_string(floats) + " floats; the namespace needs " +
                           std::to_string(want) + " (num_q_heads * head_dim)");
  }
  if (budget == 0) return InvalidArgument("retrieve: budget must be positive");
  return OkStatus();
}

tierkv_status Arena(tierkv_channel* ch, std::span<const std::byte> arena, const void** data, uint64_t* bytes) {
  if (!data || !bytes) return Report(ch, InvalidArgument("data and bytes must not be NULL"));
  *data = arena.empty() ? nullptr : arena.data();
  *bytes = arena.size();
  return Report(ch, OkStatus());
}
}  // namespace
}  // namespace tierkv::capi

using tierkv::capi::NeedConnection;
using tierkv::capi::Report;

extern "C" {

void tierkv_channel_options_init(tierkv_channel_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->request_entries = 256;
  o->completion_entries = 256;
}

tierkv_status tierkv_open_channel_ex(tierkv_client* c, const char* name, const tierkv_channel_options* options,
                                     tierkv_channel** out) {
  if (!c) return TIERKV_INVALID_ARGUMENT;
  if (!out) return Report(c, tierkv::InvalidArgument("out is NULL"));
  if (!c->client) return NeedConnection(c);
  if (!name) return Report(c, tierkv::InvalidArgument("name is NULL"));
  tierkv_channel_options o;
  tierkv_channel_options_init(&o);
  if (options) {
    auto st = tierkv::capi::CopyOptions(options, tierkv::capi::kChannelOptionsV2Bytes, "tierkv_channel_options", &o);
    if (!st.ok()) return Report(c, st);
  }
  auto model = c->models.find(name);
  if (model == c->models.end())
    return Report(c, tierkv::InvalidArgument(std::string("attach to namespace '") + name + "' first"));
  tierkv::Client::ChannelOptions co;
  if (o.request_entries) co.request_entries = o.request_entries;  // 0: the default
  if (o.completion_entries) co.completion_entries = o.completion_entries;
  co.staging_bytes = o.staging_bytes;
  co.gpu = o.gpu != 0;
  co.gpu_exchange_bytes = o.gpu_exchange_bytes;
  auto r = c->client->OpenChannel(name, co);
  if (!r.ok()) return Report(c, r.status());
  auto* ch = new (std::nothrow) tierkv_channel();
  if (!ch) return Report(c, tierkv::ResourceExhausted("out of memory"));
  ch->channel = std::move(r).value();
  ch->model = model->second;
  *out = ch;
  return Report(c, tierkv::OkStatus());
}

tierkv_status tierkv_open_channel(tierkv_client* c, const char* name, uint64_t staging_bytes, tierkv_channel** out) {
  if (!c || !out) return TIERKV_INVALID_ARGUMENT;
  tierkv_channel_options o;
  tierkv_channel_options_init(&o);
  o.staging_bytes = staging_bytes;
  return tierkv_open_channel_ex(c, name, &o, out);
}

void tierkv_channel_free(tierkv_channel* ch) { delete ch; }

uint64_t tierkv_block_bytes(const tierkv_channel* ch) { return ch ? ch->channel->block_bytes() : 0; }
uint32_t tierkv_table_heads(const tierkv_channel* ch) { return ch ? ch->channel->table_heads() : 0; }
uint64_t tierkv_entry_bytes(const tierkv_channel* ch) { return ch ? ch->channel->entry_bytes() : 0; }

tierkv_status tierkv_copy_block(tierkv_channel* ch, const tierkv_block_ref* ref, void* out, size_t out_bytes) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!ref || !out) return Report(ch, tierkv::InvalidArgument("tierkv_copy_block: ref or out is NULL"));
  if (ref->tier > 1) return Report(ch, tierkv::InvalidArgument("tierkv_copy_block: tier " + std::to_string(ref->tier)));
  tierkv::DataChannel::BlockRef r;
  r.block = ref->block;
  r.tier = static_cast<uint8_t>(ref->tier);
  r.head = ref->head;
  r.offset = ref->offset;
  return Report(ch, ch->channel->CopyBlock(r, {static_cast<std::byte*>(out), out_bytes}));
}

uint64_t tierkv_staging_bytes(const tierkv_channel* ch) { return ch ? tierkv::internal::Staging(*ch->channel).size() : 0; }

tierkv_status tierkv_channel_model(tierkv_channel* ch, tierkv_model_spec* model) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!model) return Report(ch, tierkv::InvalidArgument("model is NULL"));
  tierkv::capi::FromSpec(ch->model, model);
  return Report(ch, tierkv::OkStatus());
}

tierkv_status tierkv_put_ex(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, const void* data,
                            size_t bytes, uint64_t prefix_hash, int* durable) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!data) return Report(ch, tierkv::InvalidArgument("put: data is NULL"));
  if (auto st = tierkv::capi::CheckBlocks(ch, "put", layer, first, bytes); !st.ok()) return Report(ch, st);
  if (prefix_hash && bytes != ch->channel->block_bytes()) {
    return Report(ch, tierkv::InvalidArgument("put: a prefix block (prefix_hash != 0) is one block"));
  }
  bool d = false;
  tierkv::Status st =
      ch->channel->Put(seq, layer, first, {static_cast<const std::byte*>(data), bytes}, prefix_hash, &d);
  if (st.ok() && durable) *durable = d ? 1 : 0;
  return Report(ch, st);
}

tierkv_status tierkv_put(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, const void* data,
                         size_t bytes, uint64_t prefix_hash) {
  return tierkv_put_ex(ch, seq, layer, first, data, bytes, prefix_hash, nullptr);
}

tierkv_status tierkv_append(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint64_t first_token,
                            uint32_t tokens, const void* kv, size_t bytes, uint64_t* next_token) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!kv) return Report(ch, tierkv::InvalidArgument("append: kv is NULL"));
  const tierkv::ModelSpec& m = ch->model;
  if (layer >= m.num_layers) {
    return Report(ch, tierkv::InvalidArgument("append: layer " + std::to_string(layer) + " is not below num_layers " +
                                              std::to_string(m.num_layers)));
  }
  const uint64_t want = uint64_t{2} * m.num_kv_heads * tokens * m.head_dim * tierkv::DTypeBytes(m.dtype);
  if (tokens == 0 || bytes != want) {
    return Report(ch, tierkv::InvalidArgument("append: " + std::to_string(bytes) + " bytes for " +
                                              std::to_string(tokens) + " tokens; expected " + std::to_string(want) +
                                              " (K then V, [kv_heads][tokens][head_dim] each)"));
  }
  auto r = ch->channel->Append(seq, layer, first_token, tokens, {static_cast<const std::byte*>(kv), bytes});
  if (r.ok() && next_token) *next_token = *r;
  return Report(ch, r.status());
}

tierkv_status tierkv_get(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, void* out, size_t bytes) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!out) return Report(ch, tierkv::InvalidArgument("get: out is NULL"));
  if (auto st = tierkv::capi::CheckBlocks(ch, "get", layer, first, bytes); !st.ok()) return Report(ch, st);
  return Report(ch, ch->channel->Get(seq, layer, first, {static_cast<std::byte*>(out), bytes}));
}

namespace {
// A Retrieve's or an Acquire's refs into out[0..*count) (at most `entries`).
tierkv_status FillRefs(tierkv_channel* ch, const tierkv::Result<tierkv::DataChannel::Retrieval>& r, uint64_t entries,
                       tierkv_block_ref* out, uint32_t* count, uint64_t* lease, uint32_t* missing) {
  if (!r.ok()) return Report(ch, r.status());
  *count = static_cast<uint32_t>(std::min<uint64_t>(r->blocks.size(), entries));
  for (uint32_t i = 0; i < *count; ++i) {
    const auto& b = r->blocks[i];
    auto bytes = ch->channel->BlockBytes(b);
    out[i] = {b.block, b.tier, b.head, b.offset, bytes.empty() ? nullptr : bytes.data()};
  }
  *lease = r->lease;
  if (missing) *missing = r->missing;
  return Report(ch, tierkv::OkStatus());
}
}  // namespace

tierkv_status tierkv_retrieve_ex(tierkv_channel* ch, uint64_t seq, uint32_t layer, const float* query,
                                 size_t query_floats, uint32_t budget, tierkv_block_ref* out, uint32_t capacity,
                                 uint32_t* count, uint64_t* lease, uint32_t* missing) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!out || !count || !lease)
    return Report(ch, tierkv::InvalidArgument("retrieve: out, count and lease must not be NULL"));
  if (auto st = tierkv::capi::CheckQuery(ch, query, query_floats, budget); !st.ok()) return Report(ch, st);
  const uint64_t entries = uint64_t{budget} * ch->channel->table_heads();
  if (capacity < entries) {
    return Report(ch, tierkv::InvalidArgument("retrieve: a table of " + std::to_string(capacity) +
                                              " entries is smaller than the budget " + std::to_string(budget) +
                                              (entries > budget ? " times the " + std::to_string(entries / budget) +
                                                                      " KV heads (granularity head)"
                                                                : std::string())));
  }
  if (layer >= ch->model.num_layers) {
    return Report(ch, tierkv::InvalidArgument("retrieve: layer " + std::to_string(layer) + " is not below num_layers " +
                                              std::to_string(ch->model.num_layers)));
  }
  return FillRefs(ch, ch->channel->Retrieve(seq, layer, {query, query_floats}, budget), entries, out, count, lease,
                  missing);
}

tierkv_status tierkv_acquire(tierkv_channel* ch, uint64_t seq, uint32_t layer, uint32_t first, uint32_t count,
                             uint64_t release, tierkv_block_ref* out, uint32_t capacity, uint32_t* n, uint64_t* lease,
                             uint32_t* missing) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!out || !n || !lease) return Report(ch, tierkv::InvalidArgument("acquire: out, n and lease must not be NULL"));
  const uint64_t entries = uint64_t{count} * ch->channel->table_heads();
  if (count == 0 || capacity < entries) {
    return Report(ch, tierkv::InvalidArgument("acquire: count " + std::to_string(count) + " needs a table of " +
                                              std::to_string(entries) + " entries, out holds " +
                                              std::to_string(capacity)));
  }
  if (layer >= ch->model.num_layers) {
    return Report(ch, tierkv::InvalidArgument("acquire: layer " + std::to_string(layer) + " is not below num_layers " +
                                              std::to_string(ch->model.num_layers)));
  }
  return FillRefs(ch, ch->channel->Acquire(seq, layer, first, count, release), entries, out, n, lease, missing);
}

tierkv_status tierkv_retrieve(tierkv_channel* ch, uint64_t seq, uint32_t layer, const float* query, size_t query_floats,
                              uint32_t budget, tierkv_block_ref* out, uint32_t* count, uint64_t* lease) {
  // The caller promises `budget` entries at out (the version-1 contract): not
  // enough for a namespace that selects per KV head.
  if (ch && ch->channel->table_heads() > 1) {
    return Report(ch, tierkv::InvalidArgument("retrieve: the namespace selects per KV head (" +
                                              std::to_string(ch->channel->table_heads()) +
                                              " runs per budget): call tierkv_retrieve_ex with a table of budget * "
                                              "tierkv_table_heads entries"));
  }
  return tierkv_retrieve_ex(ch, seq, layer, query, query_floats, budget, out, budget, count, lease, nullptr);
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
  if ((!tokens && n) || !cached) return Report(ch, tierkv::InvalidArgument("lookup_prefix: NULL argument"));
  auto r = ch->channel->LookupPrefix({tokens, n});
  if (r.ok()) *cached = *r;
  return Report(ch, r.status());
}

tierkv_status tierkv_load_prefix(tierkv_channel* ch, uint64_t seq, const int32_t* tokens, size_t n, uint32_t* loaded) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if ((!tokens && n) || !loaded) return Report(ch, tierkv::InvalidArgument("load_prefix: NULL argument"));
  auto r = ch->channel->LoadPrefix(seq, {tokens, n});
  if (r.ok()) *loaded = *r;
  return Report(ch, r.status());
}

tierkv_status tierkv_prefix_block_hashes(tierkv_channel* ch, const int32_t* tokens, size_t n, uint64_t* out,
                                         size_t capacity, size_t* count) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if ((!tokens && n) || !count || (!out && capacity)) {
    return Report(ch, tierkv::InvalidArgument("prefix_block_hashes: NULL argument"));
  }
  const size_t blocks = n / ch->model.block_tokens;
  if (blocks > capacity) {
    return Report(ch, tierkv::InvalidArgument("prefix_block_hashes: " + std::to_string(blocks) + " hashes do not fit " +
                                              std::to_string(capacity) + " entries"));
  }
  const std::vector<uint64_t> h = tierkv::PrefixBlockHashes({tokens, n}, ch->model.block_tokens);
  std::copy(h.begin(), h.end(), out);
  *count = h.size();
  return Report(ch, tierkv::OkStatus());
}

tierkv_status tierkv_host_arena(tierkv_channel* ch, const void** data, uint64_t* bytes) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  return tierkv::capi::Arena(ch, ch->channel->host_arena(), data, bytes);
}

tierkv_status tierkv_gpu_arena(tierkv_channel* ch, const void** data, uint64_t* bytes) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  return tierkv::capi::Arena(ch, ch->channel->gpu_arena(), data, bytes);
}

void* tierkv_gpu_arena_device(const tierkv_channel* ch) { return ch ? ch->channel->gpu_arena_device() : nullptr; }
uint64_t tierkv_gpu_arena_device_bytes(const tierkv_channel* ch) {
  return ch ? ch->channel->gpu_arena_device_bytes() : 0;
}

int tierkv_gpu_path(const tierkv_channel* ch) {
  if (!ch || !ch->channel->gpu_path()) return 0;
  return ch->channel->gpu_path_emulated() ? 2 : 1;
}

tierkv_status tierkv_start_retrieve_on_gpu(tierkv_channel* ch, uint64_t seq, uint32_t layer, const void* device_query,
                                           size_t query_floats, uint32_t budget, void* stream) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!ch->channel->gpu_path()) {
    return Report(ch, tierkv::InvalidArgument("retrieve on GPU: the channel was opened without options.gpu"));
  }
  if (auto st = tierkv::capi::CheckQuery(ch, device_query, query_floats, budget); !st.ok()) return Report(ch, st);
  if (layer >= ch->model.num_layers) {
    return Report(ch, tierkv::InvalidArgument("retrieve on GPU: layer " + std::to_string(layer) +
                                              " is not below num_layers " + std::to_string(ch->model.num_layers)));
  }
  return Report(ch, ch->channel->StartRetrieveOnGpu(seq, layer, static_cast<const float*>(device_query), query_floats,
                                                    budget, stream));
}

tierkv_status tierkv_finish_retrieve_on_gpu(tierkv_channel* ch, void* stream, tierkv_gpu_retrieval* out) {
  if (!ch) return TIERKV_INVALID_ARGUMENT;
  if (!out) return Report(ch, tierkv::InvalidArgument("retrieve on GPU: out is NULL"));
  auto r = ch->channel->FinishRetrieveOnGpu(stream);
  if (!r.ok()) return Report(ch, r.status());
  out->lease = r->lease;
  out->count = r->count;
  out->missing = r->missing;
  out->table = reinterpret_cast<const tierkv_block_table_entry*>(r->table);
  return Report(ch, tierkv::OkStatus());
}

const char* tierkv_channel_last_error(const tierkv_channel* ch) {
  return ch ? ch->last_error.c_str() : "channel is NULL";
}

}  // extern "C"
