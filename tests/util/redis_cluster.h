// A real Redis Cluster for tests: `masters` masters with `replicas` replicas each,
// redis-server processes on loopback ports chosen free at start (client and bus
// port), all files in a temporary directory, created with
// `redis-cli --cluster create ... --cluster-replicas N --cluster-yes`. The
// destructor kills every node and removes the directory.
//
// TLS mode (tls = true): Start first makes a CA and a node certificate (IP SAN
// 127.0.0.1, DNS localhost; also used as the client certificate) with the openssl
// CLI in the directory, plus a second, unrelated CA (wrong_ca_file) for the tests
// of refusal; the nodes listen on TLS only (--port 0 --tls-port N, --tls-cluster
// yes, --tls-replication yes, tls-auth-clients yes) and the cluster is created with
// redis-cli --tls. port(i) is then the TLS port.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "storage/remote/redis_transport.h"
#include "tests/util/temp_dir.h"

namespace tierkv::testing {

class RedisCluster {
 public:
  // Whether redis-server and redis-cli are installed (tests skip when not).
  static bool Available();

  RedisCluster(int masters = 3, int replicas = 1, bool tls = false);
  ~RedisCluster();

  // Starts the nodes, creates the cluster, waits until every node reports
  // cluster_state:ok and every master has its replicas. "" on success, else why.
  std::string Start(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  size_t size() const { return ports_.size(); }
  int port(size_t node) const { return ports_[node]; }
  std::string address(size_t node) const { return "127.0.0.1:" + std::to_string(ports_[node]); }
  // "127.0.0.1:p1,127.0.0.1:p2,..." of every node.
  std::string Seeds() const;
  bool running(size_t node) const { return pids_[node] > 0; }
  bool tls() const { return tls_; }
  // TLS mode: the files a client uses (CA, client certificate and key).
  storage::remote::TlsOptions tls_options() const;
  std::string wrong_ca_file() const { return dir_.Sub("other-ca.crt"); }

  // Runs one command on one node (redis-cli-like argv); returns the reply as text
  // ("(nil)", an integer, a string, an error "ERR ...", array elements joined by
  // '\n'), or "!io: ..." when the node cannot be reached.
  std::string Command(size_t node, const std::vector<std::string>& argv) const;
  std::string NodeId(size_t node) const;
  // The node (index) that is a master and serves `slot` now, -1 if none answers.
  int MasterOf(uint16_t slot) const;
  bool IsMaster(size_t node) const;

  // SIGKILLs one node. Restart brings it back with its config (it rejoins).
  void Kill(size_t node);
  std::string Restart(size_t node);
  // SIGSTOP / SIGCONT every node (a cluster that hangs).
  void Pause(bool stop);
  // SIGSTOP / SIGCONT one node (a node that hangs; its peers fail it over after
  // cluster-node-timeout, 1 s here).
  void Pause(size_t node, bool stop);
  void KillAll();
  std::string RestartAll(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits until every running node reports cluster_state:ok.
  bool WaitOk(std::chrono::milliseconds timeout) const;
  // Moves `slot` (and its keys) from its master to master `to` with
  // SETSLOT IMPORTING/MIGRATING, MIGRATE and SETSLOT NODE, as redis-cli does. With
  // `finish` false stops after migrating the keys (the slot is in the ASK state).
  std::string MoveSlot(uint16_t slot, size_t to, bool finish = true);
  std::string FinishMove(uint16_t slot, size_t to);
  std::string Log(size_t node) const;

 private:
  pid_t Spawn(size_t node);
  std::string MakeCertificates();

  const int masters_, replicas_;
  const bool tls_;
  std::shared_ptr<const storage::remote::TlsContext> tls_ctx_;  // for Command (TLS mode)
  TempDir dir_{"redis"};
  std::vector<int> ports_, bus_ports_;
  std::vector<pid_t> pids_;
};

}  // namespace tierkv::testing
