// Factory strings (index/spec.h, index/retriever_factory.h, TriggerConfig::Parse):
// every documented form is accepted with its documented defaults, every malformed
// one is refused with kInvalidArgument naming the problem.
#include <gtest/gtest.h>

#include "index/retriever_factory.h"
#include "index/spec.h"
#include "index/trigger.h"

namespace tierkv::index {
namespace {

TEST(SpecTest, ParsesNameAndKeys) {
  ParsedSpec s;
  ASSERT_TRUE(ParseSpec("vq:m=16,bits=8,rope=post", &s).ok());
  EXPECT_EQ(s.name(), "vq");
  uint32_t m = 0, bits = 0, absent = 0;
  std::string rope;
  ASSERT_TRUE(s.GetUint32("m", 0, 0, 64, &m).ok());
  ASSERT_TRUE(s.GetUint32("bits", 8, 1, 8, &bits).ok());
  ASSERT_TRUE(s.GetWord("rope", "window", {"window", "post"}, &rope).ok());
  ASSERT_TRUE(s.GetUint32("absent", 7, 0, 10, &absent).ok());
  EXPECT_EQ(m, 16u);
  EXPECT_EQ(bits, 8u);
  EXPECT_EQ(rope, "post");
  EXPECT_EQ(absent, 7u);
  EXPECT_TRUE(s.CheckAllUsed().ok());
}

TEST(SpecTest, RefusesMalformedText) {
  ParsedSpec s;
  for (const char* bad : {"", ":r=1", "Mean", "mean:", "mean:r", "mean:r=", "mean:=3", "mean:r=1,r=2", "mean:r=1,,x=2",
                          "mean:R=1"}) {
    Status st = ParseSpec(bad, &s);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
  EXPECT_EQ(ParseSpec(std::string(2000, 'a'), &s).code(), StatusCode::kInvalidArgument);
}

TEST(SpecTest, RefusesValuesOutOfRangeOrOfTheWrongKind) {
  ParsedSpec s;
  ASSERT_TRUE(ParseSpec("x:a=-1,b=1.5,c=99999999999999999999,d=nan,e=maybe", &s).ok());
  uint64_t u = 0;
  double f = 0;
  std::string w;
  EXPECT_FALSE(s.GetUint("a", 0, 0, 10, &u).ok());
  EXPECT_FALSE(s.GetUint("b", 0, 0, 10, &u).ok());
  EXPECT_FALSE(s.GetUint("c", 0, 0, UINT64_MAX, &u).ok());
  EXPECT_FALSE(s.GetDouble("d", 0, 0, 10, &f).ok());
  EXPECT_FALSE(s.GetWord("e", "yes", {"yes", "no"}, &w).ok());
  EXPECT_TRUE(s.GetDouble("b", 0, 0, 10, &f).ok());
  EXPECT_DOUBLE_EQ(f, 1.5);
}

TEST(RetrieverFactoryTest, EveryDocumentedSpecMakesARetriever) {
  for (const char* spec :
       {"exact", "minmax", "mean", "mean:r=4", "mean:r=3,pick=norm", "sentence", "sentence:bounds=fixed,len=16",
        "cluster", "cluster:k=100,seg=16,map=max,iters=5,train=8", "vq", "vq:m=16,bits=8,rope=window,w=512",
        "vq:bits=4,rope=post,qa=off,shrink=0.5,train=1024,iters=3,reduce=max", "spann",
        "spann:r=1,size=32,eps=0.2,replicas=2,balance=0,rounds=0,eps2=0.5,maxprobe=8,iters=5",
        "spann:store=file,dir=/tmp,uring=0"}) {
    auto r = MakeRetriever(spec);
    ASSERT_TRUE(r.ok()) << spec << ": " << r.status().ToString();
    EXPECT_FALSE((*r)->Name().empty());
  }
  EXPECT_NE(RetrieverSpecHelp().find("spann"), std::string::npos);
}

TEST(RetrieverFactoryTest, NamesAreCanonicalSpecs) {
  EXPECT_EQ((*MakeRetriever("minmax"))->Name(), "minmax");
  EXPECT_EQ((*MakeRetriever("mean:r=1"))->Name(), "mean");
  EXPECT_EQ((*MakeRetriever("mean:r=4"))->Name(), "mean:r=4");
  EXPECT_EQ((*MakeRetriever("cluster:map=max,size=64"))->Name(), "cluster:map=max");
  EXPECT_EQ((*MakeRetriever("cluster:seg=8,k=10"))->Name(), "cluster:k=10,seg=8");
  EXPECT_EQ((*MakeRetriever("vq:rope=post,m=16,bits=8"))->Name(), "vq:m=16,rope=post");
  EXPECT_EQ((*MakeRetriever("vq"))->Name(), "vq");
  EXPECT_EQ((*MakeRetriever("spann:store=file,eps2=0.5"))->Name(), "spann:eps2=0.5,store=file");
  // Every name is itself a spec that makes the same retriever.
  for (const char* spec : {"mean:r=3,pick=norm", "vq:bits=4,w=64,reduce=max", "spann:r=1,uring=0,store=file",
                           "cluster:iters=3,train=8"}) {
    const std::string name = (*MakeRetriever(spec))->Name();
    auto again = MakeRetriever(name);
    ASSERT_TRUE(again.ok()) << name;
    EXPECT_EQ((*again)->Name(), name);
  }
}

TEST(RetrieverFactoryTest, RefusesUnknownNamesKeysAndValues) {
  for (const char* bad : {"quest", "mean:r=0", "mean:r=65", "mean:pick=random", "mean:k=4", "sentence:len=0",
                          "cluster:map=sum", "cluster:iters=0", "vq:bits=9", "vq:rope=none", "vq:qa=on",
                          "spann:replicas=0", "spann:store=disk", "spann:uring=2", "exact:x=1"}) {
    auto r = MakeRetriever(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(TriggerConfigTest, ParsesAndPrintsEveryForm) {
  auto every = TriggerConfig::Parse("every");
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(every->kind, TriggerConfig::Kind::kEveryStep);
  auto n = TriggerConfig::Parse("every:n=8");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->kind, TriggerConfig::Kind::kEveryN);
  EXPECT_EQ(n->every_n, 8u);
  EXPECT_EQ(n->ToString(), "every:n=8");
  auto drift = TriggerConfig::Parse("drift:tau=0.85");
  ASSERT_TRUE(drift.ok());
  EXPECT_EQ(drift->kind, TriggerConfig::Kind::kDrift);
  EXPECT_DOUBLE_EQ(drift->tau, 0.85);
  EXPECT_EQ(drift->ToString(), "drift:tau=0.85");
  EXPECT_EQ(TriggerConfig::Parse("drift")->tau, 0.9);
  for (const char* bad : {"sometimes", "every:n=0", "drift:tau=2", "drift:n=3"}) {
    EXPECT_EQ(TriggerConfig::Parse(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace tierkv::index
