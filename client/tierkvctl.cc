// tierkvctl: operate a running tierkvd from the command line.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkvctl [--socket PATH] [--json] COMMAND [ARGS]

Talks to a running tierkvd over its control socket.

Commands:
  status                       daemon version, uptime, clients, namespaces, metrics URL, GPU
  ping                         check that the daemon answers (exit 0 when it does)
  namespaces                   list the namespaces you may see
  create-namespace NAME LAYERS Q_HEADS KV_HEADS HEAD_DIM BLOCK_TOKENS DTYPE [UID...]
                               create a namespace (admins only); DTYPE is f16, bf16 or f32;
                               the UIDs form its ACL (default: your uid)
  shutdown                     stop the daemon (admins only)

Options:
  --socket PATH   control socket (default: $TIERKV_SOCKET, else ./var/tierkvd.sock)
  --json          print the daemon's JSON reply instead of a table
  --help          print this help
)";

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tierkvctl: %s\n", msg.c_str());
  return 1;
}

bool ParseU32(const std::string& s, uint32_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 10) return false;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

int Status(tierkv::Client& c, bool json) {
  auto s = c.Stats();
  if (!s.ok()) return Fail(s.status().ToString());
  if (json) {
    std::cout << s->raw.dump(2) << "\n";
    return 0;
  }
  std::printf("tierkvd %s, up %.0f s\n", s->version.c_str(), s->uptime_s);
  std::printf("connections       %llu\n", static_cast<unsigned long long>(s->connections));
  std::printf("clients attached  %llu\n", static_cast<unsigned long long>(s->clients_attached));
  std::printf("namespaces        %llu\n", static_cast<unsigned long long>(s->namespaces));
  std::printf("requests          %llu\n", static_cast<unsigned long long>(s->requests));
  std::printf("metrics           %s\n", s->metrics_url.empty() ? "(disabled)" : s->metrics_url.c_str());
  std::printf("gpu               %s\n", s->gpu.c_str());
  return 0;
}

int Namespaces(tierkv::Client& c, bool json) {
  auto list = c.ListNamespaces();
  if (!list.ok()) return Fail(list.status().ToString());
  if (json) {
    tierkv::wire::Json out = tierkv::wire::Json::array();
    for (const auto& ns : *list) {
      auto j = tierkv::wire::ToJson(ns.spec);
      j["namespace_id"] = ns.id;
      out.push_back(j);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%-4s %-24s %s\n", "ID", "NAME", "MODEL");
  for (const auto& ns : *list) {
    std::printf("%-4u %-24s %s\n", ns.id, ns.spec.name.c_str(), ns.spec.model.ToString().c_str());
  }
  return 0;
}

int CreateNamespace(tierkv::Client& c, const std::vector<std::string>& args, bool json) {
  if (args.size() < 7) return Fail("create-namespace needs NAME LAYERS Q_HEADS KV_HEADS HEAD_DIM BLOCK_TOKENS DTYPE");
  tierkv::NamespaceSpec spec;
  spec.name = args[0];
  uint32_t* fields[] = {&spec.model.num_layers, &spec.model.num_q_heads, &spec.model.num_kv_heads,
                        &spec.model.head_dim, &spec.model.block_tokens};
  const char* names[] = {"LAYERS", "Q_HEADS", "KV_HEADS", "HEAD_DIM", "BLOCK_TOKENS"};
  for (int i = 0; i < 5; ++i) {
    if (!ParseU32(args[1 + i], fields[i])) return Fail(std::string(names[i]) + " must be a number: " + args[1 + i]);
  }
  auto dtype = tierkv::ParseDType(args[6]);
  if (!dtype.ok()) return Fail(dtype.status().message());
  spec.model.dtype = *dtype;
  for (size_t i = 7; i < args.size(); ++i) {
    uint32_t uid;
    if (!ParseU32(args[i], &uid)) return Fail("UID must be a number: " + args[i]);
    spec.acl.uids.push_back(uid);
  }
  auto r = c.CreateNamespace(spec);
  if (!r.ok()) return Fail(r.status().ToString());
  std::printf("namespace %u '%s' %s\n", r->id, spec.name.c_str(), r->created ? "created" : "already existed");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("TIERKV_SOCKET");
  std::string socket = env ? env : "./var/tierkvd.sock";
  bool json = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--socket" && i + 1 < argc) {
      socket = argv[++i];
    } else if (a.rfind("--socket=", 0) == 0) {
      socket = a.substr(9);
    } else if (a.rfind("--", 0) == 0) {
      return Fail("unknown option '" + a + "' (see --help)");
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) return Fail("no command (see --help)");
  const std::string cmd = args[0];
  args.erase(args.begin());

  auto client = tierkv::Client::Connect(socket, {.name = "tierkvctl"});
  if (!client.ok()) return Fail(client.status().ToString());
  tierkv::Client& c = **client;
  if (cmd == "status") return Status(c, json);
  if (cmd == "ping") {
    tierkv::Status st = c.Ping();
    if (!st.ok()) return Fail(st.ToString());
    std::printf("ok\n");
    return 0;
  }
  if (cmd == "namespaces") return Namespaces(c, json);
  if (cmd == "create-namespace") return CreateNamespace(c, args, json);
  if (cmd == "shutdown") {
    tierkv::Status st = c.Shutdown();
    if (!st.ok()) return Fail(st.ToString());
    std::printf("daemon is stopping\n");
    return 0;
  }
  return Fail("unknown command '" + cmd + "' (see --help)");
}
