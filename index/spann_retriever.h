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
// The vectors are rounded to f16 (as the postings store them) before clustering.
//
// Extend (issue 12 item 5, docs/decisions/0024-spann-incremental.md): the new
// blocks' vectors (and the re-summarized last block when it was partial) are
// assigned to the existing postings with the build's rules: the primary
// cluster minimizes |x - c|^2 + the last balancing round's size penalty (sizes
// as they stand), the closure adds the candidate clusters within (1 + eps), at
// most `replicas` in all; the touched postings are rewritten in the store. The
// centroids do not move. When the vectors assigned since the last clustering
// pass the share `rebalance` of all vectors, or a posting holds more than `skew`
// times the largest posting of the last clustering, a re-clustering of every
// vector starts on a background thread over its own copy (the vectors are kept,
// f16, in immutable chunks the thread shares); Select and Extend keep using the
// current index, and the first Select or Extend after the thread finished swaps
// the new index in (assigning the blocks added meanwhile). bg=0 re-clusters
// inside Extend instead (for comparisons).
//
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
//   rebalance share of vectors assigned since the last clustering that starts
//             a re-clustering, in [0, 1]; 0: never. Default: 0.15
//   skew      a posting past skew x the largest posting of the last clustering
//             starts one, in [1, 1000]. Default: 3
//   bg        1 | 0: re-cluster on a background thread (else inside Extend). Default: 1
// Causality: blocks past the step's visible range are skipped when scoring.
// IndexBytes: centroids + the store's RAM + the kept f16 vectors; OffMemoryIndexBytes: the file store's
// bytes; IndexBytesRead: bytes read from the store.
// Thread-safety: as Retriever (one caller at a time). The re-clustering thread
// reads only its snapshot (shared immutable chunks) and hands its result over
// through a slot guarded by a mutex; the destructor and Build cancel and join it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
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
  double rebalance = 0.15;
  double skew = 3.0;
  bool background = true;
  // The file store's engine factory (tests inject faults through it; not part of
  // the factory string). Default: empty (io::CreateIoEngine)
  io::IoEngineFactory engine_factory;
};

// Internals of the .cc (one clustering: heads + store; a run of f16 vectors).
struct SpannIndex;
struct SpannChunk;

class SpannRetriever final : public Retriever {
 public:
  explicit SpannRetriever(SpannOptions options = {});
  ~SpannRetriever() override;
  std::string Name() const override;
  size_t IndexBytes() const override;
  uint64_t OffMemoryIndexBytes() const override;
  uint64_t IndexBytesRead() const override;
  // The store of the index in use (null before Build): tests read its counters.
  const PostingStore* store() const;
  PostingStore* store();
  // Clusters per KV head, and the mean clusters a vector joined, in the last clustering.
  uint32_t clusters_per_head() const;
  double mean_replicas() const;
  // Clusters probed per query head, averaged over Select calls since Build.
  double mean_probes() const { return selects_ == 0 ? 0.0 : double(probes_) / double(selects_); }
  // The centroids of KV head g in the index in use, [k][d] (empty when none): tests.
  std::span<const float> centroids(uint32_t g) const;
  // Entries per posting of KV head g in the index in use, [k] (empty when none): tests.
  std::span<const uint32_t> posting_entries(uint32_t g) const;
  // Vectors per KV head assigned by Extend since the index in use was clustered.
  uint64_t assigned_vectors() const;
  // Re-clusterings swapped in since Build; whether one is running now.
  uint64_t rebalances() const { return rebalances_; }
  bool rebalancing() const { return worker_.joinable(); }
  // The error of the last re-clustering (OK when none failed).
  const Status& rebalance_status() const { return rebalance_status_; }
  // Waits for a running re-clustering and swaps its index in (tests, the end of
  // a benchmark); its error, if it failed (the old index stays then).
  Status WaitForRebalance();
  // Tests: called on the re-clustering thread before it starts (to hold it).
  void SetRebalanceHookForTest(std::function<void()> hook) { hook_ = std::move(hook); }

 protected:
  Status BuildImpl(const LayerKeys& layer, const RetrieverParams& params) override;
  // A failed assignment (the store's Rewrite: ENOSPC, EIO) is undone: the index
  // and its postings stay as they were and keep serving.
  Status ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) override;
  bool ExtendFailureKeepsIndex() const override { return true; }
  Status SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                    std::vector<uint32_t>* selected) override;

 private:
  struct Done;  // a finished re-clustering
  // Appends to *probe the clusters query head q (of KV head g) probes.
  Status Probe(const float* q, uint32_t g, uint64_t need, std::vector<uint32_t>* probe);
  // Assigns the vectors of blocks [first, blocks) to `ix` (which indexes
  // `indexed_tokens`; its entries of block `first` are replaced when indexed).
  Status Assign(SpannIndex* ix, uint64_t first, uint64_t indexed_tokens);
  // Starts a re-clustering when the rules above say so.
  Status MaybeRebalance();
  // Swaps a finished re-clustering in (wait: join a running one first); its
  // error, if any, is also kept in rebalance_status_ (the old index stays).
  Status Adopt(bool wait);
  void StopWorker();

  SpannOptions opt_;
  uint32_t KV_ = 0, d_ = 0;
  uint64_t tokens_ = 0;  // tokens the vectors cover
  std::vector<std::shared_ptr<const SpannChunk>> chunks_;  // later chunks override earlier blocks
  std::unique_ptr<SpannIndex> index_;
  Status rebalance_status_;
  uint64_t probes_ = 0, selects_ = 0, rebalances_ = 0;
  uint64_t read_before_ = 0;  // bytes read from the stores of earlier clusterings
  std::vector<float> head_scores_, scores_;
  // The re-clustering thread and its handoff.
  std::thread worker_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::atomic<bool> finished_{false};
  Mutex mu_;
  std::unique_ptr<Done> done_ GUARDED_BY(mu_);
  std::function<void()> hook_;
};

}  // namespace tierkv::index
