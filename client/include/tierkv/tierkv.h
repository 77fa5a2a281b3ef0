/* libtierkv C API: opaque handles, status codes, no C++ types.
 *
 *   tierkv_client* c = tierkv_client_new();
 *   if (tierkv_connect(c, "./var/tierkvd.sock") != TIERKV_OK)
 *     fprintf(stderr, "%s\n", tierkv_last_error(c));
 *   ...
 *   tierkv_client_free(c);
 *
 * A handle is one control connection; not thread-safe. Strings returned by the
 * library stay valid until the next call on the same handle.
 */
#ifndef TIERKV_TIERKV_H_
#define TIERKV_TIERKV_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration below is exported from libtierkv.so (built with hidden visibility). */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Same values as tierkv::StatusCode. */
typedef enum tierkv_status {
  TIERKV_OK = 0,
  TIERKV_NOT_FOUND = 1,
  TIERKV_INVALID_ARGUMENT = 2,
  TIERKV_ALREADY_EXISTS = 3,
  TIERKV_RESOURCE_EXHAUSTED = 4,
  TIERKV_BUSY = 5,
  TIERKV_IO_ERROR = 6,
  TIERKV_DEVICE_ERROR = 7,
  TIERKV_CORRUPTION = 8,
  TIERKV_NOT_SUPPORTED = 9,
  TIERKV_PERMISSION_DENIED = 10,
  TIERKV_SHUTDOWN = 11,
  TIERKV_INTERNAL = 12,
  TIERKV_UNAVAILABLE = 13 /* ABI 2, appended: the daemon died or closed the connection (tierkv_reconnect) */
} tierkv_status;

typedef enum tierkv_dtype { TIERKV_F16 = 0, TIERKV_BF16 = 1, TIERKV_F32 = 2 } tierkv_dtype;

typedef struct tierkv_model_spec {
  uint32_t num_layers;
  uint32_t num_q_heads;
  uint32_t num_kv_heads;
  uint32_t head_dim;
  uint32_t block_tokens;
  tierkv_dtype dtype;
} tierkv_model_spec;

typedef struct tierkv_client tierkv_client;

tierkv_client* tierkv_client_new(void);
void tierkv_client_free(tierkv_client* client);
/* Connects to the daemon's control socket and says hello. */
tierkv_status tierkv_connect(tierkv_client* client, const char* socket_path);
tierkv_status tierkv_ping(tierkv_client* client);
/* Creates a namespace (admins only) open to the caller's uid; *namespace_id may be NULL. */
tierkv_status tierkv_create_namespace(tierkv_client* client, const char* name, const tierkv_model_spec* model,
                                      uint32_t* namespace_id);
/* Attaches to a namespace; namespace_id and model may be NULL. */
tierkv_status tierkv_attach(tierkv_client* client, const char* name, uint32_t* namespace_id,
                            tierkv_model_spec* model);
/* Deletes a namespace (admins only): its blocks, memory, files and metrics. Refused
 * with TIERKV_BUSY while other clients are attached unless force is nonzero (their
 * channels then fail with TIERKV_NOT_FOUND: the namespace was deleted). */
tierkv_status tierkv_delete_namespace(tierkv_client* client, const char* name, int force);
/* Daemon statistics as a JSON text, valid until the next call on this handle. NULL on error. */
const char* tierkv_stats_json(tierkv_client* client);
/* Message of the last failed call on this handle ("" if none). */
const char* tierkv_last_error(const tierkv_client* client);

/* ---- Data plane: one channel per thread (shared-memory rings + staging area) ---- */

typedef struct tierkv_channel tierkv_channel;

/* Opens a channel to an attached namespace; staging_bytes 0 = the daemon's default.
 * The channel works while its client's connection is open. */
tierkv_status tierkv_open_channel(tierkv_client* client, const char* name, uint64_t staging_bytes,
                                  tierkv_channel** out);
void tierkv_channel_free(tierkv_channel* channel);
/* Bytes of one block (K then V, [kv_heads][block_tokens][head_dim] each). */
uint64_t tierkv_block_bytes(const tierkv_channel* channel);
/* Stores blocks [first, first + bytes / block_bytes) of (seq, layer). prefix_hash != 0
 * (one block only) marks a full prefix block shared by content. */
