// ControlServer: the Unix-socket transport of the control plane (Boost.Asio).
// Frames are read and written here; ControlService does the work.
//
// Runs on the io_context given to it (one thread). Stop() closes the listener,
// lets each connection finish the reply it is writing, then closes it; the
// io_context's run() returns once every connection is gone.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <memory>
#include <set>
#include <string>

#include "common/config.h"
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
  void Forget(const std::shared_ptr<ControlConnection>& conn);

  boost::asio::io_context& io_;
  const Config config_;
  ControlService* const service_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::set<std::shared_ptr<ControlConnection>> connections_;
  bool stopping_ = false;
};

}  // namespace tierkv::daemon
