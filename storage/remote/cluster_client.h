// ClusterClient: a small Redis Cluster client (hiredis 0.14 has no cluster support
// and no TLS; hiredis only formats commands and parses replies here, see
// redis_connection.h), following the documented cluster protocol:
//   - the slot map comes from CLUSTER SLOTS, asked of any known node (seeds first);
//   - a key goes to the master of KeySlot(key) (key_slot.h, hash tags honoured);
//   - "-MOVED slot host:port" updates that slot's owner and retries there, and marks
//     the map for a refresh before the next batch; "-ASK slot host:port" retries
//     once on that node after ASKING (the map is not changed);
//   - "-TRYAGAIN" / "-CLUSTERDOWN" and connection errors retry after a map refresh,
//     up to max_redirects rounds; a node that fails is reconnected on next use
//     (after a failover the refreshed map names the promoted replica);
//   - every connect and every reply has a deadline (connect_timeout, command_timeout).
// Connections are RedisConnection (redis_connection.h): plain TCP, or TLS when
// ClusterOptions::tls is set (the cluster then announces its TLS ports in CLUSTER
// SLOTS and in redirects, so the same map and redirect logic applies).
// Batches are pipelined: the requests of one round are grouped by node, each group
// written at once and its replies read in order — one round trip per node per round.
//
// Thread-safety: none. One ClusterClient per thread (RemoteTier runs one per worker).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/remote/redis_connection.h"

struct redisReply;

namespace tierkv::storage::remote {

struct ClusterOptions {
  std::vector<std::string> seeds;  // "host:port"; at least one
  std::string user;                // ACL user; empty: the default user
  std::string password;            // empty: no AUTH
  std::chrono::milliseconds connect_timeout{200};  // Default: 200 ms
  std::chrono::milliseconds command_timeout{500};  // per reply; Default: 500 ms
  int max_rounds = 5;  // redirect/retry rounds per batch; Default: 5
  std::shared_ptr<const TlsContext> tls;  // null: plain TCP. Default: null
};

// One command of a batch. argv[key_arg] is the key that routes it.
struct ClusterRequest {
  std::vector<std::string> argv;
  size_t key_arg = 1;
  // Results, set by Execute:
  Status status;        // OK: reply holds Redis's answer (which may be nil)
  bool nil = false;     // the reply was nil (GET of an absent key)
  std::string value;    // a string/status reply's bytes
  long long integer = 0;
};

struct ClusterClientStats {
  uint64_t moved = 0, ask = 0, tryagain = 0, refreshes = 0, connects = 0, io_errors = 0, timeouts = 0;
  uint64_t round_trips = 0;  // pipelines written to a node
  uint64_t tls_errors = 0;   // connects that failed in the TLS handshake or certificate check
};

class ClusterClient {
 public:
  explicit ClusterClient(ClusterOptions options);
  ~ClusterClient();
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  // Loads the slot map from the first known node that answers. kUnavailable when
  // none does; kIOError when the answers do not cover every slot (cluster not ready).
  // Nodes named in `avoid` ("host:port") are asked last.
  Status RefreshMap(const std::vector<std::string>& avoid = {});
  // When the map was last loaded (epoch when never).
  std::chrono::steady_clock::time_point refreshed_at() const { return refreshed_at_; }
  // Runs every request (pipelined per node, redirects followed). A request's status
  // is OK with its reply, or the error that ended it: kUnavailable (no connection),
  // kDeadlineExceeded-like kIOError "timeout", kIOError (a Redis error reply,
  // redirect rounds exhausted). Loads the map first when it has none.
  void Execute(std::span<ClusterRequest> requests);

  // Convenience wrappers over Execute (one batch).
  Status Set(const std::string& key, const std::string& value, uint64_t ttl_ms = 0);
  Result<std::optional<std::string>> Get(const std::string& key);

  // "host:port" of the master the map gives for `slot` ("" without a map).
  std::string NodeOfSlot(uint16_t slot) const;
  bool has_map() const { return !slot_owner_.empty(); }
  // Whether the map gives some slot to node "host:port".
  bool OwnsSlots(const std::string& node) const;
  const ClusterClientStats& stats() const { return stats_; }

 private:
  struct Node {
    std::string host;
    int port = 0;
    std::unique_ptr<RedisConnection> conn;
  };
  // Index of the node host:port, added when unknown.
  size_t NodeIndex(const std::string& host, int port);
  RedisConnection* Connection(size_t node, Status* error);
  void Drop(size_t node);
  Status LoadMapFrom(size_t node);
  // One round for the requests `todo` (indices into requests) on one node; `asking`
  // marks those that need ASKING first. Appends to *retry what must go round again.
  void RunOnNode(size_t node, std::span<ClusterRequest> requests, const std::vector<size_t>& todo,
                 const std::vector<bool>& asking, std::vector<std::pair<size_t, int>>* retry);
  // Applies one reply to request r; returns the node to retry on (-1: done), sets *ask.
  int HandleReply(redisReply* reply, ClusterRequest* r, bool* ask);

  const ClusterOptions options_;
  std::vector<Node> nodes_;
  std::vector<uint16_t> slot_owner_;  // slot -> node index (empty: no map)
  bool map_stale_ = false;
  std::chrono::steady_clock::time_point refreshed_at_;
  ClusterClientStats stats_;
};

}  // namespace tierkv::storage::remote
