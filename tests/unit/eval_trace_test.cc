#include "eval/trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/checksum.h"
#include "kernels/half.h"

namespace tierkv::index {
namespace {

namespace fs = std::filesystem;

class TraceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tierkv_trace_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

Trace RandomTrace(uint64_t seed, bool with_tokens) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  Trace t;
  t.info.num_layers = 3;
  t.info.num_q_heads = 4;
  t.info.num_kv_heads = 2;
  t.info.head_dim = 6;
  t.info.num_tokens = 37;
  t.info.rope_style = RopeStyle::kHalfSplit;
  t.info.rope_theta = 500000.0;
  t.info.step_positions = {30, 31, 36};
  t.info.sentence_starts = {0, 5, 17, 30};
  t.info.description = "unit test trace";
  if (with_tokens) {
    for (uint64_t i = 0; i < t.info.num_tokens; ++i) t.info.token_ids.push_back(static_cast<int32_t>(rng() % 512));
  }
  t.layers.resize(t.info.num_layers);
  for (TraceLayer& l : t.layers) {
    l.Resize(t.info);
    for (auto* v : {&l.keys_pre, &l.keys, &l.values, &l.queries_pre, &l.queries}) {
      for (float& x : *v) x = n01(rng) * 3.f;
    }
  }
  return t;
}

void ExpectInfoEq(const TraceInfo& a, const TraceInfo& b) {
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_q_heads, b.num_q_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.num_tokens, b.num_tokens);
  EXPECT_EQ(a.rope_style, b.rope_style);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.step_positions, b.step_positions);
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.sentence_starts, b.sentence_starts);
  EXPECT_EQ(a.description, b.description);
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
// Overwrites a header field and re-seals the header checksum (bytes [0, 88) -> 88).
template <typename T>
void PatchHeader(std::string* bytes, size_t off, T v) {
  std::memcpy(bytes->data() + off, &v, sizeof(T));
  const uint64_t c = Checksum64(bytes->data(), 88);
  std::memcpy(bytes->data() + 88, &c, sizeof(c));
}

