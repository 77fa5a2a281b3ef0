#include "index/spann_retriever.h"

#include <faiss/IndexFlat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <numeric>

#include "index/block_scoring.h"
#include "index/faiss_util.h"
#include "index/rng.h"
#include "kernels/half.h"

namespace tierkv::index {

struct SpannRetriever::Head {
  std::vector<float> centroids;  // [k][d]
  faiss::IndexFlatIP index;      // the centroids, for ranking by q . c
  float radius = 0.f;            // largest centroid norm (R of the MIPS reduction)
  std::vector<uint32_t> entries; // [k] entries per posting
  explicit Head(uint32_t d) : index(d) {}
};

namespace {

// A posting: entries of (u32 block, head_dim f16), sorted by block.
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

}  // namespace

SpannRetriever::SpannRetriever(SpannOptions options) : opt_(std::move(options)) {}
SpannRetriever::~SpannRetriever() = default;

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
  return keys.empty() ? "spann" : "spann:" + keys;
}

size_t SpannRetriever::IndexBytes() const {
  size_t n = store_ ? store_->MemoryBytes() : 0;
  for (const auto& h : heads_) n += h->centroids.size() * sizeof(float) + h->entries.size() * sizeof(uint32_t);
  return n;
}

uint64_t SpannRetriever::OffMemoryIndexBytes() const { return store_ && opt_.file ? store_->StoredBytes() : 0; }
uint64_t SpannRetriever::IndexBytesRead() const { return store_ ? store_->bytes_read() : 0; }

Status SpannRetriever::BuildHead(const float* x, uint64_t n, uint32_t d, uint32_t g,
                                 std::vector<std::vector<uint8_t>>* postings) {
  Head& head = *heads_[g];
  KMeansOptions km;
  km.iterations = opt_.iters;
  km.seed = 4321 + g;
  RETURN_IF_ERROR(KMeans(x, n, d, k_, km, &head.centroids));
  const uint32_t nn = std::min<uint32_t>(8, k_);
  std::vector<int64_t> labels;
  std::vector<float> dist2;
  RETURN_IF_ERROR(NearestCentroids(x, n, d, head.centroids.data(), k_, nn, &labels, &dist2));
  std::vector<uint32_t> assign(n);
  for (uint64_t i = 0; i < n; ++i) assign[i] = static_cast<uint32_t>(labels[i * nn]);
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(Rng::Derive(99, g, 1));
  for (uint64_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
  for (uint32_t round = 0; round < opt_.rounds; ++round) {
    double mean_nearest = 0.0;
    for (uint64_t i = 0; i < n; ++i) mean_nearest += dist2[i * nn];
    mean_nearest /= double(n);
    const double penalty = opt_.balance * mean_nearest * double(k_) / double(n);
    std::vector<uint64_t> size(k_, 0);
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
    UpdateCentroids(x, n, d, k_, assign, &head.centroids);
    RETURN_IF_ERROR(NearestCentroids(x, n, d, head.centroids.data(), k_, nn, &labels, &dist2));
  }
  // Closure assignment, then the postings of this head (vectors in block order).
  std::vector<std::vector<uint32_t>> members(k_);
  uint64_t joined = 0;
  for (uint64_t i = 0; i < n; ++i) {
    members[assign[i]].push_back(static_cast<uint32_t>(i));
    uint32_t count = 1;
    const double limit = (1.0 + opt_.eps) * std::sqrt(std::max(0.f, dist2[i * nn]));
    for (uint32_t j = 0; j < nn && count < opt_.replicas; ++j) {
      const int64_t c = labels[i * nn + j];
      if (c < 0 || static_cast<uint32_t>(c) == assign[i] || std::sqrt(std::max(0.f, dist2[i * nn + j])) > limit) continue;
      members[c].push_back(static_cast<uint32_t>(i));
      ++count;
    }
    joined += count;
  }
  mean_replicas_ += double(joined) / double(n);
  head.entries.assign(k_, 0);
  head.radius = 0.f;
  for (uint32_t c = 0; c < k_; ++c) {
    std::sort(members[c].begin(), members[c].end());
    std::vector<uint8_t>& p = (*postings)[size_t{g} * k_ + c];
    for (uint32_t i : members[c]) AppendEntry(i / opt_.r, x + uint64_t{i} * d, d, &p);
    head.entries[c] = static_cast<uint32_t>(members[c].size());
    double n2 = 0.0;
    for (uint32_t i = 0; i < d; ++i) n2 += double(head.centroids[size_t{c} * d + i]) * head.centroids[size_t{c} * d + i];
    head.radius = std::max(head.radius, static_cast<float>(std::sqrt(n2)));
  }
  try {
    head.index.reset();
    head.index.add(k_, head.centroids.data());
  } catch (const std::exception& e) {
    return Internal(std::string("FAISS IndexFlatIP: ") + e.what());
  }
  return OkStatus();
}

Status SpannRetriever::BuildImpl(const LayerKeys& layer, const RetrieverParams& params) {
  const uint32_t d = layer.head_dim, KV = layer.num_kv_heads;
  BlockSummaries s;
  RETURN_IF_ERROR(BuildBlockSummaries(layer, params.block_tokens, /*want_minmax=*/false, /*want_mean=*/true, &s));
  const uint64_t blocks = s.num_blocks, R = opt_.r, n = blocks * R;
  if (n > UINT32_MAX) return InvalidArgument("spann: too many vectors per KV head");
  k_ = static_cast<uint32_t>(std::clamp<uint64_t>((n + opt_.size - 1) / opt_.size, 1, n));
  if (opt_.file) {
    FilePostingStoreOptions fo;
    fo.dir = opt_.dir;
    fo.use_io_uring = opt_.uring;
    ASSIGN_OR_RETURN(store_, NewFilePostingStore(fo));
  } else {
    store_ = NewMemoryPostingStore();
  }
  heads_.clear();
  mean_replicas_ = 0.0;
  probes_ = selects_ = 0;
  std::vector<std::vector<uint8_t>> postings(size_t{KV} * k_);
  std::vector<float> x(n * d);
  for (uint32_t g = 0; g < KV; ++g) {
    // Vector b * R + j: representative j of block b (j = 0: the mean key).
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t begin = b * params.block_tokens, end = std::min(layer.num_tokens, begin + params.block_tokens);
      PickRepresentatives(layer, g, begin, end, s.mean.data() + (b * KV + g) * d, opt_.r, RepPick::kKCenter,
                          x.data() + b * R * d);
    }
    heads_.push_back(std::make_unique<Head>(d));
    RETURN_IF_ERROR(BuildHead(x.data(), n, d, g, &postings));
  }
  mean_replicas_ /= KV;
  return store_->WriteAll(postings);
}

Status SpannRetriever::Probe(const float* q, uint32_t g, uint64_t need, std::vector<uint32_t>* probe) {
  const Head& head = *heads_[g];
  const uint32_t d = layer().head_dim, depth = std::min(opt_.maxprobe, k_);
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
  const uint32_t d = query.head_dim, H = query.num_q_heads, KV = layer().num_kv_heads, group = H / KV;
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
    for (uint32_t c : probe) ids.push_back(g * k_ + c);
  }
  selects_ += H;
  std::vector<std::span<const uint8_t>> postings;
  RETURN_IF_ERROR(store_->ReadBatch(ids, &postings));
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
    for (; i < ids.size() && ids[i] / k_ == g; ++i) {
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
