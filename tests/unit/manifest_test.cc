#include "storage/manifest.h"

#include <gtest/gtest.h>

#include "tests/util/temp_dir.h"

namespace tierkv::storage {
namespace {

TEST(ManifestTest, PutGetDeleteAcrossReopen) {
  testing::TempDir dir("manifest");
  {
    auto m = Manifest::Open(dir.Sub("db"));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_TRUE((*m)->Put(Cf::kNamespaces, "a", "1").ok());
    ASSERT_TRUE((*m)->Put(Cf::kBlocks, "a", "other family").ok());
    ASSERT_TRUE((*m)->Put(Cf::kNamespaces, "b", "2").ok());
    ASSERT_TRUE((*m)->Delete(Cf::kNamespaces, "b").ok());
  }
  auto m = Manifest::Open(dir.Sub("db"));
  ASSERT_TRUE(m.ok());
  auto a = (*m)->Get(Cf::kNamespaces, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "1");
  EXPECT_EQ(*(*m)->Get(Cf::kBlocks, "a"), "other family");
  EXPECT_EQ((*m)->Get(Cf::kNamespaces, "b").status().code(), StatusCode::kNotFound);
}

TEST(ManifestTest, BatchIsAtomicAndScanHonoursPrefix) {
  testing::TempDir dir("manifest");
  auto m = Manifest::Open(dir.Sub("db"));
  ASSERT_TRUE(m.ok());
  Manifest::Batch b;
  for (uint32_t i = 0; i < 10; ++i) {
    std::string k = "p";
    AppendBigEndian32(&k, i);
    b.Put(Cf::kBlocks, k, std::to_string(i));
  }
  b.Put(Cf::kBlocks, "q", "outside");
  b.Delete(Cf::kBlocks, "missing");
  EXPECT_EQ(b.Count(), 12u);
  ASSERT_TRUE((*m)->Write(b).ok());
  std::vector<uint32_t> seen;
  ASSERT_TRUE((*m)->Scan(Cf::kBlocks, "p", [&](std::string_view k, std::string_view v) {
    seen.push_back(ReadBigEndian32(k.substr(1)));
    EXPECT_EQ(v, std::to_string(seen.back()));
    return true;
  }).ok());
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  int count = 0;
  ASSERT_TRUE((*m)->Scan(Cf::kBlocks, "", [&](auto, auto) { return ++count < 3; }).ok());
  EXPECT_EQ(count, 3);
}

TEST(ManifestTest, SecondOpenOfTheSameDirectoryFails) {
  testing::TempDir dir("manifest");
  auto m = Manifest::Open(dir.Sub("db"));
  ASSERT_TRUE(m.ok());
  auto again = Manifest::Open(dir.Sub("db"));
  EXPECT_FALSE(again.ok());  // RocksDB's LOCK: two daemons never share a manifest
}

TEST(ManifestTest, BigEndianKeysSortNumerically) {
  std::string a, b;
  AppendBigEndian64(&a, 255);
  AppendBigEndian64(&b, 256);
  EXPECT_LT(a, b);
  EXPECT_EQ(ReadBigEndian64(b), 256u);
}

}  // namespace
}  // namespace tierkv::storage
