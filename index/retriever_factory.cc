#include "index/retriever_factory.h"

#include "index/exact_retriever.h"
#include "index/sentence_retriever.h"
#include "index/spec.h"
#include "index/summary_retrievers.h"

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
  RETURN_IF_ERROR(s->GetWord("bounds", "given", {"given", "fixed"}, &bounds));
  return std::unique_ptr<Retriever>(new SentenceRetriever(len, bounds == "fixed"));
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
  } else {
    return InvalidArgument("unknown retriever '" + s.name() + "' in spec '" + s.text() + "'; known: " +
                           "exact, minmax, mean, sentence, cluster, vq, spann");
  }
  RETURN_IF_ERROR(s.CheckAllUsed());
  return r;
}

std::string RetrieverSpecHelp() {
  return "  exact                       every key scanned (the oracle)\n"
         "  minmax                      Quest bound from per-block min/max keys\n"
         "  mean[:r=1,pick=kcenter]     max over R representatives per block (rep 1 = mean key;\n"
         "                              others: kcenter = farthest-point keys, norm = largest-norm keys)\n"
         "  sentence[:bounds=given,len=24]  max over sentence mean keys touching a block (given boundaries;\n"
         "                              spans of len tokens when the trace has none or bounds=fixed)\n";
}

}  // namespace tierkv::index
