#include "tierkv/client.h"

#include "client/client_internal.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/shm.h"

namespace tierkv {
namespace {
constexpr uint32_t kMaxReplyBytes = 64u << 20;

Result<NamespaceInfo> InfoFromReply(const wire::Json& reply) {
  NamespaceInfo info;
  auto id = wire::GetUint(reply, "namespace_id", "", UINT32_MAX);
  if (!id.ok()) return Internal("reply without namespace_id");
  info.id = static_cast<NamespaceId>(*id);
  if (auto it = reply.find("namespace"); it != reply.end()) {
    ASSIGN_OR_RETURN(info.spec, wire::NamespaceSpecFromJson(*it));
  }
  if (auto it = reply.find("created"); it != reply.end() && it->is_boolean()) info.created = it->get<bool>();
  return info;
}

// Field of the reply when present with the right type, else the fallback (never throws).
std::string StringOr(const wire::Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t UintOr(const wire::Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}
}  // namespace

// The connection; every JSON-level step lives here, behind the public API.
struct [[gnu::visibility("hidden")]] Client::Impl {
  int fd = -1;
  ClientOptions options;
  std::string socket_path;
  uint64_t session = 0;
  bool admin = false;
  std::vector<int> pending_fds;  // descriptors that came with the last reply
  std::vector<std::string> attached;  // namespaces attached on this client, re-attached by Reconnect
  std::shared_ptr<internal::Liveness> liveness;
  std::string closing_reason = "the Client that opened this channel was closed";

  ~Impl() {
    DropPendingFds();
    if (liveness) liveness->Detach(closing_reason);
    if (fd >= 0) ::close(fd);
  }
  static Result<std::unique_ptr<Impl>> Dial(const std::string& socket_path, const ClientOptions& options);
  Status Hello();
  // A connection-level failure: the daemon is gone (or the connection is broken).
  Status Lost(const std::string& what);
  Status SendAll(const std::string& bytes);
  Status RecvAll(char* buf, size_t n);
  Result<wire::Json> ReadReply();
  Result<wire::Json> CallRaw(std::string_view body);
  Result<wire::Json> Call(const wire::Json& request);
  void DropPendingFds();
};

namespace internal {
struct ClientAccess {
  static Client::Impl& Get(Client& c) { return *c.impl_; }
};
Result<wire::Json> Call(Client& client, const wire::Json& request) { return ClientAccess::Get(client).Call(request); }
Result<wire::Json> CallRaw(Client& client, std::string_view body) { return ClientAccess::Get(client).CallRaw(body); }
}  // namespace internal

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;
uint64_t Client::session_id() const { return impl_->session; }
bool Client::admin() const { return impl_->admin; }

Result<std::unique_ptr<Client::Impl>> Client::Impl::Dial(const std::string& socket_path,
                                                         const ClientOptions& options) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) return InvalidArgument("socket path too long: " + socket_path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return FromErrno(errno, "socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return FromErrno(err, "connect to tierkvd at " + socket_path);
  }
  auto impl = std::make_unique<Impl>();
  impl->fd = fd;
  impl->options = options;
  impl->socket_path = socket_path;
  ucred peer{};
  socklen_t len = sizeof peer;
  const int pid = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 ? peer.pid : 0;
  impl->liveness = std::make_shared<internal::Liveness>(fd, pid);
  RETURN_IF_ERROR(impl->Hello());
  return impl;
}

Status Client::Impl::Hello() {
  ASSIGN_OR_RETURN(wire::Json hello,
                   Call({{"op", "hello"}, {"version", wire::kProtocolVersion}, {"client", options.name}}));
  if (auto s = hello.find("session"); s != hello.end() && s->is_number_unsigned()) session = s->get<uint64_t>();
  if (auto a = hello.find("admin"); a != hello.end() && a->is_boolean()) admin = a->get<bool>();
  return OkStatus();
}

Status Client::Impl::Lost(const std::string& what) {
  liveness->MarkDead(what + "; call Client::Reconnect and reopen the channels");
  return liveness->Verdict();
}

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket_path, ClientOptions options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Dial(socket_path, options));
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Status Client::Reconnect() {
  ASSIGN_OR_RETURN(std::unique_ptr<Impl> fresh, Impl::Dial(impl_->socket_path, impl_->options));
  for (const std::string& ns : impl_->attached) {
    Result<wire::Json> r = fresh->Call({{"op", "attach"}, {"namespace", ns}});
    if (!r.ok()) return r.status().WithContext("Reconnect: attach " + ns);
    fresh->attached.push_back(ns);
  }
  impl_->closing_reason = "the Client reconnected: open the channels again";
  impl_ = std::move(fresh);
  return OkStatus();
}

bool Client::connected() const { return !impl_->liveness->dead(); }

