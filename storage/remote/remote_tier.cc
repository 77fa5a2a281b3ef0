#include "storage/remote/remote_tier.h"

#include "common/log.h"
#include "common/mutex.h"
#include "storage/remote/key_slot.h"

namespace tierkv::storage::remote {
namespace {
// How often a worker reloads the slot map while some node's breaker is open.
constexpr std::chrono::milliseconds kDownMapRefresh{200};
}  // namespace

std::string_view BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed: return "up";
    case BreakerState::kOpen: return "down";
    case BreakerState::kHalfOpen: return "probing";
  }
  return "?";
}

struct RemoteTier::FetchJob {
  std::vector<RemoteBlockKey> keys;
  size_t block_bytes = 0;
  Mutex mu;
  CondVar cv;
  bool done GUARDED_BY(mu) = false;
  Status status;
  std::vector<std::string> out;
};

Result<std::unique_ptr<RemoteTier>> RemoteTier::Start(RemoteOptions options) {
  if (options.cluster.seeds.empty()) return InvalidArgument("remote.seeds must name at least one node");
  if (options.workers == 0 || options.workers > 64) return InvalidArgument("remote.pool_size must be in [1, 64]");
  if (options.write_batch == 0) options.write_batch = 1;
  std::unique_ptr<RemoteTier> tier(new RemoteTier(std::move(options)));
  for (size_t i = 0; i < tier->options_.workers; ++i) {
    tier->workers_.emplace_back([t = tier.get(), i] { t->WorkerLoop(i); });
  }
  return tier;
}

RemoteTier::~RemoteTier() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.NotifyAll();
  for (std::thread& t : workers_) t.join();
}

size_t RemoteTier::queued_writes() const {
  MutexLock lock(&mu_);
  return writes_.size();
}

std::vector<std::string> RemoteTier::nodes_down() const {
  MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, b] : nodes_) {
    if (b.open) out.push_back(name);
  }
  return out;
}

bool RemoteTier::Write(const RemoteBlockKey& key, std::span<const std::byte> block, uint32_t ttl_s,
                       uint32_t elem_bytes) {
  if (state() == BreakerState::kOpen) {
    ++stats_.writes_dropped;
    return false;
  }
  // One copy here (the caller's memory may be reused as soon as we return); the
  // header and checksum are computed by the worker, off the put's path.
  return Write(key, std::vector<std::byte>(block.begin(), block.end()), ttl_s, elem_bytes);
}

bool RemoteTier::Write(const RemoteBlockKey& key, std::vector<std::byte>&& block, uint32_t ttl_s,
                       uint32_t elem_bytes) {
  if (state() == BreakerState::kOpen) {
    ++stats_.writes_dropped;
    return false;
  }
  {
    MutexLock lock(&mu_);
    if (writes_.size() >= options_.write_queue_blocks) {
      ++stats_.writes_dropped;
      return false;
    }
    writes_.push_back(WriteItem{key, std::move(block), ttl_s, elem_bytes});
    // Wake a worker for the first block of a batch and for a full batch only: it
    // lingers for the rest (WorkerLoop), so that a stream of puts does not wake it
    // (and make it compete for the CPU) once per block.
    if (writes_.size() != 1 && writes_.size() != options_.write_batch) return true;
  }
  cv_.NotifyOne();
  return true;
}

Status RemoteTier::Fetch(std::span<const RemoteBlockKey> keys, size_t block_bytes, std::vector<std::string>* out,
                         bool keep) {
  out->assign(keys.size(), {});
  std::vector<size_t> todo;  // indices of the keys to fetch
  std::vector<RemoteBlockKey> rest;
  std::vector<std::string> names;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string name = RedisKey(keys[i]);
    if (recent_.Take(name, &(*out)[i])) {
      ++stats_.reused;
      continue;
    }
    todo.push_back(i);
    rest.push_back(keys[i]);
    names.push_back(std::move(name));
  }
  if (todo.empty()) return OkStatus();
  std::vector<std::string> got;
  const Status st = FetchFromCluster(rest, block_bytes, &got);
  for (size_t k = 0; k < got.size(); ++k) {
    if (got[k].empty()) continue;
    if (keep) recent_.Put(names[k], got[k]);
    (*out)[todo[k]] = std::move(got[k]);
  }
  return st;
}

