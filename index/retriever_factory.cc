#include "index/retriever_factory.h"

#include "index/cluster_retriever.h"
#include "index/exact_retriever.h"
#include "index/per_head_retriever.h"
#include "index/sentence_retriever.h"
#include "index/spann_retriever.h"
#include "index/spec.h"
#include "index/summary_retrievers.h"
#include "index/vq_retriever.h"

namespace tierkv::index {
namespace {

Result<std::unique_ptr<Retriever>> MakeMean(ParsedSpec* s) {
  uint32_t r = 1;
  std::string pick;
  RETURN_IF_ERROR(s->GetUint32("r", 1, 1, 64, &r));
  RETURN_IF_ERROR(s->GetWord("pick", "kcenter", {"kcenter", "norm"}, &pick));
  return std::unique_ptr<Retriever>(
      new MeanRetriever(r, pick == "norm" ? MeanRetriever::Pick::kNorm : MeanRetriever::Pick::kKCenter));
}

Result<std::unique_ptr<Retriever>> MakeSentence(ParsedSpec* s) {
  uint32_t len = 24;
  std::string bounds;
  RETURN_IF_ERROR(s->GetUint32("len", 24, 1, 65536, &len));
  uint32_t out = 0;
  RETURN_IF_ERROR(s->GetWord("bounds", "given", {"given", "fixed"}, &bounds));
  RETURN_IF_ERROR(s->GetUint32("out", 0, 0, 1, &out));
  return std::unique_ptr<Retriever>(new SentenceRetriever(len, bounds == "fixed", out == 1));
}

Result<std::unique_ptr<Retriever>> MakeCluster(ParsedSpec* s) {
  ClusterOptions o;
  std::string map;
  RETURN_IF_ERROR(s->GetUint32("size", 64, 1, 1u << 20, &o.size));
  RETURN_IF_ERROR(s->GetUint32("k", 0, 0, 1u << 24, &o.k));
  RETURN_IF_ERROR(s->GetUint32("seg", 32, 1, 1u << 20, &o.seg));
  RETURN_IF_ERROR(s->GetUint32("iters", 10, 1, 100, &o.iters));
  RETURN_IF_ERROR(s->GetUint32("train", 32, 4, 4096, &o.train));
  RETURN_IF_ERROR(s->GetWord("map", "mass", {"mass", "max"}, &map));
  uint32_t out = 0;
  RETURN_IF_ERROR(s->GetUint32("out", 0, 0, 1, &out));
  o.mass = map == "mass";
  o.outliers = out == 1;
  return std::unique_ptr<Retriever>(new ClusterRetriever(o));
}

Result<std::unique_ptr<Retriever>> MakeVq(ParsedSpec* s) {
  VqOptions o;
  std::string rope, qa, reduce;
  RETURN_IF_ERROR(s->GetUint32("m", 0, 0, 1024, &o.m));
  RETURN_IF_ERROR(s->GetUint32("bits", 8, 1, 8, &o.bits));
  RETURN_IF_ERROR(s->GetWord("rope", "window", {"window", "post"}, &rope));
  RETURN_IF_ERROR(s->GetUint("w", 1024, 0, 1u << 30, &o.w));
  RETURN_IF_ERROR(s->GetWord("qa", "auto", {"auto", "off"}, &qa));
  RETURN_IF_ERROR(s->GetDouble("shrink", 0.1, 0.0, 1.0, &o.shrink));
  RETURN_IF_ERROR(s->GetUint32("train", 4096, 256, 1u << 24, &o.train));
  RETURN_IF_ERROR(s->GetUint32("iters", 8, 1, 100, &o.iters));
  RETURN_IF_ERROR(s->GetWord("reduce", "lse", {"lse", "max"}, &reduce));
  RETURN_IF_ERROR(s->GetDouble("exact", 0.0, 0.0, 0.5, &o.exact));
  o.window = rope == "window";
  o.query_aware = qa == "auto";
  o.lse = reduce == "lse";
  return std::unique_ptr<Retriever>(new VqRetriever(o));
}

Result<std::unique_ptr<Retriever>> MakeSpann(ParsedSpec* s) {
  SpannOptions o;
  std::string store, dir;
  uint32_t uring = 1;
  RETURN_IF_ERROR(s->GetUint32("r", 2, 1, 16, &o.r));
  RETURN_IF_ERROR(s->GetUint32("size", 16, 1, 1u << 16, &o.size));
  RETURN_IF_ERROR(s->GetDouble("eps", 0.1, 0.0, 10.0, &o.eps));
  RETURN_IF_ERROR(s->GetUint32("replicas", 4, 1, 8, &o.replicas));
  RETURN_IF_ERROR(s->GetDouble("balance", 1.0, 0.0, 100.0, &o.balance));
  RETURN_IF_ERROR(s->GetUint32("rounds", 2, 0, 10, &o.rounds));
  RETURN_IF_ERROR(s->GetDouble("eps2", 0.05, 0.0, 100.0, &o.eps2));
  RETURN_IF_ERROR(s->GetUint32("maxprobe", 64, 1, 1u << 16, &o.maxprobe));
  RETURN_IF_ERROR(s->GetDouble("cover", 4.0, 0.0, 1024.0, &o.cover));
  RETURN_IF_ERROR(s->GetUint32("iters", 10, 1, 100, &o.iters));
  RETURN_IF_ERROR(s->GetWord("store", "memory", {"memory", "file"}, &store));
  RETURN_IF_ERROR(s->GetString("dir", "/tmp", &o.dir));
  RETURN_IF_ERROR(s->GetUint32("uring", 1, 0, 1, &uring));
  uint32_t bg = 1;
  RETURN_IF_ERROR(s->GetDouble("rebalance", 0.15, 0.0, 1.0, &o.rebalance));
  RETURN_IF_ERROR(s->GetDouble("skew", 3.0, 1.0, 1000.0, &o.skew));
  RETURN_IF_ERROR(s->GetUint32("bg", 1, 0, 1, &bg));
  o.background = bg == 1;
  o.file = store == "file";
  o.uring = uring == 1;
  return std::unique_ptr<Retriever>(new SpannRetriever(o));
}

}  // namespace

Result<std::unique_ptr<Retriever>> MakeRetriever(std::string_view text) {
  ParsedSpec s;
  RETURN_IF_ERROR(ParseSpec(text, &s));
  std::unique_ptr<Retriever> r;
  if (s.name() == "exact") {
    r = std::make_unique<ExactRetriever>();
  } else if (s.name() == "minmax") {
    r = std::make_unique<MinMaxRetriever>();
  } else if (s.name() == "mean") {
    ASSIGN_OR_RETURN(r, MakeMean(&s));
  } else if (s.name() == "sentence") {
    ASSIGN_OR_RETURN(r, MakeSentence(&s));
  } else if (s.name() == "cluster") {
    ASSIGN_OR_RETURN(r, MakeCluster(&s));
  } else if (s.name() == "vq") {
    ASSIGN_OR_RETURN(r, MakeVq(&s));
  } else if (s.name() == "spann") {
    ASSIGN_OR_RETURN(r, MakeSpann(&s));
  } else {
    return InvalidArgument("unknown retriever '" + s.name() + "' in spec '" + s.text() + "'; known: " +
                           "exact, minmax, mean, sentence, cluster, vq, spann");
  }
  RETURN_IF_ERROR(s.CheckAllUsed());
  return r;
}

Result<std::unique_ptr<Retriever>> MakeRetriever(std::string_view spec, Granularity granularity) {
  ASSIGN_OR_RETURN(std::unique_ptr<Retriever> first, MakeRetriever(spec));
  if (granularity == Granularity::kLayer) return first;
  if (granularity != Granularity::kKvHead) return InvalidArgument("unknown retrieval granularity");
  std::string text(spec);
  return std::unique_ptr<Retriever>(new PerHeadRetriever(std::move(first), [text] { return MakeRetriever(text); }));
}

Result<Granularity> ParseGranularity(std::string_view text) {
  if (text == "layer") return Granularity::kLayer;
  if (text == "head" || text == "kv_head" || text == "per-head") return Granularity::kKvHead;
  return InvalidArgument("unknown granularity '" + std::string(text) + "'; known: layer, head");
}

std::string RetrieverSpecHelp() {
  return "  exact                       every key scanned (the oracle)\n"
         "  minmax                      Quest bound from per-block min/max keys\n"
         "  mean[:r=1,pick=kcenter]     max over R representatives per block (rep 1 = mean key;\n"
         "                              others: kcenter = farthest-point keys, norm = largest-norm keys)\n"
         "  sentence[:bounds=given,len=24,out=0]  max over sentence mean keys touching a block (given\n"
         "                              boundaries; spans of len tokens when the trace has none or\n"
         "                              bounds=fixed); out=1 adds each block's outlier key\n"
         "  cluster[:size=64,k=0,seg=32,iters=10,train=32,map=mass,out=0]  FAISS k-means of the prompt's keys\n"
         "                              (k = prompt/size per KV head) + segments of seg generated tokens;\n"
         "                              block score from its tokens' units (mass: log-sum-exp, max);\n"
         "                              out=1 adds each block's outlier key (farthest from the block mean)\n"
         "  vq[:m=d/8,bits=8,rope=window,w=1024,qa=auto,shrink=0.1,train=4096,iters=8,reduce=lse,exact=0]\n"
         "                              per-token PQ codes (FAISS), query-aware codebooks from the query\n"
         "                              sample, windowed RoPE (pre-RoPE codes, query at distance w) or post;\n"
         "                              exact=F keeps the share F of tokens whose codes err most exact\n"
         "  spann[:r=2,size=16,eps=0.1,replicas=4,balance=1,rounds=2,eps2=0.05,maxprobe=64,cover=4,iters=10,\n"
         "        store=memory|file,dir=/tmp,uring=1,rebalance=0.15,skew=3,bg=1]\n"
         "                              balanced clusters of block summaries (mean + r-1 representative\n"
         "                              keys), centroids in FAISS,\n"
         "                              postings in a store read in one batch per step; Extend assigns\n"
         "                              new blocks to the postings, re-clusters in the background\n";
}

}  // namespace tierkv::index
