// NamespaceGate: lets delete-namespace cut a namespace's channels off cleanly.
//
// Every channel of a namespace reaches its NamespaceOps through a GatedOps holding
// the namespace's gate. Close() waits for the ops in flight to finish, then makes
// every later op of those channels fail with kNotFound / Detail::kNamespaceDeleted
// (the client sees "the channel's namespace was deleted") without touching the
// runtime again, so that the runtime can be destroyed while the channels live on
// until their clients close them.
#pragma once

#include <memory>
#include "common/mutex.h"
#include "daemon/channel.h"

namespace tierkv::daemon {

class NamespaceGate {
 public:
  // Waits for the ops in flight; afterwards no op of a gated channel runs.
  void Close() {
    WriterLock lock(&mu_);
    closed_ = true;
  }
  bool closed() const {
    ReaderLock lock(&mu_);
    return closed_;
  }

 private:
  friend class GatedOps;
  mutable SharedMutex mu_;
  bool closed_ GUARDED_BY(mu_) = false;
};

class GatedOps final : public OpHandler {
 public:
  GatedOps(std::shared_ptr<NamespaceGate> gate, std::unique_ptr<OpHandler> inner)
      : gate_(std::move(gate)), inner_(std::move(inner)) {}
  dp::RingCompletion Handle(const dp::RingRequest& req, std::span<uint8_t> staging) override {
    ReaderLock lock(&gate_->mu_);
    if (gate_->closed_) return ErrorCompletion(req.tag, StatusCode::kNotFound, dp::Detail::kNamespaceDeleted);
    return inner_->Handle(req, staging);
  }
  // A closed namespace's leases went with its store: nothing to release.
  void OnClose() override {
    ReaderLock lock(&gate_->mu_);
    if (!gate_->closed_) inner_->OnClose();
  }

 private:
  const std::shared_ptr<NamespaceGate> gate_;
  const std::unique_ptr<OpHandler> inner_;
};

}  // namespace tierkv::daemon
