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
/* "Ok", "NotFound", ... */
const char* tierkv_status_name(tierkv_status status);

#ifdef __cplusplus
}
#endif

#endif /* TIERKV_TIERKV_H_ */
