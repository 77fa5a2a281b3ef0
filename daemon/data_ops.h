// NamespaceOps: the data-plane operations of one channel over its namespace's
// runtime (common/data_plane.h lists the ops). Every field of a descriptor is
// checked here before use; a bad one gets an error completion naming the field.
// Leases taken by Retrieve belong to the channel and are released when it closes.
#pragma once

#include <memory>
#include <set>

namespace prometheus {
class Histogram;
}

#include "daemon/channel.h"
#include "daemon/gpu_exchange.h"
#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {

// A prefix block's key in the store: the client's content hash mixed with the uid
// that published it, so one member's puts never answer another member's lookups
// unless the namespace lists the publisher in prefix_publishers. Never 0.
uint64_t ScopedPrefixHash(uint64_t content_hash, uint32_t publisher);

class NamespaceOps : public OpHandler {
 public:
  // Latency histograms (select, acquire, total) may be null.
  struct Latency {
    prometheus::Histogram *select = nullptr, *acquire = nullptr, *total = nullptr;
  };
  // `gpu`: the channel's GPU exchange (dp::kFlagGpu retrieves), or null.
  // `caller`: the channel's peer; its uid owns the sequences it opens and scopes
  // the prefix blocks it puts (docs/decisions/0007-owners-and-prefix-scope.md).
  NamespaceOps(NamespaceRuntime* runtime, Latency latency, std::unique_ptr<GpuExchange> gpu = nullptr,
               Caller caller = {})
      : rt_(runtime), stats_(&runtime->retrieval_stats()), latency_(latency), gpu_(std::move(gpu)), caller_(caller) {}
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t> staging) override;
  void OnClose() override;

 private:
  dp::RingCompletion Put(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Get(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Append(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Retrieve(const dp::RingRequest& req, std::span<uint8_t> staging);
  // Selects, pins and places the blocks for `query`; fills *table. Retrieve's core,
  // the same for the host and the GPU path.
  dp::RingCompletion SelectAndPin(const dp::RingRequest& req, std::span<const float> query,
                                  std::vector<dp::BlockTableEntry>* table);
  // Summarizes the blocks of (seq, layer) that the store holds but retrieval has not
  // seen (a sequence recovered at start: summaries live in daemon memory only).
  Status CatchUpSummaries(uint64_t seq, uint32_t layer);
  dp::RingCompletion Release(const dp::RingRequest& req);
  dp::RingCompletion CloseSequence(const dp::RingRequest& req);
  dp::RingCompletion Prefix(const dp::RingRequest& req, std::span<uint8_t> staging);
  // The content hashes of `tokens`' full blocks as the store keys them for one
  // publisher uid (ScopedPrefixHash of each).
  std::vector<uint64_t> ScopedHashes(std::span<const uint64_t> hashes, uint32_t publisher) const;

  NamespaceRuntime* const rt_;
  RetrievalStats* const stats_;
  const Latency latency_;
  const std::unique_ptr<GpuExchange> gpu_;
  const Caller caller_;
  std::set<uint64_t> leases_;  // held by this channel
  std::vector<std::byte> scratch_;
  std::vector<dp::BlockTableEntry> table_;  // Retrieve's block table, reused across steps
};

}  // namespace tierkv::daemon
