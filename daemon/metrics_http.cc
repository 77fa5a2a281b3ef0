#include "daemon/metrics_http.h"

#include <prometheus/text_serializer.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <list>

#include "common/log.h"
#include "daemon/accept_backoff.h"

namespace tierkv::daemon {

using boost::asio::ip::tcp;

namespace {
constexpr size_t kMaxRequestBytes = 16 << 10;
class HttpConnection;
}  // namespace

struct MetricsHttp::Impl {
  Impl(Options o, Collector c)
      : options(std::move(o)), collect(std::move(c)), acceptor(io), backoff(io), log(options.log_interval) {}
  Options options;
  Collector collect;
  boost::asio::io_context io;
  tcp::acceptor acceptor;
  boost::asio::steady_timer backoff;
  RateLimitedLog log;
  // Live connections, oldest first. Touched on the io thread only.
  std::list<std::shared_ptr<HttpConnection>> live;
  std::thread thread;

  void Accept();
  void OnAcceptError(const boost::system::error_code& ec);
  // Makes room for one more connection; false when every one is being answered.
  bool MakeRoom();
  void Count(const std::function<void(std::string_view)>& hook, std::string_view what) {
    if (hook) hook(what);
  }
};

namespace {
// One request, one response, then close (Connection: close). Reading the request
// and writing the reply each have options.timeout.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(tcp::socket s, MetricsHttp::Impl* server)
      : socket_(std::move(s)), server_(server), timer_(socket_.get_executor()), buf_(kMaxRequestBytes) {}

  void Start(std::list<std::shared_ptr<HttpConnection>>::iterator self_it) {
    self_it_ = self_it;
    Arm();
    auto self = shared_from_this();
    boost::asio::async_read_until(socket_, buf_, "\r\n\r\n", [this, self](auto ec, size_t) {
      if (ec) return Close();  // closed, timed out, or a request over kMaxRequestBytes
      reading_ = false;
      std::istream in(&buf_);
      std::string method, target;
      in >> method >> target;
      const std::string path = target.substr(0, target.find('?'));
      if (method != "GET" && method != "HEAD") return Reply("405 Method Not Allowed", "only GET\n", true);
      if (path != "/metrics") return Reply("404 Not Found", "metrics are at /metrics\n", method == "GET");
      std::string body = prometheus::TextSerializer().Serialize(server_->collect());
      Reply("200 OK", std::move(body), method == "GET");
    });
  }
  bool reading() const { return reading_; }
  // Closes for `reason` (counted as dropped).
  void Drop(std::string_view reason) {
    if (closed_) return;
    server_->Count(server_->options.on_dropped, reason);
    Close();
  }

 private:
  void Arm() {
    timer_.expires_after(server_->options.timeout);
    auto self = shared_from_this();
    timer_.async_wait([this, self](const boost::system::error_code& ec) {
      if (!ec) Drop("timeout");
    });
  }

  void Reply(const char* status, std::string body, bool with_body) {
    out_ = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (with_body) out_ += body;
    Arm();  // a new deadline for the reply
    auto self = shared_from_this();
    boost::asio::async_write(socket_, boost::asio::buffer(out_), [this, self](auto, size_t) {
      boost::system::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      Close();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    server_->live.erase(self_it_);  // may drop the last owner: touch nothing after
  }

  tcp::socket socket_;
  MetricsHttp::Impl* const server_;
  boost::asio::steady_timer timer_;
  boost::asio::streambuf buf_;
  std::string out_;
  std::list<std::shared_ptr<HttpConnection>>::iterator self_it_;
  bool reading_ = true;
  bool closed_ = false;
};
}  // namespace

bool MetricsHttp::Impl::MakeRoom() {
  if (live.size() < options.max_connections) return true;
  for (auto& c : live) {
    if (c->reading()) {
      auto keep = c;  // Drop erases it from `live`
      keep->Drop("evicted");
      return true;
    }
  }
  return false;
}

void MetricsHttp::Impl::OnAcceptError(const boost::system::error_code& ec) {
  const std::string label = AcceptErrorLabel(ec);
  Count(options.on_accept_error, label);
  log.Warn("metrics: accept: " + ec.message() + (IsResourceExhaustion(ec) ? "; backing off" : ""));
  if (!IsResourceExhaustion(ec)) return Accept();
  backoff.expires_after(options.accept_backoff);
  backoff.async_wait([this](const boost::system::error_code& wait_ec) {
    if (!wait_ec && acceptor.is_open()) Accept();
  });
}

void MetricsHttp::Impl::Accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec) {
      if (ec == boost::asio::error::operation_aborted || !acceptor.is_open()) return;
      return OnAcceptError(ec);
    }
    if (!MakeRoom()) {
      Count(options.on_refused, "max_connections");
      boost::system::error_code ignored;
      s.close(ignored);
      return Accept();
    }
    auto conn = std::make_shared<HttpConnection>(std::move(s), this);
    live.push_back(conn);
    conn->Start(std::prev(live.end()));
    Accept();
  });
}

MetricsHttp::MetricsHttp(Options options, Collector collect)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(collect))) {}

MetricsHttp::~MetricsHttp() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->live.clear();
}

Status MetricsHttp::Start(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("metrics.listen must be host:port");
  boost::system::error_code ec;
  std::string host = listen.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  const auto addr = boost::asio::ip::make_address(host, ec);
  if (ec) return InvalidArgument("metrics.listen: '" + host + "' is not an IP address");
  const auto port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  tcp::endpoint ep(addr, port);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) return IOError("metrics: cannot listen on " + listen + ": " + ec.message());
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return OkStatus();
}

}  // namespace tierkv::daemon
