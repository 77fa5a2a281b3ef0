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
#include "daemon/namespace_runtime.h"

namespace tierkv::daemon {

class NamespaceOps : public OpHandler {
 public:
  // Latency histograms (select, acquire, total) may be null.
  struct Latency {
    prometheus::Histogram *select = nullptr, *acquire = nullptr, *total = nullptr;
  };
  NamespaceOps(NamespaceRuntime* runtime, Latency latency)
      : rt_(runtime), stats_(&runtime->retrieval_stats()), latency_(latency) {}
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t> staging) override;
  void OnClose() override;

 private:
  dp::RingCompletion Put(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Get(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Retrieve(const dp::RingRequest& req, std::span<uint8_t> staging);
  dp::RingCompletion Release(const dp::RingRequest& req);
  dp::RingCompletion CloseSequence(const dp::RingRequest& req);
  dp::RingCompletion Prefix(const dp::RingRequest& req, std::span<uint8_t> staging);

  NamespaceRuntime* const rt_;
  RetrievalStats* const stats_;
  const Latency latency_;
  std::set<uint64_t> leases_;  // held by this channel
  std::vector<std::byte> scratch_;
};

}  // namespace tierkv::daemon
