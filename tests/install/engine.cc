// An engine's C++ code against the installed libtierkv: public headers only.
// Usage: engine_cpp SOCKET NAMESPACE  (creates the namespace; exit 0 when every step works)
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "tierkv/client.h"

namespace {
tierkv::Status Run(const std::string& socket, const std::string& ns) {
  TIERKV_ASSIGN_OR_RETURN(auto client, tierkv::Client::Connect(socket));
  tierkv::NamespaceSpec spec;
  spec.name = ns;
  spec.model = {.num_layers = 2, .num_q_heads = 4, .num_kv_heads = 2, .head_dim = 16, .block_tokens = 8,
                .dtype = tierkv::DType::kF16};
  TIERKV_RETURN_IF_ERROR(client->CreateNamespace(spec).status());
  TIERKV_ASSIGN_OR_RETURN(tierkv::NamespaceInfo info, client->Attach(ns));
  if (!(info.spec.model == spec.model)) return tierkv::Status(tierkv::StatusCode::kInternal, "attach: model differs");
  TIERKV_ASSIGN_OR_RETURN(auto channel, client->OpenChannel(ns));
  const size_t block = info.spec.model.BlockBytes();
  if (channel->block_bytes() != block) return tierkv::Status(tierkv::StatusCode::kInternal, "block_bytes differs");

  const uint32_t blocks = 6;
  std::vector<std::byte> kv(blocks * block);
  // f16 values in [0.5, 1): odd bytes (the high halves) 0x38..0x3b.
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = static_cast<std::byte>(i % 2 ? 0x38 + (i / 2) % 4 : (i * 7 + 3) & 0xff);
  for (uint32_t layer = 0; layer < spec.model.num_layers; ++layer) {
    TIERKV_RETURN_IF_ERROR(channel->Put(/*seq=*/42, layer, 0, kv));
  }
  std::vector<std::byte> back(kv.size());
  TIERKV_RETURN_IF_ERROR(channel->Get(42, 1, 0, back));
  if (back != kv) return tierkv::Status(tierkv::StatusCode::kInternal, "get: bytes differ from put");

  std::vector<float> query(spec.model.num_q_heads * spec.model.head_dim, 0.25f);
  // Budget 5: at least the sink and recent-window blocks the default policy keeps (1 + 4).
  TIERKV_ASSIGN_OR_RETURN(auto selection, channel->Retrieve(42, 0, query, /*budget=*/5));
  if (selection.blocks.empty() || selection.blocks.size() > 5) {
    return tierkv::Status(tierkv::StatusCode::kInternal, "retrieve: " + std::to_string(selection.blocks.size()) +
                                                             " blocks");
  }
  for (const tierkv::DataChannel::BlockRef& ref : selection.blocks) {
    std::span<const std::byte> bytes = channel->BlockBytes(ref);
    if (bytes.size() != block || std::memcmp(bytes.data(), kv.data() + ref.block * block, block) != 0) {
      return tierkv::Status(tierkv::StatusCode::kInternal, "retrieve: block " + std::to_string(ref.block) +
                                                               " differs in the shared arena");
    }
  }
  TIERKV_RETURN_IF_ERROR(channel->Release(selection.lease));
  if (channel->Release(selection.lease).ok()) return tierkv::Status(tierkv::StatusCode::kInternal, "double release");
  TIERKV_ASSIGN_OR_RETURN(std::string set, client->SetPolicy(ns, R"({"retriever":"exact"})"));
  if (set.find("\"retriever\":\"exact\"") == std::string::npos) {
    return tierkv::Status(tierkv::StatusCode::kInternal, "set_policy: " + set);
  }
  if (client->SetPolicy(ns, "{not json").status().code() != tierkv::StatusCode::kInvalidArgument) {
    return tierkv::Status(tierkv::StatusCode::kInternal, "set_policy accepted bad JSON text");
  }
  TIERKV_ASSIGN_OR_RETURN(std::string policy, client->GetPolicy(ns));
  if (policy != set) return tierkv::Status(tierkv::StatusCode::kInternal, "get_policy differs from set_policy");
  TIERKV_ASSIGN_OR_RETURN(tierkv::DaemonStats stats, client->Stats());
  std::printf("engine_cpp: %zu blocks retrieved, daemon %s, policy %s\n", selection.blocks.size(),
              stats.version.c_str(), policy.c_str());
  return channel->CloseSequence(42);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET NAMESPACE\n", argv[0]);
    return 2;
  }
  tierkv::Status st = Run(argv[1], argv[2]);
  if (!st.ok()) {
    std::fprintf(stderr, "engine_cpp: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
