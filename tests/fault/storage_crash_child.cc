// Child of the crash test: opens the write-through store over a directory and puts,
// rewrites, reads and drops blocks until it is killed. Before each put it reports
// the intent through the pipe, after it the outcome (durable or not); likewise for
// drops. Reads verify every byte: a corrupt block served ends the child with exit
// status 3 (the parent fails the round).
//
//   tierkv_storage_crash_child DIR ACK_FD SEED VERSION_BASE
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/fault/storage_crash_util.h"

namespace tierkv::storage::crash {
namespace {

int g_ack_fd = -1;

void Send(const Msg& m) {
  for (;;) {
    const ssize_t n = write(g_ack_fd, &m, sizeof m);
    if (n == static_cast<ssize_t>(sizeof m)) return;
    if (n < 0 && errno == EINTR) continue;
    std::fprintf(stderr, "crash child: pipe write failed\n");
    std::_Exit(4);
  }
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "crash child: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

// Thread `t` of `n` owns the sequences s with s % n == t, so the messages of one key
// are in order.
void Worker(BlockStore* store, int t, int n, uint64_t seed, std::atomic<uint64_t>* next_version) {
  std::mt19937_64 rng(seed * 31 + t);
  std::vector<std::byte> block(Model().BlockBytes()), out(Model().BlockBytes());
  std::vector<uint32_t> mine;
  for (uint32_t s = 1; s <= kSeqs; ++s) {
    if (static_cast<int>(s % n) == t) mine.push_back(s);
  }
  for (;;) {
    const uint32_t seq = mine[rng() % mine.size()];
    const uint32_t layer = rng() % kLayers;
    const uint32_t index = rng() % kIndices;
    const uint32_t dice = rng() % 100;
    if (dice < 2) {
      Send({kDropIntent, 0, 0, seq, 0});
      Status st = store->DropSequence(seq);
      if (!st.ok() && st.code() != StatusCode::kNotFound) Fail("DropSequence: " + st.ToString());
      Send({kDropDone, 0, 0, seq, 0});
    } else if (dice < 20) {
      Status st = store->Get(seq, layer, index, out);
      if (st.ok() && !CheckBlock(seq, layer, index, out)) Fail("Get served a corrupt block");
      if (!st.ok() && st.code() != StatusCode::kNotFound) Fail("Get: " + st.ToString());
    } else {
      const uint64_t v = next_version->fetch_add(1);
      FillBlock(seq, layer, index, v, block);
      const Msg intent{kPutIntent, static_cast<uint8_t>(layer), static_cast<uint16_t>(index), seq, v};
      Send(intent);
      bool durable = false;
      Status st = store->Put(seq, layer, index, block, 0, nullptr, &durable);
      if (!st.ok() && st.code() != StatusCode::kBusy) Fail("Put: " + st.ToString());
      Msg done = intent;
      done.type = st.ok() && durable ? kPutDurable : kPutVolatile;
      Send(done);
    }
  }
}

}  // namespace
}  // namespace tierkv::storage::crash

int main(int argc, char** argv) {
  using namespace tierkv::storage::crash;
  using tierkv::storage::BlockStore;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DIR ACK_FD SEED VERSION_BASE\n", argv[0]);
    return 2;
  }
  g_ack_fd = std::atoi(argv[2]);
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  std::atomic<uint64_t> next_version{std::strtoull(argv[4], nullptr, 10)};
  auto store = Store::Open(argv[1]);
  if (!store.ok()) {
    std::fprintf(stderr, "crash child: open: %s\n", store.status().ToString().c_str());
    return 5;
  }
  BlockStore* s = (*store)->store.get();
  if (s->stats().stale_records.load() != 0 || s->stats().corrupt_blocks.load() != 0) {
    Fail("recovery dropped records of a write-through store");
  }
  std::thread other([&] { Worker(s, 1, 2, seed, &next_version); });
  Worker(s, 0, 2, seed, &next_version);  // never returns: the parent kills us
}
