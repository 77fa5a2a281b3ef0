#include "daemon/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
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
      : server_(server), socket_(std::move(socket)), state_(std::move(state)) {}

  void Start() { ReadHeader(); }
  SessionState& state() { return state_; }
  void Refuse(const Status& why) { Send(server_->service_->TransportError(state_, why, /*disconnect=*/true)); }
  // Finishes a reply being written, then closes; closes at once otherwise.
  void Stop() {
    stopping_ = true;
    if (!writing_) Close();
  }

 private:
  void ReadHeader() {
    auto self = shared_from_this();
    boost::asio::async_read(socket_, boost::asio::buffer(header_), [this, self](auto ec, size_t) {
      if (ec) return Close();
      const uint32_t len = wire::DecodeFrameLength(header_.data());
      if (len == 0) return Send(server_->service_->TransportError(state_, InvalidArgument("empty frame"), false));
      if (len > server_->config_.control.max_frame_bytes) {
        // The body cannot be skipped safely without reading it all: reply, then close.
        return Send(server_->service_->TransportError(
            state_,
            InvalidArgument("frame of " + std::to_string(len) + " bytes exceeds control.max_frame_bytes (" +
                            std::to_string(server_->config_.control.max_frame_bytes) + ")"),
            /*disconnect=*/true));
      }
      ReadBody(len);
    });
  }

  void ReadBody(uint32_t len) {
    body_.resize(len);
    auto self = shared_from_this();
    boost::asio::async_read(socket_, boost::asio::buffer(body_), [this, self](auto ec, size_t) {
      if (ec) return Close();
      Send(server_->service_->Handle(state_, body_));
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
    auto self = shared_from_this();
    const bool disconnect = reply.disconnect;
    boost::asio::async_write(socket_, boost::asio::buffer(out_.data() + sent, out_.size() - sent),
                             [this, self, disconnect](auto ec, size_t) {
      writing_ = false;
      if (ec || disconnect || stopping_) return Close();
      ReadHeader();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket_.close(ignored);
    server_->service_->CloseSession(state_);
    server_->Forget(shared_from_this());
  }

  ControlServer* const server_;
  stream_protocol::socket socket_;
  SessionState state_;
  std::array<uint8_t, wire::kFrameHeaderBytes> header_{};
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
    : io_(io), config_(config), service_(service), acceptor_(io) {}

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
      if (!stopping_) LOG(WARNING) << "accept: " << ec.message();
      if (stopping_ || !acceptor_.is_open()) return;
      return Accept();
    }
    const PeerCred peer = PeerOf(socket);
    auto conn = std::make_shared<ControlConnection>(this, std::move(socket), service_->OpenSession(peer));
    std::weak_ptr<ControlConnection> weak = conn;
    conn->state().disconnect = [weak, this](const Status&) {
      boost::asio::post(io_, [weak] {
        if (auto c = weak.lock()) c->Stop();
      });
    };
    connections_.insert(conn);
    if (connections_.size() > config_.control.max_clients) {
      conn->Refuse(ResourceExhausted("too many clients (control.max_clients = " +
                                     std::to_string(config_.control.max_clients) + ")"));
    } else {
      conn->Start();
    }
    if (!stopping_) Accept();
  });
}

void ControlServer::Forget(const std::shared_ptr<ControlConnection>& conn) { connections_.erase(conn); }

void ControlServer::Stop() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  ::unlink(config_.daemon.socket_path.c_str());
  // Stop() may remove the connection from the set: iterate over a copy.
  auto conns = connections_;
  for (auto& c : conns) c->Stop();
}

}  // namespace tierkv::daemon
