#include "io/fault_injection_engine.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

namespace tierkv::io {

void FaultInjector::AddRule(const FaultRule& rule) {
  MutexLock lock(&mu_);
  rules_.push_back({rule});
}

void FaultInjector::ClearRules() {
  MutexLock lock(&mu_);
  rules_.clear();
}

FaultCounts FaultInjector::counts() const {
  MutexLock lock(&mu_);
  return counts_;
}

std::optional<FaultKind> FaultInjector::Decide(IoOp op) {
  MutexLock lock(&mu_);
  ++counts_.requests;
  for (Armed& a : rules_) {
    const FaultRule& r = a.rule;
    const bool matches = r.target == FaultTarget::kAll || (r.target == FaultTarget::kReads && op == IoOp::kRead) ||
                         (r.target == FaultTarget::kWrites && op == IoOp::kWrite) ||
                         (r.target == FaultTarget::kSyncs && op == IoOp::kSync);
    const bool applies = op == IoOp::kRead   ? r.kind != FaultKind::kNoSpace
                         : op == IoOp::kSync ? r.kind == FaultKind::kIoError || r.kind == FaultKind::kNoSpace
                                             : true;
    if (!matches || !applies) continue;
    const uint64_t n = a.seen++;
    if (a.fired >= r.max_faults) continue;
    const bool fire = n == r.at_request || (r.one_in > 0 && rng_() % r.one_in == 0);
    if (!fire) continue;
    ++a.fired;
    switch (r.kind) {
      case FaultKind::kIoError: ++counts_.io_errors; break;
      case FaultKind::kNoSpace: ++counts_.no_space; break;
      case FaultKind::kShortTransfer: ++counts_.short_transfers; break;
      case FaultKind::kFlipByte: ++counts_.flipped_bytes; break;
    }
    return r.kind;
  }
  return std::nullopt;
}

uint64_t FaultInjector::RandomBelow(uint64_t n) {
  MutexLock lock(&mu_);
  return rng_() % n;
}

namespace {

class FaultInjectingEngine final : public IoEngine {
 public:
  FaultInjectingEngine(std::unique_ptr<IoEngine> inner, std::shared_ptr<FaultInjector> injector)
      : inner_(std::move(inner)),
        injector_(std::move(injector)),
        name_("fault(" + std::string(inner_->name()) + ")") {}

  std::string_view name() const override { return name_; }
  uint32_t queue_depth() const override { return inner_->queue_depth(); }
  uint32_t in_flight() const override { return inner_->in_flight() + static_cast<uint32_t>(fabricated_.size()); }
  IoBufferPool* buffers() override { return inner_->buffers(); }
  int32_t RegionIndex(const std::byte* p, size_t n) const override { return inner_->RegionIndex(p, n); }
  Status RegisterFiles(std::span<const int> fds) override { return inner_->RegisterFiles(fds); }

  Status Prepare(const IoRequest& request) override {
    if (in_flight() >= queue_depth()) return InvalidArgument("fault engine: queue full");
    const std::optional<FaultKind> fault = injector_->Decide(request.op);
    if (!fault) return inner_->Prepare(request);
    switch (*fault) {
      case FaultKind::kIoError: return Fabricate(request, -EIO);
      case FaultKind::kNoSpace: return Fabricate(request, -ENOSPC);
      case FaultKind::kShortTransfer: {
        const uint64_t half = request.total_length() / 2 / kIoAlign * kIoAlign;
        if (half == 0) return Fabricate(request, 0);
        IoRequest truncated = request;
        if (half <= request.length) {
          truncated.length = static_cast<uint32_t>(half);
          truncated.buf2 = nullptr;
          truncated.length2 = 0;
          truncated.buf2_index = -1;
        } else {
          truncated.length2 = static_cast<uint32_t>(half - request.length);
        }
        return inner_->Prepare(truncated);
      }
      case FaultKind::kFlipByte:
        if (request.op == IoOp::kWrite) return PrepareFlippedWrite(request);
        RETURN_IF_ERROR(inner_->Prepare(request));
        flip_after_read_[request.user_data] = request;
        return OkStatus();
    }
    return Internal("unknown fault kind");
  }

  Result<uint32_t> Reap(uint32_t min_complete,
                        const std::function<void(const IoCompletion&)>& on_complete) override {
    // Fabricated completions are ready at once; they count toward min_complete.
    std::vector<IoCompletion> ready;
    ready.swap(fabricated_);
    for (const IoCompletion& c : ready) on_complete(c);
    const uint32_t n = static_cast<uint32_t>(ready.size());
    const uint32_t rest = min_complete > n ? min_complete - n : 0;
    if (inner_->in_flight() == 0) return n;
    ASSIGN_OR_RETURN(uint32_t m, inner_->Reap(rest, [&](const IoCompletion& c) {
      write_copies_.erase(c.user_data);
      auto it = flip_after_read_.find(c.user_data);
      if (it != flip_after_read_.end()) {
        if (c.result > 0) Flip(it->second, static_cast<uint64_t>(c.result));
        flip_after_read_.erase(it);
      }
      on_complete(c);
    }));
    return n + m;
  }

 private:
  Status Fabricate(const IoRequest& request, int32_t result) {
    fabricated_.push_back({request.user_data, result});
    return OkStatus();
  }

  // Media corruption on a write: the device stores one inverted byte. The caller's
  // memory (a zero-copy payload segment, e.g. an H slot) must stay intact, so a flip
  // that lands in the second segment is made in a private copy that is written
  // instead (kept until the request completes).
  Status PrepareFlippedWrite(const IoRequest& request) {
    const uint64_t pos = injector_->RandomBelow(request.total_length());
    if (pos < request.length) {  // the engine's own bounce buffer
      request.buf[pos] = ~request.buf[pos];
      return inner_->Prepare(request);
    }
    std::byte* copy = static_cast<std::byte*>(std::aligned_alloc(kIoAlign, request.length2));
    if (copy == nullptr) return ResourceExhausted("fault engine: write copy");
    std::memcpy(copy, request.buf2, request.length2);
    copy[pos - request.length] = ~copy[pos - request.length];
    IoRequest changed = request;
    changed.buf2 = copy;
    changed.buf2_index = -1;  // the copy is not registered memory
    write_copies_[request.user_data].reset(copy);
    return inner_->Prepare(changed);
  }

  // Inverts one byte among the first n bytes of the request's segments.
  void Flip(const IoRequest& r, uint64_t n) {
    const uint64_t pos = injector_->RandomBelow(n);
    std::byte* p = pos < r.length ? r.buf + pos : r.buf2 + (pos - r.length);
    *p = ~*p;
  }

  std::unique_ptr<IoEngine> inner_;
  std::shared_ptr<FaultInjector> injector_;
  const std::string name_;
  std::vector<IoCompletion> fabricated_;
  std::unordered_map<uint64_t, IoRequest> flip_after_read_;  // by user_data
  struct FreeDeleter {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unordered_map<uint64_t, std::unique_ptr<std::byte, FreeDeleter>> write_copies_;  // by user_data
};

}  // namespace

std::unique_ptr<IoEngine> WrapWithFaults(std::unique_ptr<IoEngine> inner, std::shared_ptr<FaultInjector> injector) {
  return std::make_unique<FaultInjectingEngine>(std::move(inner), std::move(injector));
}

}  // namespace tierkv::io