tierkv_status tierkv_put(tierkv_channel* channel, uint64_t seq, uint32_t layer, uint32_t first, const void* data,
                         size_t bytes, uint64_t prefix_hash);
tierkv_status tierkv_get(tierkv_channel* channel, uint64_t seq, uint32_t layer, uint32_t first, void* out,
                         size_t bytes);
/* Appends `tokens` tokens of (seq, layer) starting at token `first_token` to the
 * layer's open last block: kv holds K then V of the new tokens ([kv_heads][tokens]
 * [head_dim] each, the namespace's dtype), `bytes` bytes. The block is stored as it
 * fills (zero-padded) and summarized when full. An append must start where the layer
 * ends (TIERKV_INVALID_ARGUMENT names the token expected otherwise); a whole-block
 * put of the layer ends the open block. *next_token (may be NULL): where the next
 * append starts. */
tierkv_status tierkv_append(tierkv_channel* channel, uint64_t seq, uint32_t layer, uint64_t first_token,
                            uint32_t tokens, const void* kv, size_t bytes, uint64_t* next_token);

typedef struct tierkv_block_ref {
  uint32_t block;    /* block index in the sequence */
  uint16_t tier;     /* 0 = G, 1 = H (a uint32_t before granularity existed: per layer, head is 0 and
                        the same bytes read as before) */
  uint16_t head;     /* the KV head this block serves (namespace granularity "head"), else 0 */
  uint64_t offset;   /* byte offset in that tier's arena */
  const void* data;  /* the block's bytes in the shared arena (CPU path), or NULL */
} tierkv_block_ref;

/* Selects up to `budget` blocks for query (f32 [q_heads][head_dim], query_floats
 * values), sinks and recent window included; fills out[0..*count) and pins them
 * until tierkv_release(*lease). A budget below the policy's sink_blocks +
 * recent_window (when the layer holds that many blocks) is TIERKV_INVALID_ARGUMENT. */
tierkv_status tierkv_retrieve(tierkv_channel* channel, uint64_t seq, uint32_t layer, const float* query,
                              size_t query_floats, uint32_t budget, tierkv_block_ref* out, uint32_t* count,
                              uint64_t* lease);
tierkv_status tierkv_release(tierkv_channel* channel, uint64_t lease);
tierkv_status tierkv_close_sequence(tierkv_channel* channel, uint64_t seq);
/* How many leading tokens are cached as full prefix blocks. */
tierkv_status tierkv_lookup_prefix(tierkv_channel* channel, const int32_t* tokens, size_t n, uint32_t* cached);
/* Makes the cached prefix the first blocks of seq; *loaded = its tokens. */
tierkv_status tierkv_load_prefix(tierkv_channel* channel, uint64_t seq, const int32_t* tokens, size_t n,
                                 uint32_t* loaded);
/* Message of the last failed call on this channel ("" if none). */
const char* tierkv_channel_last_error(const tierkv_channel* channel);
/* "Ok", "NotFound", ... ("Unknown" for a value outside tierkv_status). */
const char* tierkv_status_name(tierkv_status status);

/* ==== ABI version 2: the whole data plane (appended; the calls above are unchanged) ====
 *
 * Every pointer and size a caller passes is checked: a NULL where a value is needed,
 * a byte count that is not a whole number of blocks, a table too small for the
 * budget, ... are refused with TIERKV_INVALID_ARGUMENT and a message in
 * tierkv_last_error / tierkv_channel_last_error. Strings returned by the library
 * stay valid until the next call on the same handle.
 *
 * Option structs grow at their end only: struct_size is the caller's sizeof, a
 * shorter (older) struct is read zero-extended and zero means "the default" in
 * every field, a longer (newer than this library) one is refused. The _init
 * functions write this header's sizeof: bindings with their own layout (ctypes)
 * set struct_size themselves instead of calling them. */

#define TIERKV_ABI_VERSION 2u
/* The ABI version of the loaded library (TIERKV_ABI_VERSION of the build). */
uint32_t tierkv_abi_version(void);

/* Connects with a client name (reported to the daemon; NULL = "libtierkv") and a
 * reply timeout in milliseconds (0 = 10000). */
tierkv_status tierkv_connect_ex(tierkv_client* client, const char* socket_path, const char* client_name,
                                uint32_t timeout_ms);
