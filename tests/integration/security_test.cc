// Integration (issue 14, data-integrity half): a namespace member attacks a real
// tierkvd through what the daemon hands it (arena memfds), through other members'
// sequences and through prefix hashes; an admin asks for budgets the machine cannot
// hold. Each attack must fail and change nothing another client reads.
//
// Tests that switch uid (setresuid in a forked child) need root, as in CI; they skip
// with a message otherwise.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "common/checksum.h"
#include "common/wire.h"
#include "storage/manifest.h"
#include "tests/util/daemon_process.h"
#include "tests/util/temp_dir.h"
#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 2, kBlockTokens = 16;
const ModelSpec kModel{kLayers, 4, 2, 16, kBlockTokens, DType::kF32};
const size_t kBlockBytes = kModel.BlockBytes();  // 4 KiB
constexpr uint32_t kMember1 = 65534, kMember2 = 65533;  // nobody, and one more unprivileged uid

std::vector<std::byte> MakeBlock(uint64_t seq, uint32_t layer, uint32_t block, uint8_t salt = 0) {
  std::mt19937 rng(static_cast<uint32_t>(seq * 7919 + layer * 131 + block + salt * 1000003));
  std::vector<std::byte> b(kBlockBytes);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

std::vector<int32_t> Prompt() {
  std::vector<int32_t> t(3 * kBlockTokens + 5);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(i * 37 % 1000);
  return t;
}

// Runs `fn` in a forked child as uid = gid = `id` (no supplementary groups).
// Returns "" when fn returned "" and the child exited 0, else what went wrong.
std::string RunAs(uint32_t id, const std::function<std::string()>& fn) {
  int p[2];
  if (pipe(p) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string msg;
    if (setgroups(0, nullptr) != 0 || setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) {
      msg = std::string("cannot switch to uid ") + std::to_string(id) + ": " + std::strerror(errno);
    } else {
      msg = fn();
    }
    if (!msg.empty()) (void)!write(p[1], msg.data(), msg.size());
    _exit(msg.empty() ? 0 : 1);
  }
  close(p[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return out.empty() ? "child failed" : out;
  return "";
}

// Descriptors of this process whose target names `needle` (e.g. "memfd:tierkv-ns1-H").
std::vector<int> FdsNamed(const std::string& needle) {
  std::vector<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (!ec && target.find(needle) != std::string::npos) out.push_back(std::stoi(e.path().filename().string()));
  }
  return out;
}

// Mappings of this process whose path names `needle`: [start, end).
std::vector<std::pair<uintptr_t, uintptr_t>> MappingsNamed(const std::string& needle) {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(needle) == std::string::npos) continue;
    uintptr_t a = 0, b = 0;
    char dash;
    std::istringstream(line) >> std::hex >> a >> dash >> b;
    out.emplace_back(a, b);
  }
  return out;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Unprivileged children connect too: the socket dir must be searchable and the
    // socket writable by them (the namespace ACL still decides who attaches).
    chmod(dir_.path().c_str(), 0755);
    ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
    admin_ = Connect();
    ASSERT_TRUE(admin_ && admin_->admin());
    ASSERT_TRUE(admin_->CreateNamespace(Spec("ns", {})).ok());
  }

  static NamespaceSpec Spec(const std::string& name, std::vector<uint32_t> publishers) {
    NamespaceSpec spec;
    spec.name = name;
    spec.model = kModel;
    spec.budgets = {8 * 4096, 16 * 4096, 256 * 8192};  // 8 blocks of G, 16 of H, 256 of D
    spec.acl.uids = {0, kMember1, kMember2};
    spec.prefix_publishers = std::move(publishers);
    return spec;
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_.socket_path());
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  std::unique_ptr<DataChannel> Channel(Client& c, const std::string& ns = "ns") {
    EXPECT_TRUE(c.Attach(ns).ok());
    auto ch = c.OpenChannel(ns, {.staging_bytes = 1 << 20});
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    return ch.ok() ? std::move(ch).value() : nullptr;
  }

  bool Root() const { return geteuid() == 0; }

  testing::TempDir dir_{"security"};
  DaemonProcess daemon_{TIERKVD_PATH, dir_.path(), "socket_mode = 0o666"};
  std::unique_ptr<Client> admin_;
};