Status Client::Impl::SendAll(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return Lost("tierkvd closed the connection");
    if (n < 0) return FromErrno(errno, "send to tierkvd");
    off += static_cast<size_t>(n);
  }
  return OkStatus();
}

Status Client::Impl::RecvAll(char* buf, size_t n) {
  size_t off = 0;
  while (off < n) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(options.timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return FromErrno(errno, "poll");
    if (r == 0) return Busy("no reply from tierkvd within " + std::to_string(options.timeout.count()) + " ms");
    ssize_t got = ::recv(fd, buf + off, n - off, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == ECONNRESET) return Lost("tierkvd reset the connection");
    if (got < 0) return FromErrno(errno, "recv from tierkvd");
    if (got == 0) return Lost("tierkvd closed the connection");
    off += static_cast<size_t>(got);
  }
  return OkStatus();
}

Result<wire::Json> Client::Impl::CallRaw(std::string_view body) {
  RETURN_IF_ERROR(liveness->Verdict());
  Status sent = SendAll(wire::EncodeFrame(body));
  if (!sent.ok()) {
    // The daemon may have refused the connection (too many clients) before reading:
    // its reply, when there is one, says why better than EPIPE does.
    auto refusal = ReadReply();
    return refusal.ok() ? refusal : sent;
  }
  return ReadReply();
}

void Client::Impl::DropPendingFds() {
  for (int fd : pending_fds) ::close(fd);
  pending_fds.clear();
}

Result<wire::Json> Client::Impl::ReadReply() {
  DropPendingFds();
  uint8_t header[wire::kFrameHeaderBytes];
  // Descriptors (SCM_RIGHTS) arrive with the first bytes of a reply.
  size_t got = 0;
  {
    pollfd p{fd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(options.timeout.count()));
    } while (r < 0 && errno == EINTR);
    if (r == 0) return Busy("no reply from tierkvd within " + std::to_string(options.timeout.count()) + " ms");
    int fds[4];
    size_t nfds = 0;
    Result<size_t> first = RecvWithFds(fd, header, sizeof header, fds, 4, &nfds);
    if (!first.ok() && liveness->Check().code() == StatusCode::kUnavailable) return liveness->Verdict();
    ASSIGN_OR_RETURN(got, first);
    pending_fds.assign(fds, fds + nfds);
    if (got == 0) return Lost("tierkvd closed the connection");
  }
  RETURN_IF_ERROR(RecvAll(reinterpret_cast<char*>(header) + got, sizeof header - got));
  const uint32_t len = wire::DecodeFrameLength(header);
  if (len > kMaxReplyBytes) return Corruption("reply of " + std::to_string(len) + " bytes is too large");
  std::string reply(len, '\0');
  RETURN_IF_ERROR(RecvAll(reply.data(), len));
  return wire::ParseBody(reply);
}

Result<wire::Json> Client::Impl::Call(const wire::Json& request) {
  ASSIGN_OR_RETURN(wire::Json reply, CallRaw(wire::DumpBody(request)));
  RETURN_IF_ERROR(wire::StatusFromReply(reply));
  return reply;
}

Status Client::Ping() { return impl_->Call({{"op", "ping"}}).status(); }

Result<NamespaceInfo> Client::CreateNamespace(const NamespaceSpec& spec) {
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "create_namespace"}, {"namespace", wire::ToJson(spec)}}));
  return InfoFromReply(reply);
}

Result<NamespaceInfo> Client::Attach(const std::string& name) {
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "attach"}, {"namespace", name}}));
  if (std::find(impl_->attached.begin(), impl_->attached.end(), name) == impl_->attached.end()) {
    impl_->attached.push_back(name);
  }
  return InfoFromReply(reply);
}

Result<std::vector<NamespaceInfo>> Client::ListNamespaces() {
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "list_namespaces"}}));
  std::vector<NamespaceInfo> out;
  auto it = reply.find("namespaces");
  if (it == reply.end() || !it->is_array()) return Internal("list_namespaces reply without namespaces");
  for (const wire::Json& j : *it) {
    NamespaceInfo info;
    ASSIGN_OR_RETURN(info.spec, wire::NamespaceSpecFromJson(j));
    ASSIGN_OR_RETURN(uint64_t id, wire::GetUint(j, "namespace_id", "", UINT32_MAX));
    info.id = static_cast<NamespaceId>(id);
    out.push_back(std::move(info));
  }
  return out;
}

Result<DaemonStats> Client::Stats() {
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "stats"}}));
  DaemonStats s;
  s.version = StringOr(reply, "version");
  if (auto it = reply.find("uptime_s"); it != reply.end() && it->is_number()) s.uptime_s = it->get<double>();
  s.connections = UintOr(reply, "connections");
  s.clients_attached = UintOr(reply, "clients_attached");
  s.namespaces = UintOr(reply, "namespaces");
  s.requests = UintOr(reply, "requests");
  s.metrics_url = StringOr(reply, "metrics_url");
  s.gpu = StringOr(reply, "gpu");
  s.json = wire::DumpBody(reply);
  return s;
}

