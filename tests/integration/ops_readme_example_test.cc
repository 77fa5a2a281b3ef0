// Integration: the two examples of the README's "Attaching an inference engine"
// section, compiled and run against a real tierkvd. The code between the README
// markers is the README's text (scripts/check_deploy.sh checks that they match).
#include <gtest/gtest.h>

#include <stdio.h>

#include <cmath>
#include <random>
#include <span>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"
#include "tierkv/tierkv.h"

namespace readme {
// README:cpp:begin
#include "tierkv/client.h"

// One engine thread serving one sequence: store its prefill KV, then at a decoding
// step retrieve, per layer, the blocks worth attending to.
// prefill: num_layers * num_blocks blocks (layer-major), each K then V of
// block_tokens tokens; query: [num_q_heads][head_dim] floats of the step.
tierkv::Status ServeSequence(const std::string& socket, const std::string& ns, uint64_t seq,
                             std::span<const std::byte> prefill, uint32_t num_blocks,
                             std::span<const float> query) {
  TIERKV_ASSIGN_OR_RETURN(auto client, tierkv::Client::Connect(socket));  // "/run/tierkv/tierkvd.sock"
  TIERKV_ASSIGN_OR_RETURN(tierkv::NamespaceInfo info, client->Attach(ns));  // its ACL must admit us
  TIERKV_ASSIGN_OR_RETURN(auto channel, client->OpenChannel(ns));  // one per thread, lives with client
  const tierkv::ModelSpec& model = info.spec.model;
  const size_t layer_bytes = size_t{num_blocks} * model.BlockBytes();

  for (uint32_t layer = 0; layer < model.num_layers; ++layer) {  // blocks [0, num_blocks)
    TIERKV_RETURN_IF_ERROR(channel->Put(seq, layer, 0, prefill.subspan(layer * layer_bytes, layer_bytes)));
  }
  for (uint32_t layer = 0; layer < model.num_layers; ++layer) {
    // Sinks + recent window + top-k by the query, pinned until Release.
    TIERKV_ASSIGN_OR_RETURN(auto selection, channel->Retrieve(seq, layer, query, /*budget=*/8));
    for (const tierkv::DataChannel::BlockRef& ref : selection.blocks) {
      // In the shared arena (empty for a block on a real G: device memory, at
      // channel->gpu_arena_device() + ref.offset; CopyBlock copies from either).
      std::span<const std::byte> kv = channel->BlockBytes(ref);
      (void)kv;  // ... attention over block ref.block's keys and values ...
    }
    TIERKV_RETURN_IF_ERROR(channel->Release(selection.lease));
  }
  return channel->CloseSequence(seq);  // or keep the blocks for the next request
}
// README:cpp:end

// README:c:begin
#include <stdio.h>
#include "tierkv/tierkv.h"

int AttachFromC(const char* socket, const char* ns) {
  tierkv_client* c = tierkv_client_new();
  tierkv_model_spec model;
  uint32_t id = 0;
  tierkv_status st = tierkv_connect(c, socket);
  if (st == TIERKV_OK) st = tierkv_attach(c, ns, &id, &model);
  if (st != TIERKV_OK) {
    fprintf(stderr, "tierkv: %s: %s\n", tierkv_status_name(st), tierkv_last_error(c));
  } else {
    printf("namespace %u: %u layers, %u KV heads x %u, %u-token blocks\n", id, model.num_layers,
           model.num_kv_heads, model.head_dim, model.block_tokens);
    const char* stats = tierkv_stats_json(c); /* valid until the next call on c */
    if (stats) printf("%s\n", stats);
  }
  tierkv_client_free(c);
  return st == TIERKV_OK ? 0 : 1;
}
// README:c:end
}  // namespace readme

namespace tierkv {
namespace {

TEST(OpsReadmeExampleTest, TheEngineExamplesRunAgainstARealDaemon) {
  testing::TempDir dir("readme");
  testing::DaemonProcess daemon(TIERKVD_PATH, dir.path());
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  auto admin = Client::Connect(daemon.socket_path());
  ASSERT_TRUE(admin.ok());
  NamespaceSpec spec;
  spec.name = "llama";
  spec.model = {2, 4, 2, 16, 16, DType::kF32};
  ASSERT_TRUE((*admin)->CreateNamespace(spec).ok());

  constexpr uint32_t kBlocks = 24;
  std::vector<float> prefill(spec.model.num_layers * kBlocks * spec.model.BlockBytes() / 4);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.f, 1.f);
  for (auto& x : prefill) x = n(rng);
  std::vector<float> query(size_t{spec.model.num_q_heads} * spec.model.head_dim);
  for (auto& x : query) x = n(rng);

  const Status st = readme::ServeSequence(daemon.socket_path(), "llama", 42, std::as_bytes(std::span(prefill)),
                                          kBlocks, query);
  EXPECT_TRUE(st.ok()) << st.ToString();
  // The sequence was closed: nothing left of it.
  ASSERT_TRUE((*admin)->Attach("llama").ok());
  auto ch = (*admin)->OpenChannel("llama");
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  std::vector<std::byte> out(spec.model.BlockBytes());
  EXPECT_EQ((*ch)->Get(42, 0, 0, out).code(), StatusCode::kNotFound);

  EXPECT_EQ(readme::AttachFromC(daemon.socket_path().c_str(), "llama"), 0);
  EXPECT_EQ(readme::AttachFromC(daemon.socket_path().c_str(), "no-such-namespace"), 1);
  EXPECT_EQ(readme::ServeSequence(daemon.socket_path(), "no-such-namespace", 1, {}, 0, query).code(),
            StatusCode::kNotFound);
}

}  // namespace
}  // namespace tierkv
