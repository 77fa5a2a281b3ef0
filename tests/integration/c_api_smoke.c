/* A C11 program over the C API (tierkv/tierkv.h), run by c_api_test.cc against a
 * real tierkvd: proves the header is plain C and the calls work end to end.
 * Usage: c_api_smoke SOCKET. Exit status: 0 ok, else the failing step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierkv/tierkv.h"

#define CHECK(step, cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "step %d failed: %s\n", step, #cond);                    \
      return step;                                                             \
    }                                                                          \
  } while (0)

int main(int argc, char** argv) {
  CHECK(1, argc == 2);
  tierkv_client* c = tierkv_client_new();
  CHECK(2, tierkv_connect(c, argv[1]) == TIERKV_OK);
  tierkv_model_spec m = {2, 4, 2, 16, 16, TIERKV_F32};
  CHECK(3, tierkv_create_namespace(c, "c-smoke", &m, NULL) == TIERKV_OK);
  CHECK(4, tierkv_attach(c, "c-smoke", NULL, NULL) == TIERKV_OK);
  tierkv_channel* ch = NULL;
  CHECK(5, tierkv_open_channel(c, "c-smoke", 1 << 20, &ch) == TIERKV_OK);
  const size_t bb = tierkv_block_bytes(ch);
  CHECK(6, bb == 2u * 2 * 16 * 16 * 4);
  float* block = malloc(bb);
  float* back = malloc(bb);
  for (uint32_t b = 0; b < 10; ++b) {
    for (size_t i = 0; i < bb / 4; ++i) block[i] = (float)sin((double)(b * 1000 + i));
    CHECK(7, tierkv_put(ch, 42, 0, b, block, bb, 0) == TIERKV_OK);
  }
  CHECK(8, tierkv_get(ch, 42, 0, 9, back, bb) == TIERKV_OK);
  CHECK(9, memcmp(block, back, bb) == 0);
  CHECK(10, tierkv_get(ch, 42, 0, 10, back, bb) == TIERKV_NOT_FOUND);
  CHECK(11, strstr(tierkv_channel_last_error(ch), "not found") != NULL);
  float query[4 * 16];
  for (int i = 0; i < 64; ++i) query[i] = 0.25f;
  tierkv_block_ref refs[6];
  uint32_t n = 0;
  uint64_t lease = 0;
  CHECK(12, tierkv_retrieve(ch, 42, 0, query, 64, 6, refs, &n, &lease) == TIERKV_OK);
  CHECK(13, n == 6 && lease != 0);
  CHECK(14, refs[n - 1].block == 9 && refs[n - 1].data != NULL);
  CHECK(15, memcmp(refs[n - 1].data, block, bb) == 0);
  CHECK(16, tierkv_release(ch, lease) == TIERKV_OK);
  CHECK(17, tierkv_release(ch, lease) == TIERKV_NOT_FOUND);
  CHECK(18, tierkv_put(ch, 42, 0, 0, block, bb - 1, 0) == TIERKV_INVALID_ARGUMENT);
  CHECK(19, tierkv_close_sequence(ch, 42) == TIERKV_OK);
  CHECK(20, tierkv_get(ch, 42, 0, 0, back, bb) == TIERKV_NOT_FOUND);
  free(block);
  free(back);
  tierkv_channel_free(ch);
  tierkv_client_free(c);
  return 0;
}