Status RemoteTier::FetchFromCluster(std::span<const RemoteBlockKey> keys, size_t block_bytes,
                                    std::vector<std::string>* out) {
  out->assign(keys.size(), {});
  if (keys.empty()) return OkStatus();
  if (state() == BreakerState::kOpen) {
    ++stats_.rejected;
    return Unavailable("remote tier is down (circuit breaker open)");
  }
  auto job = std::make_shared<FetchJob>();
  job->keys.assign(keys.begin(), keys.end());
  job->block_bytes = block_bytes;
  {
    MutexLock lock(&mu_);
    fetches_.push_back(job);
  }
  cv_.NotifyOne();
  MutexLock lock(&job->mu);
  const auto deadline = std::chrono::steady_clock::now() + options_.fetch_timeout;
  while (!job->done && job->cv.WaitUntil(&job->mu, deadline)) {
  }
  if (!job->done) {
    ++stats_.errors_timeout;
    return Unavailable("remote fetch timed out");
  }
  *out = std::move(job->out);
  return job->status;
}

bool RemoteTier::Admit() {
  MutexLock lock(&mu_);
  switch (state()) {
    case BreakerState::kClosed: return true;
    case BreakerState::kHalfOpen: return false;  // a probe is in flight
    case BreakerState::kOpen:
      if (std::chrono::steady_clock::now() < open_until_) return false;
      state_ = BreakerState::kHalfOpen;
      return true;
  }
  return false;
}

void RemoteTier::NoteResult(bool ok) {
  MutexLock lock(&mu_);
  const BreakerState s = state();
  if (ok) {
    failures_ = 0;
    if (s != BreakerState::kClosed) LOG(INFO) << "remote tier: the cluster answers again (up)";
    state_ = BreakerState::kClosed;
    return;
  }
  ++failures_;
  if (s == BreakerState::kHalfOpen || (s == BreakerState::kClosed && failures_ >= options_.breaker_failures)) {
    if (s == BreakerState::kClosed) {
      ++stats_.breaker_opens;
      LOG(WARNING) << "remote tier: " << failures_ << " failed batches in a row, circuit breaker open (down)";
    }
    state_ = BreakerState::kOpen;
    open_until_ = std::chrono::steady_clock::now() + options_.breaker_cooldown;
  }
}

bool RemoteTier::AdmitNode(const std::string& node) {
  auto it = nodes_.find(node);
  if (it == nodes_.end() || !it->second.open) return true;
  NodeBreaker& b = it->second;
  if (b.probing || std::chrono::steady_clock::now() < b.open_until) return false;
  b.probing = true;  // this batch's requests for the node are the probe
  return true;
}

void RemoteTier::NoteNode(const std::string& node, bool answered) {
  MutexLock lock(&mu_);
  NodeBreaker& b = nodes_[node];
  if (answered) {
    if (b.open) {
      LOG(INFO) << "remote tier: node " << node << " answers again";
      --open_nodes_;
    }
    b = NodeBreaker{};
    return;
  }
  ++b.failures;
  if (b.probing || (!b.open && b.failures >= options_.breaker_failures)) {
    if (!b.open) {
      ++stats_.node_breaker_opens;
      ++open_nodes_;
      LOG(WARNING) << "remote tier: node " << node << " did not answer " << b.failures
                   << " batches in a row: its slots fail fast";
    }
    b.open = true;
    b.probing = false;
    b.open_until = std::chrono::steady_clock::now() + options_.breaker_cooldown;
  }
}

std::optional<bool> RemoteTier::Send(ClusterClient& client, std::vector<ClusterRequest>& reqs) {
  const uint64_t tls_errors = client.stats().tls_errors;
  const std::optional<bool> any = SendCounted(client, reqs);
  stats_.errors_tls += client.stats().tls_errors - tls_errors;
  return any;
}

