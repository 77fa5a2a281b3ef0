// SpannRetriever ("spann", SPANN): for contexts whose block summaries exceed
// memory. The vectors are the blocks' summaries: per block and KV head its mean
// key and r - 1 farthest-point representative keys (PickRepresentatives, as
// "mean:r=R");
// per KV head they are clustered, the centroids stay in memory in a FAISS
// IndexFlatIP, and each cluster's posting list (block ids + the vectors, f16)
// goes to a PostingStore (posting_store.h: memory, or a file read with io_uring).
//
// Build, per KV head (n = blocks, k = ceil(n / size) clusters):
//   1. k-means (FAISS) of the mean keys;
//   2. balanced assignment, `rounds` times: vectors in a fixed shuffled order
//      each take the candidate cluster (8 nearest centroids) minimizing
//      |x - c|^2 + balance * mean_nearest_dist2 * size(c) / (n / k), sizes
//      updated as they go; centroids are then recomputed;
//   3. closure: a vector also joins every candidate cluster c with
//      |x - c| <= (1 + eps) |x - c_nearest|, at most `replicas` clusters in all.
// Select: per query head, clusters ranked by q . c (the FAISS index); SPANN's
// query-aware pruning on the inner-product-to-L2 reduction (the standard
// augmentation with R = the largest centroid norm makes the L2 distance of the
// augmented vectors proportional to dist(q, c) = R - (q / |q|) . c): probe the
// clusters with dist(q, c) <= (1 + eps2) dist(q, c_best), at least until the
// probed postings hold cover * (blocks the step retrieves) / (query heads)
// entries (the heads pool what they fetch), at most maxprobe. Postings probed by any head of the layer are read in one batch; a
// block's per-head score is the largest q . v among the fetched entries
// of its KV group (blocks fetched by no head get no mass), then heads combine
// per RetrieverParams::head_combine.
//
// Keys:
//   r         vectors per block (1: the mean key only), in [1, 16]. Default: 2
//   size      mean vectors per cluster, in [1, 2^16]. Default: 16
//   eps       closure epsilon, in [0, 10]. Default: 0.1
//   replicas  most clusters a vector joins, in [1, 8]. Default: 4
//   balance   size penalty, in [0, 100]. Default: 1
//   rounds    balanced assignment rounds, in [0, 10]. Default: 2
//   eps2      pruning epsilon, in [0, 100]. Default: 0.05
//   maxprobe  most clusters probed per query head, in [1, 2^16]. Default: 64
//   cover     probe floor, in multiples of the step's retrieved blocks shared
//             out over the query heads, in [0, 1024]. Default: 4
//   iters     k-means iterations, in [1, 100]. Default: 10
//   store     memory | file. Default: memory
//   dir       folder of the file store. Default: /tmp
//   uring     1 | 0: io_uring for the file store (else pread). Default: 1
// Causality: blocks past the step's visible range are skipped when scoring.
// IndexBytes: centroids + the store's RAM; OffMemoryIndexBytes: the file store's
// bytes; IndexBytesRead: bytes read from the store.
// Thread-safety: as Retriever.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "index/posting_store.h"
#include "index/retriever.h"

namespace tierkv::index {

struct SpannOptions {
  uint32_t r = 2;
  uint32_t size = 16;
  double eps = 0.1;
  uint32_t replicas = 4;
  double balance = 1.0;
  uint32_t rounds = 2;
  double eps2 = 0.05;
  uint32_t maxprobe = 64;
  double cover = 4.0;
  uint32_t iters = 10;
  bool file = false;
  std::string dir = "/tmp";
  bool uring = true;
};

class SpannRetriever final : public Retriever {
 public:
  explicit SpannRetriever(SpannOptions options = {});
  ~SpannRetriever() override;
  std::string Name() const override;
  size_t IndexBytes() const override;
  uint64_t OffMemoryIndexBytes() const override;
  uint64_t IndexBytesRead() const override;
  // The store of the last Build (null before): tests read its counters.
  const PostingStore* store() const { return store_.get(); }
  PostingStore* store() { return store_.get(); }
  // Clusters per KV head, and the mean clusters a vector joined, in the last Build.
  uint32_t clusters_per_head() const { return k_; }
  double mean_replicas() const { return mean_replicas_; }
  // Clusters probed per query head, averaged over Select calls since Build.
  double mean_probes() const { return selects_ == 0 ? 0.0 : double(probes_) / double(selects_); }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;

 private:
  struct Head;  // centroids, their FAISS index, posting sizes
  Status BuildHead(const float* vecs, uint64_t n, uint32_t d, uint32_t g,
                   std::vector<std::vector<uint8_t>>* postings);
  // Appends to *probe the clusters query head q (of KV head g) probes.
  Status Probe(const float* q, uint32_t g, uint64_t need, std::vector<uint32_t>* probe);

  SpannOptions opt_;
  uint32_t k_ = 0;
  double mean_replicas_ = 0.0;
  std::vector<std::unique_ptr<Head>> heads_;
  std::unique_ptr<PostingStore> store_;
  uint64_t probes_ = 0, selects_ = 0;
  std::vector<float> head_scores_, scores_;
};

}  // namespace tierkv::index