// Every way to write through an arena descriptor fails; returns what succeeded.
std::string AttackArenaFd(int fd) {
  std::string wins;
  auto won = [&](const std::string& what) { wins += what + "; "; };
  struct stat st {};
  if (fstat(fd, &st) != 0) return "fstat failed";
  const size_t size = static_cast<size_t>(st.st_size);
  const std::vector<char> junk(4096, 'X');
  if (pwrite(fd, junk.data(), junk.size(), 0) >= 0) won("pwrite on the received fd");
  if (void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0); p != MAP_FAILED) {
    won("mmap PROT_WRITE MAP_SHARED of the received fd");
    munmap(p, size);
  }
  if (ftruncate(fd, 0) == 0) won("ftruncate of the received fd");
  const int rw = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC);
  if (rw >= 0) {  // root may reopen; the seals must still hold
    if (pwrite(rw, junk.data(), junk.size(), 0) >= 0) won("pwrite through /proc/self/fd O_RDWR");
    if (void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0); p != MAP_FAILED) {
      won("mmap PROT_WRITE MAP_SHARED of the reopened fd");
      munmap(p, size);
    }
    if (ftruncate(rw, 0) == 0) won("ftruncate of the reopened fd");
    if (ftruncate(rw, static_cast<off_t>(size) * 2) == 0) won("grow the reopened fd");
    if (fallocate(rw, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) == 0) {
      won("fallocate punch hole");
    }
    if (fallocate(rw, FALLOC_FL_ZERO_RANGE, 0, static_cast<off_t>(size)) == 0) won("fallocate zero range");
    if (fallocate(rw, 0, 0, static_cast<off_t>(size) + 4096) == 0) won("fallocate past the end");
    if (fcntl(rw, F_ADD_SEALS, F_SEAL_WRITE) == 0) won("add a seal");
    // A private writable mapping is allowed: it must change nothing anyone else sees.
    if (void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, rw, 0); p != MAP_FAILED) {
      std::memset(p, 'P', size);
      munmap(p, size);
    }
    close(rw);
  } else if (geteuid() == 0) {
    won("(root could not even reopen read-write: unexpected)");
  }
  return wins;
}

// The existing read-only mappings of the arenas cannot be made writable.
std::string AttackArenaMappings(const std::string& needle) {
  std::string wins;
  for (auto [a, b] : MappingsNamed(needle)) {
    void* p = reinterpret_cast<void*>(a);
    if (mprotect(p, b - a, PROT_READ | PROT_WRITE) == 0) {
      wins += "mprotect PROT_WRITE of a mapping; ";
      std::memset(p, 'M', b - a);
    }
    if (madvise(p, b - a, MADV_REMOVE) == 0) wins += "madvise MADV_REMOVE; ";
  }
  return wins;
}

