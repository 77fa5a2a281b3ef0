#include "daemon/metrics_http.h"

#include <prometheus/text_serializer.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "common/log.h"

namespace tierkv::daemon {

using boost::asio::ip::tcp;

struct MetricsHttp::Impl {
  explicit Impl(Collector c) : collect(std::move(c)), acceptor(io) {}
  Collector collect;
  boost::asio::io_context io;
  tcp::acceptor acceptor;
  std::thread thread;

  void Accept();
};

namespace {
constexpr size_t kMaxRequestBytes = 16 << 10;

// One request, one response, then close (Connection: close).
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(tcp::socket s, const MetricsHttp::Collector* collect)
      : socket_(std::move(s)), collect_(collect), buf_(kMaxRequestBytes) {}

  void Start() {
    auto self = shared_from_this();
    boost::asio::async_read_until(socket_, buf_, "\r\n\r\n", [this, self](auto ec, size_t) {
      if (ec) return;  // closed, or a request over kMaxRequestBytes
      std::istream in(&buf_);
      std::string method, target;
      in >> method >> target;
      const std::string path = target.substr(0, target.find('?'));
      if (method != "GET" && method != "HEAD") return Reply("405 Method Not Allowed", "only GET\n", true);
      if (path != "/metrics") return Reply("404 Not Found", "metrics are at /metrics\n", method == "GET");
      std::string body = prometheus::TextSerializer().Serialize((*collect_)());
      Reply("200 OK", std::move(body), method == "GET");
    });
  }

 private:
  void Reply(const char* status, std::string body, bool with_body) {
    out_ = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n" +
           "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (with_body) out_ += body;
    auto self = shared_from_this();
    boost::asio::async_write(socket_, boost::asio::buffer(out_), [this, self](auto, size_t) {
      boost::system::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  tcp::socket socket_;
  const MetricsHttp::Collector* collect_;
  boost::asio::streambuf buf_;
  std::string out_;
};
}  // namespace

void MetricsHttp::Impl::Accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec) {
      if (acceptor.is_open()) Accept();
      return;
    }
    std::make_shared<HttpConnection>(std::move(s), &collect)->Start();
    Accept();
  });
}

MetricsHttp::MetricsHttp(Collector collect) : impl_(std::make_unique<Impl>(std::move(collect))) {}

MetricsHttp::~MetricsHttp() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
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
