#include "tierkv/channel.h"

#include <unistd.h>

#include <cstring>

namespace tierkv {

Status CompletionStatus(const dp::RingCompletion& c, const char* op) {
  if (c.status == 0) return OkStatus();
  const auto code = c.status <= static_cast<uint8_t>(StatusCode::kInternal) ? static_cast<StatusCode>(c.status)
                                                                            : StatusCode::kInternal;
  return Status(code, std::string(op) + ": " + dp::DetailName(static_cast<dp::Detail>(c.detail)));
}

Result<std::unique_ptr<DataChannel>> DataChannel::Map(int fd, uint64_t total_bytes, const Arenas& arenas) {
  // Take ownership of every descriptor first, so none leaks on an early return.
  Result<ShmRegion> host = arenas.host_fd >= 0 ? ShmRegion::Map(arenas.host_fd, arenas.host_bytes, false)
                                               : Result<ShmRegion>(ShmRegion());
  Result<ShmRegion> gpu = arenas.gpu_fd >= 0 ? ShmRegion::Map(arenas.gpu_fd, arenas.gpu_bytes, false)
                                             : Result<ShmRegion>(ShmRegion());
  if (total_bytes < dp::kHeaderBytes) {
    ::close(fd);
    return InvalidArgument("channel smaller than its header");
  }
  ASSIGN_OR_RETURN(ShmRegion region, ShmRegion::Map(fd, total_bytes, /*writable=*/true));
  if (!host.ok()) return host.status().WithContext("map the host arena");
  if (!gpu.ok()) return gpu.status().WithContext("map the emulated GPU arena");
  dp::ChannelHeader h;
  std::memcpy(&h, region.data(), sizeof h);
  const dp::ChannelHeader expect = dp::Layout(h.request_capacity, h.completion_capacity, h.staging_bytes);
  if (h.magic != dp::kChannelMagic || h.version != dp::kVersion ||
      std::memcmp(&h, &expect, sizeof h) != 0 || h.total_bytes != total_bytes) {
    return Corruption("channel header does not match the protocol");
  }
  std::unique_ptr<DataChannel> ch(new DataChannel(std::move(region), h));
  ch->host_ = std::move(host).value();
  ch->gpu_ = std::move(gpu).value();
  ch->block_bytes_ = arenas.block_bytes;
  ASSIGN_OR_RETURN(ch->requests_, SpscRing<dp::RingRequest>::Attach(ch->region_.data() + h.request_offset,
                                                                    h.request_capacity));
  ASSIGN_OR_RETURN(ch->completions_, SpscRing<dp::RingCompletion>::Attach(
                                         ch->region_.data() + h.completion_offset, h.completion_capacity));
  return ch;
}

Status DataChannel::Submit(dp::RingRequest req) {
  req.version = dp::kVersion;
  if (req.tag == 0) req.tag = next_tag_++;
  bool corrupt = false;
  if (!requests_.TryPush(req, &corrupt)) {
    return corrupt ? Corruption("request ring indices are inconsistent") : Busy("request ring is full");
  }
  return OkStatus();
}

Result<dp::RingCompletion> DataChannel::WaitCompletion(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  dp::RingCompletion c;
  for (;;) {
    bool corrupt = false;
    if (completions_.TryPop(&c, &corrupt)) return c;
    if (corrupt) return Corruption("completion ring indices are inconsistent");
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Busy("no completion from tierkvd in time (is the daemon alive?)");
    completions_.WaitNotEmpty(spin_, std::chrono::duration_cast<std::chrono::microseconds>(
                                         std::min<std::chrono::nanoseconds>(deadline - now, std::chrono::milliseconds(100))));
  }
}

Result<dp::RingCompletion> DataChannel::Call(const dp::RingRequest& req) {
  RETURN_IF_ERROR(Submit(req));
  ASSIGN_OR_RETURN(dp::RingCompletion c, WaitCompletion());
  RETURN_IF_ERROR(CompletionStatus(c, "request"));
  return c;
}

Status DataChannel::Noop() {
  dp::RingRequest req{};
  req.op = dp::Op::kNoop;
  return Call(req).status();
}

}  // namespace tierkv