std::optional<bool> RemoteTier::SendCounted(ClusterClient& client, std::vector<ClusterRequest>& reqs) {
  if (!client.has_map()) client.RefreshMap().IgnoreError();  // Execute reports it when it matters
  // While a node's breaker is open its slots may be failing over: reload the map
  // (from the other nodes) every kDownMapRefresh, so that the promoted replica is
  // used as soon as the cluster names it.
  if (open_nodes_.load(std::memory_order_relaxed) > 0 &&
      std::chrono::steady_clock::now() - client.refreshed_at() > kDownMapRefresh) {
    client.RefreshMap(nodes_down()).IgnoreError();
  }
  std::vector<std::string> node(reqs.size());
  std::unordered_map<std::string, bool> admit;
  for (size_t i = 0; i < reqs.size(); ++i) node[i] = client.NodeOfSlot(KeySlot(reqs[i].argv[reqs[i].key_arg]));
  {
    MutexLock lock(&mu_);
    for (const std::string& n : node) {
      if (!n.empty() && !admit.count(n)) admit[n] = AdmitNode(n);
    }
    // An open node past its cooldown that the map no longer names as a master has
    // lost its slots (failed over): forget it.
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      const bool gone = it->second.open && !it->second.probing && !admit.count(it->first) &&
                        std::chrono::steady_clock::now() >= it->second.open_until && client.has_map() &&
                        !client.OwnsSlots(it->first);
      if (gone) --open_nodes_;
      it = gone ? nodes_.erase(it) : std::next(it);
    }
  }
  std::vector<size_t> sent;
  std::vector<ClusterRequest> batch;
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (!node[i].empty() && !admit[node[i]]) {
      reqs[i].status = Unavailable("redis " + node[i] + ": down (circuit breaker open)");
      ++stats_.node_rejected;
      continue;
    }
    sent.push_back(i);
    batch.push_back(std::move(reqs[i]));
  }
  if (batch.empty()) return std::nullopt;
  client.Execute(batch);
  std::unordered_map<std::string, bool> answered;
  for (size_t k = 0; k < sent.size(); ++k) {
    const ClusterRequest& r = batch[k];
    const bool timeout = r.status.ToString().find("timeout") != std::string::npos;
    bool& a = answered[node[sent[k]]];
    a = a || r.status.ok() || (r.status.code() == StatusCode::kIOError && !timeout);
  }
  for (const auto& [n, a] : answered) {
    if (!n.empty()) NoteNode(n, a);
  }
  const bool any = CountErrors(batch);
  for (size_t k = 0; k < sent.size(); ++k) reqs[sent[k]] = std::move(batch[k]);
  return any;
}

bool RemoteTier::CountErrors(std::span<const ClusterRequest> reqs) {
  bool answered = false;
  for (const ClusterRequest& r : reqs) {
    if (r.status.ok()) {
      answered = true;
    } else if (r.status.ToString().find("timeout") != std::string::npos) {
      ++stats_.errors_timeout;
    } else if (r.status.code() == StatusCode::kUnavailable) {
      ++stats_.errors_unavailable;
    } else {
      ++stats_.errors_redis;
      answered = true;  // the cluster answered, with an error
    }
  }
  return answered;
}