TEST_F(SecurityTest, ArenasAreReadOnlyThroughEveryDescriptorAClientHolds) {
  auto victim = Connect();
  auto vch = Channel(*victim);
  constexpr uint32_t kBlocks = 24;  // more than G (8): some on G, some on H
  for (uint32_t b = 0; b < kBlocks; ++b) ASSERT_TRUE(vch->Put(1, 0, b, MakeBlock(1, 0, b)).ok());
  auto attacker = Connect();
  auto ach = Channel(*attacker);

  for (const std::string tier : {"H", "G"}) {
    const std::string needle = "memfd:tierkv-ns1-" + tier;
    const std::vector<int> fds = FdsNamed(needle);
    ASSERT_GE(fds.size(), 2u) << "each channel holds the " << tier << " arena";
    for (int fd : fds) {
      struct stat st {};
      ASSERT_EQ(fstat(fd, &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0400u) << tier;
      const int seals = fcntl(fd, F_GET_SEALS);
      const int want = F_SEAL_FUTURE_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
      EXPECT_EQ(seals & want, want) << tier << " seals " << seals;
      EXPECT_EQ(AttackArenaFd(fd), "") << tier << " fd " << fd;
    }
    EXPECT_EQ(AttackArenaMappings(needle), "") << tier;
  }
  // The channel's own ring: writable by its client, reopenable by nobody else.
  const std::vector<int> rings = FdsNamed("memfd:tierkv-channel-");
  ASSERT_GE(rings.size(), 2u);
  for (int fd : rings) {
    struct stat st {};
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_NE(ftruncate(fd, 0), 0) << "a client must not shrink its ring under the daemon";
  }
  if (Root()) {  // an unprivileged member cannot even reopen the arena read-write
    const std::string child = RunAs(kMember1, [&]() -> std::string {
      auto c = Client::Connect(daemon_.socket_path());
      if (!c.ok()) return "connect: " + c.status().ToString();
      if (!(*c)->Attach("ns").ok()) return "attach failed";
      auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 20});
      if (!ch.ok()) return "open_channel: " + ch.status().ToString();
      std::string wins;
      for (const std::string tier : {"H", "G"}) {
        const std::vector<int> fds = FdsNamed("memfd:tierkv-ns1-" + tier);
        if (fds.empty()) return "no " + tier + " arena fd";
        for (int fd : fds) {
          const int rw = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR);
          if (rw >= 0) wins += "reopen " + tier + " O_RDWR; ";
          wins += AttackArenaFd(fd);
        }
        wins += AttackArenaMappings("memfd:tierkv-ns1-" + tier);
      }
      return wins;
    });
    EXPECT_EQ(child, "");
  }
  // Every byte another client reads is the victim's, through Get and through the
  // arenas (Retrieve's block table).
  auto reader = Connect();
  auto rch = Channel(*reader);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t b = 0; b < kBlocks; ++b) {
    ASSERT_TRUE(rch->Get(1, 0, b, out).ok());
    EXPECT_TRUE(out == MakeBlock(1, 0, b)) << "block " << b;
  }
  std::vector<float> query(4 * 16, 1.f);
  auto r = rch->Retrieve(1, 0, query, kBlocks);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_FALSE(r->blocks.empty());
  for (const auto& ref : r->blocks) {
    auto bytes = rch->BlockBytes(ref);
    ASSERT_EQ(bytes.size(), kBlockBytes);
    EXPECT_EQ(std::memcmp(bytes.data(), MakeBlock(1, 0, ref.block).data(), kBlockBytes), 0) << ref.block;
  }
  ASSERT_TRUE(rch->Release(r->lease).ok());
}

TEST_F(SecurityTest, ErrorsSayWhatHappened) {
  auto c = Connect();
  auto ch = Channel(*c);
  for (uint32_t b = 0; b < 4; ++b) ASSERT_TRUE(ch->Put(2, 0, b, MakeBlock(2, 0, b)).ok());
  std::vector<float> query(4 * 16, 1.f);
  auto r = ch->Retrieve(2, 0, query, 4);
  ASSERT_TRUE(r.ok());
  const Status busy = ch->Put(2, 0, 0, MakeBlock(9, 9, 9));
  EXPECT_EQ(busy.code(), StatusCode::kBusy);
  EXPECT_NE(busy.message().find("pinned"), std::string::npos) << busy.ToString();
  EXPECT_EQ(busy.message().find("out of range"), std::string::npos) << busy.ToString();
  ASSERT_TRUE(ch->Release(r->lease).ok());
  // A D copy that fails its checksum says Corruption, not "internal error".
  ASSERT_TRUE(internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"write", "write-through"}}}}).ok());
  ASSERT_TRUE(ch->Put(3, 0, 0, MakeBlock(3, 0, 0)).ok());
  ch.reset();
  c.reset();
  admin_.reset();
  ASSERT_EQ(daemon_.Stop(), 0);
  constexpr size_t kStride = 4096 + 4096;  // slot header + 4 KiB payload (storage/slot_format.h)
  size_t flipped = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.Sub("data/disk/ns1"))) {
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    const size_t size = std::filesystem::file_size(e.path());
    for (size_t slot = 4096; slot + kStride <= size; slot += kStride) {
      char magic[4] = {};
      f.seekg(static_cast<std::streamoff>(slot));
      f.read(magic, 4);
      if (std::memcmp(magic, "TKVS", 4) != 0) continue;  // never written
      char byte = 0;
      f.seekg(static_cast<std::streamoff>(slot + 4096 + 100));
      f.read(&byte, 1);
      byte = static_cast<char>(byte ^ 0x5a);
      f.seekp(static_cast<std::streamoff>(slot + 4096 + 100));
      f.write(&byte, 1);
      ++flipped;
    }
  }
  ASSERT_GT(flipped, 0u);
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  c = Connect();
  ch = Channel(*c);
  std::vector<std::byte> out(kBlockBytes);
  const Status corrupt = ch->Get(3, 0, 0, out);
  EXPECT_EQ(corrupt.code(), StatusCode::kCorruption) << corrupt.ToString();
  EXPECT_NE(corrupt.message().find("checksum"), std::string::npos) << corrupt.ToString();
}

