// tierkvctl: operate a running tierkvd from the command line.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/client_internal.h"
#include "tierkv/client.h"

namespace {
constexpr const char* kUsage = R"(Usage: tierkvctl [--socket PATH] [--json] COMMAND [ARGS]

Talks to a running tierkvd over its control socket.

Commands:
  status                       daemon version, uptime, clients, namespaces, metrics URL, GPU,
                               remote tier R (off, up, down, probing)
  ping                         check that the daemon answers (exit 0 when it does)
  namespaces                   list the namespaces you may see
  create-namespace NAME LAYERS Q_HEADS KV_HEADS HEAD_DIM BLOCK_TOKENS DTYPE [UID | publisher=UID ...]
                   [model_id=ID] [granularity=layer|head]
                               create a namespace (admins only); DTYPE is f16, bf16 or f32;
                               the UIDs form its ACL (default: your uid); publisher=UID also
                               serves that uid's prefix blocks to every member; model_id
                               names the model (needed by the remote tier R);
                               granularity=head: each KV head selects its own blocks
  usage [NAME]                 per namespace: blocks, sequences, tier occupancy, metadata memory
  clients                      attached clients: session, pid, uid, namespaces, channels (admins)
  policy get NAME              the namespace's policy (tiering and retrieval)
  policy set NAME KEY=VALUE... change policy fields at run time (admins); e.g.
                               policy set llama eviction=lfu gpu_high_watermark=0.8 miss_mode=defer
                               A bad value is refused and the old policy stays.
  delete-namespace NAME [--force]
                               delete a namespace: its blocks, memory, D file, records and
                               metrics (admins only); refused while clients are attached
                               unless --force (their channels then fail: namespace deleted)
  prefixes [NAME]              cached prefix blocks per namespace: prefixes, blocks, bytes,
                               unused (no open sequence links them), idle time; the most
                               idle entries are listed (with --json: every field)
  evict-prefixes NAME [--older-than S]
                               drop the cached prefixes no open sequence uses, idle for at
                               least S seconds (default 0: all unused ones) (admins only)
  shutdown                     stop the daemon (admins only)

Options:
  --socket PATH   control socket (default: $TIERKV_SOCKET, else ./var/tierkvd.sock)
  --json          print the daemon's JSON reply instead of a table
  --force         delete-namespace: also when clients are attached
  --older-than S  evict-prefixes: only prefixes idle for at least S seconds
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
    auto parsed = tierkv::wire::ParseBody(s->json);
    std::cout << (parsed.ok() ? parsed->dump(2) : s->json) << "\n";
    return 0;
  }
  std::printf("tierkvd %s, up %.0f s\n", s->version.c_str(), s->uptime_s);
  std::printf("connections       %llu\n", static_cast<unsigned long long>(s->connections));
  std::printf("clients attached  %llu\n", static_cast<unsigned long long>(s->clients_attached));
  std::printf("namespaces        %llu\n", static_cast<unsigned long long>(s->namespaces));
  std::printf("requests          %llu\n", static_cast<unsigned long long>(s->requests));
  std::printf("metrics           %s\n", s->metrics_url.empty() ? "(disabled)" : s->metrics_url.c_str());
  std::printf("gpu               %s\n", s->gpu.c_str());
  // The remote tier R (docs/remote-tier.md): off, up, down or probing, with counters.
  if (auto parsed = tierkv::wire::ParseBody(s->json); parsed.ok() && parsed->contains("remote")) {
    const auto& r = (*parsed)["remote"];
    std::printf("remote            %s", r.value("state", "?").c_str());
    if (r.contains("hits")) {
      std::printf(" (hits %llu, misses %llu, puts %llu, errors %llu, corrupt %llu)",
                  static_cast<unsigned long long>(r.value("hits", 0ull)),
                  static_cast<unsigned long long>(r.value("misses", 0ull)),
                  static_cast<unsigned long long>(r.value("puts", 0ull)),
                  static_cast<unsigned long long>(r.value("errors", 0ull)),
                  static_cast<unsigned long long>(r.value("corrupt", 0ull)));
    }
    std::printf("\n");
  }
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
    const bool per_head = ns.spec.granularity == tierkv::Granularity::kKvHead;
    std::printf("%-4u %-24s %s%s\n", ns.id, ns.spec.name.c_str(), ns.spec.model.ToString().c_str(),
                per_head ? " granularity=head" : "");
  }
  return 0;
}

// "0.8" -> 0.8, "12" -> 12, "true" -> true, anything else stays a string.
tierkv::wire::Json ParseValue(const std::string& v) {
  auto j = tierkv::wire::Json::parse(v, nullptr, false);
  if (!j.is_discarded() && (j.is_number() || j.is_boolean())) return j;
  return v;
}

int PrintReply(const tierkv::Result<tierkv::wire::Json>& r, const char* key) {
  if (!r.ok()) return Fail(r.status().ToString());
  std::cout << (*r)[key].dump(2) << "\n";
  return 0;
}

