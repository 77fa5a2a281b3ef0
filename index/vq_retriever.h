// VqRetriever ("vq", A²ATS / PQCache): per-token product-quantization codes of
// the keys (FAISS ProductQuantizer, per KV head), scored through lookup tables
// with kernels ScoreBlocks (kVqLut): per query head, token t's score is
// sum_m lut[m][code_m(t)] ~ q . k_t; a block's per-head score is the log-sum-exp
// of its tokens' scores (its approximated softmax mass; or their max), then heads
// combine per RetrieverParams::head_combine. Only tokens [0, position] are scored.
//
// Windowed RoPE (rope=window): the codes are of the pre-RoPE keys, and the
// query is the pre-RoPE query rotated by the fixed relative distance w:
// q . k_t = q_pre . R(t - p) k_pre_t ~ (R(w) q_pre) . k_pre_t, i.e. every token
// is scored as if it sat w tokens before the query, so one codebook serves every
// position (exact RoPE is kept for the recent window, which is always selected).
// rope=post codes the post-RoPE keys and scores the post-RoPE query (PQCache).
//
// Query-aware codebooks: with a query sample (RetrieverParams::query_sample),
// the codebooks minimize the error of the attention logits rather than of the
// keys: E_q[(q . (k - k^))^2] = (k - k^)^T C (k - k^) with C = E[q q^T] over the
// sample's queries of the KV group, taken as the scoring sees them (rotated by w,
// or post-RoPE). C is shrunk towards a multiple of the identity,
// C' = (1 - shrink) C + shrink * tr(C)/d * I, and factored C' = L L^T (Cholesky);
// PQ is trained and applied on k' = L^T k, whose L2 error is exactly the
// weighted error above, and a query is scored as q' = L^{-1} q (so q' . k' = q . k).
// Without a sample (or qa=off) L = I: plain PQ of the keys.
//
// Keys (factory "vq:m=16,bits=8,..."):
//   m       subspaces; divides head_dim; 0 = head_dim / 8 (at least 1). Default: 0
//   bits    bits per code, in [1, 8] (2^bits centroids per subspace). Default: 8
//   rope    window | post. Default: window (needs pre-RoPE keys and queries)
//   w       window distance in tokens, in [0, 2^30]. Default: 1024
//   qa      auto (query-aware when a sample is given) | off. Default: auto
//   shrink  in [0, 1]. Default: 0.1
//   train   at most this many keys per KV head train the codebooks (evenly
//           spaced), in [256, 2^24]. Default: 4096
//   iters   k-means iterations per subspace, in [1, 100]. Default: 8
//   reduce  lse | max: how a block's token scores combine. Default: lse
//   exact   share of each KV head's tokens kept exact, in [0, 0.5]: the tokens
//           whose codes err most (in the metric above) keep their post-RoPE
//           key, and their code's score in the block is replaced by the exact
//           q . k. Rare outlying keys (needles: one token whose direction no
//           centroid holds) are what PQ loses; this keeps them (issue 12). New
//           tokens (Extend) are kept when their error exceeds the build's
//           threshold. Default: 0
// Index: M bytes per (token, KV head) + codebooks + L per KV head.
// Thread-safety: as Retriever.
#pragma once

#include <string>
#include <vector>

#include "index/retriever.h"

namespace tierkv::index {

struct VqOptions {
  uint32_t m = 0;
  uint32_t bits = 8;
  bool window = true;
  uint64_t w = 1024;
  bool query_aware = true;
  double shrink = 0.1;
  uint32_t train = 4096;
  uint32_t iters = 8;
  bool lse = true;
  double exact = 0.0;
};

class VqRetriever final : public Retriever {
 public:
  explicit VqRetriever(VqOptions options = {}) : opt_(options) {}
  std::string Name() const override;
  size_t IndexBytes() const override;
  // True when the last Build trained query-aware codebooks.
  bool query_aware_built() const { return qa_built_; }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;
  // Encodes tokens [old_tokens, num_tokens) with the built metric and codebooks.
  Status ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) override;

 private:
  // Nearest codebook entry per subspace of keys [begin, end) of KV head g into
  // codes_ (the codes_ layout of block_tokens bt).
  // Returns each token's code error (squared, in the metric) when `errors` is non-null.
  void EncodeTokens(const LayerKeys& layer, uint32_t g, uint64_t begin, uint64_t end, uint32_t bt,
                    std::vector<float>* errors = nullptr);
  // exact=F: picks the tokens kept exact of KV head g from the errors of tokens [0, T).
  void PickExactTokens(uint32_t g, const std::vector<float>& errors);
  // Replaces the code score of every exact token in [0, position] by q . k in head_scores_.
  void ApplyExactTokens(const QueryView& query, uint64_t visible);
  // The query as the codes see it (rotated by w, or post-RoPE) into out [d].
  void ScoringQuery(const float* q, const float* q_pre, float* out) const;
  // Fills l_[g] from the query sample (identity when there is none).
  void FitMetric(const LayerKeys& layer, const RetrieverParams& params, uint32_t g);
  Status BuildHead(const LayerKeys& layer, uint32_t g, uint32_t bt);

  VqOptions opt_;
  uint32_t m_ = 0, dsub_ = 0, ksub_ = 0;
  bool qa_built_ = false;
  std::vector<std::vector<double>> l_;      // [kv][d][d] lower-triangular factor of C'
  std::vector<std::vector<float>> books_;   // [kv][M][ksub][dsub]
  std::vector<uint8_t> codes_;              // [blocks][kv][block_tokens][M] (ScoreBlocks layout)
  std::vector<std::vector<uint64_t>> exact_;  // exact=F: [kv] increasing token ids kept exact
  std::vector<float> exact_threshold_;      // [kv] code error above which a token is kept
  std::vector<float> head_scores_;
  std::vector<float> lut_, qbuf_, scores_;
};

}  // namespace tierkv::index
