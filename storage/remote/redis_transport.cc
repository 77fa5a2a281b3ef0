#include "storage/remote/redis_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace tierkv::storage::remote {
namespace {
using Clock = std::chrono::steady_clock;

std::string Where(const std::string& host, int port) { return host + ":" + std::to_string(port); }

// The OpenSSL error queue as text (and empties it).
std::string SslErrors() {
  std::string s;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    s += (s.empty() ? "" : "; ") + std::string(buf);
  }
  return s.empty() ? "unknown error" : s;
}

// Waits until fd is readable (POLLIN) or writable (POLLOUT), at most `ms`.
// OK, kIOError "timeout" or kUnavailable.
Status Wait(int fd, short events, std::chrono::milliseconds ms, const std::string& what) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, ms.count())));
    if (n > 0) return OkStatus();
    if (n == 0) return IOError(what + ": timeout");
    if (errno != EINTR) return Unavailable(what + ": poll: " + std::strerror(errno));
  }
}

std::chrono::milliseconds Left(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

// A non-blocking TCP connection to host:port within the deadline; the fd or an error.
Result<int> ConnectTcp(const std::string& host, int port, Clock::time_point deadline) {
  const std::string where = Where(host, port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
    return Unavailable("redis " + where + ": " + gai_strerror(rc));
  }
  Status last = Unavailable("redis " + where + ": no address");
  for (addrinfo* a = res; a; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = Unavailable("redis " + where + ": socket: " + std::strerror(errno));
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Unavailable("redis " + where + ": " + std::strerror(errno));
      close(fd);
      continue;
    }
    last = Wait(fd, POLLOUT, Left(deadline), "redis " + where + " connect");
    int err = 0;
    socklen_t len = sizeof err;
    if (last.ok() && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      freeaddrinfo(res);
      return fd;
    }
    if (last.ok()) last = Unavailable("redis " + where + ": " + std::strerror(err ? err : errno));
    close(fd);
  }
  freeaddrinfo(res);
  return last;
}

// OpenSSL writes to the socket with write(): a peer that closed the connection would
// raise SIGPIPE and kill the process. Blocks it on this thread for one SSL call and
// discards a SIGPIPE that call raised (the call then fails with EPIPE).
class ScopedNoSigpipe {
 public:
  ScopedNoSigpipe() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~ScopedNoSigpipe() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

class PlainTransport final : public Transport {
 public:
  PlainTransport(int fd, std::string where) : fd_(fd), where_(std::move(where)) {}
  ~PlainTransport() override { close(fd_); }

  Status WriteAll(std::string_view data, std::chrono::milliseconds idle) override {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        RETURN_IF_ERROR(Wait(fd_, POLLOUT, idle, "redis " + where_));
      } else {
        return Unavailable("redis " + where_ + ": " + std::strerror(errno));
      }
    }
    return OkStatus();
  }

  Result<size_t> ReadSome(std::span<char> buf, std::chrono::milliseconds idle) override {
    for (;;) {
      const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
      if (n > 0) return static_cast<size_t>(n);
      if (n == 0) return Unavailable("redis " + where_ + ": connection closed");
      if (errno != EAGAIN && errno != EINTR) return Unavailable("redis " + where_ + ": " + std::strerror(errno));
      RETURN_IF_ERROR(Wait(fd_, POLLIN, idle, "redis " + where_));
    }
  }

 private:
  const int fd_;
  const std::string where_;
};

class TlsTransport final : public Transport {
 public:
  TlsTransport(int fd, SSL* ssl, std::string where) : fd_(fd), ssl_(ssl), where_(std::move(where)) {}
  ~TlsTransport() override {
    SSL_free(ssl_);  // no close_notify: the connection is dropped (Redis does not need it)
    close(fd_);
  }