TEST_F(TraceFileTest, F32RoundTripIsExact) {
  const Trace t = RandomTrace(1, /*with_tokens=*/true);
  ASSERT_TRUE(WriteTrace(Path("a.trace"), t, TraceDType::kF32).ok());
  auto r = ReadTrace(Path("a.trace"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectInfoEq(r->info, t.info);
  ASSERT_EQ(r->layers.size(), t.layers.size());
  for (size_t l = 0; l < t.layers.size(); ++l) {
    EXPECT_EQ(r->layers[l].keys_pre, t.layers[l].keys_pre);
    EXPECT_EQ(r->layers[l].keys, t.layers[l].keys);
    EXPECT_EQ(r->layers[l].values, t.layers[l].values);
    EXPECT_EQ(r->layers[l].queries_pre, t.layers[l].queries_pre);
    EXPECT_EQ(r->layers[l].queries, t.layers[l].queries);
  }
  EXPECT_FALSE(fs::exists(Path("a.trace.tmp")));
}

TEST_F(TraceFileTest, F16RoundTripWithinHalfPrecisionAndLayersLoadInAnyOrder) {
  const Trace t = RandomTrace(2, /*with_tokens=*/false);
  ASSERT_TRUE(WriteTrace(Path("h.trace"), t, TraceDType::kF16).ok());
  EXPECT_LT(fs::file_size(Path("h.trace")), 0.6 * (3.0 * 5 * 37 * 2 * 6 * 4));
  auto reader = TraceReader::Open(Path("h.trace"));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->dtype(), TraceDType::kF16);
  ExpectInfoEq((*reader)->info(), t.info);
  TraceLayer layer;
  for (uint32_t l : {2u, 0u, 1u}) {
    ASSERT_TRUE((*reader)->LoadLayer(l, &layer).ok());
    for (size_t i = 0; i < layer.keys.size(); ++i) {
      EXPECT_NEAR(layer.keys[i], t.layers[l].keys[i], std::fabs(t.layers[l].keys[i]) * 1e-3 + 1e-7);
      EXPECT_NEAR(layer.values[i], t.layers[l].values[i], std::fabs(t.layers[l].values[i]) * 1e-3 + 1e-7);
    }
    for (size_t i = 0; i < layer.queries.size(); ++i) {
      EXPECT_NEAR(layer.queries_pre[i], t.layers[l].queries_pre[i],
                  std::fabs(t.layers[l].queries_pre[i]) * 1e-3 + 1e-7);
    }
  }
  EXPECT_EQ((*reader)->LoadLayer(3, &layer).code(), StatusCode::kInvalidArgument);
}

TEST_F(TraceFileTest, MissingFileIsNotFound) {
  auto r = TraceReader::Open(Path("nope.trace"));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST_F(TraceFileTest, EveryTruncationIsCorruption) {
  const Trace t = RandomTrace(3, true);
  ASSERT_TRUE(WriteTrace(Path("t.trace"), t, TraceDType::kF32).ok());
  const std::string bytes = ReadAll(Path("t.trace"));
  for (size_t cut : {size_t{0}, size_t{7}, size_t{95}, size_t{96}, size_t{200}, bytes.size() / 2, bytes.size() - 1}) {
    WriteAll(Path("cut.trace"), bytes.substr(0, cut));
    auto r = TraceReader::Open(Path("cut.trace"));
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().ToString();
  }
  WriteAll(Path("long.trace"), bytes + "xx");
  auto r = TraceReader::Open(Path("long.trace"));
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos);
}

TEST_F(TraceFileTest, FlippedBytesAreDetectedWhereTheyLand) {
  const Trace t = RandomTrace(4, true);
  ASSERT_TRUE(WriteTrace(Path("c.trace"), t, TraceDType::kF32).ok());
  const std::string good = ReadAll(Path("c.trace"));

  std::string bad = good;
  bad[0] ^= 0x20;  // magic
  WriteAll(Path("x.trace"), bad);
  EXPECT_NE(TraceReader::Open(Path("x.trace")).status().message().find("magic"), std::string::npos);

  bad = good;
  bad[50] ^= 0x01;  // num_tokens, inside the sealed header
  WriteAll(Path("x.trace"), bad);
  EXPECT_NE(TraceReader::Open(Path("x.trace")).status().message().find("header checksum"), std::string::npos);

  bad = good;
  bad[96 + 3] ^= 0x01;  // description text
  WriteAll(Path("x.trace"), bad);
  EXPECT_NE(TraceReader::Open(Path("x.trace")).status().message().find("metadata checksum"), std::string::npos);

  bad = good;
  bad[bad.size() - 20] ^= 0x40;  // last layer's queries
  WriteAll(Path("x.trace"), bad);
  auto r = TraceReader::Open(Path("x.trace"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  TraceLayer layer;
  EXPECT_TRUE((*r)->LoadLayer(0, &layer).ok());
  Status s = (*r)->LoadLayer(2, &layer);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("layer 2 checksum"), std::string::npos) << s.ToString();
}

TEST_F(TraceFileTest, ResealedHeadersWithBadFieldsAreRefused) {
  const Trace t = RandomTrace(5, false);
  ASSERT_TRUE(WriteTrace(Path("r.trace"), t, TraceDType::kF32).ok());
  const std::string good = ReadAll(Path("r.trace"));
  struct Case {
    size_t off;
    uint64_t value;
    int width;
    StatusCode code;
  };
  const Case cases[] = {
      {8, 2, 4, StatusCode::kNotSupported},                   // newer version
      {8, 0, 4, StatusCode::kCorruption},                     // version 0
      {16, 1u << 7, 4, StatusCode::kNotSupported},            // unknown flag
      {20, 0, 4, StatusCode::kCorruption},                    // zero layers
      {28, 3, 4, StatusCode::kCorruption},                    // kv heads do not divide q heads
      {32, 7, 4, StatusCode::kCorruption},                    // odd head_dim
      {48, uint64_t{1} << 62, 8, StatusCode::kCorruption},    // absurd token count
      {48, uint64_t{1} << 29, 8, StatusCode::kCorruption},    // plausible count, file too short
      {56, ~uint64_t{0}, 8, StatusCode::kCorruption},         // absurd step count
      {64, 1000, 8, StatusCode::kCorruption},                 // more sentences than tokens
      {72, uint64_t{1} << 40, 8, StatusCode::kCorruption},    // absurd description
  };
  for (const Case& c : cases) {
    std::string bad = good;
    if (c.width == 4) {
      PatchHeader<uint32_t>(&bad, c.off, static_cast<uint32_t>(c.value));
    } else {
      PatchHeader<uint64_t>(&bad, c.off, c.value);
    }
    WriteAll(Path("x.trace"), bad);
    auto r = TraceReader::Open(Path("x.trace"));
    EXPECT_EQ(r.status().code(), c.code) << "offset " << c.off << ": " << r.status().ToString();
  }
}

TEST_F(TraceFileTest, StepPositionBeyondTokensIsCorruption) {
  Trace t = RandomTrace(6, false);
  ASSERT_TRUE(WriteTrace(Path("p.trace"), t, TraceDType::kF32).ok());
  std::string bad = ReadAll(Path("p.trace"));
  // Step position 0 sits right after the description; set it to num_tokens and
  // re-seal the metadata checksum (header offset 80), then the header.
  const size_t pos_off = 96 + t.info.description.size();
  const uint64_t v = t.info.num_tokens;
  std::memcpy(bad.data() + pos_off, &v, 8);
  const uint64_t meta_bytes = t.info.description.size() + 8 * 3 + 8 * 4;
  PatchHeader<uint64_t>(&bad, 80, Checksum64(bad.data() + 96, meta_bytes));
  WriteAll(Path("x.trace"), bad);
  auto r = TraceReader::Open(Path("x.trace"));
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("step_positions[0]"), std::string::npos) << r.status().ToString();
}

TEST_F(TraceFileTest, WriterRefusesBadInputAndLeavesNoFile) {
  Trace t = RandomTrace(7, false);
  {
    auto w = TraceWriter::Create(Path("w.trace"), t.info, TraceDType::kF16);
    ASSERT_TRUE(w.ok());
    TraceLayer short_layer = t.layers[0];
    short_layer.values.pop_back();
    EXPECT_EQ((*w)->WriteLayer(short_layer).code(), StatusCode::kInvalidArgument);
    TraceLayer nan_layer = t.layers[0];
    nan_layer.keys[5] = std::nanf("");
    EXPECT_EQ((*w)->WriteLayer(nan_layer).code(), StatusCode::kInvalidArgument);
    TraceLayer big_layer = t.layers[0];
    big_layer.queries[1] = 70000.f;
    Status s = (*w)->WriteLayer(big_layer);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("f16"), std::string::npos);
    ASSERT_TRUE((*w)->WriteLayer(t.layers[0]).ok());
    EXPECT_EQ((*w)->Finish().code(), StatusCode::kInvalidArgument);  // 1 of 3 layers
    EXPECT_TRUE(fs::exists(Path("w.trace.tmp")));
  }
  EXPECT_FALSE(fs::exists(Path("w.trace.tmp")));
  EXPECT_FALSE(fs::exists(Path("w.trace")));

  TraceInfo bad = t.info;
  bad.num_kv_heads = 3;
  EXPECT_EQ(TraceWriter::Create(Path("w.trace"), bad, TraceDType::kF32).status().code(),
            StatusCode::kInvalidArgument);
  bad = t.info;
  bad.sentence_starts = {0, 5, 5};
  EXPECT_EQ(TraceWriter::Create(Path("w.trace"), bad, TraceDType::kF32).status().code(),
            StatusCode::kInvalidArgument);
  bad = t.info;
  bad.token_ids = {1, 2};
  EXPECT_EQ(TraceWriter::Create(Path("w.trace"), bad, TraceDType::kF32).status().code(),
            StatusCode::kInvalidArgument);
  t.layers.pop_back();
  EXPECT_EQ(WriteTrace(Path("w.trace"), t, TraceDType::kF32).code(), StatusCode::kInvalidArgument);
}

// The f16 conversion the trace writer and reader use (kernels/half.h).
TEST(HalfTest, EveryHalfRoundTripsAndRoundingIsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = kernels::F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(kernels::F16ToFloat(kernels::FloatToF16(f))));
    } else {
      EXPECT_EQ(kernels::FloatToF16(f), h) << h;
    }
  }
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(1.0f)), 1.0f);
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(65504.f)), 65504.f);
  EXPECT_TRUE(std::isinf(kernels::F16ToFloat(kernels::FloatToF16(65520.f))));  // rounds up past the largest half
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(std::ldexp(1.f, -24))), std::ldexp(1.f, -24));
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(std::ldexp(1.f, -25))), 0.f);  // tie -> even (0)
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(std::ldexp(3.f, -25))), std::ldexp(1.f, -23));
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(1.f + std::ldexp(1.f, -11))), 1.f);  // tie -> even
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(1.f + std::ldexp(3.f, -11))), 1.f + std::ldexp(1.f, -9));
  EXPECT_EQ(kernels::F16ToFloat(kernels::FloatToF16(-2.5f)), -2.5f);
}

}  // namespace
}  // namespace tierkv::index