int Usage(tierkv::Client& c, const std::vector<std::string>& args, bool json) {
  tierkv::wire::Json req{{"op", "usage"}};
  if (!args.empty()) req["namespace"] = args[0];
  auto r = tierkv::internal::Call(c, req);
  if (!r.ok()) return Fail(r.status().ToString());
  if (json) return PrintReply(r, "namespaces");
  std::printf("%-20s %8s %6s  %-18s %-18s %-18s %s\n", "NAMESPACE", "BLOCKS", "SEQS", "G used/slots", "H used/slots",
              "D used/slots", "META B/BLOCK");
  for (const auto& ns : (*r)["namespaces"]) {
    auto tier = [&](const char* t) -> std::string {
      if (!ns["tiers"].contains(t)) return "-";
      return std::to_string(ns["tiers"][t]["used_slots"].get<uint64_t>()) + "/" +
             std::to_string(ns["tiers"][t]["slots"].get<uint64_t>());
    };
    const double blocks = ns["blocks"].get<double>();
    std::printf("%-20s %8.0f %6llu  %-18s %-18s %-18s %.1f\n", ns["name"].get<std::string>().c_str(), blocks,
                static_cast<unsigned long long>(ns["sequences"].get<uint64_t>()), tier("G").c_str(), tier("H").c_str(),
                tier("D").c_str(), blocks > 0 ? ns["metadata_bytes"].get<double>() / blocks : 0.0);
  }
  return 0;
}

int Clients(tierkv::Client& c, bool json) {
  auto r = tierkv::internal::Call(c, {{"op", "clients"}});
  if (!r.ok()) return Fail(r.status().ToString());
  if (json) return PrintReply(r, "clients");
  std::printf("%-8s %-8s %-6s %-8s %s\n", "SESSION", "PID", "UID", "CHANNELS", "NAMESPACES");
  for (const auto& cl : (*r)["clients"]) {
    std::string names;
    for (const auto& n : cl["namespaces"]) names += (names.empty() ? "" : ",") + n.get<std::string>();
    std::printf("%-8llu %-8d %-6u %-8llu %s\n", static_cast<unsigned long long>(cl["session"].get<uint64_t>()),
                cl["pid"].get<int>(), cl["uid"].get<uint32_t>(),
                static_cast<unsigned long long>(cl["channels"].get<uint64_t>()), names.empty() ? "-" : names.c_str());
  }
  return 0;
}

int Policy(tierkv::Client& c, const std::vector<std::string>& args) {
  if (args.size() < 2 || (args[0] != "get" && args[0] != "set")) return Fail("usage: policy get NAME | policy set NAME KEY=VALUE...");
  if (args[0] == "get") return PrintReply(tierkv::internal::Call(c, {{"op", "get_policy"}, {"namespace", args[1]}}), "policy");
  if (args.size() < 3) return Fail("policy set needs at least one KEY=VALUE");
  tierkv::wire::Json changes = tierkv::wire::Json::object();
  for (size_t i = 2; i < args.size(); ++i) {
    auto eq = args[i].find('=');
    if (eq == std::string::npos || eq == 0) return Fail("expected KEY=VALUE, got '" + args[i] + "'");
    changes[args[i].substr(0, eq)] = ParseValue(args[i].substr(eq + 1));
  }
  return PrintReply(tierkv::internal::Call(c, {{"op", "set_policy"}, {"namespace", args[1]}, {"policy", changes}}), "policy");
}

