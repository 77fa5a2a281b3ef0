#include <gtest/gtest.h>

#include <random>

#include "common/checksum.h"
#include "common/config.h"
#include "common/model_spec.h"
#include "common/namespace_spec.h"
#include "common/status.h"

namespace tierkv {
namespace {

TEST(StatusTest, CodesRoundTripThroughNames) {
  for (int i = 0; i <= static_cast<int>(StatusCode::kUnavailable); ++i) {
    auto code = static_cast<StatusCode>(i);
    auto back = StatusCodeFromName(StatusCodeName(code));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, code);
  }
  EXPECT_FALSE(StatusCodeFromName("Bogus").has_value());
}

TEST(StatusTest, FromErrnoMapsCommonErrors) {
  EXPECT_EQ(FromErrno(ENOSPC, "write").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(FromErrno(-EIO, "read").code(), StatusCode::kIOError);
  EXPECT_EQ(FromErrno(EACCES, "open").code(), StatusCode::kPermissionDenied);
  EXPECT_NE(FromErrno(EIO, "read slab 3").message().find("read slab 3"), std::string::npos);
}

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}

Status Chain(int x, int* out) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(*out, Half(h));
  return OkStatus();
}

TEST(StatusTest, MacrosPropagate) {
  int out = 0;
  EXPECT_TRUE(Chain(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status st = Chain(6, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  Result<int> bad = Status();  // an OK status is not a value
  EXPECT_FALSE(bad.ok());
}

ModelSpec Llama() {
  ModelSpec m;
  m.num_layers = 32;
  m.num_q_heads = 32;
  m.num_kv_heads = 8;
  m.head_dim = 128;
  m.block_tokens = 32;
  m.dtype = DType::kBF16;
  return m;
}

TEST(ModelSpecTest, ValidSpecAndBlockBytes) {
  ModelSpec m = Llama();
  EXPECT_TRUE(m.Validate().ok());
  EXPECT_EQ(m.BlockBytes(), size_t{2} * 8 * 32 * 128 * 2);  // 128 KiB
}

TEST(ModelSpecTest, RefusesZeroAndAbsurdSizesNamingTheField) {
  struct Case {
    uint32_t ModelSpec::*field;
    uint32_t value;
    const char* name;
  } cases[] = {
      {&ModelSpec::num_layers, 0, "num_layers"},       {&ModelSpec::num_layers, 100000, "num_layers"},
      {&ModelSpec::num_q_heads, 0, "num_q_heads"},     {&ModelSpec::num_kv_heads, 0, "num_kv_heads"},
      {&ModelSpec::num_kv_heads, 64, "num_kv_heads"},  {&ModelSpec::head_dim, 0, "head_dim"},
      {&ModelSpec::head_dim, 1u << 30, "head_dim"},    {&ModelSpec::block_tokens, 0, "block_tokens"},
      {&ModelSpec::num_kv_heads, 3, "multiple"},
  };
  for (const auto& c : cases) {
    ModelSpec m = Llama();
    m.*c.field = c.value;
    Status st = m.Validate();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(st.message().find(c.name), std::string::npos) << st.message();
  }
  ModelSpec huge = Llama();
  huge.head_dim = 1024;
  huge.block_tokens = 4096;
  huge.num_kv_heads = 32;
  EXPECT_EQ(huge.Validate().code(), StatusCode::kInvalidArgument);  // one block > 64 MiB
}

TEST(NamespaceSpecTest, NameRules) {
  EXPECT_TRUE(ValidateNamespaceName("llama-70b_v2.1").ok());
  EXPECT_FALSE(ValidateNamespaceName("").ok());
  EXPECT_FALSE(ValidateNamespaceName("has space").ok());
  EXPECT_FALSE(ValidateNamespaceName("../etc").ok());
  EXPECT_FALSE(ValidateNamespaceName(std::string(65, 'a')).ok());
}

TEST(NamespaceSpecTest, AclAllowsByUidOrGid) {
  Acl acl{{1000}, {50}};
  EXPECT_TRUE(acl.Allows(1000, 1));
  EXPECT_TRUE(acl.Allows(7, 50));
  EXPECT_FALSE(acl.Allows(7, 8));
}

TEST(ChecksumTest, DetectsAnyFlippedByte) {
  std::mt19937_64 rng(42);
  std::vector<uint8_t> data(4096);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const uint64_t sum = Checksum64(data.data(), data.size());
  EXPECT_EQ(sum, Checksum64(data.data(), data.size()));
  for (size_t i = 0; i < data.size(); i += 97) {
    data[i] ^= 0x10;
    EXPECT_NE(sum, Checksum64(data.data(), data.size())) << i;
    data[i] ^= 0x10;
  }
  EXPECT_NE(Checksum64(data.data(), data.size(), 1), sum);
}

TEST(ChecksumTest, PrefixHashChainsParent) {
  std::vector<int32_t> tokens = {1, 2, 3, 4};
  uint64_t a = PrefixBlockHash(0, tokens);
  EXPECT_EQ(a, PrefixBlockHash(0, tokens));
  EXPECT_NE(PrefixBlockHash(a, tokens), a);
  tokens[3] = 5;
  EXPECT_NE(PrefixBlockHash(0, tokens), a);
}

TEST(ConfigTest, EmbeddedDefaultsMatchTheStruct) {
  auto parsed = ParseConfig(EmbeddedDefaultConfig(), "embedded");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, Config{}) << "deploy/tierkvd.toml and common/config.h disagree on a default";
}

TEST(ConfigTest, OverridesKeepOtherDefaults) {
  auto c = ParseConfig("[metrics]\nlisten = \"127.0.0.1:0\"\n[control]\nadmin_uids = [1000, 1001]\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:0");
  EXPECT_EQ(c->control.admin_uids, (std::vector<int64_t>{1000, 1001}));
  EXPECT_EQ(c->daemon.data_dir, "./var");
}

TEST(ConfigTest, BadInputNamesTheKey) {
  struct Case {
    const char* text;
    const char* must_mention;
  } cases[] = {
      {"[daemon]\nsocket_pth = \"x\"\n", "daemon.socket_pth"},
      {"[bogus]\nx = 1\n", "bogus"},
      {"[metrics]\nlisten = 9464\n", "metrics.listen"},
      {"[metrics]\nlisten = \"localhost\"\n", "metrics.listen"},
      {"[metrics]\nlisten = \"localhost:99999\"\n", "metrics.listen"},
      {"[daemon]\nlog_level = \"loud\"\n", "daemon.log_level"},
      {"[control]\nmax_clients = 0\n", "control.max_clients"},
      {"[control]\nadmin_uids = [\"root\"]\n", "control.admin_uids"},
      {"[daemon]\nsocket_mode = 0o1777\n", "daemon.socket_mode"},
      {"[limits]\nmetrics_max_connections = 0\n", "limits.metrics_max_connections"},
      {"[limits]\ncontrol_hello_timeout_ms = 1\n", "limits.control_hello_timeout_ms"},
      {"[limits]\nmax_chanels = 4\n", "limits.max_chanels"},
      {"[control]\nmax_clients = 8\n", "limits.control_admin_reserved_clients"},
      {"[limits]\nmax_channel_bytes_per_uid = 1048576\n", "data_plane.default_staging_bytes"},
      {"[limits]\nmax_retrieve_batch = 0\n", "limits.max_retrieve_batch"},
      {"[retrieval]\nworkers = 5000\n", "retrieval.workers"},
      {"daemon = 3\n", "daemon"},
      {"[daemon\n", "config"},
  };
  for (const auto& c : cases) {
    auto r = ParseConfig(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.must_mention), std::string::npos) << r.status().message();
  }
}

TEST(ConfigTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadConfigFile("/nonexistent/tierkvd.toml").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tierkv
