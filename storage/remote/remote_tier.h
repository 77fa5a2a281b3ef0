// RemoteTier: the remote tier R on a Redis Cluster (DESIGN §10). A cache shared by
// the daemons of several machines: full prefix blocks are written in the
// background after their put, and read when a local prefix lookup misses. A block
// may vanish at any time (TTL, Redis eviction); every value is verified before use.
//
// Threads: `workers` threads, each with its own ClusterClient (one connection per
// node). Callers never do network I/O: Write() queues (bounded; a full queue drops
// the block, counted) and Fetch() hands its batch to a worker and waits for it at
// most fetch_timeout. Fetches go before queued writes.
//
// Circuit breakers, two levels:
//  - per node: `breaker_failures` batches in a row in which a master answered none
//    of its requests open that node's breaker; while open, the requests whose slot
//    the map gives to that node fail at once (a miss for a fetch, a dropped write)
//    and the other nodes' requests go on; after breaker_cooldown the next batch's
//    requests for it are let through as the probe (closed again when it answers,
//    else open for another cooldown). One dead or hung master thus costs its own
//    slots only, without a timeout per batch.
//  - the whole cluster: `breaker_failures` failed batches in a row (no request got
//    any answer) open it; while open, Fetch fails at once (kUnavailable) and writes
//    are dropped; after breaker_cooldown one worker probes the cluster (CLUSTER
//    SLOTS) and closes it when the probe succeeds (else it stays open for another
//    cooldown).
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "storage/remote/cluster_client.h"
#include "storage/remote/recent_fetches.h"
#include "storage/remote/remote_value.h"

namespace tierkv::storage::remote {

struct RemoteOptions {
  ClusterOptions cluster;
  uint32_t workers = 2;                            // threads (= connections per node). Default: 2
  uint32_t write_queue_blocks = 4096;              // blocks waiting to be written. Default: 4096
  uint32_t write_batch = 64;                       // blocks per pipelined write. Default: 64
  // How long a worker woken by a first queued block waits for a whole batch before
  // writing what is there (puts wake it once per batch, not once per block). Default: 5 ms
  std::chrono::milliseconds write_linger{5};
  std::chrono::milliseconds fetch_timeout{1000};   // longest wait of a Fetch. Default: 1 s
  uint32_t breaker_failures = 3;                   // failed batches in a row that open it. Default: 3
  std::chrono::milliseconds breaker_cooldown{2000};  // open time before a probe. Default: 2 s
  RemoteCodec codec = RemoteCodec::kNone;          // how values are written. Default: raw
  // Verified fetched values kept for a following Fetch of the same keys (a
  // LookupPrefix's blocks, then its LoadPrefix; recent_fetches.h). 0: off.
  size_t reuse_bytes = size_t{64} << 20;              // Default: 64 MiB
  std::chrono::milliseconds reuse_age{10000};         // Default: 10 s
};

enum class BreakerState : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
std::string_view BreakerStateName(BreakerState s);  // "up", "down", "probing"

// Relaxed counters (exported as tierkv_remote_*).
struct RemoteStats {
  std::atomic<uint64_t> gets{0}, get_batches{0}, hits{0}, misses{0}, get_bytes{0};
  std::atomic<uint64_t> puts{0}, put_batches{0}, put_bytes{0};
  std::atomic<uint64_t> errors_timeout{0};      // a node did not answer in time
  std::atomic<uint64_t> errors_unavailable{0};  // no connection / cluster down
  std::atomic<uint64_t> errors_redis{0};        // an error reply, redirects exhausted
  std::atomic<uint64_t> errors_corrupt{0};      // a value failed verification (dropped)
  std::atomic<uint64_t> writes_dropped{0};      // write queue full or breaker open
  std::atomic<uint64_t> rejected{0};            // fetches refused at once (breaker open)
  std::atomic<uint64_t> breaker_opens{0};
  std::atomic<uint64_t> node_breaker_opens{0};  // a node's breaker opened
  std::atomic<uint64_t> node_rejected{0};       // requests failed at once: their node's breaker was open
  std::atomic<uint64_t> moved{0}, ask{0};
  std::atomic<uint64_t> errors_tls{0};          // TLS handshake / certificate refused (also in unavailable)
  std::atomic<uint64_t> reused{0};              // values a Fetch took from RecentFetches (no GET)
  // Compression (RemoteOptions::codec): raw block bytes written, and the time spent
  // encoding (header, checksum, compression) and inflating fetched values.
  std::atomic<uint64_t> put_raw_bytes{0}, encode_ns{0}, inflate_ns{0};
  // Fetch batch latency: counts per bucket (upper bounds kFetchLatencyBounds, then
  // +Inf) and the sum in microseconds.
  static constexpr double kFetchLatencyBounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                   0.05,   0.1,   0.2,   0.5,   1.0,  2.0};
  static constexpr size_t kBuckets = std::size(kFetchLatencyBounds) + 1;
  std::atomic<uint64_t> fetch_latency[kBuckets] = {};
  std::atomic<uint64_t> fetch_latency_sum_us{0};
};