TEST_F(SecurityTest, SequencesBelongToTheUidThatOpenedThem) {
  if (!Root()) GTEST_SKIP() << "switching uid needs root (CI runs the tests as root)";
  // Write-through: the blocks (and so their sequences' owners) outlive a restart.
  ASSERT_TRUE(internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"write", "write-through"}}}}).ok());
  auto owner = Connect();  // root, an admin
  auto och = Channel(*owner);
  ASSERT_TRUE(och->Put(10, 0, 0, MakeBlock(10, 0, 0)).ok());
  // Member 1 opens its own sequence 20, and cannot touch the admin's sequence 10.
  std::string child = RunAs(kMember1, [&]() -> std::string {
    auto c = Client::Connect(daemon_.socket_path());
    if (!c.ok()) return "connect: " + c.status().ToString();
    if ((*c)->admin()) return "uid 65534 must not be an admin";
    if (!(*c)->Attach("ns").ok()) return "attach failed";
    auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 20});
    if (!ch.ok()) return "open_channel: " + ch.status().ToString();
    std::string bad;
    Status st = (*ch)->Put(20, 0, 0, MakeBlock(20, 0, 0));
    if (!st.ok()) bad += "own put: " + st.ToString() + "; ";
    st = (*ch)->Put(10, 0, 0, MakeBlock(66, 0, 0));
    if (st.code() != StatusCode::kPermissionDenied || st.message().find("another uid") == std::string::npos) {
      bad += "put over another's block: " + st.ToString() + "; ";
    }
    st = (*ch)->Put(10, 1, 5, MakeBlock(66, 1, 5));
    if (st.code() != StatusCode::kPermissionDenied) bad += "put a new block into another's sequence: " + st.ToString() + "; ";
    st = (*ch)->CloseSequence(10);
    if (st.code() != StatusCode::kPermissionDenied) bad += "close another's sequence: " + st.ToString() + "; ";
    auto loaded = (*ch)->LoadPrefix(10, Prompt());  // no prefix cached: nothing to load, nothing claimed
    if (!loaded.ok() || *loaded != 0) bad += "load prefix: " + loaded.status().ToString() + "; ";
    std::vector<std::byte> out(kBlockBytes);  // members still read each other's sequences
    if (!(*ch)->Get(10, 0, 0, out).ok() || out != MakeBlock(10, 0, 0)) bad += "read another's block; ";
    return bad;
  });
  EXPECT_EQ(child, "");
  // Member 2 can neither close nor overwrite member 1's sequence.
  child = RunAs(kMember2, [&]() -> std::string {
    auto c = Client::Connect(daemon_.socket_path());
    if (!c.ok() || !(*c)->Attach("ns").ok()) return "connect/attach failed";
    auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 20});
    if (!ch.ok()) return "open_channel: " + ch.status().ToString();
    std::string bad;
    if (Status st = (*ch)->CloseSequence(20); st.code() != StatusCode::kPermissionDenied) bad += st.ToString() + "; ";
    if (Status st = (*ch)->Put(20, 0, 0, MakeBlock(77, 0, 0)); st.code() != StatusCode::kPermissionDenied) {
      bad += st.ToString() + "; ";
    }
    return bad;
  });
  EXPECT_EQ(child, "");
  std::vector<std::byte> out(kBlockBytes);
  ASSERT_TRUE(och->Get(10, 0, 0, out).ok());
  EXPECT_TRUE(out == MakeBlock(10, 0, 0));
  ASSERT_TRUE(och->Get(20, 0, 0, out).ok());
  EXPECT_TRUE(out == MakeBlock(20, 0, 0));
  // Owners survive a restart.
  owner.reset();
  och.reset();
  admin_.reset();
  ASSERT_EQ(daemon_.Stop(), 0);
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  child = RunAs(kMember2, [&]() -> std::string {
    auto c = Client::Connect(daemon_.socket_path());
    if (!c.ok() || !(*c)->Attach("ns").ok()) return "connect/attach failed";
    auto ch = (*c)->OpenChannel("ns", {.staging_bytes = 1 << 20});
    if (!ch.ok()) return "open_channel: " + ch.status().ToString();
    Status st = (*ch)->CloseSequence(20);
    return st.code() == StatusCode::kPermissionDenied ? "" : "after restart: " + st.ToString();
  });
  EXPECT_EQ(child, "");
  // An admin may close anyone's sequence.
  admin_ = Connect();
  auto ach = Channel(*admin_);
  EXPECT_TRUE(ach->CloseSequence(20).ok());
  EXPECT_EQ(ach->Get(20, 0, 0, out).code(), StatusCode::kNotFound);
}

