// Daemon: owns every part of a running tierkvd and their order of start and stop.
//
//   Start: manifest (RocksDB) -> namespaces -> their tiers and BlockStores (D blocks
//   recovered) -> metrics exposer -> control socket.
//   Stop (SIGTERM/SIGINT or an admin's shutdown): stop accepting, let in-flight
//   replies finish, close connections (their channels stop, leases are released),
//   write the blocks not on D back to D for at most storage.shutdown_drain_s
//   (daemon/shutdown_drain.h), flush and close the manifest.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <memory>

#include "common/config.h"
#include "daemon/control_server.h"
#include "daemon/control_service.h"
#include "daemon/metrics.h"
#include "daemon/namespace_registry.h"
#include "daemon/runtimes.h"
#include "storage/manifest.h"

namespace tierkv::daemon {

class Daemon {
 public:
  explicit Daemon(Config config);
  ~Daemon();

  // Opens the manifest, binds the sockets. Nothing is served before Run().
  Status Start();
  // Serves until a signal or a shutdown request; returns the shutdown status.
  Status Run();

 private:
  void BeginShutdown(const char* why);

  const Config config_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::unique_ptr<storage::Manifest> manifest_;
  std::unique_ptr<NamespaceRegistry> registry_;
  std::unique_ptr<storage::remote::RemoteTier> remote_;  // R, null when [remote] is off
  std::unique_ptr<Runtimes> runtimes_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<ControlService> service_;
  std::unique_ptr<ControlServer> server_;
};

}  // namespace tierkv::daemon
