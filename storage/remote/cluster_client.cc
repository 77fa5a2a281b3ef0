#include "storage/remote/cluster_client.h"

#include <algorithm>

#include <hiredis/hiredis.h>

#include <cstring>
#include <map>
#include <thread>

#include "storage/remote/key_slot.h"

namespace tierkv::storage::remote {
namespace {
bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = s.substr(0, colon);
  try {
    *port = std::stoi(s.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return *port > 0 && *port < 65536;
}

// Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into its slot and address.
bool ParseRedirect(std::string_view msg, uint16_t* slot, std::string* host, int* port) {
  const size_t sp1 = msg.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : msg.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  try {
    const int s = std::stoi(std::string(msg.substr(sp1 + 1, sp2 - sp1 - 1)));
    if (s < 0 || s >= static_cast<int>(kClusterSlots)) return false;
    *slot = static_cast<uint16_t>(s);
  } catch (...) {
    return false;
  }
  return SplitHostPort(std::string(msg.substr(sp2 + 1)), host, port);
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
}  // namespace

ClusterClient::ClusterClient(ClusterOptions options) : options_(std::move(options)) {
  for (const std::string& seed : options_.seeds) {
    std::string host;
    int port = 0;
    if (SplitHostPort(seed, &host, &port)) NodeIndex(host, port);
  }
}

ClusterClient::~ClusterClient() {
  for (size_t i = 0; i < nodes_.size(); ++i) Drop(i);
}

size_t ClusterClient::NodeIndex(const std::string& host, int port) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].port == port && nodes_[i].host == host) return i;
  }
  nodes_.push_back(Node{host, port, nullptr});
  return nodes_.size() - 1;
}

void ClusterClient::Drop(size_t node) { nodes_[node].conn.reset(); }

RedisConnection* ClusterClient::Connection(size_t node, Status* error) {
  Node& n = nodes_[node];
  if (n.conn && !n.conn->broken()) return n.conn.get();
  n.conn.reset();
  ++stats_.connects;
  const std::string where = n.host + ":" + std::to_string(n.port);
  auto c = RedisConnection::Connect(n.host, n.port, options_.connect_timeout, options_.command_timeout,
                                    options_.tls.get());
  if (!c.ok()) {
    *error = c.status();
    const bool timeout = error->ToString().find("timeout") != std::string::npos;
    ++(timeout ? stats_.timeouts : stats_.io_errors);
    if (error->ToString().find(": tls: ") != std::string::npos) ++stats_.tls_errors;
    return nullptr;
  }
  if (!options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.user.empty()) auth.push_back(options_.user);
    auth.push_back(options_.password);
    auto r = (*c)->Command(auth);
    if (!r.ok() || (*r)->type == REDIS_REPLY_ERROR) {
      *error = PermissionDenied("redis " + where + ": AUTH refused" +
                                (r.ok() ? std::string(": ") + (*r)->str : ": " + r.status().ToString()));
      return nullptr;
    }
  }
  n.conn = std::move(*c);
  return n.conn.get();
}

Status ClusterClient::LoadMapFrom(size_t node) {
  Status error;
  RedisConnection* c = Connection(node, &error);
  if (!c) return error;
  const std::string cmd[] = {"CLUSTER", "SLOTS"};
  auto reply = c->Command(cmd);
  if (!reply.ok()) {
    Drop(node);
    return Unavailable("CLUSTER SLOTS: no answer (" + reply.status().ToString() + ")");
  }
  const ReplyPtr& r = *reply;
  if (r->type != REDIS_REPLY_ARRAY) return IOError("CLUSTER SLOTS: unexpected reply");
  std::vector<uint16_t> owner(kClusterSlots, UINT16_MAX);
  const std::string asked = nodes_[node].host;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) continue;
    const redisReply* master = e->element[2];
    if (master->type != REDIS_REPLY_ARRAY || master->elements < 2) continue;
    const long long first = e->element[0]->integer, last = e->element[1]->integer;
    if (first < 0 || last >= kClusterSlots || first > last) continue;
    // An empty or "?" host means "the address you reached me on".
    std::string host(master->element[0]->str ? master->element[0]->str : "");
    if (host.empty() || host == "?") host = asked;
    const size_t idx = NodeIndex(host, static_cast<int>(master->element[1]->integer));
    for (long long s = first; s <= last; ++s) owner[s] = static_cast<uint16_t>(idx);
  }
  for (uint16_t o : owner) {
    if (o == UINT16_MAX) return IOError("CLUSTER SLOTS: some slots have no master (cluster not ready)");
  }
  slot_owner_ = std::move(owner);
  map_stale_ = false;
  ++stats_.refreshes;
  return OkStatus();
}

