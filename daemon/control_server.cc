#include "daemon/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>

#include "common/log.h"
#include "common/shm.h"

namespace tierkv::daemon {

using boost::asio::local::stream_protocol;

// One client connection: reads a frame, hands it to the service, writes the reply.
// Lives on the server's io_context thread; owned by ControlServer::connections_.
class ControlConnection : public std::enable_shared_from_this<ControlConnection> {
 public:
  ControlConnection(ControlServer* server, stream_protocol::socket socket, SessionState state)
      : server_(server), socket_(std::move(socket)), timer_(socket_.get_executor()), state_(std::move(state)) {}

  // The hello deadline runs from here until a hello succeeds.
  void Start() {
    Arm(server_->limits().control_hello_timeout_ms, "hello_timeout");
    ReadHeader();
  }
  SessionState& state() { return state_; }
  void Refuse(const Status& why) {
    Arm(server_->limits().control_frame_timeout_ms, "write_timeout");
    Send(server_->service_->Refusal(state_, why));
  }
  // Finishes a reply being written, then closes; closes at once otherwise.
  void Stop() {
    stopping_ = true;
    if (!writing_) Close();
  }
  bool counted = false;  // holds a slot in the server's per-uid count

 private:
  // Deadlines (docs/security.md): before hello one deadline covers everything; after
  // it, a connection may idle between frames, but once a frame's first byte came the
  // rest must follow in time, and each reply must be taken in time.
  void Arm(uint32_t ms, const char* reason) {
    const uint64_t gen = ++deadline_gen_;
    timer_.expires_after(std::chrono::milliseconds(ms));
    auto self = shared_from_this();
    timer_.async_wait([this, self, gen, reason](const boost::system::error_code& ec) {
      if (ec || gen != deadline_gen_ || closed_) return;
      LOG(DEBUG) << "session " << state_.id << " (pid " << state_.peer.pid << ", uid " << state_.peer.uid
                 << "): " << reason;
      server_->service_->metrics().CountDisconnect(reason);
      Close();
    });
  }
  void Disarm() {
    ++deadline_gen_;
    timer_.cancel();
  }

  void ReadHeader() {
    header_got_ = 0;
    if (state_.said_hello) Disarm();  // idle between frames is fine once hello is done
    ReadHeaderRest();
  }

  void ReadHeaderRest() {
    auto self = shared_from_this();
    socket_.async_read_some(
        boost::asio::buffer(header_.data() + header_got_, header_.size() - header_got_),
        [this, self](auto ec, size_t n) {
          if (ec) return Close();
          if (header_got_ == 0 && state_.said_hello) {
            Arm(server_->limits().control_frame_timeout_ms, "frame_timeout");
          }
          header_got_ += n;
          if (header_got_ < header_.size()) return ReadHeaderRest();
          OnHeader();
        });
  }

  void OnHeader() {
    const uint32_t len = wire::DecodeFrameLength(header_.data());
    if (len == 0) return Send(server_->service_->TransportError(state_, InvalidArgument("empty frame"), false));
    const bool hello = state_.said_hello;
    const uint32_t max = hello ? server_->config_.control.max_frame_bytes
                               : std::min(server_->config_.control.max_frame_bytes,
                                          server_->limits().control_hello_max_frame_bytes);
    if (len > max) {
      // The body cannot be skipped safely without reading it all: reply, then close.
      return Send(server_->service_->TransportError(
          state_,
          InvalidArgument("frame of " + std::to_string(len) + " bytes exceeds " +
                          (hello ? "control.max_frame_bytes" : "limits.control_hello_max_frame_bytes (before hello)") +
                          " (" + std::to_string(max) + ")"),
          /*disconnect=*/true));
    }
    ReadBody(len);
  }

