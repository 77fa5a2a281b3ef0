// Crash test (DESIGN §7: "kill -9 at any moment loses no block whose put was
// acknowledged as durable; a block whose checksum fails is never served").
//
// Each round spawns tierkv_storage_crash_child over the same directory (real
// RocksDB manifest, real O_DIRECT slab files, write-through policy); the child puts,
// rewrites, reads and drops blocks from two threads and reports every intent and
// outcome through a pipe. The parent SIGKILLs it at a random moment (during
// recovery too), reopens the store itself and checks every key:
//   - a put acknowledged as durable reads back, byte for byte, unless a later put
//     or drop of that key had started;
//   - whatever is read is exactly one version of that key (never corrupt bytes,
//     never another key's block) and one the child wrote;
//   - recovery drops no manifest record (copy-on-write: a recorded copy is never
//     overwritten) and finds no corrupt block.
// What the parent saw becomes the known state for the next round.
//
// Environment (the soak script, scripts/crash_soak.sh, sets them):
//   TIERKV_CRASH_ROUNDS   rounds (default 50)
//   TIERKV_CRASH_KILL_MS  the kill comes uniformly in [0, this] ms after the spawn (default 400)
//   TIERKV_CRASH_SEED     seed (default: random, printed)
//   TIERKV_CRASH_DIR      where the store lives (default: a scratch directory, removed)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/fault/storage_crash_util.h"
#include "tests/unit/storage_test_util.h"

extern char** environ;

namespace tierkv::storage::crash {
namespace {

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// What may be stored under one key: the last state the parent knows to be durable
// (a version, or absent), plus every state a started-but-unfinished (or
// non-durable) operation may have left.
struct KeyState {
  std::optional<uint64_t> durable;        // nullopt: absent
  std::set<uint64_t> maybe;               // versions possibly written since
  bool maybe_absent = false;              // a drop possibly happened since
};

using Key = std::tuple<uint32_t, uint32_t, uint32_t>;

class CrashModel {
 public:
  void Apply(const Msg& m) {
    switch (m.type) {
      case kPutIntent:
      case kPutVolatile: keys_[{m.seq, m.layer, m.index}].maybe.insert(m.version); break;
      case kPutDurable: {
        KeyState& k = keys_[{m.seq, m.layer, m.index}];
        k = KeyState{m.version, {}, false};
        ++durable_acks_;
        break;
      }
      case kDropIntent:
        for (uint32_t l = 0; l < kLayers; ++l) {
          for (uint32_t i = 0; i < kIndices; ++i) keys_[{m.seq, l, i}].maybe_absent = true;
        }
        break;
      case kDropDone:
        for (uint32_t l = 0; l < kLayers; ++l) {
          for (uint32_t i = 0; i < kIndices; ++i) keys_[{m.seq, l, i}] = KeyState{};
        }
        break;
      default: ADD_FAILURE() << "unknown message type " << int{m.type};
    }
  }

  // Checks every key against the reopened store; what it finds becomes durable.
  void Verify(BlockStore* store, int round) {
    std::vector<std::byte> out(Model().BlockBytes());
    for (uint32_t s = 1; s <= kSeqs; ++s) {
      for (uint32_t l = 0; l < kLayers; ++l) {
        for (uint32_t i = 0; i < kIndices; ++i) {
          KeyState& k = keys_[{s, l, i}];
          Status st = store->Get(s, l, i, out);
          std::optional<uint64_t> found;
          if (st.ok()) {
            found = CheckBlock(s, l, i, out);
            ASSERT_TRUE(found.has_value()) << "round " << round << ": corrupt block served for seq " << s
                                           << " layer " << l << " block " << i;
            const bool allowed = found == k.durable || k.maybe.count(*found);
            ASSERT_TRUE(allowed) << "round " << round << ": seq " << s << " layer " << l << " block " << i
                                 << " holds version " << *found << ", which is neither the durable one nor pending";
          } else {
            ASSERT_EQ(st.code(), StatusCode::kNotFound) << "round " << round << ": " << st.ToString();
            ASSERT_TRUE(!k.durable.has_value() || k.maybe_absent)
                << "round " << round << ": LOST durable version " << *k.durable << " of seq " << s << " layer "
                << l << " block " << i;
          }
          k = KeyState{found, {}, false};
        }
      }
    }
  }

  uint64_t durable_acks() const { return durable_acks_; }

 private:
  std::map<Key, KeyState> keys_;
  uint64_t durable_acks_ = 0;
};

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("TIERKV_CRASH_DIR");
    if (dir != nullptr && *dir != '\0') {
      dir_ = dir;
      std::filesystem::create_directories(dir_);
    } else {
      ASSERT_FALSE(scratch_.path().empty()) << "no scratch directory accepting O_DIRECT";
      dir_ = scratch_.path();
    }
  }