class RemoteTier {
 public:
  // Starts the workers; does not wait for the cluster (it may be down: the breaker
  // says so). kInvalidArgument without seeds or workers.
  static Result<std::unique_ptr<RemoteTier>> Start(RemoteOptions options);
  ~RemoteTier();  // stops the workers; queued writes are dropped

  // Queues one block for a background SET with a TTL. Never blocks. elem_bytes: the
  // size of the block's elements (the model's dtype; compression splits byte planes
  // by it). False when it was dropped (queue full or R down; counted).
  bool Write(const RemoteBlockKey& key, std::span<const std::byte> block, uint32_t ttl_s, uint32_t elem_bytes = 2);
  bool Write(const RemoteBlockKey& key, std::vector<std::byte>&& block, uint32_t ttl_s, uint32_t elem_bytes = 2);

  // Fetches keys in one pipelined batch. (*out)[i] is key i's verified value (the
  // block is RemotePayload((*out)[i]), block_bytes long) when it was found, else
  // empty (absent, or dropped by verification). A key fetched by an earlier call in
  // the last reuse_age is taken from RecentFetches instead (counted in reused, not
  // in gets; once); the others are sent, and with `keep` a copy of what they find is
  // kept there for the next fetch (a LookupPrefix keeps, for the LoadPrefix that
  // follows it; a load or a Get does not: its blocks are stored locally). kUnavailable
  // when the breaker is open or the batch failed or timed out (the reused values are in *out).
  Status Fetch(std::span<const RemoteBlockKey> keys, size_t block_bytes, std::vector<std::string>* out,
               bool keep = true);

  // Counts n blocks a caller did not offer to Write (after one was refused).
  void CountDropped(uint64_t n) { stats_.writes_dropped += n; }

  BreakerState state() const { return state_.load(std::memory_order_relaxed); }
  // "host:port" of the nodes whose breaker is open now.
  std::vector<std::string> nodes_down() const;
  const RemoteStats& stats() const { return stats_; }
  size_t queued_writes() const;

 private:
  explicit RemoteTier(RemoteOptions options)
      : options_(std::move(options)), recent_(options_.reuse_bytes, options_.reuse_age) {}
  struct FetchJob;
  struct WriteItem {
    RemoteBlockKey key;
    std::vector<std::byte> block;  // raw; encoded (header, checksum) by the worker
    uint32_t ttl_s = 0;
    uint32_t elem_bytes = 2;
  };
  struct NodeBreaker {
    uint32_t failures = 0;  // batches in a row without an answer
    bool open = false;
    bool probing = false;   // open, and a batch's requests are the probe
    std::chrono::steady_clock::time_point open_until;
  };
  // Fetch without RecentFetches: one job for a worker.
  Status FetchFromCluster(std::span<const RemoteBlockKey> keys, size_t block_bytes, std::vector<std::string>* out);
  void WorkerLoop(size_t index);
  void RunFetch(ClusterClient& client, FetchJob& job);
  void RunWrites(ClusterClient& client, std::vector<WriteItem>& items);
  void Probe(ClusterClient& client);
  // Whether a batch may go to the cluster now (closed, or this one is the probe).
  bool Admit();
  void NoteResult(bool ok);
  // Counts the failed requests by kind; true when at least one got an answer.
  bool CountErrors(std::span<const ClusterRequest> reqs);
  // Runs reqs through client, but fails at once (kUnavailable) those whose node's
  // breaker is open; notes each node's outcome and counts errors. Returns whether
  // some request got an answer, or nullopt when none was sent.
  std::optional<bool> Send(ClusterClient& client, std::vector<ClusterRequest>& reqs);
  std::optional<bool> SendCounted(ClusterClient& client, std::vector<ClusterRequest>& reqs);  // Send less TLS counting
  bool AdmitNode(const std::string& node) REQUIRES(mu_);
  void NoteNode(const std::string& node, bool answered);
  const RemoteOptions options_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<std::shared_ptr<FetchJob>> fetches_ GUARDED_BY(mu_);
  std::deque<WriteItem> writes_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  uint32_t failures_ GUARDED_BY(mu_) = 0;  // consecutive
  std::chrono::steady_clock::time_point open_until_ GUARDED_BY(mu_);
  std::unordered_map<std::string, NodeBreaker> nodes_ GUARDED_BY(mu_);  // by "host:port"
  std::atomic<BreakerState> state_{BreakerState::kClosed};
  std::atomic<uint32_t> open_nodes_{0};  // nodes_ entries that are open
  RemoteStats stats_;
  RecentFetches recent_;
  std::vector<std::thread> workers_;
};

}  // namespace tierkv::storage::remote
