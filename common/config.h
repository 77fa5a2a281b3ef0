// Daemon configuration (TOML). deploy/tierkvd.toml documents every key with its
// default; that same file is embedded in the binary and is the source of the
// defaults (tests check that it parses to a default-constructed Config).
//
// Relative paths are relative to the daemon's working directory.
// An unknown section or key, a wrong type or an out-of-range value is refused with
// an error naming the key ("config: metrics.listen: ...").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tierkv {

struct DaemonSection {
  std::string data_dir = "./var";                 // manifest (RocksDB) lives in data_dir/manifest
  std::string socket_path = "./var/tierkvd.sock";  // control socket (Unix domain)
  uint32_t socket_mode = 0660;                     // permission bits of the socket file
  std::string log_level = "info";                  // debug | info | warning | error
  bool operator==(const DaemonSection&) const = default;
};

struct ControlSection {
  uint32_t max_frame_bytes = 64 << 10;     // largest control message accepted (docs/security.md)
  uint32_t max_clients = 256;              // concurrent control connections
  uint32_t max_consecutive_errors = 16;    // bad requests in a row before a disconnect
  uint32_t max_namespaces = 64;
  std::vector<int64_t> admin_uids;         // may create namespaces and shut down (plus root and the daemon's uid)
  bool operator==(const ControlSection&) const = default;
};

struct MetricsSection {
  bool enabled = true;
  std::string listen = "127.0.0.1:9464";  // host:port; port 0 picks a free port
  bool operator==(const MetricsSection&) const = default;
};

struct DataPlaneSection {
  uint32_t spin_us = 50;                      // a channel worker busy-polls this long before sleeping
  uint32_t max_channels_per_client = 16;
  uint64_t default_staging_bytes = 16 << 20;  // staging area of a channel when the client names none
  uint64_t max_staging_bytes = 256 << 20;
  uint32_t max_ring_entries = 4096;
  uint64_t gpu_exchange_bytes = 1 << 20;      // device exchange buffer of a GPU channel when the client names none
  bool operator==(const DataPlaneSection&) const = default;
};

// Tier sizes of a namespace whose budget for that tier is 0 ("no budget of its
// own"), the disk tier's place and I/O engine.
struct StorageSection {
  uint64_t gpu_bytes = 1ull << 30;    // G arena per namespace (device memory, or emulated)
  uint64_t host_bytes = 2ull << 30;   // H arena per namespace (memfd)
  uint64_t disk_bytes = 8ull << 30;   // D slab files per namespace (0: no disk tier)
  std::string disk_dir;               // "" = <daemon.data_dir>/disk; one folder per namespace
  // Several devices: one dir per device, slots striped over them (each gets one
  // folder per namespace); when non-empty it replaces disk_dir.
  std::vector<std::string> disk_dirs;
  std::string disk_engine = "auto";   // auto | io_uring | psync
  uint32_t disk_queue_depth = 32;
  std::string pin_host = "auto";      // auto | off | required (cudaHostRegister of H)
  uint32_t put_wait_ms = 2000;        // a put waits this long for room when every tier is full
  bool prefault = false;              // populate G/H arenas at start (commits them; H then registered with D)
  bool group_commit = true;           // concurrent D writes share one fdatasync + manifest batch
  uint32_t group_commit_window_us = 1000;  // a group's leader waits this long at most for the active writers
  bool group_commit_overlap = true;  // a group's manifest batch syncs beside its D data (one sync's wait)
  uint32_t shutdown_drain_s = 30;     // at SIGTERM/shutdown, write blocks not on D back to D for at most this long (0: no)
  bool operator==(const StorageSection&) const = default;
};

// Online retrieval in the daemon (daemon/retrieval.h, daemon/worker_pool.h).
struct RetrievalSection {
  uint32_t workers = 0;  // threads scoring the sequences of one batched Retrieve (its channel's
                         // thread included); 0 = one per core
  // A minmax/mean selection is scored on the GPU (when the daemon has one) only from
  // this much work: blocks x num_q_heads x head_dim multiply-adds. Below it the CPU
  // is faster than the GPU's fixed cost (upload, launch, copy back, sync).
  uint64_t gpu_min_work = 1 << 20;
  bool operator==(const RetrievalSection&) const = default;
};