Result<std::string> Client::GetPolicy(const std::string& ns) {
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "get_policy"}, {"namespace", ns}}));
  return wire::DumpBody(reply.value("policy", wire::Json::object()));
}

Result<std::string> Client::SetPolicy(const std::string& ns, const std::string& changes_json) {
  Result<wire::Json> changes = wire::ParseBody(changes_json);
  if (!changes.ok()) return changes.status().WithContext("SetPolicy: changes");
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call({{"op", "set_policy"}, {"namespace", ns}, {"policy", *changes}}));
  return wire::DumpBody(reply.value("policy", wire::Json::object()));
}

Status Client::DeleteNamespace(const std::string& name, bool force) {
  RETURN_IF_ERROR(impl_->Call({{"op", "delete_namespace"}, {"namespace", name}, {"force", force}}).status());
  std::erase(impl_->attached, name);  // nothing to re-attach on Reconnect
  return OkStatus();
}

Status Client::Shutdown() { return impl_->Call({{"op", "shutdown"}}).status(); }

Result<std::unique_ptr<DataChannel>> Client::OpenChannel(const std::string& ns, const ChannelOptions& o) {
  wire::Json req{{"op", "open_channel"},
                 {"namespace", ns},
                 {"request_entries", o.request_entries},
                 {"completion_entries", o.completion_entries}};
  if (o.staging_bytes) req["staging_bytes"] = o.staging_bytes;
  kernels::GpuEvent worker_event;
  if (o.gpu) {
    req["gpu"] = true;
    if (o.gpu_exchange_bytes) req["gpu_exchange_bytes"] = o.gpu_exchange_bytes;
    if (kernels::GpuCount() > 0) {  // else the daemon must emulate the exchange (it says so)
      Result<kernels::GpuEvent> event = kernels::GpuEvent::Create(kernels::GpuEvent::Kind::kInterprocess);
      if (!event.ok()) return event.status().WithContext("ChannelOptions::gpu");
      ASSIGN_OR_RETURN(kernels::IpcEventHandle handle, event->ExportIpc());
      worker_event = std::move(*event);
      req["gpu_worker_event"] = wire::ToHex(handle.bytes.data(), handle.bytes.size());
    }
  }
  ASSIGN_OR_RETURN(wire::Json reply, impl_->Call(req));
  // Descriptors: the channel, then the H arena and an emulated G arena when shared.
  std::vector<int> fds;
  fds.swap(impl_->pending_fds);
  const bool emulated_gpu = reply.contains("gpu_arena_bytes") && !reply.contains("gpu_ipc_handle");
  const bool emulated_exchange = o.gpu && reply.value("gpu_exchange_emulated", false);
  const size_t arenas_fds = reply.contains("host_arena_bytes") ? (emulated_gpu ? 3 : 2) : 1;
  const size_t expect = arenas_fds + (emulated_exchange ? 1 : 0);
  if (fds.size() != expect) {
    for (int fd : fds) ::close(fd);
    return Internal("open_channel reply carried " + std::to_string(fds.size()) + " descriptors, expected " +
                    std::to_string(expect));
  }
  internal::ChannelArenas arenas;
  if (arenas_fds >= 2) {
    arenas.host_fd = fds[1];
    arenas.host_bytes = UintOr(reply, "host_arena_bytes");
    arenas.block_bytes = UintOr(reply, "block_bytes");
    arenas.table_heads = static_cast<uint32_t>(std::clamp<uint64_t>(UintOr(reply, "table_heads"), 1, UINT32_MAX));
  }
  arenas.gpu_bytes = UintOr(reply, "gpu_arena_bytes");
  if (arenas_fds == 3) arenas.gpu_fd = fds[2];
  arenas.gpu_ipc_handle = StringOr(reply, "gpu_ipc_handle");
  const int exchange_fd = emulated_exchange ? fds.back() : -1;
  Result<std::unique_ptr<DataChannel>> channel = internal::MapChannel(fds[0], UintOr(reply, "total_bytes"), arenas);
  if (!channel.ok()) {
    if (exchange_fd >= 0) ::close(exchange_fd);
    return channel.status();
  }
  internal::SetLiveness(**channel, impl_->liveness);
  if (emulated_exchange) {
    RETURN_IF_ERROR(internal::AttachEmulatedGpu(**channel, exchange_fd, UintOr(reply, "gpu_exchange_bytes")));
  } else if (o.gpu) {
    RETURN_IF_ERROR(internal::AttachGpu(**channel, std::move(worker_event), StringOr(reply, "gpu_exchange_handle"),
                                          UintOr(reply, "gpu_exchange_bytes"), StringOr(reply, "gpu_daemon_event")));
  }
  return channel;
}

}  // namespace tierkv