  // Runs one SSL call until it does not ask to wait; waits at most `idle` each time
  // and, when given, in all until `deadline`.
  template <typename F>
  Result<int> Drive(F&& op, std::chrono::milliseconds idle, Clock::time_point deadline = Clock::time_point::max()) {
    for (;;) {
      ERR_clear_error();
      int n;
      {
        ScopedNoSigpipe no_sigpipe;
        n = op();
      }
      if (n > 0) return n;
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        const auto wait = deadline == Clock::time_point::max() ? idle : std::min(idle, Left(deadline));
        RETURN_IF_ERROR(Wait(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, wait, "redis " + where_));
        continue;
      }
      if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        return Unavailable("redis " + where_ + ": connection closed");
      }
      return Unavailable("redis " + where_ + ": tls: " + SslErrors());
    }
  }

  Status WriteAll(std::string_view data, std::chrono::milliseconds idle) override {
    while (!data.empty()) {
      // SSL_write takes an int; SSL_MODE_ENABLE_PARTIAL_WRITE lets it return early.
      const int len = static_cast<int>(std::min<size_t>(data.size(), 1 << 30));
      ASSIGN_OR_RETURN(const int n, Drive([&] { return SSL_write(ssl_, data.data(), len); }, idle));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return OkStatus();
  }

  Result<size_t> ReadSome(std::span<char> buf, std::chrono::milliseconds idle) override {
    const int len = static_cast<int>(std::min<size_t>(buf.size(), 1 << 30));
    ASSIGN_OR_RETURN(const int n, Drive([&] { return SSL_read(ssl_, buf.data(), len); }, idle));
    return static_cast<size_t>(n);
  }

 private:
  const int fd_;
  SSL* const ssl_;
  const std::string where_;
};

// The handshake on a connected fd, verifying the peer (see the header).
Result<std::unique_ptr<Transport>> StartTls(int fd, const std::string& host, int port, const TlsContext& tls,
                                            Clock::time_point deadline) {
  const std::string where = Where(host, port);
  SSL* ssl = SSL_new(tls.ctx());
  if (!ssl) return Unavailable("redis " + where + ": tls: SSL_new: " + SslErrors());
  auto transport = std::make_unique<TlsTransport>(fd, ssl, where);  // owns fd and ssl from here
  SSL_set_fd(ssl, fd);
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  const std::string& name = tls.server_name().empty() ? host : tls.server_name();
  in6_addr ip{};
  const bool is_ip = inet_pton(AF_INET, name.c_str(), &ip) == 1 || inet_pton(AF_INET6, name.c_str(), &ip) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    SSL_set_tlsext_host_name(ssl, name.c_str());  // SNI: names only, never an address
  }
  auto done = transport->Drive([&] { return SSL_connect(ssl); }, Left(deadline), deadline);
  if (!done.ok()) {
    const long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
      return Unavailable("redis " + where + ": tls: certificate not accepted (" +
                         X509_verify_cert_error_string(v) + ", expected name " + name + ")");
    }
    Status st = done.status();
    if (st.code() == StatusCode::kUnavailable && st.ToString().find("tls:") == std::string::npos) {
      st = Unavailable("redis " + where + ": tls: handshake failed (" + st.ToString() + ")");
    }
    return st;
  }
  return std::unique_ptr<Transport>(std::move(transport));
}

bool Readable(const std::string& path) { return std::ifstream(path).good(); }
}  // namespace

Result<std::shared_ptr<const TlsContext>> TlsContext::Create(const TlsOptions& o) {
  if (o.ca_file.empty()) return InvalidArgument("tls: name the CA file (tls_ca_file) that signs the nodes' certificates");
  if (!Readable(o.ca_file)) return InvalidArgument("tls_ca_file: cannot read " + o.ca_file);
  if (o.cert_file.empty() != o.key_file.empty()) {
    return InvalidArgument("tls: a client certificate needs both tls_cert_file and tls_key_file");
  }
  if (!o.cert_file.empty() && !Readable(o.cert_file)) return InvalidArgument("tls_cert_file: cannot read " + o.cert_file);
  if (!o.key_file.empty() && !Readable(o.key_file)) return InvalidArgument("tls_key_file: cannot read " + o.key_file);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return Internal("tls: SSL_CTX_new: " + SslErrors());
  std::shared_ptr<const TlsContext> out(new TlsContext(ctx, o.server_name));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
    return InvalidArgument("tls_ca_file: " + o.ca_file + " holds no usable CA certificate: " + SslErrors());
  }
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
      return InvalidArgument("tls_cert_file: " + o.cert_file + " is not a PEM certificate: " + SslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return InvalidArgument("tls_key_file: " + o.key_file + " is not a PEM private key: " + SslErrors());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return InvalidArgument("tls_key_file: " + o.key_file + " does not match " + o.cert_file);
    }
  }
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::unique_ptr<Transport>> ConnectTransport(const std::string& host, int port,
                                                    std::chrono::milliseconds connect_timeout,
                                                    const TlsContext* tls) {
  const Clock::time_point deadline = Clock::now() + connect_timeout;
  ASSIGN_OR_RETURN(const int fd, ConnectTcp(host, port, deadline));
  if (tls) return StartTls(fd, host, port, *tls, deadline);
  return std::unique_ptr<Transport>(std::make_unique<PlainTransport>(fd, Where(host, port)));
}

}  // namespace tierkv::storage::remote