/* Whether the daemon counts this connection as an admin (1) or not (0); 0 when not connected. */
int tierkv_is_admin(const tierkv_client* client);

/* Budgets and access list of a new namespace. Fill with tierkv_namespace_options_init. */
typedef struct tierkv_namespace_options {
  uint32_t struct_size;    /* sizeof(tierkv_namespace_options) */
  uint64_t gpu_bytes;      /* per-tier budgets in bytes; 0 = no budget of its own */
  uint64_t host_bytes;
  uint64_t disk_bytes;
  const uint32_t* uids;    /* uids that may attach (num_uids entries). No uids and no gids: only
                              the creator; a list replaces that (list the creator to attach too) */
  size_t num_uids;
  const uint32_t* gids;    /* gids that may attach */
  size_t num_gids;
  const char* model_id;    /* the model's identity ("name@revision", [A-Za-z0-9_.:/@+-], at most 128):
                              needed to share prefix blocks through the remote tier R. NULL = none.
                              Added after ABI 2: older callers' struct_size leaves it NULL */
  uint32_t granularity;    /* TIERKV_GRANULARITY_LAYER (0, default) or TIERKV_GRANULARITY_HEAD (1): each KV
                              head selects its own blocks (docs/decisions/0023-per-head-namespaces.md).
                              Appended after model_id: older callers' struct_size leaves it 0 */
} tierkv_namespace_options;
#define TIERKV_GRANULARITY_LAYER 0u
#define TIERKV_GRANULARITY_HEAD 1u
void tierkv_namespace_options_init(tierkv_namespace_options* options);
/* Creates a namespace (admins only) with budgets and an ACL (options NULL = defaults).
 * namespace_id and created (1 new, 0 it existed with the same spec) may be NULL. */
tierkv_status tierkv_create_namespace_ex(tierkv_client* client, const char* name, const tierkv_model_spec* model,
                                         const tierkv_namespace_options* options, uint32_t* namespace_id,
                                         int* created);
/* The namespaces visible to this client: a JSON array of {name, namespace_id, model,
 * budgets, acl}. NULL on error. */
const char* tierkv_list_namespaces_json(tierkv_client* client);
/* The namespace's policy as a JSON object. NULL on error. */
const char* tierkv_get_policy_json(tierkv_client* client, const char* name);
/* Applies changes (a JSON object of policy fields, admins only, all or nothing) and
 * returns the new policy as a JSON object. NULL on error (the old policy stays). */
const char* tierkv_set_policy_json(tierkv_client* client, const char* name, const char* changes_json);
/* Usage per namespace ({"namespaces": [...]}; name NULL = every visible one). NULL on error. */
const char* tierkv_usage_json(tierkv_client* client, const char* name);
/* Connected clients ({"clients": [...]}, admins only). NULL on error. */
const char* tierkv_clients_json(tierkv_client* client);

/* Options of a data channel. Fill with tierkv_channel_options_init. */
typedef struct tierkv_channel_options {
  uint32_t struct_size;         /* sizeof(tierkv_channel_options) */
  uint32_t request_entries;     /* ring sizes, powers of two >= 2 (0 = 256) */
  uint32_t completion_entries;
  uint64_t staging_bytes;       /* 0 = the daemon's default */
  int gpu;                      /* nonzero: the GPU path of retrieve (emulated when the daemon has no GPU) */
  uint64_t gpu_exchange_bytes;  /* 0 = the daemon's default */
} tierkv_channel_options;
void tierkv_channel_options_init(tierkv_channel_options* options);
/* Opens a channel to a namespace this client attached to (options NULL = defaults). */
tierkv_status tierkv_open_channel_ex(tierkv_client* client, const char* name, const tierkv_channel_options* options,
                                     tierkv_channel** out);
/* Bytes of the channel's staging area: a retrieve's query and table must fit it
 * (query bytes + 16 * budget). 0 when channel is NULL. */
uint64_t tierkv_staging_bytes(const tierkv_channel* channel);
/* The model of the channel's namespace. */
tierkv_status tierkv_channel_model(tierkv_channel* channel, tierkv_model_spec* model);
/* Put that also reports *durable (may be NULL): 1 when the namespace's write policy
 * wrote every block to disk before acknowledging. bytes: a whole number of blocks. */