  void ReadBody(uint32_t len) {
    body_.resize(len);
    auto self = shared_from_this();
    boost::asio::async_read(socket_, boost::asio::buffer(body_), [this, self](auto ec, size_t) {
      if (ec) return Close();
      const bool had_hello = state_.said_hello;
      ControlService::Reply reply = server_->service_->Handle(state_, body_);
      if (body_.capacity() > kKeepBodyBytes) std::string().swap(body_);  // idle connections hold little
      if (!had_hello && state_.said_hello) Disarm();  // the hello deadline is met
      Send(std::move(reply));
    });
  }

  void Send(ControlService::Reply reply) {
    out_ = wire::EncodeFrame(wire::DumpBody(reply.body));
    size_t sent = 0;
    if (!reply.fds.empty()) {
      // Descriptors ride on the frame header (SCM_RIGHTS), sent at once: the socket
      // is idle while we reply, so 4 bytes always fit; the body follows normally.
      Status st = SendWithFds(socket_.native_handle(), out_.data(), wire::kFrameHeaderBytes, reply.fds.data(),
                              reply.fds.size());
      for (int fd : reply.fds) ::close(fd);  // the peer has its own copies now
      if (!st.ok()) {
        LOG(WARNING) << "session " << state_.id << ": " << st.ToString();
        return Close();
      }
      sent = wire::kFrameHeaderBytes;
    }
    writing_ = true;
    if (state_.said_hello) Arm(server_->limits().control_frame_timeout_ms, "write_timeout");
    auto self = shared_from_this();
    const bool disconnect = reply.disconnect;
    boost::asio::async_write(socket_, boost::asio::buffer(out_.data() + sent, out_.size() - sent),
                             [this, self, disconnect](auto ec, size_t) {
      writing_ = false;
      if (ec || disconnect || stopping_) return Close();
      if (out_.capacity() > kKeepBodyBytes) std::string().swap(out_);
      ReadHeader();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    Disarm();
    boost::system::error_code ignored;
    socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
    server_->service_->CloseSession(state_);
    server_->Forget(shared_from_this());
  }

  static constexpr size_t kKeepBodyBytes = 64 << 10;
  ControlServer* const server_;
  stream_protocol::socket socket_;
  boost::asio::steady_timer timer_;
  uint64_t deadline_gen_ = 0;
  SessionState state_;
  std::array<uint8_t, wire::kFrameHeaderBytes> header_{};
  size_t header_got_ = 0;
  std::string body_;
  std::string out_;
  bool writing_ = false;
  bool stopping_ = false;
  bool closed_ = false;
};

namespace {
PeerCred PeerOf(stream_protocol::socket& s) {
  PeerCred p;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.pid = cred.pid;
    p.uid = cred.uid;
    p.gid = cred.gid;
  } else {
    p.uid = p.gid = UINT32_MAX;  // unknown peer: matches no ACL, not an admin
  }
  return p;
}

// Removes a stale socket file; refuses when a live daemon answers on it.
Status ClaimSocketPath(const std::string& path) {
  if (!std::filesystem::exists(std::filesystem::symlink_status(path))) return OkStatus();
  boost::asio::io_context io;
  stream_protocol::socket probe(io);
  boost::system::error_code ec;
  probe.connect(stream_protocol::endpoint(path), ec);
  if (!ec) return Busy("another daemon is serving " + path);
  if (::unlink(path.c_str()) != 0) return FromErrno(errno, "remove stale socket " + path);
  return OkStatus();
}
}  // namespace

ControlServer::ControlServer(boost::asio::io_context& io, const Config& config, ControlService* service)
    : io_(io),
      config_(config),
      service_(service),
      acceptor_(io),
      backoff_(io),
      accept_log_(std::chrono::seconds(config.limits.log_interval_s)) {}

ControlServer::~ControlServer() = default;

Status ControlServer::Start() {
  const std::string& path = config_.daemon.socket_path;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return InvalidArgument("daemon.socket_path is longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                           " bytes: " + path);
  }
  std::error_code fec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  if (fec) return IOError("create socket directory " + parent.string() + ": " + fec.message());
  RETURN_IF_ERROR(ClaimSocketPath(path));

  boost::system::error_code ec;
  acceptor_.open(stream_protocol(), ec);
  if (!ec) acceptor_.bind(stream_protocol::endpoint(path), ec);
  if (ec) return IOError("bind control socket " + path + ": " + ec.message());
  if (::chmod(path.c_str(), config_.daemon.socket_mode) != 0) return FromErrno(errno, "chmod " + path);
  acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) return IOError("listen on " + path + ": " + ec.message());
  Accept();
  return OkStatus();
}

void ControlServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, stream_protocol::socket socket) {
    if (ec) {
      if (stopping_ || !acceptor_.is_open() || ec == boost::asio::error::operation_aborted) return;
      return OnAcceptError(ec);
    }
    const PeerCred peer = PeerOf(socket);
    auto conn = std::make_shared<ControlConnection>(this, std::move(socket), service_->OpenSession(peer));
    std::weak_ptr<ControlConnection> weak = conn;
    conn->state().disconnect = [weak, this](const Status&) {
      boost::asio::post(io_, [weak] {
        if (auto c = weak.lock()) c->Stop();
      });
    };
    const bool admin = conn->state().admin;
    Status refused = Admit(peer.uid, admin);
    connections_.insert(conn);
    if (!refused.ok()) {
      conn->Refuse(refused);
    } else {
      if (!admin) {
        ++uid_connections_[peer.uid];
        conn->counted = true;
      }
      conn->Start();
    }
    if (!stopping_) Accept();
  });
}