void RemoteTier::RunFetch(ClusterClient& client, FetchJob& job) {
  std::vector<std::string> out(job.keys.size());
  Status status;
  if (!Admit()) {
    ++stats_.rejected;
    status = Unavailable("remote tier is down (circuit breaker open)");
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<ClusterRequest> reqs(job.keys.size());
    for (size_t i = 0; i < reqs.size(); ++i) reqs[i].argv = {"GET", RedisKey(job.keys[i])};
    const ClusterClientStats before = client.stats();
    const std::optional<bool> answered = Send(client, reqs);
    stats_.moved += client.stats().moved - before.moved;
    stats_.ask += client.stats().ask - before.ask;
    ++stats_.get_batches;
    stats_.gets += reqs.size();
    if (answered) NoteResult(*answered);
    if (answered == false) status = reqs[0].status;
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (!reqs[i].status.ok() || reqs[i].nil) {
        ++stats_.misses;
        continue;
      }
      const size_t fetched = reqs[i].value.size();
      Status st = VerifyRemoteValue(job.keys[i], reqs[i].value, job.block_bytes);
      if (st.ok()) {
        const auto i0 = std::chrono::steady_clock::now();
        st = InflateRemoteValue(&reqs[i].value, job.block_bytes);
        stats_.inflate_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - i0).count();
      }
      if (!st.ok()) {
        ++stats_.errors_corrupt;
        ++stats_.misses;
        LOG(WARNING) << "remote tier: " + RedisKey(job.keys[i]) + " dropped: " + st.ToString();
        continue;
      }
      ++stats_.hits;
      stats_.get_bytes += fetched;
      out[i] = std::move(reqs[i].value);
    }
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t b = 0;
    while (b + 1 < RemoteStats::kBuckets && took > RemoteStats::kFetchLatencyBounds[b]) ++b;
    ++stats_.fetch_latency[b];
    stats_.fetch_latency_sum_us += static_cast<uint64_t>(took * 1e6);
  }
  MutexLock lock(&job.mu);
  job.out = std::move(out);
  job.status = status;
  job.done = true;
  job.cv.NotifyAll();
}

void RemoteTier::RunWrites(ClusterClient& client, std::vector<WriteItem>& items) {
  if (!Admit()) {
    stats_.writes_dropped += items.size();
    return;
  }
  std::vector<ClusterRequest> reqs(items.size());
  uint64_t bytes = 0, raw = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < items.size(); ++i) {
    reqs[i].argv = {"SET", RedisKey(items[i].key),
                    EncodeRemoteValue(items[i].key, items[i].block, options_.codec, items[i].elem_bytes)};
    bytes += reqs[i].argv[2].size();
    raw += items[i].block.size();
    items[i].block = {};
    if (items[i].ttl_s) reqs[i].argv.insert(reqs[i].argv.end(), {"EX", std::to_string(items[i].ttl_s)});
  }
  stats_.encode_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  const std::optional<bool> answered = Send(client, reqs);
  ++stats_.put_batches;
  for (const ClusterRequest& r : reqs) stats_.puts += r.status.ok();
  stats_.put_bytes += bytes;
  stats_.put_raw_bytes += raw;
  if (answered) NoteResult(*answered);
}

void RemoteTier::Probe(ClusterClient& client) {
  if (!Admit()) return;
  const uint64_t tls_errors = client.stats().tls_errors;
  const Status st = client.RefreshMap();
  stats_.errors_tls += client.stats().tls_errors - tls_errors;
  if (!st.ok()) ++stats_.errors_unavailable;
  NoteResult(st.ok());
}

void RemoteTier::WorkerLoop(size_t index) {
  ClusterClient client(options_.cluster);
  for (;;) {
    std::shared_ptr<FetchJob> fetch;
    std::vector<WriteItem> writes;
    bool probe = false;
    {
      MutexLock lock(&mu_);
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      while (!stop_ && fetches_.empty() && writes_.empty() && cv_.WaitUntil(&mu_, until)) {
      }
      if (!stop_ && fetches_.empty() && !writes_.empty() && writes_.size() < options_.write_batch) {
        const auto linger = std::chrono::steady_clock::now() + options_.write_linger;
        while (!stop_ && fetches_.empty() && writes_.size() < options_.write_batch && cv_.WaitUntil(&mu_, linger)) {
        }
      }
      if (stop_) return;
      if (!fetches_.empty()) {
        fetch = std::move(fetches_.front());
        fetches_.pop_front();
      } else if (!writes_.empty()) {
        while (!writes_.empty() && writes.size() < options_.write_batch) {
          writes.push_back(std::move(writes_.front()));
          writes_.pop_front();
        }
      } else {
        probe = index == 0 && state() == BreakerState::kOpen && std::chrono::steady_clock::now() >= open_until_;
      }
    }
    if (fetch) RunFetch(client, *fetch);
    if (!writes.empty()) RunWrites(client, writes);
    if (probe) Probe(client);
  }
}

}  // namespace tierkv::storage::remote
