#include "daemon/channel_budget.h"

#include <string>

namespace tierkv::daemon {

Status ChannelBudget::Reserve(uint32_t uid, bool admin, uint64_t bytes) {
  MutexLock lock(&mu_);
  if (total_.channels >= limits_.max_channels) {
    return ResourceExhausted("the daemon serves " + std::to_string(total_.channels) +
                             " channels already (limits.max_channels)");
  }
  if (total_.bytes + bytes > limits_.max_channel_bytes) {
    return ResourceExhausted("a channel of " + std::to_string(bytes) + " bytes would take the channels' memory over " +
                             std::to_string(limits_.max_channel_bytes) + " bytes (limits.max_channel_bytes)");
  }
  Use& mine = uids_[uid];
  if (!admin) {
    if (mine.channels >= limits_.max_channels_per_uid) {
      return ResourceExhausted("uid " + std::to_string(uid) + " holds " + std::to_string(mine.channels) +
                               " channels already (limits.max_channels_per_uid)");
    }
    if (mine.bytes + bytes > limits_.max_channel_bytes_per_uid) {
      return ResourceExhausted("a channel of " + std::to_string(bytes) + " bytes would take uid " +
                               std::to_string(uid) + "'s channels over " +
                               std::to_string(limits_.max_channel_bytes_per_uid) +
                               " bytes (limits.max_channel_bytes_per_uid)");
    }
  }
  ++mine.channels;
  mine.bytes += bytes;
  ++total_.channels;
  total_.bytes += bytes;
  return OkStatus();
}

void ChannelBudget::Release(uint32_t uid, size_t channels, uint64_t bytes) {
  if (channels == 0 && bytes == 0) return;
  MutexLock lock(&mu_);
  total_.channels -= channels;
  total_.bytes -= bytes;
  auto it = uids_.find(uid);
  if (it == uids_.end()) return;
  it->second.channels -= channels;
  it->second.bytes -= bytes;
  if (it->second.channels == 0) uids_.erase(it);
}

size_t ChannelBudget::channels() const {
  MutexLock lock(&mu_);
  return total_.channels;
}

uint64_t ChannelBudget::bytes() const {
  MutexLock lock(&mu_);
  return total_.bytes;
}

}  // namespace tierkv::daemon
