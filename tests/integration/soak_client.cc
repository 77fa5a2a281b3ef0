// tierkv_soak_client: one client process of the daemon crash and soak tests
// (daemon_crash_test.cc, scripts/soak.sh). It attaches a namespace through the public
// client API, opens a channel and runs operations on its own sequences until it has
// run --ops of them or the daemon goes away, logging what it sent and what was
// acknowledged durable (tests/integration/soak_blocks.h). Every block it reads back
// (get, retrieve) must be a whole block written by some client: else it exits 1.
//
//   tierkv_soak_client SOCKET NAMESPACE LOG SEQ_BASE SEQS LAYERS BLOCKS VERSION_BASE SEED OPS MIX
//   MIX: "put" (write-through puts only, 1 to 4 blocks each) or "all" (puts, gets,
//   retrieves, prefix lookups and loads, closes)
// Exit: 0 ops done, 3 the daemon went away (kUnavailable, ...), 1 wrong bytes served,
// 2 usage or setup error.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "tests/integration/soak_blocks.h"
#include "tierkv/client.h"

namespace {
using namespace tierkv;

int log_fd = -1;

void Log(const std::string& line) {
  const std::string l = line + "\n";
  if (::write(log_fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) std::abort();
}

bool Gone(const Status& st) {
  return st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kShutdown ||
         st.code() == StatusCode::kIOError;
}
// Connecting: no daemon at the path yet (or any more) reads kNotFound too.
bool NoDaemon(const Status& st) { return Gone(st) || st.code() == StatusCode::kNotFound; }

int Wrong(const std::string& what) {
  std::fprintf(stderr, "soak client: WRONG BYTES: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 12) {
    std::fprintf(stderr, "usage: %s SOCKET NAMESPACE LOG SEQ_BASE SEQS LAYERS BLOCKS VERSION_BASE SEED OPS MIX\n",
                 argv[0]);
    return 2;
  }
  const std::string socket = argv[1], ns = argv[2], log_path = argv[3], mix = argv[11];
  const uint64_t seq_base = std::stoull(argv[4]), version_base = std::stoull(argv[8]);
  const uint32_t seqs = std::stoul(argv[5]), layers = std::stoul(argv[6]), blocks = std::stoul(argv[7]);
  const uint64_t ops = std::stoull(argv[10]);
  std::mt19937_64 rng(std::stoull(argv[9]));
  log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return std::perror("open log"), 2;

  auto client = Client::Connect(socket);
  if (!client.ok()) return NoDaemon(client.status()) ? 3 : 2;
  auto info = (*client)->Attach(ns);
  if (!info.ok()) return NoDaemon(info.status()) ? 3 : 2;
  const ModelSpec model = info->spec.model;
  const size_t bb = model.BlockBytes();
  auto ch = (*client)->OpenChannel(ns, {.staging_bytes = 4 * bb + 65536});
  if (!ch.ok()) return Gone(ch.status()) ? 3 : (std::fprintf(stderr, "%s\n", ch.status().ToString().c_str()), 2);
  DataChannel& c = **ch;

  std::vector<std::byte> buf(4 * bb);
  uint64_t version = version_base;
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  for (uint64_t op = 0; ops == 0 || op < ops; ++op) {
    const uint64_t seq = seq_base + pick(seqs);
    const uint32_t layer = pick(layers);
    const uint32_t kind = mix == "put" ? 0 : pick(100);
    Status st;
    if (kind < 45) {  // put of 1 to 4 blocks
      const uint32_t count = 1 + pick(4);
      const uint32_t first = pick(blocks - count + 1);
      ++version;
      for (uint32_t i = 0; i < count; ++i) {
        soak::Fill(std::span(buf).subspan(i * bb, bb), soak::KeyOf(seq, layer, first + i), version);
      }
      const std::string what = std::to_string(seq) + " " + std::to_string(layer) + " " + std::to_string(first) +
                               " " + std::to_string(count) + " " + std::to_string(version);
      Log("P " + what);
      bool durable = false;
      st = c.Put(seq, layer, first, std::span(buf).first(count * bb), 0, &durable);
      if (st.ok() && durable) Log("A " + what);
    } else if (kind < 70) {  // get
      const uint32_t block = pick(blocks);
      st = c.Get(seq, layer, block, std::span(buf).first(bb));
      if (st.ok()) {
        uint64_t key = 0, v = 0;
        if (!soak::Check(std::span(buf).first(bb), &key, &v) || key != soak::KeyOf(seq, layer, block)) {
          return Wrong("get of seq " + std::to_string(seq) + " layer " + std::to_string(layer) + " block " +
                       std::to_string(block));
        }
      }
      if (st.code() == StatusCode::kNotFound) st = Status();
    } else if (kind < 82) {  // retrieve, check every resident block, release
      std::vector<float> q(size_t{model.num_q_heads} * model.head_dim);
      for (float& f : q) f = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 1000.0f;
      auto r = c.Retrieve(seq, layer, q, 1 + pick(8));
      if (r.ok()) {
        for (const auto& ref : r->blocks) {
          uint64_t key = 0, v = 0;
          const auto bytes = c.BlockBytes(ref);
          if (!bytes.empty() && (!soak::Check(bytes, &key, &v) || key != soak::KeyOf(seq, layer, ref.block))) {
            return Wrong("retrieved block " + std::to_string(ref.block) + " of seq " + std::to_string(seq));
          }
        }
        if (pick(50) != 0) st = c.Release(r->lease);  // 1 in 50 leases left for the daemon to reclaim
      } else {
        st = r.status();
        const StatusCode code = st.code();
        if (code == StatusCode::kNotFound || code == StatusCode::kInvalidArgument || code == StatusCode::kBusy ||
            code == StatusCode::kResourceExhausted) {
          st = Status();
        }
      }
    } else if (kind < 98) {  // prefix blocks: put a full-block prefix, look it up, load it
      std::vector<int32_t> tokens(model.block_tokens * (1 + pick(2)));
      const int32_t base = static_cast<int32_t>(pick(4)) * 1000;  // few distinct prefixes: they get shared
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = base + static_cast<int32_t>(i);
      const auto hashes = PrefixBlockHashes(tokens, model.block_tokens);
      const uint64_t pseq = seq_base + seqs + pick(2);  // prefix sequences: not logged
      for (uint32_t i = 0; i < hashes.size() && st.ok(); ++i) {
        for (uint32_t l = 0; l < layers && st.ok(); ++l) {
          soak::Fill(std::span(buf).first(bb), hashes[i] ^ l, 1);
          st = c.Put(pseq, l, i, std::span(buf).first(bb), hashes[i]);
          if (st.code() == StatusCode::kBusy || st.code() == StatusCode::kResourceExhausted) st = Status();
        }
      }
      if (st.ok()) st = c.LookupPrefix(tokens).status();
      if (st.ok()) st = c.LoadPrefix(seq_base + seqs + 2 + pick(2), tokens).status();
      if (st.code() == StatusCode::kNotFound || st.code() == StatusCode::kBusy ||
          st.code() == StatusCode::kResourceExhausted) {
        st = Status();
      }
    } else {  // close one of its sequences
      Log("C " + std::to_string(seq));
      st = c.CloseSequence(seq);
      if (st.code() == StatusCode::kNotFound) st = Status();
    }
    if (st.ok()) continue;
    if (Gone(st)) return 3;
    // Full tiers and pinned blocks are expected under this load; anything else is not.
    if (st.code() == StatusCode::kResourceExhausted || st.code() == StatusCode::kBusy) continue;
    std::fprintf(stderr, "soak client: op %llu: %s\n", static_cast<unsigned long long>(op), st.ToString().c_str());
    return 2;
  }
  return 0;
}