TEST_F(SecurityTest, PlantedPrefixBlocksAreNotServedToOtherMembers) {
  if (!Root()) GTEST_SKIP() << "switching uid needs root (CI runs the tests as root)";
  ASSERT_TRUE(admin_->CreateNamespace(Spec("pub", {kMember2})).ok());
  const std::vector<int32_t> tokens = Prompt();
  const std::vector<uint64_t> hashes = PrefixBlockHashes(tokens, kBlockTokens);
  ASSERT_EQ(hashes.size(), 3u);
  // The attack: member 1 knows the prompt and puts garbage under its prefix hashes,
  // in both namespaces.
  auto plant = [&](uint32_t uid, const std::string& ns, uint8_t salt) {
    return RunAs(uid, [&, ns, salt]() -> std::string {
      auto c = Client::Connect(daemon_.socket_path());
      if (!c.ok() || !(*c)->Attach(ns).ok()) return "connect/attach failed";
      auto ch = (*c)->OpenChannel(ns, {.staging_bytes = 1 << 20});
      if (!ch.ok()) return "open_channel: " + ch.status().ToString();
      for (uint32_t layer = 0; layer < kLayers; ++layer) {
        for (uint32_t b = 0; b < 3; ++b) {
          Status st = (*ch)->Put(100 + salt, layer, b, MakeBlock(0, layer, b, salt), hashes[b]);
          if (!st.ok()) return "put: " + st.ToString();
        }
      }
      auto own = (*ch)->LookupPrefix(tokens);  // its own puts it does see
      if (!own.ok() || *own != 3 * kBlockTokens) return "own lookup: " + own.status().ToString();
      return "";
    });
  };
  ASSERT_EQ(plant(kMember1, "ns", 1), "");
  ASSERT_EQ(plant(kMember1, "pub", 1), "");
  auto c = Connect();
  for (const std::string ns : {"ns", "pub"}) {
    auto ch = Channel(*c, ns);
    auto cached = ch->LookupPrefix(tokens);
    ASSERT_TRUE(cached.ok());
    EXPECT_EQ(*cached, 0u) << ns << ": the attacker's blocks must not answer another member";
    auto loaded = ch->LoadPrefix(7, tokens);
    ASSERT_TRUE(loaded.ok());
    EXPECT_EQ(*loaded, 0u) << ns;
  }
  // A trusted publisher's prefix (member 2 in "pub") is served to every member, and
  // the attacker's planted blocks stay out of it.
  ASSERT_EQ(plant(kMember2, "pub", 2), "");
  auto ch = Channel(*c, "pub");
  auto cached = ch->LookupPrefix(tokens);
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(*cached, 3 * kBlockTokens);
  auto loaded = ch->LoadPrefix(8, tokens);
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(*loaded, 3 * kBlockTokens);
  std::vector<std::byte> out(kBlockBytes);
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t b = 0; b < 3; ++b) {
      ASSERT_TRUE(ch->Get(8, layer, b, out).ok());
      EXPECT_TRUE(out == MakeBlock(0, layer, b, 2)) << "layer " << layer << " block " << b << ": not the publisher's";
    }
  }
  // And in "ns" (no publishers) the member's own prefix is still shared with itself.
  auto own = Channel(*c, "ns");
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    for (uint32_t b = 0; b < 3; ++b) ASSERT_TRUE(own->Put(30, layer, b, MakeBlock(0, layer, b, 3), hashes[b]).ok());
  }
  EXPECT_EQ(*own->LookupPrefix(tokens), 3 * kBlockTokens);
}

