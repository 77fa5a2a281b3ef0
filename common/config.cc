#include "common/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "common/log.h"

namespace tierkv {
namespace {

// One documented key: its section, name and how to store it into a Config.
struct Field {
  std::string_view section;
  std::string_view key;
  std::function<Status(const toml::node&, Config&, const std::string& name)> set;
};

Status WrongType(const std::string& name, std::string_view want) {
  return InvalidArgument(name + ": expected " + std::string(want));
}


template <typename Section>
Field Str(std::string_view sec, std::string_view key, Section Config::*s, std::string Section::*m,
          std::function<Status(const std::string&, const std::string&)> check = nullptr) {
  return {sec, key, [=](const toml::node& n, Config& c, const std::string& name) -> Status {
            auto v = n.value<std::string>();
            if (!v || !n.is_string()) return WrongType(name, "a string");
            if (check) RETURN_IF_ERROR(check(*v, name));
            (c.*s).*m = *v;
            return OkStatus();
          }};
}

template <typename Section, typename T>
Field Int(std::string_view sec, std::string_view key, Section Config::*s, T Section::*m, int64_t lo,
          int64_t hi) {
  return {sec, key, [=](const toml::node& n, Config& c, const std::string& name) -> Status {
            if (!n.is_integer()) return WrongType(name, "an integer");
            int64_t v = *n.value<int64_t>();
            if (v < lo || v > hi) {
              return InvalidArgument(name + ": must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                     "], got " + std::to_string(v));
            }
            (c.*s).*m = static_cast<T>(v);
            return OkStatus();
          }};
}

template <typename Section>
Field Bool(std::string_view sec, std::string_view key, Section Config::*s, bool Section::*m) {
  return {sec, key, [=](const toml::node& n, Config& c, const std::string& name) -> Status {
            if (!n.is_boolean()) return WrongType(name, "true or false");
            (c.*s).*m = *n.value<bool>();
            return OkStatus();
          }};
}

template <typename Section>
Field IntList(std::string_view sec, std::string_view key, Section Config::*s, std::vector<int64_t> Section::*m,
              int64_t lo, int64_t hi) {
  return {sec, key, [=](const toml::node& n, Config& c, const std::string& name) -> Status {
            const toml::array* a = n.as_array();
            if (!a) return WrongType(name, "an array of integers");
            std::vector<int64_t> out;
            for (const toml::node& e : *a) {
              if (!e.is_integer()) return WrongType(name, "an array of integers");
              int64_t v = *e.value<int64_t>();
              if (v < lo || v > hi) return InvalidArgument(name + ": element " + std::to_string(v) + " out of range");
              out.push_back(v);
            }
            (c.*s).*m = std::move(out);
            return OkStatus();
          }};
}

template <typename Section>
Field StrList(std::string_view sec, std::string_view key, Section Config::*s, std::vector<std::string> Section::*m) {
  return {sec, key, [=](const toml::node& n, Config& c, const std::string& name) -> Status {
            const toml::array* a = n.as_array();
            if (!a) return WrongType(name, "an array of strings");
            std::vector<std::string> out;
            for (const toml::node& e : *a) {
              if (!e.is_string()) return WrongType(name, "an array of strings");
              if (e.value<std::string>()->empty()) return InvalidArgument(name + ": an empty path");
              out.push_back(*e.value<std::string>());
            }
            (c.*s).*m = std::move(out);
            return OkStatus();
          }};
}

Status CheckLogLevel(const std::string& v, const std::string& name) {
  LogLevel l;
  if (!ParseLogLevel(v, &l)) return InvalidArgument(name + ": must be debug, info, warning or error, got '" + v + "'");
  return OkStatus();
}

Status CheckHostPort(const std::string& v, const std::string& name) {
  auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
    return InvalidArgument(name + ": must be host:port, got '" + v + "'");
  }
  const std::string port = v.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535) {
    return InvalidArgument(name + ": bad port '" + port + "'");
  }
  return OkStatus();
}

