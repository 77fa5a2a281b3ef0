#include "daemon/control_service.h"

#include "daemon/accept_backoff.h"
#include "daemon/channel_budget.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/util/temp_dir.h"

namespace tierkv::daemon {
namespace {

using wire::Json;

Json Namespace(const std::string& name, uint32_t kv_heads = 2, Json acl = Json::object()) {
  return Json{{"name", name},
              {"model",
               {{"num_layers", 2}, {"num_q_heads", 4}, {"num_kv_heads", kv_heads}, {"head_dim", 16},
                {"block_tokens", 16}, {"dtype", "f32"}}},
              {"acl", acl}};
}

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    service_.reset();
    registry_.reset();
    manifest_.reset();
    auto m = storage::Manifest::Open(dir_.Sub("manifest"));
    ASSERT_TRUE(m.ok());
    manifest_ = std::move(m).value();
    auto r = NamespaceRegistry::Load(manifest_.get(), config_.control.max_namespaces);
    ASSERT_TRUE(r.ok());
    registry_ = std::move(r).value();
    service_ = std::make_unique<ControlService>(config_, registry_.get(), &metrics_, [this] { ++shutdowns_; });
  }

  SessionState Session(uint32_t uid, uint32_t gid = 100, bool hello = true) {
    SessionState s = service_->OpenSession({1234, uid, gid});
    if (hello) {
      EXPECT_TRUE(Ok(s, {{"op", "hello"}, {"version", wire::kProtocolVersion}}));
    }
    return s;
  }

  Json Call(SessionState& s, const Json& req) { return service_->Handle(s, req.dump()).body; }
  bool Ok(SessionState& s, const Json& req) { return Call(s, req).value("ok", false); }

  // The error code of the reply, "" when it is OK.
  std::string Code(SessionState& s, const Json& req) {
    Json r = Call(s, req);
    return r.value("ok", false) ? "" : r.value("code", "?");
  }

  testing::TempDir dir_{"control"};
  Config config_;
  Metrics metrics_;
  std::unique_ptr<storage::Manifest> manifest_;
  std::unique_ptr<NamespaceRegistry> registry_;
  std::unique_ptr<ControlService> service_;
  int shutdowns_ = 0;
  const uint32_t kUser = 4242;  // not an admin (tests run as root or as the daemon's user)
};

TEST_F(ControlServiceTest, HelloComesFirstAndChecksTheVersion) {
  SessionState s = Session(0, 0, /*hello=*/false);
  EXPECT_EQ(Code(s, {{"op", "ping"}}), "InvalidArgument");
  EXPECT_EQ(Code(s, {{"op", "hello"}, {"version", 99}}), "NotSupported");
  EXPECT_EQ(Code(s, {{"op", "hello"}}), "InvalidArgument");
  Json hello = Call(s, {{"op", "hello"}, {"version", wire::kProtocolVersion}, {"id", 7}});
  EXPECT_TRUE(hello["ok"].get<bool>());
  EXPECT_EQ(hello["id"], 7);
  EXPECT_TRUE(hello["admin"].get<bool>());
  EXPECT_TRUE(Ok(s, {{"op", "ping"}}));
}

TEST_F(ControlServiceTest, MalformedRequestsGetErrorsAndTheSessionSurvives) {
  SessionState s = Session(0);
  for (std::string bad : {"not json", "[1,2]", "{\"op\":5}", "{}", "{\"op\":\"frobnicate\"}", "\x01\x02"}) {
    Json r = service_->Handle(s, bad).body;
    EXPECT_FALSE(r["ok"].get<bool>()) << bad;
    EXPECT_FALSE(r["error"].get<std::string>().empty());
  }
  EXPECT_TRUE(Ok(s, {{"op", "ping"}}));
}

TEST_F(ControlServiceTest, RepeatedAbuseDisconnects) {
  SessionState s = Session(0);
  bool disconnected = false;
  for (uint32_t i = 0; i < config_.control.max_consecutive_errors; ++i) {
    auto reply = service_->Handle(s, "garbage");
    EXPECT_FALSE(reply.body["ok"].get<bool>());
    disconnected = reply.disconnect;
  }
  EXPECT_TRUE(disconnected);
}

