#include "daemon/channel.h"

#include "common/log.h"

namespace tierkv::daemon {

dp::RingCompletion ErrorCompletion(uint64_t tag, StatusCode code, dp::Detail detail) {
  dp::RingCompletion c{};
  c.tag = tag;
  c.status = static_cast<uint8_t>(code);
  c.detail = static_cast<uint8_t>(detail);
  return c;
}

dp::RingCompletion ProcessRequest(const dp::RingRequest& req, std::span<uint8_t> staging, OpHandler* handler,
                                  ChannelStats* stats) {
  auto reject = [&](dp::Detail d) {
    stats->rejected.fetch_add(1, std::memory_order_relaxed);
    return ErrorCompletion(req.tag, StatusCode::kInvalidArgument, d);
  };
  if (req.version != dp::kVersion) return reject(dp::Detail::kVersion);
  if (static_cast<uint16_t>(req.op) > static_cast<uint16_t>(dp::kLastOp)) return reject(dp::Detail::kOp);
  // A GPU retrieve names a range of the channel's exchange buffer: its handler checks it.
  const bool in_exchange = (req.flags & dp::kFlagGpu) != 0;
  if (!in_exchange && !dp::InStaging(req.offset, req.length, staging.size())) return reject(dp::Detail::kRange);
  if (req.op == dp::Op::kNoop) {
    dp::RingCompletion c{};
    c.tag = req.tag;
    return c;
  }
  dp::RingCompletion c = handler->Handle(req, staging);
  c.tag = req.tag;
  if (c.status == static_cast<uint8_t>(StatusCode::kInvalidArgument)) {
    stats->rejected.fetch_add(1, std::memory_order_relaxed);
  }
  return c;
}

Result<std::unique_ptr<Channel>> Channel::Open(const std::string& name, const ChannelOptions& o,
                                               std::unique_ptr<OpHandler> handler, ChannelStats* stats,
                                               std::function<void(const Status&)> on_broken) {
  dp::ChannelHeader layout = dp::Layout(o.request_capacity, o.completion_capacity, o.staging_bytes);
  ASSIGN_OR_RETURN(ShmRegion region, ShmRegion::Create(name, layout.total_bytes));
  std::memcpy(region.data(), &layout, sizeof layout);
  std::unique_ptr<Channel> ch(
      new Channel(std::move(region), layout, std::move(handler), stats, o.spin, std::move(on_broken)));
  if (o.pin_for_gpu) {
    Result<kernels::HostRegistration> pinned =
        kernels::HostRegistration::Register(ch->region_.data(), ch->region_.size());
    if (pinned.ok()) {
      ch->pinned_ = std::move(pinned).value();
    } else {
      LOG(WARNING) << name << ": not pinned for the GPU, its copies to and from G go through a bounce buffer: "
                   << pinned.status().ToString();
    }
  }
  ASSIGN_OR_RETURN(ch->requests_,
                   SpscRing<dp::RingRequest>::Create(ch->region_.data() + layout.request_offset, o.request_capacity));
  ASSIGN_OR_RETURN(ch->completions_, SpscRing<dp::RingCompletion>::Create(
                                         ch->region_.data() + layout.completion_offset, o.completion_capacity));
  ch->worker_ = std::thread([c = ch.get()] { c->Run(); });
  return ch;
}

Channel::Channel(ShmRegion region, dp::ChannelHeader layout, std::unique_ptr<OpHandler> handler, ChannelStats* stats,
                 std::chrono::nanoseconds spin, std::function<void(const Status&)> on_broken)
    : region_(std::move(region)),
      layout_(layout),
      handler_(std::move(handler)),
      stats_(stats),
      spin_(spin),
      on_broken_(std::move(on_broken)) {}

Channel::~Channel() { Stop(); }

void Channel::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  if (requests_.valid()) requests_.Kick();
  if (worker_.joinable()) worker_.join();
  handler_->OnClose();
}

void Channel::Run() {
  dp::RingRequest req;
  while (!stop_.load(std::memory_order_relaxed)) {
    bool corrupt = false;
    if (!requests_.TryPop(&req, &corrupt)) {
      if (corrupt) {
        if (on_broken_) on_broken_(Corruption("request ring indices are inconsistent"));
        return;
      }
      requests_.WaitNotEmpty(spin_, std::chrono::milliseconds(100), &stop_);
      continue;
    }
    stats_->requests.fetch_add(1, std::memory_order_relaxed);
    std::span<uint8_t> staging(region_.data() + layout_.staging_offset, layout_.staging_bytes);
    if (!Complete(ProcessRequest(req, staging, handler_.get(), stats_))) {
      if (on_broken_ && !stop_.load()) on_broken_(ResourceExhausted("client does not drain its completion ring"));
      return;
    }
  }
}

bool Channel::Complete(const dp::RingCompletion& c) {
  // The client sized its completion ring; it may be slow to drain it but not forever.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool corrupt = false;
  while (!completions_.TryPush(c, &corrupt)) {
    if (corrupt || stop_.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

}  // namespace tierkv::daemon