int DeleteNamespace(tierkv::Client& c, const std::vector<std::string>& args, bool force, bool json) {
  if (args.size() != 1) return Fail("usage: delete-namespace NAME [--force]");
  auto r = tierkv::internal::Call(c, {{"op", "delete_namespace"}, {"namespace", args[0]}, {"force", force}});
  if (!r.ok()) return Fail(r.status().ToString());
  if (json) {
    r->erase("ok");
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::printf("namespace '%s' deleted: %llu client(s) detached, %llu arena bytes released, %llu D bytes and %llu "
              "records removed\n",
              args[0].c_str(), static_cast<unsigned long long>(r->value("detached_clients", uint64_t{0})),
              static_cast<unsigned long long>(r->value("arena_bytes_released", uint64_t{0})),
              static_cast<unsigned long long>(r->value("disk_bytes_freed", uint64_t{0})),
              static_cast<unsigned long long>(r->value("records_deleted", uint64_t{0})));
  return 0;
}

int Prefixes(tierkv::Client& c, const std::vector<std::string>& args, bool json) {
  tierkv::wire::Json req{{"op", "prefixes"}};
  if (!args.empty()) req["namespace"] = args[0];
  auto r = tierkv::internal::Call(c, req);
  if (!r.ok()) return Fail(r.status().ToString());
  if (json) return PrintReply(r, "namespaces");
  std::printf("%-20s %8s %8s %14s %8s %14s %12s\n", "NAMESPACE", "PREFIXES", "BLOCKS", "BYTES", "UNUSED",
              "UNUSED BYTES", "OLDEST IDLE");
  for (const auto& ns : (*r)["namespaces"]) {
    std::printf("%-20s %8llu %8llu %14llu %8llu %14llu %11.0fs\n", ns["name"].get<std::string>().c_str(),
                static_cast<unsigned long long>(ns["prefixes"].get<uint64_t>()),
                static_cast<unsigned long long>(ns["blocks"].get<uint64_t>()),
                static_cast<unsigned long long>(ns["bytes"].get<uint64_t>()),
                static_cast<unsigned long long>(ns["unused_prefixes"].get<uint64_t>()),
                static_cast<unsigned long long>(ns["unused_bytes"].get<uint64_t>()), ns["oldest_idle_s"].get<double>());
  }
  if (args.empty()) return 0;
  std::printf("\n  %-16s %8s %6s %12s %5s %8s  %s\n", "HASH", "POSITION", "BLOCKS", "BYTES", "SEQS", "IDLE", "G/H/D");
  for (const auto& ns : (*r)["namespaces"]) {
    for (const auto& e : ns["entries"]) {
      std::printf("  %-16s %8u %6u %12llu %5u %7.0fs  %u/%u/%u\n", e["hash"].get<std::string>().c_str(),
                  e["position"].get<uint32_t>(), e["blocks"].get<uint32_t>(),
                  static_cast<unsigned long long>(e["bytes"].get<uint64_t>()), e["sequences"].get<uint32_t>(),
                  e["idle_s"].get<double>(), e["where"]["G"].get<uint32_t>(), e["where"]["H"].get<uint32_t>(),
                  e["where"]["D"].get<uint32_t>());
    }
  }
  return 0;
}

int EvictPrefixes(tierkv::Client& c, const std::vector<std::string>& args, const std::string& older_than,
                  bool json) {
  if (args.size() != 1) return Fail("usage: evict-prefixes NAME [--older-than S]");
  tierkv::wire::Json req{{"op", "evict_prefixes"}, {"namespace", args[0]}};
  if (!older_than.empty()) {
    uint32_t s;
    if (!ParseU32(older_than, &s)) return Fail("--older-than must be a number of seconds: " + older_than);
    req["older_than_s"] = s;
  }
  auto r = tierkv::internal::Call(c, req);
  if (!r.ok()) return Fail(r.status().ToString());
  if (json) {
    r->erase("ok");
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::printf("namespace '%s': evicted %llu prefix(es), %llu blocks, %llu bytes; kept %llu in use, %llu younger\n",
              args[0].c_str(), static_cast<unsigned long long>((*r)["evicted_prefixes"].get<uint64_t>()),
              static_cast<unsigned long long>((*r)["evicted_blocks"].get<uint64_t>()),
              static_cast<unsigned long long>((*r)["evicted_bytes"].get<uint64_t>()),
              static_cast<unsigned long long>((*r)["kept_in_use"].get<uint64_t>()),
              static_cast<unsigned long long>((*r)["kept_young"].get<uint64_t>()));
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
    if (args[i].rfind("model_id=", 0) == 0) {  // the model's identity (the remote tier R)
      spec.model_id = args[i].substr(9);
      continue;
    }
    if (args[i].rfind("granularity=", 0) == 0) {  // per layer (default) or per KV head
      auto g = tierkv::ParseGranularity(args[i].substr(12));
      if (!g.ok()) return Fail(g.status().message());
      spec.granularity = *g;
      continue;
    }
    // UID: may attach; publisher=UID: may attach, and its prefix blocks are served to
    // every member (docs/security.md "Owners and prefixes").
    const bool publisher = args[i].rfind("publisher=", 0) == 0;
    const std::string num = publisher ? args[i].substr(10) : args[i];
    uint32_t uid;
    if (!ParseU32(num, &uid)) return Fail("UID must be a number: " + args[i]);
    spec.acl.uids.push_back(uid);
    if (publisher) spec.prefix_publishers.push_back(uid);
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
  bool force = false;
  std::string older_than;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--force") {
      force = true;
    } else if (a == "--older-than" && i + 1 < argc) {
      older_than = argv[++i];
    } else if (a.rfind("--older-than=", 0) == 0) {
      older_than = a.substr(13);
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
  if (cmd == "usage") return Usage(c, args, json);
  if (cmd == "clients") return Clients(c, json);
  if (cmd == "policy") return Policy(c, args);
  if (cmd == "delete-namespace") return DeleteNamespace(c, args, force, json);
  if (cmd == "prefixes") return Prefixes(c, args, json);
  if (cmd == "evict-prefixes") return EvictPrefixes(c, args, older_than, json);
  if (cmd == "shutdown") {
    tierkv::Status st = c.Shutdown();
    if (!st.ok()) return Fail(st.ToString());
    std::printf("daemon is stopping\n");
    return 0;
  }
  return Fail("unknown command '" + cmd + "' (see --help)");
}
