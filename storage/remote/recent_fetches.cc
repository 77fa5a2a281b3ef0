#include "storage/remote/recent_fetches.h"

namespace tierkv::storage::remote {

void RecentFetches::Trim(size_t incoming, Clock::time_point now) {
  while (!order_.empty()) {
    auto it = entries_.find(order_.front().first);
    if (it == entries_.end() || it->second.seq != order_.front().second) {  // replaced or gone
      order_.pop_front();
      continue;
    }
    if (bytes_ + incoming <= capacity_ && now - it->second.at < max_age_) break;
    bytes_ -= it->second.value.size();
    entries_.erase(it);
    order_.pop_front();
  }
}

void RecentFetches::Put(const std::string& key, const std::string& value) {
  if (value.size() > capacity_) return;
  const Clock::time_point now = Clock::now();
  MutexLock lock(&mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    bytes_ -= it->second.value.size();
    entries_.erase(it);
  }
  Trim(value.size(), now);
  const uint64_t seq = ++next_seq_;
  entries_[key] = Entry{value, now, seq};
  order_.emplace_back(key, seq);
  bytes_ += value.size();
}

bool RecentFetches::Take(const std::string& key, std::string* out) {
  if (capacity_ == 0) return false;
  MutexLock lock(&mu_);
  Trim(0, Clock::now());
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  bytes_ -= it->second.value.size();
  *out = std::move(it->second.value);
  entries_.erase(it);  // its order_ item is skipped by Trim (seq gone)
  return true;
}

size_t RecentFetches::bytes() const {
  MutexLock lock(&mu_);
  return bytes_;
}

size_t RecentFetches::size() const {
  MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace tierkv::storage::remote
