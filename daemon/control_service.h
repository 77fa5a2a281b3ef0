// ControlService: the control-plane operations (wire.h lists them), independent of
// the transport so that tests and fuzzers drive it directly.
//
// Thread-safe: sessions may be handled concurrently; each SessionState belongs to
// one connection and is touched only by the thread serving that connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/mutex.h"
#include "common/unique_fd.h"
#include "common/wire.h"
#include "daemon/channel.h"
#include "daemon/channel_budget.h"
#include "daemon/metrics.h"
#include "daemon/namespace_registry.h"
#include "daemon/worker_pool.h"

namespace tierkv::daemon {

// Identity of the peer process, from SO_PEERCRED.
struct PeerCred {
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct SessionState {
  uint64_t id = 0;
  PeerCred peer;
  bool admin = false;
  bool said_hello = false;
  uint32_t consecutive_errors = 0;
  std::set<NamespaceId> attached;
  std::vector<std::unique_ptr<Channel>> channels;
  uint64_t channel_bytes = 0;  // memfd bytes of `channels`, charged to ChannelBudget
  // Set by the transport: closes the connection from any thread (a channel whose
  // client broke the ring protocol calls it).
  std::function<void(const Status&)> disconnect;
};

class Runtimes;
class NamespaceRuntime;
class GpuExchange;

class ControlService {
 public:
  struct Reply {
    wire::Json body;
    bool disconnect = false;  // close the connection after sending body
    std::vector<int> fds;     // descriptors to pass with the reply (SCM_RIGHTS); the
                              // transport closes them once sent
  };

  // REQUIRES: registry, metrics and runtimes outlive the service. `on_shutdown` is
  // called (once) when an admin asks for shutdown. Without runtimes (tests of the
  // control plane alone) channels answer every op but noop with kNotSupported and
  // the policy and usage ops are refused.
  ControlService(const Config& config, NamespaceRegistry* registry, Metrics* metrics,
                 std::function<void()> on_shutdown, Runtimes* runtimes = nullptr);

  SessionState OpenSession(const PeerCred& peer);
  void CloseSession(SessionState& session);
  // Handles one request body and returns the reply. Never throws; every client
  // mistake becomes an error reply. After max_consecutive_errors errors in a row the
  // reply asks for a disconnect.
  Reply Handle(SessionState& session, std::string_view body);
  // An error the transport found (frame too large, ...): counted like a bad request.
  Reply TransportError(SessionState& session, const Status& status, bool disconnect);
  // A connection refused at accept (over a connection limit): the error, then close.
  Reply Refusal(SessionState& session, const Status& status);
  Metrics& metrics() { return *metrics_; }

  size_t sessions() const { return sessions_.load(); }
  const ChannelStats& channel_stats() const { return channel_stats_; }
  bool IsAdmin(uint32_t uid) const;

 private:
  using Json = wire::Json;
  // Descriptors a handler adds to *fds travel with the reply only when it succeeds;
  // on an error they are closed (an error reply never carries a descriptor).
  using Fds = std::vector<UniqueFd>;
  Result<Json> Dispatch(SessionState& s, const std::string& op, const Json& req, Fds* fds);
  Result<Json> Hello(SessionState& s, const Json& req);
  Result<Json> CreateNamespace(SessionState& s, const Json& req);
  Result<Json> Attach(SessionState& s, const Json& req);
  Result<Json> ListNamespaces(SessionState& s, const Json& req);
  Result<Json> Stats(SessionState& s, const Json& req);
  Result<Json> Shutdown(SessionState& s, const Json& req);
  // open_channel (control_channels.cc): checks and charges, then creates the
  // channel and appends its descriptors (channel, arenas, emulated GPU exchange).
  Result<Json> OpenChannel(SessionState& s, const Json& req, Fds* fds);
  Result<ChannelOptions> ChannelOptionsOf(const Json& req) const;
  Result<Json> OpenChannelCharged(SessionState& s, const Json& req, const NamespaceRecord& rec,
                                  const ChannelOptions& o, bool wants_gpu, Fds* fds);
  // The handler of a new channel: the namespace's ops behind its gate, or
  // UnsupportedOps without runtimes.
  std::unique_ptr<OpHandler> ChannelHandler(const SessionState& s, const NamespaceRecord& rec,
                                            const std::shared_ptr<NamespaceRuntime>& rt,
                                            std::unique_ptr<GpuExchange> gpu);
  // The namespace's arenas for the client: read-only descriptors (and the G IPC handle).
  Status ShareArenas(const NamespaceRuntime& rt, Json* reply, Fds* fds);
  // delete_namespace, prefixes, evict_prefixes (control_namespaces.cc).
  Result<Json> DeleteNamespace(SessionState& s, const Json& req);
  Result<Json> Prefixes(SessionState& s, const Json& req);
  Result<Json> EvictPrefixes(SessionState& s, const Json& req);
  // Other sessions attached to namespace `id`, as (session, pid).
  std::vector<std::pair<uint64_t, int32_t>> AttachedSessions(NamespaceId id, uint64_t except) const;
  // Forgets `id` in the session listing (a forced delete detached them).
  void DetachAll(NamespaceId id);
  Result<Json> GetPolicy(SessionState& s, const Json& req);
  Result<Json> SetPolicy(SessionState& s, const Json& req);
  Result<Json> Usage(SessionState& s, const Json& req);
  Result<Json> Clients(SessionState& s, const Json& req);
  // The namespace named by req["namespace"] that the session may see.
  Result<NamespaceRecord> VisibleNamespace(const SessionState& s, const Json& req);
  Result<std::vector<NamespaceRecord>> VisibleNamespaces(const SessionState& s, const Json& req);
  void NoteSession(const SessionState& s);
  Reply Finish(SessionState& s, Result<Json> result, const Json* id);
  void UpdateAttachedGauge();
  void UpdateChannelGauges();

  const Config config_;
  NamespaceRegistry* const registry_;
  Metrics* const metrics_;
  std::function<void()> on_shutdown_;
  Runtimes* const runtimes_;
  ChannelStats channel_stats_;
  ChannelBudget channel_budget_;
  WorkerPool retrieval_pool_;  // batched Retrieve's selections, every channel (retrieval.workers)
  struct SessionInfo {
    PeerCred peer;
    std::vector<NamespaceId> attached;
    size_t channels = 0;
  };
  mutable Mutex sessions_mu_;
  std::map<uint64_t, SessionInfo> session_info_ GUARDED_BY(sessions_mu_);
  const std::string gpu_description_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<uint64_t> next_session_{1};
  std::atomic<size_t> sessions_{0};
  std::atomic<int64_t> attached_sessions_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> shutting_down_{false};
  Mutex delete_mu_;  // one delete_namespace at a time
};

}  // namespace tierkv::daemon
