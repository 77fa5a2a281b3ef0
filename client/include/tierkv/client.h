// libtierkv: the C++ client of tierkvd.
//
//   auto client = tierkv::Client::Connect("./var/tierkvd.sock");
//   if (!client.ok()) ...;
//   auto ns = (*client)->Attach("llama-70b");
//
// A Client is one control connection. Not thread-safe: use one per thread, or
// serialize calls. Every call blocks until the reply comes or the timeout passes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/namespace_spec.h"
#include "common/status.h"
#include "common/wire.h"
#include "tierkv/channel.h"

namespace tierkv {

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
  wire::Json raw;  // the whole reply
};

struct ClientOptions {
  std::string name = "libtierkv";  // reported to the daemon in hello
  std::chrono::milliseconds timeout{10000};
};

class Client {
 public:
  // Connects and says hello. kNotFound/kIOError when no daemon answers at the path,
  // kNotSupported when the daemon speaks another protocol version.
  static Result<std::unique_ptr<Client>> Connect(const std::string& socket_path, ClientOptions options = {});
  ~Client();  // closes the connection: the daemon releases what it held for us
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status Ping();
  // Admins only. Same name and model as an existing namespace: returns it (created = false).
  Result<NamespaceInfo> CreateNamespace(const NamespaceSpec& spec);
  Result<NamespaceInfo> Attach(const std::string& name);
  Result<std::vector<NamespaceInfo>> ListNamespaces();
  Result<DaemonStats> Stats();
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

  // Sends one request object and returns the reply when it is {"ok":true,...}.
  Result<wire::Json> Call(const wire::Json& request);
  // Sends raw bytes as one frame body (tests use it to send malformed requests)
  // and returns the reply whatever its "ok".
  Result<wire::Json> CallRaw(std::string_view body);

  uint64_t session_id() const { return session_; }
  bool admin() const { return admin_; }

 private:
  Client(int fd, ClientOptions options) : fd_(fd), options_(std::move(options)) {}
  Status SendAll(const std::string& bytes);
  Status RecvAll(char* buf, size_t n);
  Result<wire::Json> ReadReply();
  void DropPendingFds();

  int fd_;
  ClientOptions options_;
  uint64_t session_ = 0;
  bool admin_ = false;
  std::vector<int> pending_fds_;  // descriptors that came with the last reply
};

}  // namespace tierkv
