// libtierkv: the C++ client of tierkvd.
//
//   auto client = tierkv::Client::Connect("./var/tierkvd.sock");
//   if (!client.ok()) ...;
//   auto ns = (*client)->Attach("llama-70b");
//
// A Client is one control connection. Not thread-safe: use one per thread, or
// serialize calls. Every call blocks until the reply comes or the timeout passes.
//
// Self-contained: this header and the others of include/tierkv/ need only the C++
// standard library (C++20). Link libtierkv (CMake: find_package(tierkv), target
// tierkv::tierkv; pkg-config: tierkv).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tierkv/channel.h"
#include "tierkv/export.h"
#include "tierkv/namespace_spec.h"
#include "tierkv/status.h"
#include "tierkv/types.h"

namespace tierkv {

namespace internal {
struct ClientAccess;  // client/client_internal.h: tests and tools only
}

struct NamespaceInfo {
  NamespaceId id = 0;
  NamespaceSpec spec;
  bool created = false;  // CreateNamespace only: false when it already existed
};

struct DaemonStats {
  std::string version;
  double uptime_s = 0;
  uint64_t connections = 0;
  uint64_t clients_attached = 0;
  uint64_t namespaces = 0;
  uint64_t requests = 0;
  std::string metrics_url;  // "" when metrics are disabled
  std::string gpu;
  std::string json;  // the whole reply, as JSON text
};

struct ClientOptions {
  std::string name = "libtierkv";  // reported to the daemon in hello
  std::chrono::milliseconds timeout{10000};
};

class TIERKV_EXPORT Client {
 public:
  // Connects and says hello. kNotFound/kIOError when no daemon answers at the path,
  // kNotSupported when the daemon speaks another protocol version.
  static Result<std::unique_ptr<Client>> Connect(const std::string& socket_path, ClientOptions options = {});
  ~Client();  // closes the connection: the daemon releases what it held for us

  // When the daemon dies (or closes this connection), this Client and every channel
  // it opened notice at once: pending and later calls fail with kUnavailable within
  // a few tens of milliseconds (no waiting for the timeout). Reconnect dials the same
  // socket again, says hello and re-attaches every namespace this Client attached;
  // then open the channels again (the old DataChannel objects keep failing with
  // kUnavailable: destroy them). On failure (kNotFound/kIOError: no daemon answers
  // yet) the Client stays as it was; call Reconnect again later. Also works on a live
  // connection (it is replaced: a new session). Leases and sequences of the old
  // session are the daemon's to clean up; blocks the daemon kept are there again.
  Status Reconnect();
  // False once the daemon is known dead or gone (a call failed with kUnavailable).
  bool connected() const;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status Ping();
  // Admins only. Same name and model as an existing namespace: returns it (created = false).
  Result<NamespaceInfo> CreateNamespace(const NamespaceSpec& spec);
  Result<NamespaceInfo> Attach(const std::string& name);
  Result<std::vector<NamespaceInfo>> ListNamespaces();
  Result<DaemonStats> Stats();
  // The namespace's policy (retriever, trigger, eviction, ...) as a JSON object text.
  Result<std::string> GetPolicy(const std::string& ns);
  // Admins only. Changes the fields of `changes_json` (a JSON object text, e.g.
  // {"retriever":"exact"}) and returns the whole new policy as JSON text.
  Result<std::string> SetPolicy(const std::string& ns, const std::string& changes_json);
  // Admins only: deletes a namespace — its blocks, memory, D file, manifest records
  // and metrics series. Refused (kBusy, naming the sessions) while other clients are
  // attached, unless `force`: their channels then fail with kNotFound ("the channel's
  // namespace was deleted"). A namespace created later under the same name is new.
  Status DeleteNamespace(const std::string& name, bool force = false);
  // Admins only: asks the daemon to stop.
  Status Shutdown();

  struct ChannelOptions {
    uint32_t request_entries = 256;     // powers of two
    uint32_t completion_entries = 256;
    uint64_t staging_bytes = 0;         // 0: the daemon's default
    // The GPU path of Retrieve (DataChannel::StartRetrieveOnGpu): this process and
    // the daemon exchange CUDA IPC events and a device exchange buffer. Needs a GPU
    // on both sides (kNotSupported otherwise). Default: off (host path).
    bool gpu = false;
    uint64_t gpu_exchange_bytes = 0;    // 0: the daemon's default (1 MiB)
  };
  // Opens a data-plane channel to an attached namespace. The channel works while
  // this Client's connection is open; the daemon stops serving it when it closes.
  Result<std::unique_ptr<DataChannel>> OpenChannel(const std::string& ns, const ChannelOptions& options);
  Result<std::unique_ptr<DataChannel>> OpenChannel(const std::string& ns) { return OpenChannel(ns, ChannelOptions{}); }

  uint64_t session_id() const;
  bool admin() const;

 private:
  friend struct internal::ClientAccess;
  struct Impl;  // client.cc
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tierkv
