/* An engine's C code against the installed libtierkv (C ABI only).
 * Usage: engine_c SOCKET NAMESPACE  (creates the namespace; exit 0 when every step works) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierkv/tierkv.h"

#define CHECK(call, handle, err)                                                      \
  do {                                                                                \
    tierkv_status st_ = (call);                                                       \
    if (st_ != TIERKV_OK) {                                                           \
      fprintf(stderr, "%s: %s: %s\n", #call, tierkv_status_name(st_), err(handle)); \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

static int run(tierkv_client* c, const char* socket, const char* ns) {
  tierkv_model_spec model = {2, 4, 2, 16, 8, TIERKV_F16};
  tierkv_model_spec got;
  uint32_t id = 0, count = 0, layer;
  uint64_t lease = 0;
  tierkv_channel* ch = NULL;
  tierkv_block_ref refs[5];
  float query[4 * 16];
  unsigned char *kv, *back;
  size_t block, i, n = 6;
  int rc = 1;

  CHECK(tierkv_connect(c, socket), c, tierkv_last_error);
  CHECK(tierkv_create_namespace(c, ns, &model, &id), c, tierkv_last_error);
  CHECK(tierkv_attach(c, ns, &id, &got), c, tierkv_last_error);
  if (got.num_layers != 2 || got.head_dim != 16) return 1;
  CHECK(tierkv_open_channel(c, ns, 0, &ch), c, tierkv_last_error);
  block = tierkv_block_bytes(ch);
  if (block != 2u * 2 * 8 * 16 * 2) {
    fprintf(stderr, "block_bytes %zu\n", block);
    tierkv_channel_free(ch);
    return 1;
  }
  kv = malloc(n * block);
  back = malloc(n * block);
  /* f16 values in [0.5, 1): odd bytes (the high halves) 0x38..0x3b. */
  for (i = 0; i < n * block; ++i) kv[i] = (unsigned char)(i % 2 ? 0x38 + (i / 2) % 4 : i * 13 + 1);
  for (i = 0; i < 4 * 16; ++i) query[i] = 0.5f;
  for (layer = 0; layer < 2; ++layer) {
    if (tierkv_put(ch, 7, layer, 0, kv, n * block, 0) != TIERKV_OK) goto out;
  }
  if (tierkv_get(ch, 7, 1, 0, back, n * block) != TIERKV_OK || memcmp(kv, back, n * block) != 0) goto out;
  /* budget 5: at least the sink and recent-window blocks the default policy keeps (1 + 4) */
  if (tierkv_retrieve(ch, 7, 0, query, 4 * 16, 5, refs, &count, &lease) != TIERKV_OK || count == 0) goto out;
  for (i = 0; i < count; ++i) {
    if (!refs[i].data || memcmp(refs[i].data, kv + refs[i].block * block, block) != 0) goto out;
  }
  if (tierkv_release(ch, lease) != TIERKV_OK) goto out;
  if (tierkv_close_sequence(ch, 7) != TIERKV_OK) goto out;
  printf("engine_c: %u blocks retrieved\n", count);
  rc = 0;
out:
  if (rc != 0) fprintf(stderr, "engine_c: %s\n", tierkv_channel_last_error(ch));
  free(kv);
  free(back);
  tierkv_channel_free(ch);
  return rc;
}

int main(int argc, char** argv) {
  tierkv_client* c;
  int rc;
  if (argc != 3) {
    fprintf(stderr, "usage: %s SOCKET NAMESPACE\n", argv[0]);
    return 2;
  }
  c = tierkv_client_new();
  rc = run(c, argv[1], argv[2]);
  tierkv_client_free(c);
  return rc;
}