TEST_F(ControlServiceTest, CreateIsIdempotentForTheSameShapeAndRefusesAnother) {
  SessionState s = Session(0);
  Json r = Call(s, {{"op", "create_namespace"}, {"namespace", Namespace("a")}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_TRUE(r["created"].get<bool>());
  const auto id = r["namespace_id"].get<uint32_t>();
  Json again = Call(s, {{"op", "create_namespace"}, {"namespace", Namespace("a")}});
  EXPECT_FALSE(again["created"].get<bool>());
  EXPECT_EQ(again["namespace_id"].get<uint32_t>(), id);
  Json other = Call(s, {{"op", "create_namespace"}, {"namespace", Namespace("a", 4)}});
  EXPECT_EQ(other["code"], "AlreadyExists");
  EXPECT_NE(other["error"].get<std::string>().find("kv_heads=2"), std::string::npos);
  EXPECT_EQ(registry_->FindByName("a")->spec.model.num_kv_heads, 2u);
}

TEST_F(ControlServiceTest, BadModelSpecsAreRefusedAndNothingIsStored) {
  SessionState s = Session(0);
  Json zero = Namespace("z");
  zero["model"]["head_dim"] = 0;
  EXPECT_EQ(Code(s, {{"op", "create_namespace"}, {"namespace", zero}}), "InvalidArgument");
  Json absurd = Namespace("z");
  absurd["model"]["num_layers"] = 1u << 31;
  EXPECT_EQ(Code(s, {{"op", "create_namespace"}, {"namespace", absurd}}), "InvalidArgument");
  EXPECT_EQ(Code(s, {{"op", "create_namespace"}}), "InvalidArgument");
  EXPECT_EQ(registry_->size(), 0u);
  int stored = 0;
  ASSERT_TRUE(manifest_->Scan(storage::Cf::kNamespaces, "", [&](auto, auto) { return ++stored, true; }).ok());
  EXPECT_EQ(stored, 0);
}

TEST_F(ControlServiceTest, OnlyAdminsCreateAndShutDown) {
  SessionState user = Session(kUser);
  EXPECT_EQ(Code(user, {{"op", "create_namespace"}, {"namespace", Namespace("a")}}), "PermissionDenied");
  EXPECT_EQ(Code(user, {{"op", "shutdown"}}), "PermissionDenied");
  EXPECT_EQ(shutdowns_, 0);
  SessionState admin = Session(0);
  EXPECT_TRUE(Ok(admin, {{"op", "shutdown"}}));
  EXPECT_TRUE(Ok(admin, {{"op", "shutdown"}}));
  EXPECT_EQ(shutdowns_, 1);
}

TEST_F(ControlServiceTest, AttachEnforcesTheAcl) {
  SessionState admin = Session(0);
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"}, {"namespace", Namespace("mine")}}));  // ACL: creator only
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"},
                         {"namespace", Namespace("shared", 2, {{"uids", {kUser}}})}}));
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"},
                         {"namespace", Namespace("group", 2, {{"gids", {777}}})}}));
  SessionState user = Session(kUser, 100);
  EXPECT_EQ(Code(user, {{"op", "attach"}, {"namespace", "mine"}}), "PermissionDenied");
  EXPECT_EQ(Code(user, {{"op", "attach"}, {"namespace", "group"}}), "PermissionDenied");
  EXPECT_EQ(Code(user, {{"op", "attach"}, {"namespace", "nope"}}), "NotFound");
  EXPECT_EQ(Code(user, {{"op", "attach"}, {"namespace", 5}}), "InvalidArgument");
  Json ok = Call(user, {{"op", "attach"}, {"namespace", "shared"}});
  ASSERT_TRUE(ok["ok"].get<bool>());
  EXPECT_EQ(ok["namespace"]["model"]["num_kv_heads"], 2);
  SessionState grouped = Session(kUser + 1, 777);
  EXPECT_TRUE(Ok(grouped, {{"op", "attach"}, {"namespace", "group"}}));
  // Listing shows a non-admin only what it may attach to.
  Json list = Call(user, {{"op", "list_namespaces"}});
  ASSERT_EQ(list["namespaces"].size(), 1u);
  EXPECT_EQ(list["namespaces"][0]["name"], "shared");
  EXPECT_EQ(Call(admin, {{"op", "list_namespaces"}})["namespaces"].size(), 3u);
}

TEST_F(ControlServiceTest, StatsCountAttachedSessions) {
  SessionState admin = Session(0);
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"}, {"namespace", Namespace("a")}}));
  ASSERT_TRUE(Ok(admin, {{"op", "attach"}, {"namespace", "a"}}));
  ASSERT_TRUE(Ok(admin, {{"op", "attach"}, {"namespace", "a"}}));
  Json stats = Call(admin, {{"op", "stats"}});
  EXPECT_EQ(stats["clients_attached"], 1);
  EXPECT_EQ(stats["connections"], 1);
  EXPECT_EQ(stats["namespaces"], 1);
  service_->CloseSession(admin);
  SessionState other = Session(0);
  EXPECT_EQ(Call(other, {{"op", "stats"}})["clients_attached"], 0);
}

TEST_F(ControlServiceTest, NamespacesSurviveAReopen) {
  SessionState s = Session(0);
  ASSERT_TRUE(Ok(s, {{"op", "create_namespace"}, {"namespace", Namespace("a")}}));
  ASSERT_TRUE(Ok(s, {{"op", "create_namespace"}, {"namespace", Namespace("b")}}));
  service_->CloseSession(s);
  Open();
  ASSERT_EQ(registry_->size(), 2u);
  EXPECT_EQ(registry_->FindByName("b")->id, 2u);
  SessionState s2 = Session(0);
  Json c = Call(s2, {{"op", "create_namespace"}, {"namespace", Namespace("c")}});
  EXPECT_EQ(c["namespace_id"], 3);  // ids are never reused
}

