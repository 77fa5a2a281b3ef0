/* A C11 program over the C API (tierkv/tierkv.h), run by c_api_test.cc against a
 * real tierkvd: proves the header is plain C and the calls work end to end.
 * Usage: c_api_smoke SOCKET. Exit status: 0 ok, else the failing step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  /* Token append: 16 tokens (one whole block, same layout as a block) equal the put. */
  uint64_t next_token = 0;
  CHECK(68, tierkv_append(ch, 43, 0, 0, 16, block, bb, &next_token) == TIERKV_OK && next_token == 16);
  CHECK(69, tierkv_get(ch, 43, 0, 0, back, bb) == TIERKV_OK && memcmp(block, back, bb) == 0);
  CHECK(70, tierkv_append(ch, 43, 0, 20, 1, block, bb / 16, NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(71, strstr(tierkv_channel_last_error(ch), "token 16") != NULL);
  CHECK(72, tierkv_append(ch, 43, 0, 16, 1, block, bb / 16 - 1, NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(73, tierkv_close_sequence(ch, 43) == TIERKV_OK);

  /* ABI version 2: options structs, durable puts, retrieve_ex, arenas, JSON calls. */
  CHECK(21, tierkv_abi_version() == TIERKV_ABI_VERSION);
  tierkv_namespace_options nso;
  tierkv_namespace_options_init(&nso);
  uint32_t uids[2] = {4242, (uint32_t)getuid()}; /* a list replaces "only the creator" */
  nso.host_bytes = 1u << 20;
  nso.uids = uids;
  nso.num_uids = 2;
  int created = -1;
  CHECK(22, tierkv_create_namespace_ex(c, "c-smoke2", &m, &nso, NULL, &created) == TIERKV_OK && created == 1);
  nso.struct_size = 8; /* a binding with another layout is refused */
  CHECK(23, tierkv_create_namespace_ex(c, "c-smoke3", &m, &nso, NULL, NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(24, strstr(tierkv_last_error(c), "tierkv_namespace_options_init") != NULL);
  nso.struct_size = sizeof nso + 8; /* a newer header than this library */
  CHECK(24, tierkv_create_namespace_ex(c, "c-smoke3", &m, &nso, NULL, NULL) == TIERKV_INVALID_ARGUMENT);
  nso.struct_size = sizeof nso;
  CHECK(25, tierkv_attach(c, "c-smoke2", NULL, NULL) == TIERKV_OK);
  tierkv_channel_options co;
  tierkv_channel_options_init(&co);
  co.staging_bytes = 1 << 16;
  tierkv_channel* ch2 = NULL;
  CHECK(26, tierkv_open_channel_ex(c, "c-smoke2", &co, &ch2) == TIERKV_OK);
  tierkv_model_spec got;
  CHECK(27, tierkv_channel_model(ch2, &got) == TIERKV_OK && got.num_kv_heads == 2 && tierkv_gpu_path(ch2) == 0);
  int durable = -1;
  for (uint32_t b = 0; b < 8; ++b) CHECK(28, tierkv_put_ex(ch2, 7, 1, b, block, bb, 0, &durable) == TIERKV_OK);
  CHECK(29, durable == 0 || durable == 1);
  CHECK(30, tierkv_put_ex(ch2, 7, 2, 0, block, bb, 0, NULL) == TIERKV_INVALID_ARGUMENT); /* layer 2 of 2 */
  uint32_t missing = 99;
  CHECK(31, tierkv_retrieve_ex(ch2, 7, 1, query, 64, 6, refs, 5, &n, &lease, &missing) == TIERKV_INVALID_ARGUMENT);
  CHECK(32, tierkv_retrieve_ex(ch2, 7, 1, query, 63, 6, refs, 6, &n, &lease, &missing) == TIERKV_INVALID_ARGUMENT);
  CHECK(33, tierkv_retrieve_ex(ch2, 7, 1, query, 64, 6, refs, 6, &n, &lease, &missing) == TIERKV_OK && missing == 0);
  const void* arena = NULL;
  uint64_t arena_bytes = 0;
  CHECK(34, tierkv_gpu_arena(ch2, &arena, &arena_bytes) == TIERKV_OK);
  /* A real G arena is device memory with its size; an emulated one is mapped here. */
  CHECK(34, tierkv_gpu_arena_device(ch2) != NULL ? tierkv_gpu_arena_device_bytes(ch2) > 0
                                                 : tierkv_gpu_arena_device_bytes(ch2) == 0 && arena != NULL);
  const void* host = NULL;
  uint64_t host_bytes = 0;
  CHECK(35, tierkv_host_arena(ch2, &host, &host_bytes) == TIERKV_OK && host != NULL);
  const char* base = (const char*)(refs[0].tier == 0 ? arena : host);
  CHECK(36, base != NULL && (const char*)refs[0].data == base + refs[0].offset);
  /* tierkv_copy_block: the entry's bytes wherever it lies; bad refs and short buffers refused. */
  char* copy = malloc(bb);
  CHECK(74, copy != NULL && tierkv_entry_bytes(ch2) == bb);
  CHECK(74, tierkv_copy_block(ch2, &refs[0], copy, bb) == TIERKV_OK && memcmp(copy, block, bb) == 0);
  CHECK(75, tierkv_copy_block(ch2, &refs[0], copy, bb - 1) == TIERKV_INVALID_ARGUMENT);
  CHECK(75, tierkv_copy_block(ch2, NULL, copy, bb) == TIERKV_INVALID_ARGUMENT);
  tierkv_block_ref bad = refs[0];
  bad.tier = 7;
  CHECK(76, tierkv_copy_block(ch2, &bad, copy, bb) == TIERKV_INVALID_ARGUMENT);
  bad.tier = 1;
  bad.offset = host_bytes;
  CHECK(76, tierkv_copy_block(ch2, &bad, copy, bb) == TIERKV_INVALID_ARGUMENT);
  CHECK(76, strstr(tierkv_channel_last_error(ch2), "outside") != NULL);
  /* tierkv_acquire: a zero-copy get of blocks 2..4 under a lease. */
  uint32_t got_n = 0;
  uint64_t acquired = 0;
  CHECK(77, tierkv_acquire(ch2, 7, 1, 2, 3, 0, refs, 3, &got_n, &acquired, NULL) == TIERKV_OK && got_n == 3);
  CHECK(77, refs[0].block == 2 && refs[2].block == 4 && acquired != 0);
  CHECK(77, tierkv_copy_block(ch2, &refs[1], copy, bb) == TIERKV_OK && memcmp(copy, block, bb) == 0);
  /* The next read gives the previous lease back in the same call. */
  uint64_t next = 0;
  CHECK(77, tierkv_acquire(ch2, 7, 1, 5, 1, acquired, refs, 3, &got_n, &next, NULL) == TIERKV_OK && got_n == 1);
  CHECK(77, refs[0].block == 5 && next != acquired && tierkv_release(ch2, acquired) == TIERKV_NOT_FOUND);
  CHECK(77, tierkv_acquire(ch2, 7, 1, 5, 1, acquired, refs, 3, &got_n, &acquired, NULL) == TIERKV_NOT_FOUND);
  CHECK(77, tierkv_release(ch2, next) == TIERKV_OK);
  CHECK(78, tierkv_acquire(ch2, 7, 1, 2, 3, 0, refs, 2, &got_n, &acquired, NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(78, tierkv_acquire(ch2, 7, 1, 6, 3, 0, refs, 3, &got_n, &acquired, NULL) == TIERKV_NOT_FOUND); /* 8 blocks */
  CHECK(78, tierkv_acquire(ch2, 7, 2, 0, 1, 0, refs, 3, &got_n, &acquired, NULL) == TIERKV_INVALID_ARGUMENT);
  free(copy);
  CHECK(37, tierkv_release(ch2, lease) == TIERKV_OK);
  const char* policy = tierkv_set_policy_json(c, "c-smoke2", "{\"retriever\": \"mean\"}");
  CHECK(38, policy != NULL && strstr(policy, "\"retriever\":\"mean\"") != NULL);
  CHECK(39, tierkv_set_policy_json(c, "c-smoke2", "{\"retriever\": 5") == NULL);
  CHECK(40, tierkv_list_namespaces_json(c) != NULL && strstr(tierkv_list_namespaces_json(c), "c-smoke2") != NULL);
  /* Batched retrieve (appended): sequence 7 has 8 blocks in layer 1, 99 has none. */
  tierkv_batch_item items[3] = {{7, query, 6, 0}, {99, query, 4, 0}, {7, query, 3, 2}};
  tierkv_batch_result results[3];
  tierkv_block_ref table[13];
  tierkv_retrieve_batch_args ba;
  tierkv_retrieve_batch_args_init(&ba);
  ba.layer = 1;
  ba.items = items;
  ba.num_items = 3;
  ba.query_floats = 64;
  ba.table = table;
  ba.table_capacity = 12; /* < 6 + 4 + 3 */
  ba.results = results;
  uint64_t blease = 0;
  uint32_t served = 0;
  CHECK(60, tierkv_retrieve_batch(ch2, &ba, &blease, &served) == TIERKV_INVALID_ARGUMENT);
  CHECK(61, strstr(tierkv_channel_last_error(ch2), "budgets") != NULL);
  ba.table_capacity = 13;
  CHECK(62, tierkv_retrieve_batch(ch2, &ba, &blease, &served) == TIERKV_OK && served == 2 && blease != 0);
  CHECK(63, results[0].status == TIERKV_OK && results[0].first == 0 && results[0].count == 6);
  CHECK(64, results[1].status == TIERKV_NOT_FOUND && strstr(tierkv_batch_item_error(ch2, 1), "no blocks") != NULL);
  CHECK(65, results[2].status == TIERKV_OK && results[2].first == 6 && results[2].count == 3 && table[8].block == 7);
  CHECK(66, table[0].data != NULL && tierkv_batch_item_error(ch2, 0)[0] == 0);
  CHECK(67, tierkv_release(ch2, blease) == TIERKV_OK && tierkv_release(ch2, blease) == TIERKV_NOT_FOUND);
  /* Batched put and acquire (appended, decision 0028): sequences 30 and 31 get block 0
   * and 1 of layer 1 in one call; one acquire_batch returns 7's, 30's and 31's blocks. */
  tierkv_put_item pitems[2] = {{30, 0, 0, block, bb}, {31, 1, 0, block, bb}};
  tierkv_put_result presults[2];
  uint32_t stored_items = 0;
  CHECK(79, tierkv_put_batch(ch2, 1, pitems, 2, presults, &stored_items) == TIERKV_OK && stored_items == 2);
  CHECK(79, presults[0].status == TIERKV_OK && presults[0].stored == 1 && presults[1].stored == 1);
  CHECK(80, tierkv_get(ch2, 31, 1, 1, back, bb) == TIERKV_OK && memcmp(block, back, bb) == 0);
  CHECK(80, tierkv_put_batch(ch2, 2, pitems, 2, presults, NULL) == TIERKV_INVALID_ARGUMENT); /* layer 2 of 2 */
  pitems[1].bytes = bb - 1;
  CHECK(80, tierkv_put_batch(ch2, 1, pitems, 2, presults, NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(80, tierkv_put_batch(ch2, 1, NULL, 2, presults, NULL) == TIERKV_INVALID_ARGUMENT);
  tierkv_acquire_item aitems[4] = {{7, 2, 3}, {30, 0, 1}, {31, 0, 2} /* no block 0 */, {31, 1, 1}};
  tierkv_acquire_batch_args aa;
  tierkv_acquire_batch_args_init(&aa);
  aa.layer = 1;
  aa.items = aitems;
  aa.num_items = 4;
  aa.table = table;
  aa.table_capacity = 6; /* < 3 + 1 + 2 + 1 */
  aa.results = results;
  CHECK(81, tierkv_acquire_batch(ch2, &aa, &blease, &served) == TIERKV_INVALID_ARGUMENT);
  CHECK(81, strstr(tierkv_channel_last_error(ch2), "counts") != NULL);
  aa.table_capacity = 13;
  tierkv_batch_result aresults[4];
  aa.results = aresults;
  CHECK(82, tierkv_acquire_batch(ch2, &aa, &blease, &served) == TIERKV_OK && served == 3 && blease != 0);
  CHECK(82, aresults[0].status == TIERKV_OK && aresults[0].first == 0 && aresults[0].count == 3);
  CHECK(83, aresults[1].status == TIERKV_OK && aresults[1].first == 3 && table[3].block == 0);
  CHECK(83, memcmp(table[3].data, block, bb) == 0 && table[0].block == 2);
  CHECK(84, aresults[2].status == TIERKV_NOT_FOUND && tierkv_batch_item_error(ch2, 2)[0] != 0);
  CHECK(84, aresults[3].status == TIERKV_OK && aresults[3].first == 4 && table[4].block == 1);
  /* The next batch releases this one in the same call; an unknown release fails it whole. */
  uint64_t blease2 = 0;
  aa.num_items = 2;
  aa.release = blease;
  CHECK(85, tierkv_acquire_batch(ch2, &aa, &blease2, NULL) == TIERKV_OK && blease2 != 0);
  CHECK(85, tierkv_release(ch2, blease) == TIERKV_NOT_FOUND);
  CHECK(86, tierkv_acquire_batch(ch2, &aa, &blease, NULL) == TIERKV_NOT_FOUND);
  CHECK(86, tierkv_release(ch2, blease2) == TIERKV_OK);
  aa.struct_size = 8;
  CHECK(86, tierkv_acquire_batch(ch2, &aa, &blease, NULL) == TIERKV_INVALID_ARGUMENT);
  /* Reconnect (live connection here: it is replaced); the old channels turn unavailable. */
  CHECK(41, tierkv_is_connected(c) == 1 && tierkv_reconnect(NULL) == TIERKV_INVALID_ARGUMENT);
  CHECK(42, tierkv_reconnect(c) == TIERKV_OK && tierkv_is_connected(c) == 1);
  CHECK(43, tierkv_put(ch2, 8, 0, 0, block, bb, 0) == TIERKV_UNAVAILABLE);
  CHECK(44, strstr(tierkv_channel_last_error(ch2), "Unavailable") != NULL);
  tierkv_channel* ch3 = NULL;
  CHECK(45, tierkv_open_channel(c, "c-smoke2", 0, &ch3) == TIERKV_OK); /* re-attached by the reconnect */
  CHECK(46, tierkv_put(ch3, 8, 0, 0, block, bb, 0) == TIERKV_OK);
  CHECK(47, strcmp(tierkv_status_name(TIERKV_UNAVAILABLE), "Unavailable") == 0);
  tierkv_channel_free(ch3);
  tierkv_client* unconnected = tierkv_client_new();
  CHECK(48, tierkv_reconnect(unconnected) == TIERKV_INVALID_ARGUMENT && tierkv_is_connected(unconnected) == 0);
  tierkv_client_free(unconnected);
  tierkv_channel_free(ch2);
  free(block);
  free(back);
  tierkv_channel_free(ch);
  tierkv_client_free(c);
  return 0;
}
