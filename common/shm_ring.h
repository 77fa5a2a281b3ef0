// SpscRing: a single-producer / single-consumer ring of fixed-size, trivially
// copyable entries in memory shared by two processes (DESIGN §2, data plane).
//
// Layout at the ring's base (64-byte aligned): RingControl, then `capacity`
// entries of sizeof(T). RingBytes<T>(capacity) gives the total.
//
// Memory ordering (the whole contract between the two processes):
//   producer: write entry[head % cap]; head.store(head + 1, release)
//   consumer: head.load(acquire); read entry[tail % cap]; tail.store(tail + 1, release)
//   producer: tail.load(acquire) before reusing a slot.
// head and tail only grow (64-bit, never wrap in practice). Each side writes only
// its own index; the other side's index is untrusted input: a value that would put
// more than `capacity` entries in flight, or move backwards, is reported as
// kCorruption (the daemon then disconnects that client).
//
// Wake-ups (eventcount on a futex, not process-private): a consumer with nothing to
// read spins for a while, then publishes `waiting = 1`, re-checks, and sleeps on
// `doorbell`. A producer, after publishing an entry, issues a seq_cst fence and, if
// `waiting` is set, bumps `doorbell` and wakes it. The fence pair guarantees that
// either the consumer sees the entry or the producer sees `waiting`.
// The spin yields the core between polls (decision 0026): with more runnable
// threads than cores (clients, channel workers and everything else on the machine),
// a pure busy-poll holds the core that the peer needs to produce the entry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/status.h"

namespace tierkv {

inline constexpr uint32_t kRingMagic = 0x54524E47;  // "TRNG"
inline constexpr uint32_t kRingVersion = 1;

struct RingControl {
  uint32_t magic;
  uint32_t version;
  uint32_t capacity;     // entries, a power of two
  uint32_t entry_bytes;  // sizeof(T)
  alignas(64) std::atomic<uint64_t> head;  // written by the producer only
  alignas(64) std::atomic<uint64_t> tail;  // written by the consumer only
  alignas(64) std::atomic<uint32_t> waiting;   // consumer is (about to be) asleep
  std::atomic<uint32_t> doorbell;              // futex word
};
static_assert(sizeof(RingControl) == 256);
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free);

namespace internal {
// Blocks while *word == expected, at most `timeout`. Spurious returns are allowed.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::microseconds timeout);
void FutexWakeAll(std::atomic<uint32_t>* word);
// sched_yield: hands the core to another runnable thread, if any (returns at once if none).
void YieldCpu();
}  // namespace internal

template <typename T>
constexpr size_t RingBytes(uint32_t capacity) {
  return sizeof(RingControl) + size_t{capacity} * sizeof(T);
}

template <typename T>
class SpscRing {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  SpscRing() = default;

  // Formats a ring at `base` (RingBytes<T>(capacity) bytes, 64-byte aligned).
  static Result<SpscRing> Create(void* base, uint32_t capacity) {
    if (capacity == 0 || (capacity & (capacity - 1)) != 0) return InvalidArgument("ring capacity must be a power of two");
    auto* c = new (base) RingControl{};
    c->magic = kRingMagic;
    c->version = kRingVersion;
    c->capacity = capacity;
    c->entry_bytes = sizeof(T);
    return SpscRing(c);
  }
  // Attaches to a ring formatted by the peer, checking its header against
  // `expected_capacity` (the size the region was mapped for).
  static Result<SpscRing> Attach(void* base, uint32_t expected_capacity) {
    auto* c = static_cast<RingControl*>(base);
    if (c->magic != kRingMagic || c->version != kRingVersion) return Corruption("not a tierkv ring (magic/version)");
    if (c->capacity != expected_capacity || c->entry_bytes != sizeof(T)) {
      return Corruption("ring geometry does not match (capacity " + std::to_string(c->capacity) + ", entry " +
                        std::to_string(c->entry_bytes) + " bytes)");
    }
    return SpscRing(c);
  }