TEST_F(ControlServiceTest, OnlyAdminsDeleteAndADeletedIdIsNeverReusedEvenAfterAReopen) {
  SessionState admin = Session(0);
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"}, {"namespace", Namespace("a", 2, {{"uids", {kUser}}})}}));
  ASSERT_TRUE(Ok(admin, {{"op", "create_namespace"}, {"namespace", Namespace("b")}}));
  SessionState user = Session(kUser);
  ASSERT_TRUE(Ok(user, {{"op", "attach"}, {"namespace", "a"}}));
  EXPECT_EQ(Code(user, {{"op", "delete_namespace"}, {"namespace", "a"}}), "PermissionDenied");
  EXPECT_EQ(Code(user, {{"op", "delete_namespace"}, {"namespace", "a"}, {"force", true}}), "PermissionDenied");
  EXPECT_EQ(Code(admin, {{"op", "delete_namespace"}, {"namespace", "a"}, {"force", "yes"}}), "InvalidArgument");
  EXPECT_EQ(Code(admin, {{"op", "delete_namespace"}, {"namespace", "a"}}), "Busy");  // the user is attached
  EXPECT_EQ(Code(admin, {{"op", "delete_namespace"}, {"namespace", "zz"}}), "NotFound");
  EXPECT_TRUE(Ok(admin, {{"op", "delete_namespace"}, {"namespace", "a"}, {"force", true}}));
  EXPECT_FALSE(registry_->FindByName("a"));
  EXPECT_TRUE(Ok(admin, {{"op", "delete_namespace"}, {"namespace", "b"}}));  // id 2, the highest
  service_->CloseSession(user);
  service_->CloseSession(admin);
  Open();
  EXPECT_EQ(registry_->size(), 0u);
  SessionState s = Session(0);
  EXPECT_EQ(Call(s, {{"op", "create_namespace"}, {"namespace", Namespace("b")}})["namespace_id"], 3);
}

TEST_F(ControlServiceTest, NamespaceLimitIsEnforced) {
  config_.control.max_namespaces = 2;
  Open();
  SessionState s = Session(0);
  EXPECT_TRUE(Ok(s, {{"op", "create_namespace"}, {"namespace", Namespace("a")}}));
  EXPECT_TRUE(Ok(s, {{"op", "create_namespace"}, {"namespace", Namespace("b")}}));
  EXPECT_EQ(Code(s, {{"op", "create_namespace"}, {"namespace", Namespace("c")}}), "ResourceExhausted");
}

}  // namespace
}  // namespace tierkv::daemon

namespace tierkv::daemon {
namespace {

TEST(ChannelBudgetTest, GlobalAndPerUidCapsAdminsExemptFromPerUidOnly) {
  LimitsSection l;
  l.max_channels = 4;
  l.max_channels_per_uid = 2;
  l.max_channel_bytes = 1000;
  l.max_channel_bytes_per_uid = 500;
  ChannelBudget b(l);
  EXPECT_TRUE(b.Reserve(1000, false, 100).ok());
  EXPECT_TRUE(b.Reserve(1000, false, 100).ok());
  Status third = b.Reserve(1000, false, 100);
  EXPECT_EQ(third.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(third.message().find("limits.max_channels_per_uid"), std::string::npos) << third.ToString();
  EXPECT_NE(b.Reserve(1001, false, 600).message().find("limits.max_channel_bytes_per_uid"), std::string::npos);
  EXPECT_TRUE(b.Reserve(0, true, 700).ok());  // an admin: no per-uid cap
  EXPECT_NE(b.Reserve(0, true, 200).message().find("limits.max_channel_bytes"), std::string::npos);
  EXPECT_TRUE(b.Reserve(0, true, 50).ok());
  EXPECT_NE(b.Reserve(0, true, 1).message().find("limits.max_channels"), std::string::npos);
  EXPECT_EQ(b.channels(), 4u);
  EXPECT_EQ(b.bytes(), 950u);
  b.Release(1000, 2, 200);
  EXPECT_TRUE(b.Reserve(1000, false, 200).ok());  // uid 1000's share is free again
  EXPECT_EQ(b.channels(), 3u);
}

TEST(RateLimitedLogTest, OneLinePerIntervalAndACountOfTheRest) {
  RateLimitedLog log(std::chrono::seconds(3600));
  EXPECT_TRUE(log.Warn("accept: Too many open files"));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(log.Warn("accept: Too many open files"));
  EXPECT_EQ(log.suppressed_total(), 1000u);
}

}  // namespace
}  // namespace tierkv::daemon