tierkv_status tierkv_put_ex(tierkv_channel* channel, uint64_t seq, uint32_t layer, uint32_t first, const void* data,
                            size_t bytes, uint64_t prefix_hash, int* durable);
/* Retrieve into a table of `capacity` entries (capacity >= budget); *missing (may be
 * NULL): selected blocks still on disk (defer mode). */
tierkv_status tierkv_retrieve_ex(tierkv_channel* channel, uint64_t seq, uint32_t layer, const float* query,
                                 size_t query_floats, uint32_t budget, tierkv_block_ref* out, uint32_t capacity,
                                 uint32_t* count, uint64_t* lease, uint32_t* missing);
/* The content hashes of the full blocks of tokens (the channel's block_tokens each,
 * chained from the first): the prefix_hash to put block i with so that
 * tierkv_lookup_prefix / tierkv_load_prefix find it. Writes *count = n / block_tokens
 * hashes to out (capacity entries; too small: TIERKV_INVALID_ARGUMENT). */
tierkv_status tierkv_prefix_block_hashes(tierkv_channel* channel, const int32_t* tokens, size_t n, uint64_t* out,
                                         size_t capacity, size_t* count);
/* The read-only mappings of the namespace's arenas in this process: H, and G when the
 * daemon emulates it in host memory. *data = NULL, *bytes = 0 when not mapped. A
 * block ref {tier, offset} points at data + offset of its tier's arena. */
tierkv_status tierkv_host_arena(tierkv_channel* channel, const void** data, uint64_t* bytes);
tierkv_status tierkv_gpu_arena(tierkv_channel* channel, const void** data, uint64_t* bytes);
/* Device address of the real G arena in this process (CUDA IPC), or NULL (emulated G). */
void* tierkv_gpu_arena_device(const tierkv_channel* channel);
/* Bytes of that device arena (0 when tierkv_gpu_arena_device is NULL). */
uint64_t tierkv_gpu_arena_device_bytes(const tierkv_channel* channel);
/* Retrieve table entries per budgeted block: 1 (granularity layer) or num_kv_heads
 * (granularity head: a run of up to `budget` entries per KV head, so tables need
 * budget * tierkv_table_heads entries; tierkv_retrieve, which promises only `budget`,
 * is refused there: use tierkv_retrieve_ex). 0 for a NULL channel. */
uint32_t tierkv_table_heads(const tierkv_channel* channel);
/* Bytes one table entry points at: tierkv_block_bytes / tierkv_table_heads (per KV
 * head: one head's K then V, [block_tokens][head_dim] each). */
uint64_t tierkv_entry_bytes(const tierkv_channel* channel);
/* Copies the tierkv_entry_bytes a retrieved ref points at into out (host memory,
 * out_bytes >= tierkv_entry_bytes), wherever the block lies: a host arena, or a real
 * G on the GPU (ref->data is NULL there; this is a device-to-host copy). */
/* A zero-copy get: pins blocks [first, first + count) of (seq, layer) where they are
 * (release != 0: that lease, the reader's previous one, is released first in the
 * same round trip) and fills out[0..*n) with their refs (per KV head namespace: a run of count per
 * head, so capacity >= count * tierkv_table_heads) until tierkv_release(*lease).
 * Read them in place (ref->data, the G arena, tierkv_copy_block). *missing (may be
 * NULL): blocks still on disk (defer mode). TIERKV_NOT_FOUND when a block does not
 * exist (nothing stays pinned). */
tierkv_status tierkv_acquire(tierkv_channel* channel, uint64_t seq, uint32_t layer, uint32_t first, uint32_t count,
                             uint64_t release, tierkv_block_ref* out, uint32_t capacity, uint32_t* n, uint64_t* lease,
                             uint32_t* missing);
tierkv_status tierkv_copy_block(tierkv_channel* channel, const tierkv_block_ref* ref, void* out, size_t out_bytes);

