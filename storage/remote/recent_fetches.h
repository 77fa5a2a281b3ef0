// RecentFetches: the verified values of R's recent fetches, kept a short time so
// that a LoadPrefix right after the LookupPrefix that fetched them does not fetch
// them again (docs/decisions/0014-remote-tier.md, item 18). Bounded in bytes (the
// oldest go first) and in age; a value is verified before it is put here, and is
// content-addressed (the key names namespace fingerprint, block hash and layer), so
// reuse serves the same bytes a second fetch would. A value serves one later call
// only (Take removes it): lookup + load cost one fetch, a loop of lookups still asks
// R every other time (it never stands in for R for long).
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "common/mutex.h"

namespace tierkv::storage::remote {

class RecentFetches {
 public:
  // capacity_bytes 0: off (Put keeps nothing).
  RecentFetches(size_t capacity_bytes, std::chrono::milliseconds max_age)
      : capacity_(capacity_bytes), max_age_(max_age) {}

  // Keeps a copy of value under key (replaces an older one). A value larger than
  // the capacity is not kept.
  void Put(const std::string& key, const std::string& value);
  // Moves the value of key into *out and forgets it, when it is there and young enough.
  bool Take(const std::string& key, std::string* out);
  size_t bytes() const;
  size_t size() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string value;
    Clock::time_point at;
    uint64_t seq = 0;
  };
  // Drops the oldest entries while over capacity (plus `incoming`) or too old.
  void Trim(size_t incoming, Clock::time_point now) REQUIRES(mu_);

  const size_t capacity_;
  const std::chrono::milliseconds max_age_;
  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::deque<std::pair<std::string, uint64_t>> order_ GUARDED_BY(mu_);  // oldest first (key, seq)
  size_t bytes_ GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ GUARDED_BY(mu_) = 0;
};

}  // namespace tierkv::storage::remote