Status OneOf(const std::string& v, const std::string& name, std::initializer_list<const char*> allowed) {
  std::string all;
  for (const char* a : allowed) {
    if (v == a) return OkStatus();
    all += (all.empty() ? "" : ", ") + std::string(a);
  }
  return InvalidArgument(name + ": must be one of " + all + ", got '" + v + "'");
}

Status CheckNonEmpty(const std::string& v, const std::string& name) {
  if (v.empty()) return InvalidArgument(name + ": must not be empty");
  return OkStatus();
}

const std::vector<Field>& Schema() {
  static const std::vector<Field> kFields = {
      Str("daemon", "data_dir", &Config::daemon, &DaemonSection::data_dir, CheckNonEmpty),
      Str("daemon", "socket_path", &Config::daemon, &DaemonSection::socket_path, CheckNonEmpty),
      Int("daemon", "socket_mode", &Config::daemon, &DaemonSection::socket_mode, 0, 0777),
      Str("daemon", "log_level", &Config::daemon, &DaemonSection::log_level, CheckLogLevel),
      Int("control", "max_frame_bytes", &Config::control, &ControlSection::max_frame_bytes, 4096, 64 << 20),
      Int("control", "max_clients", &Config::control, &ControlSection::max_clients, 1, 65536),
      Int("control", "max_consecutive_errors", &Config::control, &ControlSection::max_consecutive_errors, 1, 1 << 20),
      Int("control", "max_namespaces", &Config::control, &ControlSection::max_namespaces, 1, 1 << 16),
      IntList("control", "admin_uids", &Config::control, &ControlSection::admin_uids, 0,
              std::numeric_limits<uint32_t>::max()),
      Int("storage", "gpu_bytes", &Config::storage, &StorageSection::gpu_bytes, 1 << 20, int64_t{1} << 50),
      Int("storage", "host_bytes", &Config::storage, &StorageSection::host_bytes, 1 << 20, int64_t{1} << 50),
      Int("storage", "disk_bytes", &Config::storage, &StorageSection::disk_bytes, 0, int64_t{1} << 50),
      Str("storage", "disk_dir", &Config::storage, &StorageSection::disk_dir),
      StrList("storage", "disk_dirs", &Config::storage, &StorageSection::disk_dirs),
      Str("storage", "disk_engine", &Config::storage, &StorageSection::disk_engine,
          [](const std::string& v, const std::string& n) { return OneOf(v, n, {"auto", "io_uring", "psync"}); }),
      Int("storage", "disk_queue_depth", &Config::storage, &StorageSection::disk_queue_depth, 1, 4096),
      Str("storage", "pin_host", &Config::storage, &StorageSection::pin_host,
          [](const std::string& v, const std::string& n) { return OneOf(v, n, {"auto", "off", "required"}); }),
      Bool("storage", "prefault", &Config::storage, &StorageSection::prefault),
      Bool("storage", "group_commit", &Config::storage, &StorageSection::group_commit),
      Int("storage", "group_commit_window_us", &Config::storage, &StorageSection::group_commit_window_us, 0, 100000),
      Bool("storage", "group_commit_overlap", &Config::storage, &StorageSection::group_commit_overlap),
      Int("storage", "put_wait_ms", &Config::storage, &StorageSection::put_wait_ms, 0, 600000),
      Int("storage", "shutdown_drain_s", &Config::storage, &StorageSection::shutdown_drain_s, 0, 3600),
      Int("data_plane", "spin_us", &Config::data_plane, &DataPlaneSection::spin_us, 0, 100000),
      Int("data_plane", "max_channels_per_client", &Config::data_plane, &DataPlaneSection::max_channels_per_client, 1,
          1024),
      Int("data_plane", "default_staging_bytes", &Config::data_plane, &DataPlaneSection::default_staging_bytes, 4096,
          int64_t{1} << 36),
      Int("data_plane", "max_staging_bytes", &Config::data_plane, &DataPlaneSection::max_staging_bytes, 4096,
          int64_t{1} << 36),
      Int("data_plane", "max_ring_entries", &Config::data_plane, &DataPlaneSection::max_ring_entries, 2, 1 << 20),
      Int("data_plane", "gpu_exchange_bytes", &Config::data_plane, &DataPlaneSection::gpu_exchange_bytes, 4096,
          int64_t{1} << 30),
      Int("namespace_limits", "max_memory_percent", &Config::namespace_limits,
          &NamespaceLimitsSection::max_memory_percent, 1, 100),
      Int("namespace_limits", "max_slots_per_tier", &Config::namespace_limits,
          &NamespaceLimitsSection::max_slots_per_tier, 1, int64_t{UINT32_MAX} - 1),
      Bool("metrics", "enabled", &Config::metrics, &MetricsSection::enabled),
      Str("metrics", "listen", &Config::metrics, &MetricsSection::listen, CheckHostPort),
      // [limits]: resource limits against local denial of service (docs/security.md).
      Int("limits", "control_clients_per_uid", &Config::limits, &LimitsSection::control_clients_per_uid, 1, 65536),
      Int("limits", "control_admin_reserved_clients", &Config::limits,
          &LimitsSection::control_admin_reserved_clients, 0, 65535),
      Int("limits", "control_hello_timeout_ms", &Config::limits, &LimitsSection::control_hello_timeout_ms, 10,
          600000),
      Int("limits", "control_frame_timeout_ms", &Config::limits, &LimitsSection::control_frame_timeout_ms, 10,
          600000),
      Int("limits", "control_hello_max_frame_bytes", &Config::limits, &LimitsSection::control_hello_max_frame_bytes,
          256, 1 << 20),
      Int("limits", "control_max_json_depth", &Config::limits, &LimitsSection::control_max_json_depth, 4, 1024),
      Int("limits", "control_max_json_elements", &Config::limits, &LimitsSection::control_max_json_elements, 64,
          1 << 24),
      Int("limits", "max_channels", &Config::limits, &LimitsSection::max_channels, 1, 65536),
      Int("limits", "max_channels_per_uid", &Config::limits, &LimitsSection::max_channels_per_uid, 1, 65536),
      Int("limits", "max_channel_bytes", &Config::limits, &LimitsSection::max_channel_bytes, 1 << 20,
          int64_t{1} << 44),
      Int("limits", "max_channel_bytes_per_uid", &Config::limits, &LimitsSection::max_channel_bytes_per_uid, 1 << 20,
          int64_t{1} << 44),
      Int("limits", "metrics_max_connections", &Config::limits, &LimitsSection::metrics_max_connections, 1, 65536),
      Int("limits", "metrics_timeout_ms", &Config::limits, &LimitsSection::metrics_timeout_ms, 10, 600000),
      Int("limits", "accept_backoff_ms", &Config::limits, &LimitsSection::accept_backoff_ms, 1, 60000),
      Int("limits", "log_interval_s", &Config::limits, &LimitsSection::log_interval_s, 1, 86400),
      Int("limits", "max_retrieve_batch", &Config::limits, &LimitsSection::max_retrieve_batch, 1, 65536),
      Int("retrieval", "workers", &Config::retrieval, &RetrievalSection::workers, 0, 1024),
      Int("retrieval", "gpu_min_work", &Config::retrieval, &RetrievalSection::gpu_min_work, 0, int64_t{1} << 50),
      // [remote]: the remote tier R on a Redis Cluster (docs/remote-tier.md).
      Bool("remote", "enabled", &Config::remote, &RemoteSection::enabled),
      Str("remote", "seeds", &Config::remote, &RemoteSection::seeds),
      Str("remote", "user", &Config::remote, &RemoteSection::user),
      Str("remote", "password_file", &Config::remote, &RemoteSection::password_file),
      Int("remote", "connect_timeout_ms", &Config::remote, &RemoteSection::connect_timeout_ms, 1, 60000),
      Int("remote", "command_timeout_ms", &Config::remote, &RemoteSection::command_timeout_ms, 1, 60000),
      Int("remote", "fetch_timeout_ms", &Config::remote, &RemoteSection::fetch_timeout_ms, 1, 60000),
      Int("remote", "pool_size", &Config::remote, &RemoteSection::pool_size, 1, 64),
      Int("remote", "write_queue_blocks", &Config::remote, &RemoteSection::write_queue_blocks, 1, 1 << 20),
      Int("remote", "breaker_failures", &Config::remote, &RemoteSection::breaker_failures, 1, 1000),
      Int("remote", "breaker_cooldown_ms", &Config::remote, &RemoteSection::breaker_cooldown_ms, 10, 600000),
      Str("remote", "compression", &Config::remote, &RemoteSection::compression,
          [](const std::string& v, const std::string& n) { return OneOf(v, n, {"none", "zstd"}); }),
      Bool("remote", "tls", &Config::remote, &RemoteSection::tls),
      Str("remote", "tls_ca_file", &Config::remote, &RemoteSection::tls_ca_file),
      Str("remote", "tls_cert_file", &Config::remote, &RemoteSection::tls_cert_file),
      Str("remote", "tls_key_file", &Config::remote, &RemoteSection::tls_key_file),
      Str("remote", "tls_server_name", &Config::remote, &RemoteSection::tls_server_name),
      Int("remote", "lookup_reuse_mb", &Config::remote, &RemoteSection::lookup_reuse_mb, 0, 1 << 16),
      Int("remote", "lookup_reuse_ms", &Config::remote, &RemoteSection::lookup_reuse_ms, 1, 600000),
  };
  return kFields;
}