/* ---- GPU path (channel opened with options.gpu) ---- */
/* 0: no GPU path, 1: device (CUDA IPC), 2: emulated (host pointers, streams ignored). */
int tierkv_gpu_path(const tierkv_channel* channel);
/* One entry of the block table the GPU path writes (the layout kernels read). */
typedef struct tierkv_block_table_entry {
  uint32_t block;      /* block index in the sequence */
  uint8_t tier;        /* 0 = G, 1 = H */
  uint8_t reserved;
  uint16_t head;       /* the KV head this entry serves (granularity "head"), else 0 */
  uint64_t offset;     /* byte offset in that tier's arena */
} tierkv_block_table_entry;
typedef struct tierkv_gpu_retrieval {
  uint64_t lease;      /* pass to tierkv_release after the step */
  uint32_t count;      /* entries in table */
  uint32_t missing;    /* defer mode: selected but not resident yet */
  const tierkv_block_table_entry* table; /* device memory (host memory when emulated), valid
                                             until the next retrieval on this channel */
} tierkv_gpu_retrieval;
/* Queues the query copy (device_query: query_floats floats in device memory; host
 * memory when emulated) on `stream` (a cudaStream_t; NULL = the default stream) and
 * posts the retrieval. One in flight per channel. */
tierkv_status tierkv_start_retrieve_on_gpu(tierkv_channel* channel, uint64_t seq, uint32_t layer,
                                           const void* device_query, size_t query_floats, uint32_t budget,
                                           void* stream);
/* Waits for the daemon's table and makes `stream` wait for it; fills *out. */
tierkv_status tierkv_finish_retrieve_on_gpu(tierkv_channel* channel, void* stream, tierkv_gpu_retrieval* out);

/* ---- Daemon liveness (appended) ----
 * When the daemon dies or closes the connection, pending and later calls on the
 * client and on every channel it opened fail with TIERKV_UNAVAILABLE within a few
 * tens of milliseconds. tierkv_reconnect dials the same socket again, says hello and
 * re-attaches the namespaces attached on this handle; then open the channels again
 * (free the old ones: they keep failing with TIERKV_UNAVAILABLE). On failure (no
 * daemon answers yet) the handle stays as it was: call it again later. */
tierkv_status tierkv_reconnect(tierkv_client* client);
/* 1 while connected and the daemon is not known dead, else 0. */
int tierkv_is_connected(const tierkv_client* client);

/* ---- Batched retrieve (appended; docs/decisions/0011-batched-retrieve.md) ----
 * One request retrieves for num_items sequences of one layer, each with its own
 * query, budget and recent window: one round trip, the daemon scores them in
 * parallel, one table back. The call fails as a whole (TIERKV_INVALID_ARGUMENT and
 * a message) for a bad layer, no items, more items than the daemon's
 * limits.max_retrieve_batch, a table too small for the budgets, or entries +
 * queries + tables that do not fit the staging area (64 * n + n * query bytes +
 * 16 * sum(budget) bytes); otherwise each item has its own status in results[i]
 * (an unknown sequence or a zero budget fails only that item). *lease (0 when no
 * item was served) pins every served item's blocks until one tierkv_release.
 * tierkv_batch_item and tierkv_batch_result never change layout; the args struct
 * grows at its end (struct_size). */
typedef struct tierkv_batch_item {
  uint64_t seq;
  const float* query; /* args.query_floats values (num_q_heads * head_dim) */
  uint32_t budget;    /* blocks, sinks and the recent window included */
  uint32_t window;    /* recent-window blocks; 0 = the namespace policy's */
} tierkv_batch_item;
typedef struct tierkv_batch_result {
  tierkv_status status; /* this item's outcome; tierkv_batch_item_error has its message */
  uint32_t first;       /* TIERKV_OK: its blocks are table[first, first + count), ascending */
  uint32_t count;
  uint32_t missing;     /* defer mode: selected but still on disk */
} tierkv_batch_result;
typedef struct tierkv_retrieve_batch_args {
  uint32_t struct_size;           /* sizeof(tierkv_retrieve_batch_args) */
  uint32_t layer;
  const tierkv_batch_item* items; /* num_items entries */
  size_t num_items;
  size_t query_floats;            /* floats in every item's query */
  tierkv_block_ref* table;        /* table_capacity entries, at least the sum of the budgets */
  size_t table_capacity;
  tierkv_batch_result* results;   /* num_items entries, written */
} tierkv_retrieve_batch_args;
void tierkv_retrieve_batch_args_init(tierkv_retrieve_batch_args* args);
/* lease and served (items with TIERKV_OK; may be NULL) are written on TIERKV_OK. */
tierkv_status tierkv_retrieve_batch(tierkv_channel* channel, const tierkv_retrieve_batch_args* args, uint64_t* lease,
                                    uint32_t* served);
