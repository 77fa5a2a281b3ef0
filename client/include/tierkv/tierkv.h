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
  TIERKV_INTERNAL = 12
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

typedef struct tierkv_block_ref {
  uint32_t block;    /* block index in the sequence */
  uint32_t tier;     /* 0 = G, 1 = H */
  uint64_t offset;   /* byte offset in that tier's arena */
  const void* data;  /* the block's bytes in the shared arena (CPU path), or NULL */
} tierkv_block_ref;

/* Selects up to `budget` blocks for query (f32 [q_heads][head_dim], query_floats
 * values), sinks and recent window included; fills out[0..*count) and pins them
 * until tierkv_release(*lease). */
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
/* "Ok", "NotFound", ... */
const char* tierkv_status_name(tierkv_status status);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* TIERKV_TIERKV_H_ */
