// The file system of the daemon's data folder fills up under write-through puts
// (issue 16, item 2: "the D tier's filesystem full"). The data folder (manifest and D
// slabs) is a small tmpfs mounted for the test (root only; skipped otherwise). While
// it is full, a put is either acknowledged durable — and then it is on D — or fails
// with an error: never a silent loss. The daemon keeps serving the blocks it holds,
// puts become durable again once space is freed, and after a kill -9 every block
// acknowledged durable reads back byte for byte.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

const ModelSpec kModel{2, 2, 1, 64, 16, DType::kF32};  // 8 KiB blocks

// A tmpfs of `bytes` at `path` for the life of the object; ok() false where the
// process may not mount (not root, or a container without CAP_SYS_ADMIN).
class TmpfsMount {
 public:
  TmpfsMount(std::string path, uint64_t bytes) : path_(std::move(path)) {
    const std::string opts = "size=" + std::to_string(bytes) + ",mode=0700";
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// Writes 64 KiB chunks to `path` until the file system refuses one; returns the
// bytes written.
uint64_t FillUp(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::vector<char> chunk(64 << 10, 'x');
  uint64_t total = 0;
  while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size() && std::fflush(f) == 0) total += chunk.size();
  std::fclose(f);
  return total;
}

std::vector<std::byte> Payload(uint64_t seq, uint32_t block) {
  std::vector<std::byte> b(kModel.BlockBytes());
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>((seq * 131 + block * 7 + i) & 0xff);
  return b;
}

struct Outcome {
  uint32_t durable = 0, not_durable = 0, failed = 0;
  std::string first_error;
};

// One put per block of `seq`, [0, blocks); the durable ones go into *acked.
Outcome PutBlocks(DataChannel& ch, uint64_t seq, uint32_t blocks, std::map<std::pair<uint64_t, uint32_t>, bool>* acked) {
  Outcome o;
  for (uint32_t b = 0; b < blocks; ++b) {
    bool durable = false;
    const Status st = ch.Put(seq, 0, b, Payload(seq, b), 0, &durable);
    if (!st.ok()) {
      ++o.failed;
      if (o.first_error.empty()) o.first_error = st.ToString();
    } else if (durable) {
      ++o.durable;
      (*acked)[{seq, b}] = true;
    } else {
      ++o.not_durable;
    }
  }
  return o;
}

// Every acknowledged block, read back through a fresh client.
uint32_t CountWrong(const std::string& socket, const std::map<std::pair<uint64_t, uint32_t>, bool>& acked,
                    std::string* first) {
  auto client = Client::Connect(socket);
  if (!client.ok() || !(*client)->Attach("full").ok()) return static_cast<uint32_t>(acked.size());
  auto ch = (*client)->OpenChannel("full", {.staging_bytes = 1 << 20});
  if (!ch.ok()) return static_cast<uint32_t>(acked.size());
  uint32_t wrong = 0;
  std::vector<std::byte> out(kModel.BlockBytes());
  for (const auto& [key, _] : acked) {
    const Status st = (*ch)->Get(key.first, 0, key.second, out);
    if (!st.ok() || out != Payload(key.first, key.second)) {
      if (wrong++ == 0) *first = "seq " + std::to_string(key.first) + " block " + std::to_string(key.second) + ": " +
                                 (st.ok() ? std::string("wrong bytes") : st.ToString());
    }
  }
  return wrong;
}

TEST(DiskFullTest, WriteThroughPutsNeverAcknowledgeWhatTheFullFileSystemDidNotTake) {
  testing::TempDir dir("disk-full");
  const std::string data = dir.Sub("data");
  ASSERT_EQ(::mkdir(data.c_str(), 0700), 0);
  TmpfsMount fs(data, 48ull << 20);
  if (!fs.ok()) GTEST_SKIP() << "cannot mount a tmpfs here (" << fs.error() << "): the test needs root";
  DaemonProcess daemon(testing::DaemonBinary(TIERKVD_PATH), dir.path(), "log_level = \"warning\"\n",
                       "[storage]\ngpu_bytes = 1048576\nhost_bytes = 2097152\ndisk_bytes = 16777216\n");
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  auto admin = Client::Connect(daemon.socket_path());
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  NamespaceSpec spec;
  spec.name = "full";
  spec.model = kModel;
  ASSERT_TRUE((*admin)->CreateNamespace(spec).ok());
  ASSERT_TRUE((*admin)->SetPolicy("full", R"({"write": "write-through"})").ok());
  ASSERT_TRUE((*admin)->Attach("full").ok());
  auto ch = (*admin)->OpenChannel("full", {.staging_bytes = 1 << 20});
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  std::map<std::pair<uint64_t, uint32_t>, bool> acked;

  const Outcome before = PutBlocks(**ch, 1, 300, &acked);
  EXPECT_EQ(before.durable, 300u) << before.first_error;

  const uint64_t filled = FillUp(data + "/filler");
  std::printf("filled the data folder's file system with %llu MiB more\n",
              static_cast<unsigned long long>(filled >> 20));
  // A new sequence's blocks need new D slots and manifest records; the old one's
  // blocks are rewritten (new versions): both while nothing is left.
  const Outcome full = PutBlocks(**ch, 2, 300, &acked);
  const Outcome rewrite = PutBlocks(**ch, 1, 100, &acked);
  std::printf("while full: %u durable, %u not durable, %u failed (%s); rewrites %u/%u/%u\n", full.durable,
              full.not_durable, full.failed, full.first_error.c_str(), rewrite.durable, rewrite.not_durable,
              rewrite.failed);
  EXPECT_GT(full.failed + full.not_durable + rewrite.failed + rewrite.not_durable, 0u)
      << "nothing was refused: the file system never filled up for the daemon";
  ASSERT_TRUE(daemon.Running()) << daemon.Log();
  std::string first;
  EXPECT_EQ(CountWrong(daemon.socket_path(), acked, &first), 0u) << "while full: " << first;

  ASSERT_EQ(::unlink((data + "/filler").c_str()), 0);
  Outcome after;
  for (int attempt = 0; attempt < 50; ++attempt) {  // up to ~5 s for the store to recover
    after = PutBlocks(**ch, 3 + attempt, 20, &acked);
    if (after.durable == 20) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(after.durable, 20u) << "puts did not become durable again after space was freed: "
                                << after.first_error << "\n"
                                << daemon.Log();

  ch->reset();
  admin->reset();
  daemon.Kill();
  ASSERT_TRUE(daemon.Start()) << daemon.Log();
  EXPECT_EQ(CountWrong(daemon.socket_path(), acked, &first), 0u) << "after kill -9: " << first;
  std::printf("%zu blocks acknowledged durable, every one read back after kill -9\n", acked.size());
}

}  // namespace
}  // namespace tierkv