/* The message of item i's failure in the channel's last tierkv_retrieve_batch,
 * tierkv_acquire_batch or tierkv_put_batch ("" when
 * it succeeded or i is out of range); valid until the next call on the channel. */
const char* tierkv_batch_item_error(const tierkv_channel* channel, size_t i);

/* ---- Batched acquire and put (appended; docs/decisions/0028-batched-acquire-and-put.md) ----
 * tierkv_acquire_batch: tierkv_acquire for num_items sequences of one layer in one
 * round trip. Each item's blocks [first, first + count) are pinned where they are;
 * every served item's refs land in table (results[i].first/count; per KV head
 * namespace a run of count per head, so table_capacity >= sum(count) *
 * tierkv_table_heads) under one *lease (0 when no item was served) until one
 * tierkv_release. The call fails as a whole (TIERKV_INVALID_ARGUMENT and a message;
 * nothing pinned, `release` not released) for a bad layer, no items, more items
 * than the daemon's limits.max_retrieve_batch, a table too small, or entries + table
 * that do not fit the staging area (64 * n + 16 * sum(count) * table heads bytes);
 * TIERKV_NOT_FOUND for a `release` lease this channel does not hold. Otherwise each
 * item has its own status (TIERKV_NOT_FOUND: a block does not exist; then nothing of
 * it stays pinned) and message (tierkv_batch_item_error). release != 0: as
 * tierkv_acquire's, released first in the same round trip.
 * tierkv_acquire_item and tierkv_put_item/result never change layout; the args struct
 * grows at its end (struct_size). */
typedef struct tierkv_acquire_item {
  uint64_t seq;
  uint32_t first; /* first block */
  uint32_t count; /* blocks */
} tierkv_acquire_item;
typedef struct tierkv_acquire_batch_args {
  uint32_t struct_size;             /* sizeof(tierkv_acquire_batch_args) */
  uint32_t layer;
  const tierkv_acquire_item* items; /* num_items entries */
  size_t num_items;
  uint64_t release;                 /* a lease to release first, or 0 */
  tierkv_block_ref* table;          /* table_capacity entries */
  size_t table_capacity;
  tierkv_batch_result* results;     /* num_items entries, written */
} tierkv_acquire_batch_args;
void tierkv_acquire_batch_args_init(tierkv_acquire_batch_args* args);
/* lease and served (items with TIERKV_OK; may be NULL) are written on TIERKV_OK. */
tierkv_status tierkv_acquire_batch(tierkv_channel* channel, const tierkv_acquire_batch_args* args, uint64_t* lease,
                                   uint32_t* served);
/* tierkv_put_batch: tierkv_put for num_items sequences of one layer, in one round trip
 * when 64 * n + the items' bytes fit the staging area (several otherwise). Each item
 * is one put on the daemon (under write-through its blocks share one disk commit).
 * The call fails as a whole (TIERKV_INVALID_ARGUMENT) for a bad layer, no items, an
 * item that is not whole blocks or is larger than the staging area; otherwise
 * results[i] says each item's outcome, how many of its blocks were stored (before a
 * failure) and whether they are durable; *stored_items (may be NULL): items stored
 * whole. Item messages: tierkv_batch_item_error. */
typedef struct tierkv_put_item {
  uint64_t seq;
  uint32_t first_block;
  uint32_t reserved;    /* 0 */
  const void* data;     /* bytes: a whole number of tierkv_block_bytes blocks */
  size_t bytes;
} tierkv_put_item;
typedef struct tierkv_put_result {
  tierkv_status status; /* this item's outcome */
  uint32_t stored;      /* its blocks stored */
  uint32_t durable;     /* 1: durable on disk before the answer */
  uint32_t reserved;
} tierkv_put_result;
tierkv_status tierkv_put_batch(tierkv_channel* channel, uint32_t layer, const tierkv_put_item* items,
                               size_t num_items, tierkv_put_result* results, uint32_t* stored_items);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* TIERKV_TIERKV_H_ */
