// ControlServer: the Unix-socket transport of the control plane (Boost.Asio).
// Frames are read and written here; ControlService does the work.
//
// Limits (docs/security.md): control.max_clients with slots kept for admins, a
// per-uid cap, deadlines for hello, frames and replies, a smaller frame before hello;
// accept backs off when the process is out of descriptors.
//
// Runs on the io_context given to it (one thread). Stop() closes the listener,
// lets each connection finish the reply it is writing, then closes it; the
// io_context's run() returns once every connection is gone.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/config.h"
#include "daemon/accept_backoff.h"
#include "daemon/control_service.h"

namespace tierkv::daemon {

class ControlConnection;

class ControlServer {
 public:
  ControlServer(boost::asio::io_context& io, const Config& config, ControlService* service);
  ~ControlServer();

  // Binds the socket (mode daemon.socket_mode), refusing when another daemon
  // answers on the same path, and starts accepting.
  Status Start();
  void Stop();

 private:
  friend class ControlConnection;
  void Accept();
  void OnAcceptError(const boost::system::error_code& ec);
  // Whether a new connection of `uid` fits: control.max_clients, the slots kept for
  // admins, limits.control_clients_per_uid. Counts a refusal by reason.
  Status Admit(uint32_t uid, bool admin);
  void Forget(const std::shared_ptr<ControlConnection>& conn);
  const LimitsSection& limits() const { return config_.limits; }

  boost::asio::io_context& io_;
  const Config config_;
  ControlService* const service_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer backoff_;  // accept again after EMFILE/ENFILE
  RateLimitedLog accept_log_;
  std::set<std::shared_ptr<ControlConnection>> connections_;
  std::map<uint32_t, uint32_t> uid_connections_;  // non-admin connections by uid
  bool stopping_ = false;
};

}  // namespace tierkv::daemon