TEST_F(SecurityTest, ImpossibleBudgetsAreRefusedQuicklyAndNothingIsStored) {
  NamespaceSpec huge = Spec("huge", {});
  huge.budgets = {uint64_t{1} << 50, uint64_t{1} << 50, 0};
  const auto t0 = std::chrono::steady_clock::now();
  auto created = admin_->CreateNamespace(huge);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kResourceExhausted) << created.status().ToString();
  EXPECT_NE(created.status().message().find("namespace_limits."), std::string::npos) << created.status().ToString();
  EXPECT_LT(took, std::chrono::seconds(2));
  // Past physical memory but under the slot ceiling (4 KiB blocks: machines up to
  // 128 GiB): refused by the memory check.
  const uint64_t phys = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGE_SIZE));
  if (phys / 4096 <= (uint64_t{1} << 25)) {
    NamespaceSpec big = Spec("big", {});
    big.budgets = {4096, phys, 0};
    auto big_created = admin_->CreateNamespace(big);
    EXPECT_EQ(big_created.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(big_created.status().message().find("max_memory_percent"), std::string::npos)
        << big_created.status().ToString();
  }
  NamespaceSpec disk = Spec("disk", {});
  disk.budgets.disk_bytes = uint64_t{1} << 50;
  auto disk_created = admin_->CreateNamespace(disk);
  EXPECT_EQ(disk_created.status().code(), StatusCode::kResourceExhausted) << disk_created.status().ToString();
  auto list = admin_->ListNamespaces();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  admin_.reset();
  ASSERT_EQ(daemon_.Stop(), 0);
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  admin_ = Connect();
  list = admin_->ListNamespaces();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u) << "nothing of the refused namespaces was stored";
  EXPECT_EQ((*list)[0].spec.name, "ns");
  // A sane namespace still gets created.
  EXPECT_TRUE(admin_->CreateNamespace(Spec("sane", {})).ok());
}

TEST_F(SecurityTest, ADaemonSkipsAnImpossibleStoredNamespaceAndServesTheOthers) {
  ASSERT_TRUE(internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "ns"}, {"policy", {{"write", "write-through"}}}}).ok());
  auto c = Connect();
  auto ch = Channel(*c);
  ASSERT_TRUE(ch->Put(1, 0, 0, MakeBlock(1, 0, 0)).ok());
  ch.reset();
  c.reset();
  admin_.reset();
  ASSERT_EQ(daemon_.Stop(), 0);
  {  // What an older daemon (or a hand edit) may have stored: budgets of 2^50 bytes.
    auto manifest = storage::Manifest::Open(dir_.Sub("data/manifest"));
    ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
    NamespaceSpec huge = Spec("huge", {});
    huge.budgets = {uint64_t{1} << 50, uint64_t{1} << 50, 0};
    wire::Json rec{{"id", 9}, {"spec", wire::ToJson(huge)}, {"created_by_uid", 0}};
    std::string key;
    storage::AppendBigEndian32(&key, 9);
    ASSERT_TRUE((*manifest)->Put(storage::Cf::kNamespaces, key, rec.dump()).ok());
  }
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(daemon_.Start()) << daemon_.Log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(daemon_.Log().find("'huge' is not served"), std::string::npos) << daemon_.Log();
  c = Connect();
  ch = Channel(*c);
  std::vector<std::byte> out(kBlockBytes);
  ASSERT_TRUE(ch->Get(1, 0, 0, out).ok());
  EXPECT_TRUE(out == MakeBlock(1, 0, 0));
  auto huge = c->Attach("huge");
  ASSERT_TRUE(huge.ok());  // the record is kept (an operator fixes or removes it) ...
  EXPECT_FALSE(c->OpenChannel("huge").ok());  // ... but it is not served
}

TEST_F(SecurityTest, TheDiskTierSaysWhenItStopsAdmitting) {
  NamespaceSpec small = Spec("small", {});
  small.budgets.disk_bytes = 2 * (512 + 4096);  // two D slots (slab format v2: a 512-byte header per 4 KiB block)
  ASSERT_TRUE(admin_->CreateNamespace(small).ok());
  ASSERT_TRUE(
      internal::Call(*admin_, {{"op", "set_policy"}, {"namespace", "small"}, {"policy", {{"write", "write-through"}}}}).ok());
  auto c = Connect();
  auto ch = Channel(*c, "small");
  int durable_puts = 0;
  for (uint32_t b = 0; b < 4; ++b) {
    bool durable = false;
    ASSERT_TRUE(ch->Put(1, 0, b, MakeBlock(1, 0, b), 0, &durable).ok());
    durable_puts += durable;
  }
  EXPECT_EQ(durable_puts, 2);
  EXPECT_NE(daemon_.Log().find("D is full (2 slots), it stops admitting writes"), std::string::npos) << daemon_.Log();
}

TEST_F(SecurityTest, TheManifestDirectoryIsPrivate) {
  struct stat st {};
  ASSERT_EQ(stat(dir_.Sub("data/manifest").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace tierkv
