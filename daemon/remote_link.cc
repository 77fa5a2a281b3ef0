#include "daemon/remote_link.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "common/log.h"
#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {
namespace {
using storage::remote::RemoteBlockKey;
using storage::remote::RemoteTier;

// Positions fetched per R batch: about this many keys (all layers of each position).
constexpr size_t kKeysPerFetch = 512;
// Most block bytes one prefix call takes from R (they are held until stored): a
// client's token list cannot make the daemon buffer more than this.
constexpr size_t kMaxFetchBytes = size_t{256} << 20;
}  // namespace

Result<std::unique_ptr<RemoteTier>> StartRemote(const RemoteSection& c) {
  if (!c.enabled) return std::unique_ptr<RemoteTier>();
  storage::remote::RemoteOptions o;
  std::stringstream seeds(c.seeds);
  for (std::string s; std::getline(seeds, s, ',');) {
    s.erase(0, s.find_first_not_of(' '));
    s.erase(s.find_last_not_of(' ') + 1);
    if (s.empty()) continue;
    if (s.rfind(':') == std::string::npos) return InvalidArgument("remote.seeds: '" + s + "' is not host:port");
    o.cluster.seeds.push_back(s);
  }
  if (o.cluster.seeds.empty()) return InvalidArgument("remote.seeds: name at least one node (host:port)");
  o.cluster.user = c.user;
  if (!c.password_file.empty()) {
    std::ifstream f(c.password_file);
    if (!f) return InvalidArgument("remote.password_file: cannot read " + c.password_file);
    std::getline(f, o.cluster.password);
  }
  o.cluster.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);
  o.cluster.command_timeout = std::chrono::milliseconds(c.command_timeout_ms);
  o.fetch_timeout = std::chrono::milliseconds(c.fetch_timeout_ms);
  o.workers = c.pool_size;
  o.write_queue_blocks = c.write_queue_blocks;
  o.breaker_failures = c.breaker_failures;
  o.breaker_cooldown = std::chrono::milliseconds(c.breaker_cooldown_ms);
  o.codec = c.compression == "zstd" ? storage::remote::RemoteCodec::kZstd : storage::remote::RemoteCodec::kNone;
  o.reuse_bytes = size_t{c.lookup_reuse_mb} << 20;
  o.reuse_age = std::chrono::milliseconds(c.lookup_reuse_ms);
  if (c.tls) {
    auto tls = storage::remote::TlsContext::Create(
        {c.tls_ca_file, c.tls_cert_file, c.tls_key_file, c.tls_server_name});
    if (!tls.ok()) return InvalidArgument("remote." + tls.status().message());
    o.cluster.tls = std::move(*tls);
  } else if (!c.tls_ca_file.empty() || !c.tls_cert_file.empty() || !c.tls_key_file.empty()) {
    return InvalidArgument("remote.tls_*_file given but remote.tls = false: set tls = true or remove them");
  }
  LOG(INFO) << "remote tier R: Redis Cluster at " << c.seeds << (c.tls ? " over TLS" : "") << " (" << c.pool_size
            << " workers, compression " << c.compression << ")";
  return RemoteTier::Start(std::move(o));
}

void WritePrefixBlockToRemote(NamespaceRuntime& rt, uint64_t hash, uint32_t layer, std::span<const std::byte> block) {
  RemoteTier* r = rt.remote();
  const uint32_t ttl = rt.store().policy().remote_ttl_s;
  if (!r || ttl == 0) return;
  r->Write(RemoteBlockKey{rt.remote_fingerprint(), hash, layer}, block, ttl, DTypeBytes(rt.stored_model().dtype));
}

bool SequencesInRemote(NamespaceRuntime& rt) {
  const storage::Policy p = rt.store().policy();
  return rt.remote() && p.remote_ttl_s > 0 && p.remote_blocks == storage::RemoteBlocks::kClosedSequences;
}

uint64_t WriteClosedSequenceToRemote(NamespaceRuntime& rt, uint64_t seq) {
  if (!SequencesInRemote(rt)) return 0;
  RemoteTier* r = rt.remote();
  const ModelSpec& m = rt.stored_model();
  const uint32_t ttl = rt.store().policy().remote_ttl_s;
  uint64_t queued = 0, left = 0;
  for (uint32_t layer = 0; layer < m.num_layers; ++layer) {
    const uint32_t n = rt.store().SequenceBlocks(seq, layer);
    for (uint32_t b = 0; b < n; ++b) {
      if (left) {  // the queue refused one: the rest are not read
        ++left;
        continue;
      }
      std::vector<std::byte> block(m.BlockBytes());
      const Status st = rt.store().Get(seq, layer, b, block);
      if (st.code() == StatusCode::kNotFound) continue;  // a hole
      if (!st.ok()) {
        LOG(WARNING) << "closed sequence " << seq << " layer " << layer << " block " << b
                     << " not written to R: " << st.ToString();
        continue;
      }
      if (r->Write(storage::remote::SequenceBlockKey(rt.remote_fingerprint(), seq, layer, b), std::move(block), ttl,
                   DTypeBytes(m.dtype))) {
        ++queued;
      } else {
        left = 1;
      }
    }
  }
  if (left > 1) {
    r->CountDropped(left - 1);
    LOG(WARNING) << "closed sequence " << seq << ": " << left << " blocks not written to R (write queue full or R down)";
  }
  return queued;
}

