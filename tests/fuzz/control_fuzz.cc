#include <cstdlib>
#include <memory>

#include "daemon/control_service.h"
#include "fuzz_targets.h"
#include "tests/util/temp_dir.h"

namespace tierkv::fuzz {
namespace {

void Require(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

// One daemon-side stack for the whole run (like a long-lived daemon).
struct ControlHarness {
  testing::TempDir dir{"fuzz-control"};
  Config config;
  daemon::Metrics metrics;
  std::unique_ptr<storage::Manifest> manifest;
  std::unique_ptr<daemon::NamespaceRegistry> registry;
  std::unique_ptr<daemon::ControlService> service;
  daemon::SessionState admin, user;

  ControlHarness() {
    config.control.max_consecutive_errors = 1u << 30;  // keep the sessions across inputs
    config.data_plane.default_staging_bytes = 4096;
    manifest = std::move(storage::Manifest::Open(dir.Sub("manifest"))).value();
    registry = std::move(daemon::NamespaceRegistry::Load(manifest.get(), 8)).value();
    service = std::make_unique<daemon::ControlService>(config, registry.get(), &metrics, [] {});
    admin = service->OpenSession({1, 0, 0});
    user = service->OpenSession({2, 4242, 4242});
    for (auto* s : {&admin, &user}) service->Handle(*s, R"({"op":"hello","version":1})");
  }
};

ControlHarness& Harness() {
  static ControlHarness* h = new ControlHarness();
  return *h;
}
}  // namespace

bool FuzzControl(const uint8_t* data, size_t size) {
  ControlHarness& h = Harness();
  std::string_view body(reinterpret_cast<const char*>(data), size);
  // Alternate between an admin and a non-admin session (by the first byte).
  daemon::SessionState& s = (size > 0 && (data[0] & 1)) ? h.user : h.admin;
  auto reply = h.service->Handle(s, body);
  Require(reply.body.is_object(), "reply is an object");
  auto ok = reply.body.find("ok");
  Require(ok != reply.body.end() && ok->is_boolean(), "reply has a boolean ok");
  if (!ok->get<bool>()) {
    Require(reply.body.contains("code") && reply.body["code"].is_string(), "error reply has a code");
    Require(reply.body.contains("error") && !reply.body["error"].get<std::string>().empty(), "error has a message");
  }
  (void)wire::DumpBody(reply.body);  // must never throw
  // Channels opened by fuzz inputs are closed at once so threads do not pile up.
  for (auto& ch : s.channels) ch->Stop();
  s.channels.clear();
  Require(h.registry->size() <= 8, "namespace limit holds");
  return ok->get<bool>();
}

std::vector<std::string> ControlSeeds() {
  return {
      R"({"op":"hello","version":1,"client":"x"})",
      R"({"op":"ping","id":1})",
      R"({"op":"stats"})",
      R"({"op":"list_namespaces"})",
      R"({"op":"create_namespace","namespace":{"name":"a","model":{"num_layers":2,"num_q_heads":4,"num_kv_heads":2,"head_dim":16,"block_tokens":16,"dtype":"f16"},"budgets":{"gpu_bytes":1024},"acl":{"uids":[4242],"gids":[]}}})",
      R"({"op":"create_namespace","namespace":{"name":"b","model":{"num_layers":1,"num_q_heads":1,"num_kv_heads":1,"head_dim":1,"block_tokens":1,"dtype":"f32"}}})",
      R"({"op":"attach","namespace":"a"})",
      R"({"op":"open_channel","namespace":"a","request_entries":4,"completion_entries":4,"staging_bytes":4096})",
  };
}

uint64_t Mutator::Next() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return state_ * 0x2545F4914F6CDD1Dull;
}

std::string Mutator::Mutate(const std::string& in, const std::vector<std::string>& corpus) {
  std::string s = in;
  const int rounds = Next() % 4 == 0 ? 2 + static_cast<int>(Next() % 3) : 1;
  static const char* kTokens[] = {"0", "-1", "4294967296", "1e308", "null", "true", "[]", "{}", "\"\"",
                                  "18446744073709551615", "\"\\u0000\"", "\"\xff\"", "[[[[[[[[", "1.5"};
  for (int r = 0; r < rounds; ++r) {
    const size_t pos = s.empty() ? 0 : Next() % (s.size() + 1);
    switch (Next() % 10) {
      case 0:  // flip a bit
        if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << (Next() % 8));
        break;
      case 1:  // delete a span
        if (!s.empty()) s.erase(pos % s.size(), 1 + Next() % 8);
        break;
      case 2:  // insert random bytes
        for (int i = 0, n = 1 + static_cast<int>(Next() % 4); i < n; ++i) s.insert(s.begin() + static_cast<long>(pos), static_cast<char>(Next()));
        break;
      case 3: {  // replace a number or string value with a nasty token
        size_t colon = s.find(':', pos);
        if (colon == std::string::npos) break;
        size_t end = s.find_first_of(",}", colon + 1);
        if (end == std::string::npos) break;
        s.replace(colon + 1, end - colon - 1, kTokens[Next() % std::size(kTokens)]);
        break;
      }
      case 4: {  // splice with another seed
        const std::string& o = corpus[Next() % corpus.size()];
        s = s.substr(0, pos) + o.substr(o.empty() ? 0 : Next() % o.size());
        break;
      }
      case 5:  // truncate
        s.resize(pos);
        break;
      case 6:  // duplicate a span
        if (!s.empty()) s.insert(pos, s.substr(Next() % s.size(), 1 + Next() % 16));
        break;
      default: {  // JSON-aware again (most inputs should get past the parser)
        size_t colon = s.find(':', pos);
        if (colon == std::string::npos) colon = s.find(':');
        if (colon == std::string::npos) break;
        size_t end = s.find_first_of(",}", colon + 1);
        if (end == std::string::npos) break;
        s.replace(colon + 1, end - colon - 1, kTokens[Next() % std::size(kTokens)]);
        break;
      }
    }
  }
  return s;
}

}  // namespace tierkv::fuzz