Status ControlServer::Admit(uint32_t uid, bool admin) {
  const size_t open = connections_.size();
  const uint32_t max = config_.control.max_clients;
  const uint32_t for_others = max - config_.limits.control_admin_reserved_clients;
  auto refuse = [&](const char* reason, std::string why) {
    service_->metrics().CountRefused("control", reason);
    return ResourceExhausted(std::move(why));
  };
  if (open >= max) {
    return refuse("max_clients", "too many clients (control.max_clients = " + std::to_string(max) + ")");
  }
  if (admin) return OkStatus();
  if (open >= for_others) {
    return refuse("max_clients", "too many clients: the last " +
                                     std::to_string(config_.limits.control_admin_reserved_clients) +
                                     " of control.max_clients = " + std::to_string(max) +
                                     " are kept for admins (limits.control_admin_reserved_clients)");
  }
  auto it = uid_connections_.find(uid);
  if (it != uid_connections_.end() && it->second >= config_.limits.control_clients_per_uid) {
    return refuse("uid_clients", "uid " + std::to_string(uid) + " holds " + std::to_string(it->second) +
                                     " connections already (limits.control_clients_per_uid)");
  }
  return OkStatus();
}

void ControlServer::OnAcceptError(const boost::system::error_code& ec) {
  service_->metrics().CountAcceptError("control", AcceptErrorLabel(ec));
  const bool exhausted = IsResourceExhaustion(ec);
  accept_log_.Warn("control accept: " + ec.message() + (exhausted ? "; backing off" : ""));
  if (!exhausted) return Accept();
  // Accepting again at once would fail again (and did, 650,000 times in 40 s):
  // wait for connections to close.
  backoff_.expires_after(std::chrono::milliseconds(config_.limits.accept_backoff_ms));
  backoff_.async_wait([this](const boost::system::error_code& wait_ec) {
    if (!wait_ec && !stopping_ && acceptor_.is_open()) Accept();
  });
}

void ControlServer::Forget(const std::shared_ptr<ControlConnection>& conn) {
  if (conn->counted) {
    conn->counted = false;
    auto it = uid_connections_.find(conn->state().peer.uid);
    if (it != uid_connections_.end() && --it->second == 0) uid_connections_.erase(it);
  }
  connections_.erase(conn);
}

void ControlServer::Stop() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  backoff_.cancel();
  ::unlink(config_.daemon.socket_path.c_str());
  // Stop() may remove the connection from the set: iterate over a copy.
  auto conns = connections_;
  for (auto& c : conns) c->Stop();
}

}  // namespace tierkv::daemon