  // Producer. False when full. kCorruption-worthy peer state also returns false and
  // sets *corrupt.
  bool TryPush(const T& v, bool* corrupt = nullptr) {
    const uint64_t h = c_->head.load(std::memory_order_relaxed);
    const uint64_t t = c_->tail.load(std::memory_order_acquire);
    if (h - t > capacity_ || t > h) {
      if (corrupt) *corrupt = true;
      return false;
    }
    if (h - t == capacity_) return false;
    std::memcpy(&entries()[h & mask_], &v, sizeof(T));
    c_->head.store(h + 1, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (c_->waiting.load(std::memory_order_relaxed) != 0) {
      c_->doorbell.fetch_add(1, std::memory_order_relaxed);
      internal::FutexWakeAll(&c_->doorbell);
    }
    return true;
  }

  // Consumer. False when empty (or the peer's head is impossible: *corrupt = true).
  // The entry is copied out before use, so the peer cannot change it under us.
  bool TryPop(T* out, bool* corrupt = nullptr) {
    const uint64_t t = c_->tail.load(std::memory_order_relaxed);
    const uint64_t h = c_->head.load(std::memory_order_acquire);
    if (h == t) return false;
    if (h - t > capacity_ || h < t) {
      if (corrupt) *corrupt = true;
      return false;
    }
    std::memcpy(out, &entries()[t & mask_], sizeof(T));
    c_->tail.store(t + 1, std::memory_order_release);
    return true;
  }

  bool Empty() const {
    return c_->head.load(std::memory_order_acquire) == c_->tail.load(std::memory_order_relaxed);
  }

  // Consumer: returns when an entry may be available, after spinning `spin` and then
  // sleeping at most `timeout`. May return early (spuriously); callers loop.
  // `stop` (optional): a flag whose owner sets it and then calls Kick(); the wait
  // returns once it is set. It is checked after the doorbell is read, so a Kick()
  // that comes while this consumer spins is not lost: before, a worker stopped
  // during its spin read the already-bumped doorbell and slept the whole timeout
  // (a 100 ms stall of the thread stopping it, seen in DosTest under load).
  void WaitNotEmpty(std::chrono::nanoseconds spin, std::chrono::microseconds timeout,
                    const std::atomic<bool>* stop = nullptr) {
    auto stopped = [stop] { return stop != nullptr && stop->load(std::memory_order_acquire); };
    const auto spin_until = std::chrono::steady_clock::now() + spin;
    do {
      if (!Empty() || stopped()) return;
      for (int i = 0; i < 64; ++i) __builtin_ia32_pause();
      internal::YieldCpu();  // the peer that produces the entry may be waiting for this core
    } while (std::chrono::steady_clock::now() < spin_until);
    // Acquire: a doorbell bumped by Kick() shows the stop flag set before it.
    const uint32_t bell = c_->doorbell.load(std::memory_order_acquire);
    c_->waiting.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (Empty() && !stopped()) internal::FutexWait(&c_->doorbell, bell, timeout);
    c_->waiting.store(0, std::memory_order_relaxed);
  }

  // Wakes a sleeping consumer without publishing anything (used to stop workers:
  // set the consumer's stop flag first).
  void Kick() {
    c_->doorbell.fetch_add(1, std::memory_order_release);
    internal::FutexWakeAll(&c_->doorbell);
  }

  uint32_t capacity() const { return capacity_; }
  bool valid() const { return c_ != nullptr; }

 private:
  explicit SpscRing(RingControl* c) : c_(c), capacity_(c->capacity), mask_(c->capacity - 1) {}
  T* entries() const { return reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(c_) + sizeof(RingControl)); }

  RingControl* c_ = nullptr;
  uint32_t capacity_ = 0;  // copied at attach: the peer cannot change it later
  uint32_t mask_ = 0;
};

}  // namespace tierkv
