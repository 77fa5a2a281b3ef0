#include <gtest/gtest.h>

#include <chrono>

#include "common/wire.h"

namespace tierkv::wire {
namespace {

TEST(WireTest, FrameLengthIsLittleEndian) {
  std::string f = EncodeFrame("abc");
  ASSERT_EQ(f.size(), 7u);
  EXPECT_EQ(DecodeFrameLength(reinterpret_cast<const uint8_t*>(f.data())), 3u);
  EXPECT_EQ(f[0], 3);
  EXPECT_EQ(f.substr(4), "abc");
  const uint8_t big[4] = {0x01, 0x02, 0x03, 0x04};
  EXPECT_EQ(DecodeFrameLength(big), 0x04030201u);
}

TEST(WireTest, ParseBodyRefusesNonObjects) {
  EXPECT_TRUE(ParseBody("{}").ok());
  EXPECT_FALSE(ParseBody("[1]").ok());
  EXPECT_FALSE(ParseBody("{\"a\":").ok());
  EXPECT_FALSE(ParseBody("").ok());
  EXPECT_FALSE(ParseBody(std::string("{\"a\":\"\xff\"}")).ok());  // invalid UTF-8
}

TEST(WireTest, JsonShapeScanRefusesDeepOrHugeBodies) {
  EXPECT_TRUE(CheckJsonShape(R"({"op":"hello","a":[[1,2],{"b":[3]}]})", 4, 16).ok());  // depth 4, 8 values
  auto deep = CheckJsonShape(R"({"a":[[[1]]]})", 3, 16);
  EXPECT_EQ(deep.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(deep.message().find("deeper than 3"), std::string::npos) << deep.ToString();
  // Brackets, braces and commas inside strings (escaped quotes too) do not count.
  EXPECT_TRUE(CheckJsonShape(R"({"s":"[[[[,,,,{{{{\"[[[[,,"})", 2, 4).ok());
  EXPECT_FALSE(CheckJsonShape(R"({"s":"\\",[[[[]]]]})", 3, 64).ok());  // the string ended at the quote
  auto many = CheckJsonShape("[" + std::string(100, '1') + std::string(100, ',') + "]", 8, 64);
  EXPECT_NE(many.message().find("more than 64 values"), std::string::npos) << many.ToString();
  // 1 MiB of '[': refused after max_depth bytes, not after parsing it all.
  const std::string nested(1 << 20, '[');
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(CheckJsonShape(nested, 32, 16384).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(5));
}

TEST(WireTest, ErrorRepliesRoundTrip) {
  Status st = PermissionDenied("no");
  Status back = StatusFromReply(ErrorReply(st));
  EXPECT_EQ(back, st);
  EXPECT_TRUE(StatusFromReply(Json{{"ok", true}}).ok());
  EXPECT_EQ(StatusFromReply(Json{{"nope", 1}}).code(), StatusCode::kInternal);
  EXPECT_EQ(StatusFromReply(Json{{"ok", false}, {"code", "Ok"}}).code(), StatusCode::kInternal);
}

TEST(WireTest, DumpNeverThrowsOnBadUtf8) {
  Json j{{"error", std::string("cut \xe2\x82")}};
  EXPECT_NO_THROW(DumpBody(j));
}

Json GoodNamespace() {
  return Json{{"name", "llama"},
              {"model",
               {{"num_layers", 2}, {"num_q_heads", 4}, {"num_kv_heads", 2}, {"head_dim", 64},
                {"block_tokens", 16}, {"dtype", "f16"}}},
              {"budgets", {{"gpu_bytes", 1 << 20}}},
              {"acl", {{"uids", {1000}}, {"gids", Json::array()}}},
              {"prefix_publishers", {1000, 1001}}};
}

TEST(WireTest, NamespaceSpecRoundTrip) {
  auto ns = NamespaceSpecFromJson(GoodNamespace());
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  EXPECT_EQ(ns->model.head_dim, 64u);
  EXPECT_EQ(ns->budgets.gpu_bytes, 1u << 20);
  EXPECT_EQ(ns->prefix_publishers, (std::vector<uint32_t>{1000, 1001}));
  auto again = NamespaceSpecFromJson(ToJson(*ns));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *ns);
}

TEST(WireTest, NamespaceSpecErrorsNameTheField) {
  struct Case {
    const char* pointer;
    Json value;
    const char* must_mention;
  } cases[] = {
      {"/model/head_dim", 0, "head_dim"},
      {"/model/head_dim", -3, "head_dim"},
      {"/model/head_dim", "64", "head_dim"},
      {"/model/head_dim", 1.5, "head_dim"},
      {"/model/num_layers", uint64_t{1} << 40, "num_layers"},
      {"/model/dtype", "int4", "dtype"},
      {"/budgets/disk_bytes", uint64_t{1} << 60, "disk_bytes"},
      {"/acl/uids", "root", "acl.uids"},
      {"/acl/uids", Json::array({-1}), "acl.uids"},
      {"/name", "bad name", "name"},
      {"/model", 7, "model"},
  };
  for (const auto& c : cases) {
    Json j = GoodNamespace();
    j[Json::json_pointer(c.pointer)] = c.value;
    auto r = NamespaceSpecFromJson(j);
    ASSERT_FALSE(r.ok()) << c.pointer;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.must_mention), std::string::npos) << r.status().message();
  }
  Json no_model = GoodNamespace();
  no_model.erase("model");
  EXPECT_FALSE(NamespaceSpecFromJson(no_model).ok());
}

}  // namespace
}  // namespace tierkv::wire