void GetSequenceBlocksFromRemote(NamespaceRuntime& rt, uint64_t seq, uint32_t layer,
                                 std::span<const uint32_t> blocks, std::span<std::byte> out,
                                 std::vector<bool>* found) {
  found->assign(blocks.size(), false);
  const size_t bb = rt.stored_model().BlockBytes();
  RemoteTier* r = rt.remote();
  // One Fetch per kKeysPerFetch blocks (a Get names at most 2^16).
  for (size_t first = 0; first < blocks.size(); first += kKeysPerFetch) {
    const size_t n = std::min(kKeysPerFetch, blocks.size() - first);
    std::vector<RemoteBlockKey> keys;
    for (size_t i = first; i < first + n; ++i) {
      keys.push_back(storage::remote::SequenceBlockKey(rt.remote_fingerprint(), seq, layer, blocks[i]));
    }
    std::vector<std::string> got;
    if (!r->Fetch(keys, bb, &got, /*keep=*/false).ok()) return;  // counted in R's stats; stored below
    for (size_t k = 0; k < n; ++k) {
      if (got[k].empty()) continue;
      const auto block = storage::remote::RemotePayload(got[k]);
      if (!out.empty()) std::memcpy(out.data() + (first + k) * bb, block.data(), bb);
      (*found)[first + k] = true;
      const Status st = rt.store().Put(seq, layer, blocks[first + k], block);
      if (!st.ok()) LOG(WARNING) << "block from R served but not kept: " << st.ToString();
    }
  }
}

uint32_t FetchPrefixFromRemote(NamespaceRuntime& rt, std::span<const uint64_t> hashes, uint32_t first,
                               std::vector<std::vector<std::string>>* blocks, bool keep) {
  blocks->clear();
  RemoteTier* r = rt.remote();
  if (!r || rt.store().policy().remote_ttl_s == 0 || first >= hashes.size()) return 0;
  const uint32_t layers = rt.stored_model().num_layers;
  const size_t per_batch = std::max<size_t>(1, kKeysPerFetch / layers);
  const size_t max_positions = std::max<size_t>(1, kMaxFetchBytes / (size_t{layers} * rt.stored_model().BlockBytes()));
  const size_t end = std::min(hashes.size(), first + max_positions);
  for (size_t p = first; p < end;) {
    const size_t n = std::min(per_batch, end - p);
    std::vector<RemoteBlockKey> keys;
    for (size_t i = 0; i < n; ++i) {
      for (uint32_t l = 0; l < layers; ++l) keys.push_back({rt.remote_fingerprint(), hashes[p + i], l});
    }
    std::vector<std::string> got;
    if (!r->Fetch(keys, rt.stored_model().BlockBytes(), &got, keep).ok()) break;  // counted in R's stats
    for (size_t i = 0; i < n; ++i) {
      std::vector<std::string> position(layers);
      for (uint32_t l = 0; l < layers; ++l) {
        if (got[i * layers + l].empty()) return static_cast<uint32_t>(blocks->size());
        position[l] = std::move(got[i * layers + l]);
      }
      blocks->push_back(std::move(position));
    }
    p += n;
  }
  return static_cast<uint32_t>(blocks->size());
}

nlohmann::json RemoteStatusJson(const RemoteTier* r) {
  if (!r) return {{"state", "off"}};
  const auto& s = r->stats();
  return {{"state", storage::remote::BreakerStateName(r->state())},
          {"gets", s.gets.load()},
          {"get_batches", s.get_batches.load()},
          {"hits", s.hits.load()},
          {"misses", s.misses.load()},
          {"puts", s.puts.load()},
          {"queued_writes", r->queued_writes()},
          {"errors", s.errors_timeout.load() + s.errors_unavailable.load() + s.errors_redis.load() +
                         s.errors_corrupt.load()},
          {"tls_errors", s.errors_tls.load()},
          {"reused", s.reused.load()},
          {"corrupt", s.errors_corrupt.load()},
          {"breaker_opens", s.breaker_opens.load()},
          {"nodes_down", r->nodes_down()},
          {"node_rejected", s.node_rejected.load()},
          {"put_raw_bytes", s.put_raw_bytes.load()},
          {"put_bytes", s.put_bytes.load()}};
}

