// [remote] in the daemon: parsing and range checks of the section, StartRemote's
// refusals (no seeds, a seed without a port, an unreadable password file), the
// status JSON when R is off, and NamespaceSpec's model_id validation.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "common/config.h"
#include "common/namespace_spec.h"
#include "daemon/remote_link.h"
#include "storage/policy.h"
#include "tests/util/temp_dir.h"

namespace tierkv::daemon {
namespace {

TEST(RemoteConfigTest, SectionParsesAndChecksRanges) {
  auto c = ParseConfig("[remote]\nenabled = true\nseeds = \"10.0.0.1:7000,10.0.0.2:7000\"\npool_size = 4\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->remote.enabled);
  EXPECT_EQ(c->remote.pool_size, 4u);
  EXPECT_FALSE(ParseConfig("[remote]\npool_size = 0\n").ok());
  EXPECT_FALSE(ParseConfig("[remote]\nfetch_timeout_ms = 0\n").ok());
  EXPECT_FALSE(ParseConfig("[remote]\nno_such_key = 1\n").ok());
  EXPECT_FALSE(Config{}.remote.enabled);  // off by default
  EXPECT_EQ(Config{}.remote.compression, "none");
  auto z = ParseConfig("[remote]\ncompression = \"zstd\"\n");
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  EXPECT_EQ(z->remote.compression, "zstd");
  EXPECT_FALSE(ParseConfig("[remote]\ncompression = \"int8\"\n").ok());  // R stays lossless
}

TEST(RemoteConfigTest, RemoteBlocksPolicyField) {
  const storage::Policy def;
  EXPECT_EQ(def.remote_blocks, storage::RemoteBlocks::kPrefixes);
  EXPECT_EQ(storage::PolicyToJson(def)["remote_blocks"], "prefixes");
  auto p = storage::ApplyPolicyChanges(def, {{"remote_blocks", "closed-sequences"}});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->remote_blocks, storage::RemoteBlocks::kClosedSequences);
  // Round trip through JSON (the manifest keeps policies as JSON).
  auto again = storage::ApplyPolicyChanges(def, storage::PolicyToJson(*p));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *p);
  auto bad = storage::ApplyPolicyChanges(def, {{"remote_blocks", "all"}});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().ToString().find("remote_blocks"), std::string::npos);
}

TEST(RemoteConfigTest, StartRemoteRefusesBadSettings) {
  RemoteSection r;
  auto off = StartRemote(r);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, nullptr);
  EXPECT_EQ(RemoteStatusJson(nullptr)["state"], "off");
  r.enabled = true;
  EXPECT_EQ(StartRemote(r).status().code(), StatusCode::kInvalidArgument);  // no seeds
  r.seeds = "redis-without-port";
  EXPECT_EQ(StartRemote(r).status().code(), StatusCode::kInvalidArgument);
  r.seeds = "127.0.0.1:1";
  r.password_file = "/nonexistent/tierkv-password";
  EXPECT_EQ(StartRemote(r).status().code(), StatusCode::kInvalidArgument);
  testing::TempDir dir("remote-link");
  std::ofstream(dir.Sub("pw")) << "s3cret\nignored\n";
  r.password_file = dir.Sub("pw");
  auto started = StartRemote(r);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  ASSERT_NE(*started, nullptr);
  EXPECT_EQ(RemoteStatusJson(started->get())["state"], "up");  // nothing tried yet
}

// [remote] tls: the files are checked at start, each refusal names its key and file.
TEST(RemoteConfigTest, StartRemoteRefusesBadTlsFiles) {
  auto c = ParseConfig("[remote]\ntls = true\ntls_ca_file = \"/x/ca.crt\"\ntls_server_name = \"redis.internal\"\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->remote.tls);
  EXPECT_EQ(c->remote.tls_server_name, "redis.internal");
  EXPECT_FALSE(Config{}.remote.tls);
  EXPECT_EQ(Config{}.remote.lookup_reuse_mb, 64u);
  RemoteSection r;
  r.enabled = true;
  r.seeds = "127.0.0.1:1";
  r.tls = true;
  auto refused = [&](const std::string& needle) {
    auto st = StartRemote(r);
    EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(st.status().ToString().find(needle), std::string::npos) << st.status().ToString();
  };
  refused("tls_ca_file");  // tls without a CA
  r.tls_ca_file = "/nonexistent/ca.crt";
  refused("/nonexistent/ca.crt");
  testing::TempDir dir("remote-tls");
  std::ofstream(dir.Sub("not-pem.crt")) << "hello\n";
  r.tls_ca_file = dir.Sub("not-pem.crt");
  refused("no usable CA certificate");
  // A real CA (made by the openssl CLI, as the TLS cluster test does).
  const std::string make = "cd '" + dir.path() + "' && openssl req -x509 -newkey ec -pkeyopt "
                           "ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=t "
                           ">/dev/null 2>&1";
  ASSERT_EQ(std::system(make.c_str()), 0);
  r.tls_ca_file = dir.Sub("ca.crt");
  r.tls_cert_file = dir.Sub("ca.crt");  // a certificate without its key
  refused("tls_cert_file and tls_key_file");
  r.tls_key_file = "/nonexistent/client.key";
  refused("/nonexistent/client.key");
  r.tls_key_file = dir.Sub("ca.key");
  auto started = StartRemote(r);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  // TLS files with tls = false: a mistake, said so.
  r.tls = false;
  refused("tls = false");
}

TEST(RemoteConfigTest, ModelIdIsValidated) {
  NamespaceSpec spec;
  spec.name = "ns";
  spec.model = {1, 1, 1, 8, 8, DType::kF32};
  EXPECT_TRUE(spec.Validate().ok());  // empty: allowed (namespaces from before)
  spec.model_id = "meta-llama/Llama-3.1-8B@5206a32+fp8:v1_x";
  EXPECT_TRUE(spec.Validate().ok());
  spec.model_id = "has space";
  EXPECT_EQ(spec.Validate().code(), StatusCode::kInvalidArgument);
  spec.model_id = std::string(NamespaceSpec::kMaxModelIdLength + 1, 'a');
  EXPECT_EQ(spec.Validate().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkv::daemon
