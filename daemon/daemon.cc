#include "daemon/daemon.h"

#include <set>

#include <boost/asio/post.hpp>
#include <csignal>
#include <filesystem>

#include "common/log.h"
#include "common/shm.h"
#include "daemon/budget_check.h"
#include "daemon/namespace_files.h"
#include "daemon/shutdown_drain.h"
#include "daemon/process_metrics.h"
#include "daemon/remote_link.h"
#include "daemon/storage_metrics.h"
#include "kernels/backend.h"
#include "kernels/gpu_runtime.h"

namespace tierkv::daemon {

Daemon::Daemon(Config config) : config_(std::move(config)), signals_(io_, SIGINT, SIGTERM) {}

Daemon::~Daemon() {
  server_.reset();   // closes connections (their sessions still count in metrics_)
  metrics_.reset();  // stops serving /metrics before what it reads goes away
  service_.reset();
  runtimes_.reset();
  remote_.reset();  // after the runtimes that use it
  registry_.reset();
  manifest_.reset();  // flushes and closes RocksDB
}

Status Daemon::Start() {
  LOG(INFO) << "tierkvd " << TIERKV_VERSION << " starting; data in " << config_.daemon.data_dir;
  LOG(INFO) << "GPU: " << kernels::DescribeGpus();
  LOG(INFO) << "CPU scoring on " << kernels::CpuVectorUnit();
  if (!KernelSupportsFutureWriteSeal()) {
    LOG(ERROR) << "the kernel lacks F_SEAL_FUTURE_WRITE (Linux >= 5.1 needed): arenas cannot be made read-only "
                  "for clients, so open_channel will refuse to share them (docs/security.md)";
  }
  const std::string manifest_dir = (std::filesystem::path(config_.daemon.data_dir) / "manifest").string();
  ASSIGN_OR_RETURN(manifest_, storage::Manifest::Open(manifest_dir));
  ASSIGN_OR_RETURN(registry_, NamespaceRegistry::Load(manifest_.get(), config_.control.max_namespaces));
  LOG(INFO) << "manifest " << manifest_dir << ": " << registry_->size() << " namespace(s)";
  {
    std::set<NamespaceId> registered;
    for (const NamespaceRecord& rec : registry_->List()) registered.insert(rec.id);
    RETURN_IF_ERROR(SweepDeletedNamespaces(config_, manifest_.get(), registered));
  }
  ASSIGN_OR_RETURN(remote_, StartRemote(config_.remote));
  runtimes_ = std::make_unique<Runtimes>(config_, manifest_.get(), remote_.get());
  for (const NamespaceRecord& rec : registry_->List()) {
    // A stored namespace this machine cannot hold (budgets past its memory or the
    // slot ceiling, a tier that fails to open) is skipped, not fatal: the others serve.
    Status st = CheckBudgets(rec.spec, config_, /*at_creation=*/false);
    if (st.ok()) st = runtimes_->Open(rec);
    if (!st.ok()) {
      LOG(ERROR) << "namespace " << rec.id << " '" << rec.spec.name << "' is not served: " << st.ToString()
                 << " (fix the budgets or the config and restart)";
    }
  }

  metrics_ = std::make_unique<Metrics>();
  if (config_.metrics.enabled) {
    RETURN_IF_ERROR(metrics_->Serve(config_.metrics.listen, config_.limits));
    LOG(INFO) << "metrics at " << metrics_->url();
  }
  service_ = std::make_unique<ControlService>(
      config_, registry_.get(), metrics_.get(),
      [this] { boost::asio::post(io_, [this] { BeginShutdown("shutdown request"); }); }, runtimes_.get());
  metrics_->Register(std::make_shared<StorageMetrics>(runtimes_.get(), &service_->channel_stats()));
  metrics_->Register(std::make_shared<ProcessMetrics>());
  metrics_->Register(std::make_shared<RemoteMetrics>(remote_.get()));
  server_ = std::make_unique<ControlServer>(io_, config_, service_.get());
  RETURN_IF_ERROR(server_->Start());
  LOG(INFO) << "control socket at " << config_.daemon.socket_path;
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) BeginShutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  });
  return OkStatus();
}

void Daemon::BeginShutdown(const char* why) {
  LOG(INFO) << "stopping (" << why << "): no new connections, finishing in-flight replies";
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  server_->Stop();
}

Status Daemon::Run() {
  io_.run();  // returns once the listener and every connection are closed
  // No client is left: no put runs, every channel worker has stopped and released
  // its leases. What G and H hold that D does not goes to D now.
  DrainOnShutdown(runtimes_->All(), std::chrono::seconds(config_.storage.shutdown_drain_s));
  RETURN_IF_ERROR(manifest_->Flush());
  LOG(INFO) << "manifest flushed; tierkvd stopped";
  return OkStatus();
}

}  // namespace tierkv::daemon