std::vector<prometheus::MetricFamily> RemoteMetrics::Collect() const {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  std::vector<MetricFamily> out;
  auto add = [&](const std::string& name, const char* help, MetricType type, double v,
                 std::vector<ClientMetric::Label> labels = {}) {
    if (out.empty() || out.back().name != name) out.push_back(MetricFamily{name, help, type, {}});
    ClientMetric m;
    m.label = std::move(labels);
    (type == MetricType::Counter ? m.counter.value : m.gauge.value) = v;
    out.back().metric.push_back(std::move(m));
  };
  const auto C = MetricType::Counter;
  add("tierkv_remote_enabled", "1 when the remote tier R is configured", MetricType::Gauge, remote_ ? 1 : 0);
  // With R off every series is still there, at 0 (dashboards and alerts see a value).
  static const storage::remote::RemoteStats kNone;
  const auto& s = remote_ ? remote_->stats() : kNone;
  add("tierkv_remote_up", "1 when R is configured and its circuit breaker is closed (0: off, down or probing)",
      MetricType::Gauge, remote_ && remote_->state() == storage::remote::BreakerState::kClosed ? 1 : 0);
  if (remote_) {
    add("tierkv_remote_breaker_state", "R's circuit breaker: 0 closed (up), 1 open (down), 2 half-open (probing)",
        MetricType::Gauge, static_cast<double>(remote_->state()));
  }
  add("tierkv_remote_breaker_opens_total", "Times R was marked down", C, s.breaker_opens.load());
  add("tierkv_remote_nodes_down", "Cluster nodes whose circuit breaker is open (their slots fail fast)",
      MetricType::Gauge, remote_ ? remote_->nodes_down().size() : 0);
  add("tierkv_remote_node_breaker_opens_total", "Times a node's circuit breaker opened", C,
      s.node_breaker_opens.load());
  add("tierkv_remote_node_rejected_total", "Requests failed at once: their node's circuit breaker was open", C,
      s.node_rejected.load());
  add("tierkv_remote_gets_total", "Blocks asked of R", C, s.gets.load());
  add("tierkv_remote_reused_total", "Blocks a fetch took from the values of a recent fetch (no GET; lookup then load)",
      C, s.reused.load());
  add("tierkv_remote_tls_errors_total",
      "Connections whose TLS handshake or certificate check failed (their requests count as unavailable)", C,
      s.errors_tls.load());
  add("tierkv_remote_get_batches_total", "Pipelined fetch batches sent to R", C, s.get_batches.load());
  add("tierkv_remote_hits_total", "Blocks found in R and verified", C, s.hits.load());
  add("tierkv_remote_misses_total", "Blocks absent from R (or dropped by verification)", C, s.misses.load());
  add("tierkv_remote_get_bytes_total", "Value bytes read from R", C, s.get_bytes.load());
  add("tierkv_remote_puts_total", "Blocks written to R", C, s.puts.load());
  add("tierkv_remote_put_bytes_total", "Value bytes sent to R", C, s.put_bytes.load());
  add("tierkv_remote_put_raw_bytes_total", "Block bytes written to R before compression", C, s.put_raw_bytes.load());
  add("tierkv_remote_writes_dropped_total", "Blocks not written (queue full or R down)", C, s.writes_dropped.load());
  add("tierkv_remote_rejected_total", "Fetches refused at once while R was down", C, s.rejected.load());
  add("tierkv_remote_queued_writes", "Blocks waiting for their background write", MetricType::Gauge,
      remote_ ? remote_->queued_writes() : 0);
  add("tierkv_remote_redirects_total", "Cluster redirects followed", C, s.moved.load(), {{"kind", "moved"}});
  add("tierkv_remote_redirects_total", "Cluster redirects followed", C, s.ask.load(), {{"kind", "ask"}});
  const std::pair<const char*, uint64_t> errors[] = {{"timeout", s.errors_timeout.load()},
                                                     {"unavailable", s.errors_unavailable.load()},
                                                     {"redis", s.errors_redis.load()},
                                                     {"corrupt", s.errors_corrupt.load()}};
  for (auto [kind, v] : errors) add("tierkv_remote_errors_total", "R errors by kind", C, v, {{"kind", kind}});
  MetricFamily h{"tierkv_remote_fetch_seconds", "Latency of one pipelined fetch batch from R", MetricType::Histogram,
                 {}};
  ClientMetric m;
  uint64_t cumulative = 0;
  for (size_t b = 0; b < storage::remote::RemoteStats::kBuckets; ++b) {
    cumulative += s.fetch_latency[b].load();
    ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = b + 1 < storage::remote::RemoteStats::kBuckets
                             ? storage::remote::RemoteStats::kFetchLatencyBounds[b]
                             : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(bucket);
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = s.fetch_latency_sum_us.load() * 1e-6;
  h.metric.push_back(std::move(m));
  out.push_back(std::move(h));
  return out;
}

}  // namespace tierkv::daemon
