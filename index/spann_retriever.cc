#include "index/spann_retriever.h"

#include <faiss/IndexFlat.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <numeric>

#include "index/block_scoring.h"
#include "index/faiss_util.h"
#include "index/rng.h"
#include "kernels/half.h"

namespace tierkv::index {

// One KV head of a clustering.
struct SpannHead {
  std::vector<float> centroids;   // [k][d]
  faiss::IndexFlatIP index;       // the centroids, for ranking by q . c
  float radius = 0.f;             // largest centroid norm (R of the MIPS reduction)
  std::vector<uint32_t> entries;  // [k] entries per posting
  std::vector<uint32_t> primary;  // [k] vectors whose primary cluster it is
  double penalty = 0.0;           // the last balancing round's size penalty (0: none)
  uint32_t largest = 0;           // the largest posting when clustered
  std::vector<uint32_t> tail;     // postings holding the last indexed block's vectors
  explicit SpannHead(uint32_t d) : index(d) {}
};

// What Select reads: one clustering and the blocks assigned to it since.
struct SpannIndex {
  uint32_t k = 0;  // clusters per KV head
  double mean_replicas = 0.0;
  std::vector<std::unique_ptr<SpannHead>> heads;
  std::unique_ptr<PostingStore> store;  // posting g * k + c: cluster c of KV head g
  uint64_t tokens = 0;     // tokens indexed
  uint64_t clustered = 0;  // vectors per KV head when clustered
  uint64_t vectors = 0;    // vectors per KV head indexed now
};

// The f16 vectors of blocks [first, first + blocks): [blocks][KV][r][d].
struct SpannChunk {
  uint64_t first = 0, blocks = 0;
  std::vector<uint16_t> v;
};

struct SpannRetriever::Done {
  Status status;
  std::unique_ptr<SpannIndex> index;
};

namespace {

// A posting: entries of (u32 block, head_dim f16).
size_t EntryBytes(uint32_t d) { return sizeof(uint32_t) + size_t{d} * sizeof(uint16_t); }

void AppendEntry(uint32_t block, const float* v, uint32_t d, std::vector<uint8_t>* out) {
  const size_t at = out->size();
  out->resize(at + EntryBytes(d));
  std::memcpy(out->data() + at, &block, sizeof(block));
  for (uint32_t c = 0; c < d; ++c) {
    const uint16_t h = kernels::FloatToF16(v[c]);
    std::memcpy(out->data() + at + sizeof(block) + c * sizeof(uint16_t), &h, sizeof(h));
  }
}

// Recomputes centroids as the means of their vectors (an empty cluster keeps its centroid).
void UpdateCentroids(const float* x, uint64_t n, uint32_t d, uint32_t k, const std::vector<uint32_t>& assign,
                     std::vector<float>* centroids) {
  std::vector<double> sum(size_t{k} * d, 0.0);
  std::vector<uint64_t> count(k, 0);
  for (uint64_t i = 0; i < n; ++i) {
    ++count[assign[i]];
    for (uint32_t c = 0; c < d; ++c) sum[size_t{assign[i]} * d + c] += x[i * d + c];
  }
  for (uint32_t j = 0; j < k; ++j) {
    if (count[j] == 0) continue;
    for (uint32_t c = 0; c < d; ++c) (*centroids)[size_t{j} * d + c] = static_cast<float>(sum[size_t{j} * d + c] / count[j]);
  }
}

// The vectors of blocks [first, end) of `layer` (mean key + r - 1 representatives per block and KV head), f16.
std::shared_ptr<const SpannChunk> MakeChunk(const LayerKeys& layer, uint32_t bt, uint32_t r, uint64_t first,
                                            uint64_t end) {
  auto c = std::make_shared<SpannChunk>();
  const uint32_t KV = layer.num_kv_heads, d = layer.head_dim;
  c->first = first;
  c->blocks = end - first;
  c->v.resize(c->blocks * KV * r * d);
  std::vector<float> mean(d), reps(size_t{r} * d);
  for (uint64_t b = first; b < end; ++b) {
    const uint64_t begin = b * bt, stop = std::min(layer.num_tokens, begin + bt);
    for (uint32_t g = 0; g < KV; ++g) {
      MeanKey(layer, g, begin, stop, mean.data());
      PickRepresentatives(layer, g, begin, stop, mean.data(), r, RepPick::kKCenter, reps.data());
      uint16_t* out = c->v.data() + ((b - first) * KV + g) * r * d;
      for (size_t i = 0; i < reps.size(); ++i) out[i] = kernels::FloatToF16(reps[i]);
    }
  }
  return c;
}

// Vectors of KV head g for blocks [first, end) into x [(end - first) * r][d];
// later chunks override earlier ones.
void Gather(const std::vector<std::shared_ptr<const SpannChunk>>& chunks, uint32_t g, uint32_t KV, uint32_t r,
            uint32_t d, uint64_t first, uint64_t end, float* x) {
  for (const auto& c : chunks) {
    const uint64_t lo = std::max(first, c->first), hi = std::min(end, c->first + c->blocks);
    for (uint64_t b = lo; b < hi; ++b) {
      const uint16_t* in = c->v.data() + ((b - c->first) * KV + g) * r * d;
      float* out = x + (b - first) * r * d;
      for (size_t i = 0; i < size_t{r} * d; ++i) out[i] = kernels::F16ToFloat(in[i]);
    }
  }
}

// Clusters the n vectors x of KV head g into k postings (the steps of the header)
// and adds their entries to (*postings)[g * k + c]; *joined += clusters joined.
Status ClusterHead(const SpannOptions& opt, const float* x, uint64_t n, uint32_t d, uint32_t g, uint32_t k,
                   SpannHead* head_out, std::vector<std::vector<uint8_t>>* postings, uint64_t* joined) {
  SpannHead& head = *head_out;
  KMeansOptions km;
  km.iterations = opt.iters;
  km.seed = 4321 + g;
  RETURN_IF_ERROR(KMeans(x, n, d, k, km, &head.centroids));
  const uint32_t nn = std::min<uint32_t>(8, k);
  std::vector<int64_t> labels;
  std::vector<float> dist2;
  RETURN_IF_ERROR(NearestCentroids(x, n, d, head.centroids.data(), k, nn, &labels, &dist2));
  std::vector<uint32_t> assign(n);
  for (uint64_t i = 0; i < n; ++i) assign[i] = static_cast<uint32_t>(labels[i * nn]);
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(Rng::Derive(99, g, 1));
  for (uint64_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
  head.penalty = 0.0;
  for (uint32_t round = 0; round < opt.rounds; ++round) {
    double mean_nearest = 0.0;
    for (uint64_t i = 0; i < n; ++i) mean_nearest += dist2[i * nn];
    mean_nearest /= double(n);
    const double penalty = opt.balance * mean_nearest * double(k) / double(n);
    head.penalty = penalty;
    std::vector<uint64_t> size(k, 0);
    for (uint64_t i : order) {
      double best = std::numeric_limits<double>::infinity();
      for (uint32_t j = 0; j < nn; ++j) {
        const int64_t c = labels[i * nn + j];
        if (c < 0) continue;
        const double cost = dist2[i * nn + j] + penalty * double(size[c]);
        if (cost < best) best = cost, assign[i] = static_cast<uint32_t>(c);
      }
      ++size[assign[i]];
    }
    UpdateCentroids(x, n, d, k, assign, &head.centroids);
    RETURN_IF_ERROR(NearestCentroids(x, n, d, head.centroids.data(), k, nn, &labels, &dist2));
  }
  // Closure assignment, then the postings of this head (vectors in block order).
  std::vector<std::vector<uint32_t>> members(k);
  head.primary.assign(k, 0);
  for (uint64_t i = 0; i < n; ++i) {
    members[assign[i]].push_back(static_cast<uint32_t>(i));
    ++head.primary[assign[i]];
    uint32_t count = 1;
    const double limit = (1.0 + opt.eps) * std::sqrt(std::max(0.f, dist2[i * nn]));
    for (uint32_t j = 0; j < nn && count < opt.replicas; ++j) {
      const int64_t c = labels[i * nn + j];
      if (c < 0 || static_cast<uint32_t>(c) == assign[i] || std::sqrt(std::max(0.f, dist2[i * nn + j])) > limit) continue;
      members[c].push_back(static_cast<uint32_t>(i));
      ++count;
    }
    *joined += count;
  }
  head.entries.assign(k, 0);
  head.radius = 0.f;
  head.largest = 0;
  head.tail.clear();
  const uint64_t last_block = (n - 1) / opt.r;
  for (uint32_t c = 0; c < k; ++c) {
    std::sort(members[c].begin(), members[c].end());
    std::vector<uint8_t>& p = (*postings)[size_t{g} * k + c];
    for (uint32_t i : members[c]) AppendEntry(i / opt.r, x + uint64_t{i} * d, d, &p);
    if (!members[c].empty() && members[c].back() / opt.r == last_block) head.tail.push_back(c);
    head.entries[c] = static_cast<uint32_t>(members[c].size());
    head.largest = std::max(head.largest, head.entries[c]);
    double n2 = 0.0;
    for (uint32_t i = 0; i < d; ++i) n2 += double(head.centroids[size_t{c} * d + i]) * head.centroids[size_t{c} * d + i];
    head.radius = std::max(head.radius, static_cast<float>(std::sqrt(n2)));
  }
  try {
    head.index.reset();
    head.index.add(k, head.centroids.data());
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS IndexFlatIP: ") + e.what());
  }
  return OkStatus();
}

// A whole clustering of the vectors of `blocks` blocks (`tokens` tokens) into *out.
Status ClusterAll(const SpannOptions& opt, uint32_t KV, uint32_t d, uint64_t blocks, uint64_t tokens,
                  const std::vector<std::shared_ptr<const SpannChunk>>& chunks, const std::atomic<bool>& cancel,
                  SpannIndex* out) {
  const uint64_t n = blocks * opt.r;
  if (n == 0) return InvalidArgument("spann: no blocks to cluster");
  if (n > UINT32_MAX) return InvalidArgument("spann: too many vectors per KV head");
  out->k = static_cast<uint32_t>(std::clamp<uint64_t>((n + opt.size - 1) / opt.size, 1, n));
  if (opt.file) {
    FilePostingStoreOptions fo;
    fo.dir = opt.dir;
    fo.use_io_uring = opt.uring;
    fo.engine_factory = opt.engine_factory;
    ASSIGN_OR_RETURN(out->store, NewFilePostingStore(fo));
  } else {
    out->store = NewMemoryPostingStore();
  }
  std::vector<std::vector<uint8_t>> postings(size_t{KV} * out->k);
  std::vector<float> x(n * d);
  uint64_t joined = 0;
  for (uint32_t g = 0; g < KV; ++g) {
    if (cancel.load(std::memory_order_relaxed)) return Unavailable("spann: re-clustering cancelled");
    Gather(chunks, g, KV, opt.r, d, 0, blocks, x.data());
    out->heads.push_back(std::make_unique<SpannHead>(d));
    RETURN_IF_ERROR(ClusterHead(opt, x.data(), n, d, g, out->k, out->heads.back().get(), &postings, &joined));
  }
  out->mean_replicas = double(joined) / double(n) / KV;
  out->tokens = tokens;
  out->clustered = out->vectors = n;
  return out->store->WriteAll(postings);
}

}  // namespace

SpannRetriever::SpannRetriever(SpannOptions options) : opt_(std::move(options)) {}
SpannRetriever::~SpannRetriever() { StopWorker(); }

std::string SpannRetriever::Name() const {
  // The factory string with the keys that differ from the defaults.
  const SpannOptions def;
  std::string keys;
  char buf[64];
  auto add = [&keys](const std::string& kv) { keys += (keys.empty() ? "" : ",") + kv; };
  auto num = [&buf](double v) { return std::snprintf(buf, sizeof(buf), "%g", v), std::string(buf); };
  if (opt_.r != def.r) add("r=" + std::to_string(opt_.r));
  if (opt_.size != def.size) add("size=" + std::to_string(opt_.size));
  if (opt_.eps != def.eps) add("eps=" + num(opt_.eps));
  if (opt_.replicas != def.replicas) add("replicas=" + std::to_string(opt_.replicas));
  if (opt_.balance != def.balance) add("balance=" + num(opt_.balance));
  if (opt_.rounds != def.rounds) add("rounds=" + std::to_string(opt_.rounds));
  if (opt_.eps2 != def.eps2) add("eps2=" + num(opt_.eps2));
  if (opt_.maxprobe != def.maxprobe) add("maxprobe=" + std::to_string(opt_.maxprobe));
  if (opt_.cover != def.cover) add("cover=" + num(opt_.cover));
  if (opt_.iters != def.iters) add("iters=" + std::to_string(opt_.iters));
  if (opt_.file) add("store=file");
  if (opt_.file && !opt_.uring) add("uring=0");
  if (opt_.rebalance != def.rebalance) add("rebalance=" + num(opt_.rebalance));
  if (opt_.skew != def.skew) add("skew=" + num(opt_.skew));
  if (!opt_.background) add("bg=0");
  return keys.empty() ? "spann" : "spann:" + keys;
}

size_t SpannRetriever::IndexBytes() const {
  if (!index_) return 0;
  size_t n = index_->store ? index_->store->MemoryBytes() : 0;
  for (const auto& h : index_->heads) {
    n += h->centroids.size() * sizeof(float) + (h->entries.size() + h->primary.size()) * sizeof(uint32_t);
  }
  for (const auto& c : chunks_) n += c->v.size() * sizeof(uint16_t);
  return n;
}

uint64_t SpannRetriever::OffMemoryIndexBytes() const {
  return index_ && index_->store && opt_.file ? index_->store->StoredBytes() : 0;
}
// Cumulative over the stores of every clustering since Build.
uint64_t SpannRetriever::IndexBytesRead() const {
  return read_before_ + (index_ && index_->store ? index_->store->bytes_read() : 0);
}
const PostingStore* SpannRetriever::store() const { return index_ ? index_->store.get() : nullptr; }
PostingStore* SpannRetriever::store() { return index_ ? index_->store.get() : nullptr; }
uint32_t SpannRetriever::clusters_per_head() const { return index_ ? index_->k : 0; }
double SpannRetriever::mean_replicas() const { return index_ ? index_->mean_replicas : 0.0; }
std::span<const float> SpannRetriever::centroids(uint32_t g) const {
  if (!index_ || g >= index_->heads.size()) return {};
  return index_->heads[g]->centroids;
}
std::span<const uint32_t> SpannRetriever::posting_entries(uint32_t g) const {
  if (!index_ || g >= index_->heads.size()) return {};
  return index_->heads[g]->entries;
}
uint64_t SpannRetriever::assigned_vectors() const { return index_ ? index_->vectors - index_->clustered : 0; }

Status SpannRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  StopWorker();
  const uint32_t bt = params.block_tokens;
  const uint64_t blocks = (layer.num_tokens + bt - 1) / bt;
  if (blocks * opt_.r > UINT32_MAX) return InvalidArgument("spann: too many vectors per KV head");
  KV_ = layer.num_kv_heads;
  d_ = layer.head_dim;
  index_.reset();
  probes_ = selects_ = rebalances_ = read_before_ = 0;
  rebalance_status_ = OkStatus();
  chunks_ = {MakeChunk(layer, bt, opt_.r, 0, blocks)};
  tokens_ = layer.num_tokens;
  auto ix = std::make_unique<SpannIndex>();
  const std::atomic<bool> never{false};
  RETURN_IF_ERROR(ClusterAll(opt_, KV_, d_, blocks, tokens_, chunks_, never, ix.get()));
  index_ = std::move(ix);
  return OkStatus();
}

Status SpannRetriever::ExtendImpl(const LayerKeys& layer, uint64_t old_tokens) {
  (void)Adopt(/*wait=*/false);  // a failure keeps the index in use (rebalance_status_)
  if (layer.num_tokens == old_tokens) return OkStatus();
  const uint32_t bt = params().block_tokens;
  const uint64_t first = old_tokens / bt, blocks = (layer.num_tokens + bt - 1) / bt;
  if (blocks * opt_.r > UINT32_MAX) return InvalidArgument("spann: too many vectors per KV head");
  // What Assign changes, restored when it fails (ExtendFailureKeepsIndex): the
  // store points at the old records until its Rewrite succeeds.
  struct Saved {
    std::vector<uint32_t> entries, primary, tail;
  };
  std::vector<Saved> saved;
  for (const auto& h : index_->heads) saved.push_back({h->entries, h->primary, h->tail});
  const uint64_t saved_tokens = tokens_;
  chunks_.push_back(MakeChunk(layer, bt, opt_.r, first, blocks));
  tokens_ = layer.num_tokens;
  if (Status st = Assign(index_.get(), first, old_tokens); !st.ok()) {
    chunks_.pop_back();
    tokens_ = saved_tokens;
    for (size_t g = 0; g < saved.size(); ++g) {
      index_->heads[g]->entries = std::move(saved[g].entries);
      index_->heads[g]->primary = std::move(saved[g].primary);
      index_->heads[g]->tail = std::move(saved[g].tail);
    }
    return st;
  }
  // The index is extended; a re-clustering that fails here (the synchronous one)
  // keeps it, as a failed background one does.
  if (Status st = MaybeRebalance(); !st.ok()) rebalance_status_ = st;
  return OkStatus();
}

Status SpannRetriever::Assign(SpannIndex* ix, uint64_t first, uint64_t indexed_tokens) {
  const uint32_t bt = params().block_tokens, d = d_, R = opt_.r, k = ix->k, nn = std::min<uint32_t>(8, k);
  const uint64_t blocks = (tokens_ + bt - 1) / bt, old_blocks = (indexed_tokens + bt - 1) / bt;
  if (first >= blocks) return OkStatus();
  const bool replace = first < old_blocks;  // block `first` was indexed partial: its entries go
  const uint64_t m = (blocks - first) * R;
  std::vector<float> x(m * d);
  std::vector<int64_t> labels;
  std::vector<float> dist2;
  std::map<uint32_t, std::vector<uint8_t>> added;  // posting id -> entries to append
  for (uint32_t g = 0; g < KV_; ++g) {
    SpannHead& head = *ix->heads[g];
    Gather(chunks_, g, KV_, R, d, first, blocks, x.data());
    RETURN_IF_ERROR(NearestCentroids(x.data(), m, d, head.centroids.data(), k, nn, &labels, &dist2));
    if (replace) {
      for (uint32_t c : head.tail) added[g * k + c];  // rewritten without block `first`
    }
    std::vector<uint32_t> tail;
    for (uint64_t i = 0; i < m; ++i) {
      // The build's rules: balanced primary (sizes as they stand), then the closure.
      uint32_t primary = static_cast<uint32_t>(labels[i * nn]);
      double best = std::numeric_limits<double>::infinity();
      for (uint32_t j = 0; j < nn; ++j) {
        const int64_t c = labels[i * nn + j];
        if (c < 0) continue;
        const double cost = dist2[i * nn + j] + head.penalty * double(head.primary[c]);
        if (cost < best) best = cost, primary = static_cast<uint32_t>(c);
      }
      ++head.primary[primary];
      const uint32_t block = static_cast<uint32_t>(first + i / R);
      std::vector<uint32_t> join{primary};
      const double limit = (1.0 + opt_.eps) * std::sqrt(std::max(0.f, dist2[i * nn]));
      for (uint32_t j = 0; j < nn && join.size() < opt_.replicas; ++j) {
        const int64_t c = labels[i * nn + j];
        if (c < 0 || static_cast<uint32_t>(c) == primary || std::sqrt(std::max(0.f, dist2[i * nn + j])) > limit) continue;
        join.push_back(static_cast<uint32_t>(c));
      }
      for (uint32_t c : join) {
        AppendEntry(block, x.data() + i * d, d, &added[g * k + c]);
        ++head.entries[c];
        if (block == blocks - 1) tail.push_back(c);
      }
    }
    std::sort(tail.begin(), tail.end());
    tail.erase(std::unique(tail.begin(), tail.end()), tail.end());
    head.tail = std::move(tail);
  }
  std::vector<uint32_t> ids;
  for (const auto& [id, entries] : added) ids.push_back(id);
  std::vector<std::span<const uint8_t>> now;
  RETURN_IF_ERROR(ix->store->ReadBatch(ids, &now));
  const size_t eb = EntryBytes(d);
  std::vector<std::vector<uint8_t>> contents(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (now[i].size() % eb != 0) return Corruption("spann posting " + std::to_string(ids[i]) + " has a partial entry");
    std::vector<uint8_t>& out = contents[i];
    out.reserve(now[i].size() + added[ids[i]].size());
    for (size_t at = 0; at < now[i].size(); at += eb) {
      uint32_t block;
      std::memcpy(&block, now[i].data() + at, sizeof(block));
      if (replace && block == first) {
        --ix->heads[ids[i] / k]->entries[ids[i] % k];
        continue;
      }
      out.insert(out.end(), now[i].begin() + at, now[i].begin() + at + eb);
    }
    out.insert(out.end(), added[ids[i]].begin(), added[ids[i]].end());
  }
  RETURN_IF_ERROR(ix->store->Rewrite(ids, contents));
  ix->tokens = tokens_;
  ix->vectors = blocks * R;
  return OkStatus();
}

Status SpannRetriever::MaybeRebalance() {
  if (worker_.joinable()) return OkStatus();
  const SpannIndex& ix = *index_;
  bool due = opt_.rebalance > 0 && double(ix.vectors - ix.clustered) > opt_.rebalance * double(ix.vectors);
  for (const auto& h : ix.heads) {
    const uint32_t most = *std::max_element(h->entries.begin(), h->entries.end());
    if (h->largest > 0 && double(most) > opt_.skew * h->largest) due = true;
  }
  if (!due) return OkStatus();
  const uint32_t bt = params().block_tokens;
  const uint64_t tokens = tokens_, blocks = (tokens + bt - 1) / bt;
  if (!opt_.background) {
    auto fresh = std::make_unique<SpannIndex>();
    const std::atomic<bool> never{false};
    RETURN_IF_ERROR(ClusterAll(opt_, KV_, d_, blocks, tokens, chunks_, never, fresh.get()));
    read_before_ += index_->store->bytes_read();
    index_ = std::move(fresh);
    ++rebalances_;
    return OkStatus();
  }
  cancel_ = std::make_shared<std::atomic<bool>>(false);
  finished_.store(false);
  // The thread owns copies of everything it reads (the chunks are immutable and shared).
  worker_ = std::thread([this, opt = opt_, KV = KV_, d = d_, blocks, tokens, chunks = chunks_, cancel = cancel_,
                         hook = hook_] {
    // A background thread: one OpenMP thread (this thread's setting only) at a
    // lower priority (this thread only, Linux), so the Select thread keeps a core.
    omp_set_num_threads(1);
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
    if (hook) hook();
    auto done = std::make_unique<Done>();
    done->index = std::make_unique<SpannIndex>();
    done->status = ClusterAll(opt, KV, d, blocks, tokens, chunks, *cancel, done->index.get());
    {
      MutexLock lock(&mu_);
      done_ = std::move(done);
    }
    finished_.store(true, std::memory_order_release);
  });
  return OkStatus();
}

Status SpannRetriever::Adopt(bool wait) {
  if (!worker_.joinable() || (!wait && !finished_.load(std::memory_order_acquire))) return OkStatus();
  worker_.join();
  finished_.store(false);
  std::unique_ptr<Done> done;
  {
    MutexLock lock(&mu_);
    done = std::move(done_);
  }
  Status st = done ? done->status : Internal("spann: the re-clustering thread left no result");
  // Blocks added while it ran (and a block then partial) go to the new index too.
  if (st.ok() && tokens_ > done->index->tokens) {
    st = Assign(done->index.get(), done->index->tokens / params().block_tokens, done->index->tokens);
  }
  rebalance_status_ = st;
  if (!st.ok()) return st;
  read_before_ += index_->store->bytes_read();
  index_ = std::move(done->index);
  ++rebalances_;
  return OkStatus();
}

Status SpannRetriever::WaitForRebalance() { return Adopt(/*wait=*/true); }

void SpannRetriever::StopWorker() {
  if (!worker_.joinable()) return;
  cancel_->store(true);
  worker_.join();
  finished_.store(false);
  MutexLock lock(&mu_);
  done_.reset();
}

Status SpannRetriever::Probe(const float* q, uint32_t g, uint64_t need, std::vector<uint32_t>* probe) {
  const SpannHead& head = *index_->heads[g];
  const uint32_t d = layer().head_dim, depth = std::min(opt_.maxprobe, index_->k);
  std::vector<float> ip(depth);
  std::vector<faiss::Index::idx_t> label(depth);
  try {
    head.index.search(1, q, depth, ip.data(), label.data());
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS search: ") + e.what());
  }
  double qn = 0.0;
  for (uint32_t c = 0; c < d; ++c) qn += double(q[c]) * q[c];
  qn = std::max(std::sqrt(qn), 1e-30);
  const double best = head.radius - ip[0] / qn;
  uint64_t covered = 0;
  for (uint32_t i = 0; i < depth && label[i] >= 0; ++i) {
    const double dist = head.radius - ip[i] / qn;
    if (i > 0 && dist > (1.0 + opt_.eps2) * best && covered >= need) break;
    probe->push_back(static_cast<uint32_t>(label[i]));
    covered += head.entries[label[i]];
    ++probes_;
  }
  return OkStatus();
}

Status SpannRetriever::SelectImpl(const QueryView& query, uint64_t num_blocks, std::span<const uint32_t> always_kept,
                                  std::vector<uint32_t>* selected) {
  (void)Adopt(/*wait=*/false);  // a finished re-clustering swaps in; a failed one keeps this index
  const uint32_t d = query.head_dim, H = query.num_q_heads, KV = layer().num_kv_heads, group = H / KV;
  const uint32_t k = index_->k;
  const uint64_t visible = VisibleBlocks(query.position, params().block_tokens);
  // Entries each head's probes must hold: the budget's retrieved blocks, shared
  // out over the query heads (they pool their postings) and scaled by `cover`.
  const uint64_t need = static_cast<uint64_t>(
      std::ceil(opt_.cover * static_cast<double>(num_blocks - always_kept.size()) / static_cast<double>(H)));
  std::vector<uint32_t> ids, probe;
  for (uint32_t g = 0; g < KV; ++g) {
    probe.clear();
    for (uint32_t h = g * group; h < (g + 1) * group; ++h) RETURN_IF_ERROR(Probe(query.q + size_t{h} * d, g, need, &probe));
    std::sort(probe.begin(), probe.end());
    probe.erase(std::unique(probe.begin(), probe.end()), probe.end());
    for (uint32_t c : probe) ids.push_back(g * k + c);
  }
  selects_ += H;
  std::vector<std::span<const uint8_t>> postings;
  RETURN_IF_ERROR(index_->store->ReadBatch(ids, &postings));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  head_scores_.assign(size_t{H} * visible, kNegInf);
  // Per KV group, the fetched visible entries are scored by kernels ScoreBlocks
  // (each entry a unit of one KV head, the group's query heads against it).
  const size_t eb = EntryBytes(d);
  std::vector<uint32_t> blocks;
  std::vector<float> vecs, unit_scores;
  QueryView group_query = query;
  group_query.num_q_heads = group;
  size_t i = 0;
  for (uint32_t g = 0; g < KV; ++g) {
    blocks.clear();
    vecs.clear();
    for (; i < ids.size() && ids[i] / k == g; ++i) {
      const std::span<const uint8_t> p = postings[i];
      if (p.size() % eb != 0) return Corruption("spann posting " + std::to_string(ids[i]) + " has a partial entry");
      for (size_t at = 0; at < p.size(); at += eb) {
        uint32_t block;
        std::memcpy(&block, p.data() + at, sizeof(block));
        if (block >= visible) continue;
        blocks.push_back(block);
        for (uint32_t c = 0; c < d; ++c) {
          uint16_t hbits;
          std::memcpy(&hbits, p.data() + at + sizeof(block) + c * sizeof(uint16_t), sizeof(hbits));
          vecs.push_back(kernels::F16ToFloat(hbits));
        }
      }
    }
    if (blocks.empty()) continue;
    group_query.q = query.q + size_t{g} * group * d;
    RETURN_IF_ERROR(ScoreUnitsPerHead(group_query, 1, vecs, blocks.size(), &unit_scores));
    for (uint32_t j = 0; j < group; ++j) {
      float* out = head_scores_.data() + size_t{g * group + j} * visible;
      const float* s = unit_scores.data() + size_t{j} * blocks.size();
      for (size_t e = 0; e < blocks.size(); ++e) out[blocks[e]] = std::max(out[blocks[e]], s[e]);
    }
  }
  CombineHeads(head_scores_, H, visible, params().head_combine, SoftmaxScale(d), &scores_);
  return TopKSelect(scores_, num_blocks, always_kept, selected);
}

}  // namespace tierkv::index