  // Spawns the child with the pipe's write end as fd 3 and stderr into a log file.
  pid_t Spawn(int write_fd, uint64_t seed, uint64_t version_base) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, write_fd, 3);
    const std::string log = dir_ + "/child.log";
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const std::string path = TIERKV_CRASH_CHILD_PATH;
    std::vector<std::string> args = {path, dir_, "3", std::to_string(seed), std::to_string(version_base)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0) << "posix_spawn " << path;
    return rc == 0 ? pid : -1;
  }

  std::string ChildLog() const {
    std::ifstream f(dir_ + "/child.log");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
  }

  // Reads messages until the deadline, then SIGKILLs the child and drains the pipe.
  // Returns the child's wait status.
  int RunUntilKill(pid_t pid, int read_fd, std::chrono::milliseconds after, CrashModel* model, uint64_t* msgs) {
    const auto deadline = std::chrono::steady_clock::now() + after;
    std::string pending;
    auto drain = [&](int timeout_ms) {
      pollfd p{read_fd, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return false;
      char buf[4096];
      const ssize_t n = read(read_fd, buf, sizeof buf);
      if (n <= 0) return false;
      pending.append(buf, static_cast<size_t>(n));
      size_t used = 0;
      for (; used + sizeof(Msg) <= pending.size(); used += sizeof(Msg)) {
        Msg m;
        std::memcpy(&m, pending.data() + used, sizeof m);
        model->Apply(m);
        ++*msgs;
      }
      pending.erase(0, used);
      return true;
    };
    int status = 0;
    bool exited = false;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      drain(static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left.count(), 20))));
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
    }
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    while (drain(0)) {
    }
    EXPECT_TRUE(pending.empty()) << "a torn message in the pipe";
    return status;
  }

  testing::ScratchDir scratch_;
  std::string dir_;
};

TEST_F(CrashTest, DurablePutsSurviveKillNineAtRandomMoments) {
  const uint64_t rounds = EnvU64("TIERKV_CRASH_ROUNDS", 50);
  const uint64_t kill_ms = std::max<uint64_t>(1, EnvU64("TIERKV_CRASH_KILL_MS", 400));
  const uint64_t seed = EnvU64("TIERKV_CRASH_SEED", std::random_device{}());
  std::printf("crash test: %llu rounds, kill within %llu ms, seed %llu (TIERKV_CRASH_SEED to replay), dir %s\n",
              static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(kill_ms),
              static_cast<unsigned long long>(seed), dir_.c_str());
  std::mt19937_64 rng(seed);
  CrashModel model;
  uint64_t msgs = 0, recovered = 0, unfinished = 0, restored = 0;
  {
    auto first = Store::Open(dir_);  // a known (empty or soaked) starting state
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    model.Verify((*first)->store.get(), -1);
  }
  for (uint64_t round = 0; round < rounds; ++round) {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    const pid_t pid = Spawn(fds[1], seed + round, (round + 1) << 32);
    close(fds[1]);
    ASSERT_GT(pid, 0);
    const auto after = std::chrono::milliseconds(rng() % (kill_ms + 1));
    const int status = RunUntilKill(pid, fds[0], after, &model, &msgs);
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": the child ended by itself (status " << status << "):\n" << ChildLog();
    auto reopened = Store::Open(dir_);
    ASSERT_TRUE(reopened.ok()) << "round " << round << ": " << reopened.status().ToString();
    BlockStore* store = (*reopened)->store.get();
    EXPECT_EQ(store->stats().stale_records.load(), 0u) << "round " << round;
    EXPECT_EQ(store->stats().corrupt_blocks.load(), 0u) << "round " << round;
    recovered += store->stats().recovered_blocks.load();
    unfinished += store->stats().unfinished_writes.load();  // a kill inside an overlapped commit
    restored += store->stats().restored_records.load();
    model.Verify(store, static_cast<int>(round));
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::printf("crash test: %llu messages, %llu durable puts checked, %llu blocks recovered over %llu rounds; "
              "%llu copies of a last commit not whole at start, %llu records put back to the previous copy\n",
              static_cast<unsigned long long>(msgs), static_cast<unsigned long long>(model.durable_acks()),
              static_cast<unsigned long long>(recovered), static_cast<unsigned long long>(rounds),
              static_cast<unsigned long long>(unfinished), static_cast<unsigned long long>(restored));
  EXPECT_GT(model.durable_acks(), rounds) << "too few durable puts to mean anything";
}

}  // namespace
}  // namespace tierkv::storage::crash