const Field* FindField(std::string_view section, std::string_view key) {
  for (const Field& f : Schema()) {
    if (f.section == section && f.key == key) return &f;
  }
  return nullptr;
}

bool KnownSection(std::string_view section) {
  for (const Field& f : Schema()) {
    if (f.section == section) return true;
  }
  return false;
}

}  // namespace

Result<Config> ParseConfig(std::string_view text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source_name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
       << e.description();
    return InvalidArgument(os.str());
  }
  Config config;
  for (const auto& [sec_key, sec_node] : root) {
    std::string sec(sec_key.str());
    if (!KnownSection(sec)) return InvalidArgument(std::string(source_name) + ": unknown section [" + sec + "]");
    const toml::table* table = sec_node.as_table();
    if (!table) return InvalidArgument(std::string(source_name) + ": " + sec + " must be a [section]");
    for (const auto& [key, node] : *table) {
      std::string name = sec + "." + std::string(key.str());
      const Field* f = FindField(sec, key.str());
      if (!f) return InvalidArgument(std::string(source_name) + ": unknown key " + name);
      Status st = f->set(node, config, name);
      if (!st.ok()) return st.WithContext(source_name);
    }
  }
  Status st = ValidateConfig(config);
  if (!st.ok()) return st.WithContext(source_name);
  return config;
}

Status ValidateConfig(const Config& c) {
  const LimitsSection& l = c.limits;
  if (l.control_admin_reserved_clients >= c.control.max_clients) {
    return InvalidArgument("limits.control_admin_reserved_clients (" + std::to_string(l.control_admin_reserved_clients) +
                           ") must be below control.max_clients (" + std::to_string(c.control.max_clients) + ")");
  }
  // A per-uid cap above its global one is allowed (the global one binds first), but
  // a default channel that no non-admin could ever open is a mistake.
  const uint64_t fits = std::min(l.max_channel_bytes, l.max_channel_bytes_per_uid);
  if (c.data_plane.default_staging_bytes > fits) {
    return InvalidArgument("data_plane.default_staging_bytes (" + std::to_string(c.data_plane.default_staging_bytes) +
                           ") does not fit in limits.max_channel_bytes_per_uid / limits.max_channel_bytes (" +
                           std::to_string(fits) + ")");
  }
  return OkStatus();
}

Result<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace tierkv