// Resource limits against local denial of service (docs/security.md lists what each
// one stops). Admins (root, the daemon's uid, control.admin_uids) are exempt from the
// per-uid caps, not from the global ones.
struct LimitsSection {
  // Control plane.
  uint32_t control_clients_per_uid = 64;         // connections of one non-admin uid
  uint32_t control_admin_reserved_clients = 16;  // of control.max_clients, only admins may take these
  uint32_t control_hello_timeout_ms = 5000;      // from accept to a complete hello
  uint32_t control_frame_timeout_ms = 5000;      // rest of a frame once its first byte came; a reply's write
  uint32_t control_hello_max_frame_bytes = 4096; // largest frame before hello
  uint32_t control_max_json_depth = 32;          // nesting of arrays and objects in a request
  uint32_t control_max_json_elements = 16384;    // values in a request (parse cost)
  // Channels: each one is a worker thread and a memfd (rings + staging, + an emulated GPU exchange).
  uint32_t max_channels = 512;                       // every client together (= channel worker threads)
  uint32_t max_channels_per_uid = 128;
  uint64_t max_channel_bytes = 8ull << 30;           // memfd bytes of every channel together
  uint64_t max_channel_bytes_per_uid = 4ull << 30;
  // Metrics endpoint.
  uint32_t metrics_max_connections = 64;
  uint32_t metrics_timeout_ms = 5000;  // to receive the request, and to send the reply
  // Both accept loops, when the process is out of descriptors (EMFILE/ENFILE).
  uint32_t accept_backoff_ms = 100;
  uint32_t log_interval_s = 10;  // at most one such log line per interval, with a count of those suppressed
  // Data plane: sequences one batched Retrieve may name (docs/decisions/0011-batched-retrieve.md).
  uint32_t max_retrieve_batch = 256;
  bool operator==(const LimitsSection&) const = default;
};

// What one namespace's budgets may ask for (issue 14, docs/security.md "Budgets");
// checked before anything is persisted, and again for each namespace at start.
struct NamespaceLimitsSection {
  uint32_t max_memory_percent = 90;         // G (when emulated) + H arenas + slot metadata, % of physical memory
  uint64_t max_slots_per_tier = 1ull << 25;  // slots of one tier (daemon memory: ~25 bytes each in G/H)
  bool operator==(const NamespaceLimitsSection&) const = default;
};

// [remote]: the remote tier R on a Redis Cluster (docs/remote-tier.md). Off by default.
struct RemoteSection {
  bool enabled = false;
  std::string seeds;                 // "host:port,host:port": any nodes of the cluster
  std::string user;                  // ACL user ("" = default user)
  std::string password_file;         // file whose first line is the password ("" = no AUTH)
  uint32_t connect_timeout_ms = 200;
  uint32_t command_timeout_ms = 500;  // per reply of a node
  uint32_t fetch_timeout_ms = 1000;   // longest a prefix lookup waits for R
  uint32_t pool_size = 2;             // R worker threads = connections per node
  uint32_t write_queue_blocks = 4096; // blocks waiting for their background write (then dropped)
  uint32_t breaker_failures = 3;      // failed batches in a row that open the circuit breaker
  uint32_t breaker_cooldown_ms = 2000; // fail-fast time before a probe
  std::string compression = "none";  // values written: "none" (raw) or "zstd" (lossless)
  // TLS to every node (Redis's tls-port, tls-cluster yes): the CA that signs the
  // nodes' certificates, an optional client certificate + key, and the name their
  // certificates carry ("" = the address connected to).
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
  // Verified values of recent R fetches kept for reuse (a LookupPrefix's blocks, then
  // its LoadPrefix): at most this many MiB (0 = off), each for lookup_reuse_ms.
  uint32_t lookup_reuse_mb = 64;
  uint32_t lookup_reuse_ms = 10000;
  bool operator==(const RemoteSection&) const = default;
};

struct Config {
  DaemonSection daemon;
  StorageSection storage;
  ControlSection control;
  DataPlaneSection data_plane;
  MetricsSection metrics;
  RetrievalSection retrieval;
  LimitsSection limits;
  NamespaceLimitsSection namespace_limits;
  RemoteSection remote;
  bool operator==(const Config&) const = default;
};

// Parses TOML text; keys not given keep their defaults. Checks each key's range and
// the keys that depend on each other (ValidateConfig).

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name = "config");
// The checks across keys (limits.* against control.* and data_plane.*).
Status ValidateConfig(const Config& config);
// Reads and parses a file.
Result<Config> LoadConfigFile(const std::string& path);
// The documented default config text (deploy/tierkvd.toml, embedded at build time).
std::string_view EmbeddedDefaultConfig();

}  // namespace tierkv