Status ClusterClient::RefreshMap(const std::vector<std::string>& avoid) {
  Status last = Unavailable("no redis cluster node configured");
  // The nodes of the current map first (they know the newest topology), seeds too;
  // the nodes in `avoid` last.
  for (bool avoided : {false, true}) {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const std::string name = nodes_[i].host + ":" + std::to_string(nodes_[i].port);
      if ((std::find(avoid.begin(), avoid.end(), name) != avoid.end()) != avoided) continue;
      last = LoadMapFrom(i);
      if (last.ok()) {
        refreshed_at_ = std::chrono::steady_clock::now();
        return last;
      }
    }
  }
  return last;
}

std::string ClusterClient::NodeOfSlot(uint16_t slot) const {
  if (slot_owner_.empty() || slot >= kClusterSlots) return "";
  const Node& n = nodes_[slot_owner_[slot]];
  return n.host + ":" + std::to_string(n.port);
}

bool ClusterClient::OwnsSlots(const std::string& node) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].host + ":" + std::to_string(nodes_[i].port) != node) continue;
    return std::find(slot_owner_.begin(), slot_owner_.end(), static_cast<uint16_t>(i)) != slot_owner_.end();
  }
  return false;
}

int ClusterClient::HandleReply(redisReply* reply, ClusterRequest* r, bool* ask) {
  *ask = false;
  switch (reply->type) {
    case REDIS_REPLY_NIL: r->nil = true; r->status = OkStatus(); return -1;
    case REDIS_REPLY_INTEGER: r->integer = reply->integer; r->status = OkStatus(); return -1;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      r->value.assign(reply->str, reply->len);
      r->status = OkStatus();
      return -1;
    case REDIS_REPLY_ERROR: break;
    default: r->status = OkStatus(); return -1;  // arrays: not used by tierkv's commands
  }
  const std::string_view msg(reply->str, reply->len);
  uint16_t slot = 0;
  std::string host;
  int port = 0;
  if (StartsWith(msg, "MOVED ") && ParseRedirect(msg, &slot, &host, &port)) {
    ++stats_.moved;
    const size_t idx = NodeIndex(host, port);
    if (!slot_owner_.empty()) slot_owner_[slot] = static_cast<uint16_t>(idx);
    map_stale_ = true;  // a resharding or failover: learn the rest of it too
    r->status = IOError("redis: too many redirects (" + std::string(msg) + ")");
    return static_cast<int>(idx);
  }
  if (StartsWith(msg, "ASK ") && ParseRedirect(msg, &slot, &host, &port)) {
    ++stats_.ask;
    *ask = true;
    r->status = IOError("redis: too many redirects (" + std::string(msg) + ")");
    return static_cast<int>(NodeIndex(host, port));
  }
  if (StartsWith(msg, "TRYAGAIN") || StartsWith(msg, "CLUSTERDOWN")) {
    ++stats_.tryagain;
    map_stale_ = true;
    r->status = Unavailable("redis: " + std::string(msg));
    return -2;  // retry on the slot's owner after a refresh
  }
  r->status = IOError("redis: " + std::string(msg));
  return -1;
}

void ClusterClient::RunOnNode(size_t node, std::span<ClusterRequest> requests, const std::vector<size_t>& todo,
                              const std::vector<bool>& asking, std::vector<std::pair<size_t, int>>* retry) {
  Status error;
  RedisConnection* c = Connection(node, &error);
  auto fail_all = [&](size_t from, const Status& st) {
    for (size_t k = from; k < todo.size(); ++k) {
      requests[todo[k]].status = st;
      retry->push_back({todo[k], -2});
    }
    map_stale_ = true;
  };
  if (!c) return fail_all(0, error);
  ++stats_.round_trips;
  for (size_t k = 0; k < todo.size(); ++k) {
    if (asking[k]) c->Append({"ASKING"});
    c->Append(requests[todo[k]].argv);
  }
  Status st = c->Flush();
  size_t k = 0;  // after the loop: the first request without its reply
  for (; k < todo.size() && st.ok(); ++k) {
    if (asking[k]) {
      auto ok = c->GetReply();  // ASKING's +OK
      if (!ok.ok()) {
        st = ok.status();
        break;
      }
    }
    auto reply = c->GetReply();
    if (!reply.ok()) {
      st = reply.status();
      break;
    }
    bool ask = false;
    const int next = HandleReply(reply->get(), &requests[todo[k]], &ask);
    if (next != -1) retry->push_back({todo[k], ask ? -3 - next : next});
  }
  if (st.ok()) return;
  const bool timeout = st.ToString().find("timeout") != std::string::npos;
  ++(timeout ? stats_.timeouts : stats_.io_errors);
  const std::string where = nodes_[node].host + ":" + std::to_string(nodes_[node].port);
  Drop(node);
  // A timeout may have been applied by Redis: do not resend (a GET is harmless to
  // resend, but a timeout says the node is in trouble; the caller decides).
  if (timeout) {
    const Status t = IOError("redis " + where + ": timeout");
    for (size_t j = k; j < todo.size(); ++j) requests[todo[j]].status = t;
    map_stale_ = true;
    return;
  }
  return fail_all(k, st);
}

void ClusterClient::Execute(std::span<ClusterRequest> requests) {
  for (ClusterRequest& r : requests) {
    r.status = Unavailable("redis: not sent");
    r.nil = false;
    r.value.clear();
  }
  // (request, target): target >= 0 a node, -2 the slot's owner, <= -3 ASK node (-3 - idx).
  std::vector<std::pair<size_t, int>> pending;
  for (size_t i = 0; i < requests.size(); ++i) pending.push_back({i, -2});
  for (int round = 0; round < options_.max_rounds && !pending.empty(); ++round) {
    if (slot_owner_.empty() || map_stale_) {
      const Status st = RefreshMap();
      if (!st.ok() && slot_owner_.empty()) {
        for (auto [i, t] : pending) requests[i].status = st;
        return;
      }
      if (round > 0 && !st.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::map<size_t, std::pair<std::vector<size_t>, std::vector<bool>>> by_node;
    for (auto [i, target] : pending) {
      const ClusterRequest& r = requests[i];
      size_t node;
      bool asking = false;
      if (target >= 0) {
        node = static_cast<size_t>(target);
      } else if (target <= -3) {
        node = static_cast<size_t>(-3 - target);
        asking = true;
      } else {
        node = slot_owner_[KeySlot(r.key_arg < r.argv.size() ? r.argv[r.key_arg] : std::string())];
      }
      by_node[node].first.push_back(i);
      by_node[node].second.push_back(asking);
    }
    pending.clear();
    for (auto& [node, group] : by_node) RunOnNode(node, requests, group.first, group.second, &pending);
    if (!pending.empty() && round + 1 < options_.max_rounds) {
      bool only_redirects = true;
      for (auto [i, t] : pending) only_redirects &= t >= 0 || t <= -3;
      if (!only_redirects) std::this_thread::sleep_for(std::chrono::milliseconds(10 << round));
    }
  }
}

Status ClusterClient::Set(const std::string& key, const std::string& value, uint64_t ttl_ms) {
  ClusterRequest r;
  r.argv = {"SET", key, value};
  if (ttl_ms) r.argv.insert(r.argv.end(), {"PX", std::to_string(ttl_ms)});
  Execute(std::span(&r, 1));
  return r.status;
}

Result<std::optional<std::string>> ClusterClient::Get(const std::string& key) {
  ClusterRequest r;
  r.argv = {"GET", key};
  Execute(std::span(&r, 1));
  if (!r.status.ok()) return r.status;
  if (r.nil) return std::optional<std::string>();
  return std::optional<std::string>(std::move(r.value));
}

}  // namespace tierkv::storage::remote
