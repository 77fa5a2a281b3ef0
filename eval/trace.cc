#include "eval/trace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/checksum.h"
#include "kernels/half.h"

namespace tierkv::index {
namespace {

static_assert(std::endian::native == std::endian::little,
              "trace files are little-endian; this reader/writer copies tensors as-is");

// File layout v1 (docs/trace-format.md).
constexpr char kMagic[8] = {'T', 'K', 'V', 'T', 'R', 'A', 'C', 'E'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderBytes = 96;
constexpr uint32_t kHeaderChecksumOffset = 88;
constexpr uint32_t kFlagF16 = 1u << 0;
constexpr uint32_t kFlagTokenIds = 1u << 1;
constexpr uint32_t kKnownFlags = kFlagF16 | kFlagTokenIds;
constexpr int kTensorsPerLayer = 5;

// Overflow-checked arithmetic on sizes taken from a file or a caller.
bool MulOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool AddOk(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

Status CheckField(const char* field, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi) {
    return InvalidArgument("trace." + std::string(field) + " must be in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + std::to_string(v));
  }
  return OkStatus();
}

// The fixed-size fields of the header; everything the sizes derive from.
struct Shape {
  uint32_t layers = 0, q_heads = 0, kv_heads = 0, head_dim = 0;
  uint64_t tokens = 0, steps = 0, sentences = 0, description_bytes = 0;
  bool has_token_ids = false;
  uint64_t elem_bytes = 4;
};

Status ValidateShape(const Shape& s) {
  RETURN_IF_ERROR(CheckField("num_layers", s.layers, 1, TraceLimits::kMaxLayers));
  RETURN_IF_ERROR(CheckField("num_q_heads", s.q_heads, 1, TraceLimits::kMaxHeads));
  RETURN_IF_ERROR(CheckField("num_kv_heads", s.kv_heads, 1, s.q_heads));
  if (s.q_heads % s.kv_heads != 0) {
    return InvalidArgument("trace.num_q_heads (" + std::to_string(s.q_heads) +
                           ") must be a multiple of trace.num_kv_heads (" + std::to_string(s.kv_heads) + ")");
  }
  RETURN_IF_ERROR(CheckField("head_dim", s.head_dim, 2, TraceLimits::kMaxHeadDim));
  if (s.head_dim % 2 != 0) return InvalidArgument("trace.head_dim must be even, got " + std::to_string(s.head_dim));
  RETURN_IF_ERROR(CheckField("num_tokens", s.tokens, 1, TraceLimits::kMaxTokens));
  RETURN_IF_ERROR(CheckField("num_steps", s.steps, 0, TraceLimits::kMaxSteps));
  RETURN_IF_ERROR(CheckField("sentence count", s.sentences, 0, s.tokens));
  RETURN_IF_ERROR(CheckField("description bytes", s.description_bytes, 0, TraceLimits::kMaxDescriptionBytes));
  return OkStatus();
}

struct Sizes {
  uint64_t key_elems = 0, query_elems = 0;
  uint64_t metadata_bytes = 0, layer_bytes = 0, file_bytes = 0;
};

// REQUIRES: ValidateShape(s) is OK. kInvalidArgument when a size overflows 64 bits.
Status ComputeSizes(const Shape& s, Sizes* out) {
  uint64_t k = 0, q = 0, t = 0, meta = s.description_bytes, layer = 0, tensor_elems = 0;
  bool ok = MulOk(uint64_t{s.kv_heads} * s.head_dim, s.tokens, &k) &&
            MulOk(uint64_t{s.q_heads} * s.head_dim, s.steps, &q);
  // Metadata: description, u64 step positions, optional i32 token ids, u64 sentence starts.
  ok = ok && AddOk(meta, s.steps * 8, &meta) && AddOk(meta, s.sentences * 8, &meta);
  if (s.has_token_ids) ok = ok && AddOk(meta, s.tokens * 4, &meta);
  // A layer: 3 key-sized tensors, 2 query-sized tensors, a u64 checksum.
  ok = ok && MulOk(k, 3, &tensor_elems) && MulOk(q, 2, &t) && AddOk(tensor_elems, t, &tensor_elems) &&
       MulOk(tensor_elems, s.elem_bytes, &layer) && AddOk(layer, 8, &layer);
  uint64_t total = 0;
  ok = ok && MulOk(layer, s.layers, &total) && AddOk(total, meta, &total) && AddOk(total, kHeaderBytes, &total);
  if (!ok) return InvalidArgument("trace sizes overflow 64 bits");
  *out = Sizes{k, q, meta, layer, total};
  return OkStatus();
}

Shape ShapeOf(const TraceInfo& info, TraceDType dtype) {
  Shape s;
  s.layers = info.num_layers;
  s.q_heads = info.num_q_heads;
  s.kv_heads = info.num_kv_heads;
  s.head_dim = info.head_dim;
  s.tokens = info.num_tokens;
  s.steps = info.step_positions.size();
  s.sentences = info.sentence_starts.size();
  s.description_bytes = info.description.size();
  s.has_token_ids = !info.token_ids.empty();
  s.elem_bytes = dtype == TraceDType::kF16 ? 2 : 4;
  return s;
}

// Little-endian field encoding into / decoding out of a byte buffer.
template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}
template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

Status PreadFull(int fd, void* buf, size_t n, uint64_t off, const std::string& path) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      return FromErrno(errno, "read trace " + path);
    }
    if (r == 0) return Corruption("trace " + path + ": unexpected end of file at byte " + std::to_string(off));
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return OkStatus();
}

// Index of the first non-finite value, or n when all are finite.
size_t FirstNonFinite(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return i;
  }
  return n;
}

struct TensorRef {
  const char* name;
  std::vector<float> TraceLayer::*member;
  bool is_key;  // key-sized (else query-sized)
};
constexpr TensorRef kTensors[kTensorsPerLayer] = {
    {"keys_pre", &TraceLayer::keys_pre, true},       {"keys", &TraceLayer::keys, true},
    {"values", &TraceLayer::values, true},           {"queries_pre", &TraceLayer::queries_pre, false},
    {"queries", &TraceLayer::queries, false},
};

}  // namespace

uint64_t TraceInfo::KeyElems() const { return uint64_t{num_kv_heads} * num_tokens * head_dim; }
uint64_t TraceInfo::QueryElems() const { return uint64_t{num_q_heads} * step_positions.size() * head_dim; }

Status TraceInfo::Validate() const {
  RETURN_IF_ERROR(ValidateShape(ShapeOf(*this, TraceDType::kF32)));
  Sizes sizes;
  RETURN_IF_ERROR(ComputeSizes(ShapeOf(*this, TraceDType::kF32), &sizes));
  if (rope_style != RopeStyle::kUnknown && rope_style != RopeStyle::kInterleaved &&
      rope_style != RopeStyle::kHalfSplit) {
    return InvalidArgument("trace.rope_style is not a known style");
  }
  if (!std::isfinite(rope_theta) || rope_theta <= 0) return InvalidArgument("trace.rope_theta must be positive");
  for (size_t s = 0; s < step_positions.size(); ++s) {
    if (step_positions[s] >= num_tokens) {
      return InvalidArgument("trace.step_positions[" + std::to_string(s) + "] = " +
                             std::to_string(step_positions[s]) + " is not below num_tokens " +
                             std::to_string(num_tokens));
    }
  }
  if (!token_ids.empty() && token_ids.size() != num_tokens) {
    return InvalidArgument("trace.token_ids has " + std::to_string(token_ids.size()) + " entries, expected 0 or " +
                           std::to_string(num_tokens));
  }
  for (size_t i = 0; i < token_ids.size(); ++i) {
    if (token_ids[i] < 0) return InvalidArgument("trace.token_ids[" + std::to_string(i) + "] is negative");
  }
  for (size_t i = 0; i < sentence_starts.size(); ++i) {
    if (sentence_starts[i] >= num_tokens || (i > 0 && sentence_starts[i] <= sentence_starts[i - 1])) {
      return InvalidArgument("trace.sentence_starts must be strictly increasing and below num_tokens (entry " +
                             std::to_string(i) + ")");
    }
  }
  return OkStatus();
}

Status TraceLayer::CheckShape(const TraceInfo& info) const {
  for (const TensorRef& t : kTensors) {
    const uint64_t want = t.is_key ? info.KeyElems() : info.QueryElems();
    const size_t got = (this->*t.member).size();
    if (got != want) {
      return InvalidArgument("trace layer tensor " + std::string(t.name) + " has " + std::to_string(got) +
                             " elements, expected " + std::to_string(want));
    }
  }
  return OkStatus();
}

void TraceLayer::Resize(const TraceInfo& info) {
  for (const TensorRef& t : kTensors) (this->*t.member).resize(t.is_key ? info.KeyElems() : info.QueryElems());
}

Status InMemoryTraceSource::LoadLayer(uint32_t index, TraceLayer* layer) {
  if (index >= trace_->layers.size()) {
    return InvalidArgument("layer " + std::to_string(index) + " out of range (trace has " +
                           std::to_string(trace_->layers.size()) + ")");
  }
  *layer = trace_->layers[index];
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Writer

TraceWriter::TraceWriter(std::string path, TraceInfo info, TraceDType dtype, int fd)
    : path_(std::move(path)), info_(std::move(info)), dtype_(dtype), fd_(fd) {}

TraceWriter::~TraceWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink((path_ + ".tmp").c_str());
}

Result<std::unique_ptr<TraceWriter>> TraceWriter::Create(const std::string& path, const TraceInfo& info,
                                                         TraceDType dtype) {
  if (dtype != TraceDType::kF32 && dtype != TraceDType::kF16) return InvalidArgument("unknown trace dtype");
  RETURN_IF_ERROR(info.Validate());
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FromErrno(errno, "create trace " + tmp);
  std::unique_ptr<TraceWriter> w(new TraceWriter(path, info, dtype, fd));

  std::string meta(info.description);
  for (uint64_t p : info.step_positions) Put<uint64_t>(&meta, p);
  for (int32_t t : info.token_ids) Put<int32_t>(&meta, t);
  for (uint64_t s : info.sentence_starts) Put<uint64_t>(&meta, s);

  std::string h(kMagic, sizeof(kMagic));
  Put<uint32_t>(&h, kVersion);
  Put<uint32_t>(&h, kHeaderBytes);
  Put<uint32_t>(&h, (dtype == TraceDType::kF16 ? kFlagF16 : 0) | (info.token_ids.empty() ? 0 : kFlagTokenIds));
  Put<uint32_t>(&h, info.num_layers);
  Put<uint32_t>(&h, info.num_q_heads);
  Put<uint32_t>(&h, info.num_kv_heads);
  Put<uint32_t>(&h, info.head_dim);
  Put<uint32_t>(&h, static_cast<uint32_t>(info.rope_style));
  Put<double>(&h, info.rope_theta);
  Put<uint64_t>(&h, info.num_tokens);
  Put<uint64_t>(&h, info.step_positions.size());
  Put<uint64_t>(&h, info.sentence_starts.size());
  Put<uint64_t>(&h, info.description.size());
  Put<uint64_t>(&h, Checksum64(meta.data(), meta.size()));
  TIERKV_CHECK(h.size() == kHeaderChecksumOffset);
  Put<uint64_t>(&h, Checksum64(h.data(), h.size()));
  RETURN_IF_ERROR(w->WriteBytes(h.data(), h.size()));
  RETURN_IF_ERROR(w->WriteBytes(meta.data(), meta.size()));
  return w;
}

Status TraceWriter::WriteBytes(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t r = ::write(fd_, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return FromErrno(errno, "write trace " + path_ + ".tmp");
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return OkStatus();
}

Status TraceWriter::WriteLayer(const TraceLayer& layer) {
  if (finished_ || layers_written_ >= info_.num_layers) {
    return InvalidArgument("trace writer: all " + std::to_string(info_.num_layers) + " layers already written");
  }
  RETURN_IF_ERROR(layer.CheckShape(info_));
  uint64_t checksum = layers_written_;
  std::vector<uint16_t> half;
  for (const TensorRef& t : kTensors) {
    const std::vector<float>& v = layer.*t.member;
    const size_t bad = FirstNonFinite(v.data(), v.size());
    if (bad != v.size()) {
      return InvalidArgument("trace layer " + std::to_string(layers_written_) + " " + t.name + "[" +
                             std::to_string(bad) + "] is not finite");
    }
    const void* bytes = v.data();
    size_t n = v.size() * sizeof(float);
    if (dtype_ == TraceDType::kF16) {
      half.resize(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        half[i] = kernels::FloatToF16(v[i]);
        if ((half[i] & 0x7c00u) == 0x7c00u) {
          return InvalidArgument("trace layer " + std::to_string(layers_written_) + " " + t.name + "[" +
                                 std::to_string(i) + "] = " + std::to_string(v[i]) +
                                 " does not fit in f16; write the trace as f32");
        }
      }
      bytes = half.data();
      n = half.size() * sizeof(uint16_t);
    }
    checksum = Checksum64(bytes, n, checksum);
    RETURN_IF_ERROR(WriteBytes(bytes, n));
  }
  RETURN_IF_ERROR(WriteBytes(&checksum, sizeof(checksum)));
  ++layers_written_;
  return OkStatus();
}

Status TraceWriter::Finish() {
  if (finished_) return InvalidArgument("trace writer already finished");
  if (layers_written_ != info_.num_layers) {
    return InvalidArgument("trace writer: " + std::to_string(layers_written_) + " of " +
                           std::to_string(info_.num_layers) + " layers written");
  }
  if (::fsync(fd_) != 0) return FromErrno(errno, "fsync trace " + path_ + ".tmp");
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return FromErrno(errno, "close trace " + path_ + ".tmp");
  if (::rename((path_ + ".tmp").c_str(), path_.c_str()) != 0) return FromErrno(errno, "rename trace to " + path_);
  finished_ = true;
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Reader

TraceReader::~TraceReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<TraceReader>> TraceReader::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FromErrno(errno, "open trace " + path);
  std::unique_ptr<TraceReader> r(new TraceReader(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) return FromErrno(errno, "stat trace " + path);
  if (!S_ISREG(st.st_mode)) return InvalidArgument("trace " + path + " is not a regular file");
  Status s = r->ReadHeader(static_cast<uint64_t>(st.st_size));
  if (!s.ok()) return s.WithContext("trace " + path);
  return r;
}

Status TraceReader::ReadHeader(uint64_t file_bytes) {
  if (file_bytes < kHeaderBytes) {
    return Corruption("truncated: " + std::to_string(file_bytes) + " bytes, the header alone needs " +
                      std::to_string(kHeaderBytes));
  }
  char h[kHeaderBytes];
  RETURN_IF_ERROR(PreadFull(fd_, h, sizeof(h), 0, path_));
  if (std::memcmp(h, kMagic, sizeof(kMagic)) != 0) return Corruption("bad magic: not a tierkv trace file");
  const uint32_t version = Get<uint32_t>(h + 8);
  if (version == 0) return Corruption("bad version 0");
  if (version > kVersion) {
    return NotSupported("version " + std::to_string(version) + " is newer than this reader (" +
                        std::to_string(kVersion) + ")");
  }
  if (Get<uint64_t>(h + kHeaderChecksumOffset) != Checksum64(h, kHeaderChecksumOffset)) {
    return Corruption("header checksum mismatch");
  }
  if (Get<uint32_t>(h + 12) != kHeaderBytes) return Corruption("bad header size");
  const uint32_t flags = Get<uint32_t>(h + 16);
  if ((flags & ~kKnownFlags) != 0) return NotSupported("unknown flags " + std::to_string(flags));

  Shape s;
  s.layers = Get<uint32_t>(h + 20);
  s.q_heads = Get<uint32_t>(h + 24);
  s.kv_heads = Get<uint32_t>(h + 28);
  s.head_dim = Get<uint32_t>(h + 32);
  const uint32_t rope_style = Get<uint32_t>(h + 36);
  const double rope_theta = Get<double>(h + 40);
  s.tokens = Get<uint64_t>(h + 48);
  s.steps = Get<uint64_t>(h + 56);
  s.sentences = Get<uint64_t>(h + 64);
  s.description_bytes = Get<uint64_t>(h + 72);
  const uint64_t meta_checksum = Get<uint64_t>(h + 80);
  s.has_token_ids = (flags & kFlagTokenIds) != 0;
  s.elem_bytes = (flags & kFlagF16) != 0 ? 2 : 4;
  dtype_ = (flags & kFlagF16) != 0 ? TraceDType::kF16 : TraceDType::kF32;

  Status shape_ok = ValidateShape(s);
  if (!shape_ok.ok()) return Corruption(shape_ok.message());
  Sizes sizes;
  Status sizes_ok = ComputeSizes(s, &sizes);
  if (!sizes_ok.ok()) return Corruption(sizes_ok.message());
  if (file_bytes < sizes.file_bytes) {
    return Corruption("truncated: " + std::to_string(file_bytes) + " bytes, the header implies " +
                      std::to_string(sizes.file_bytes));
  }
  if (file_bytes > sizes.file_bytes) {
    return Corruption(std::to_string(file_bytes - sizes.file_bytes) + " unexpected trailing bytes (header implies " +
                      std::to_string(sizes.file_bytes) + ")");
  }

  std::string meta(sizes.metadata_bytes, '\0');
  RETURN_IF_ERROR(PreadFull(fd_, meta.data(), meta.size(), kHeaderBytes, path_));
  if (Checksum64(meta.data(), meta.size()) != meta_checksum) return Corruption("metadata checksum mismatch");
  const char* p = meta.data();
  info_.num_layers = s.layers;
  info_.num_q_heads = s.q_heads;
  info_.num_kv_heads = s.kv_heads;
  info_.head_dim = s.head_dim;
  info_.num_tokens = s.tokens;
  info_.rope_style = static_cast<RopeStyle>(rope_style);
  info_.rope_theta = rope_theta;
  info_.description.assign(p, s.description_bytes);
  p += s.description_bytes;
  info_.step_positions.resize(s.steps);
  for (auto& v : info_.step_positions) v = Get<uint64_t>(p), p += 8;
  if (s.has_token_ids) {
    info_.token_ids.resize(s.tokens);
    for (auto& v : info_.token_ids) v = Get<int32_t>(p), p += 4;
  }
  info_.sentence_starts.resize(s.sentences);
  for (auto& v : info_.sentence_starts) v = Get<uint64_t>(p), p += 8;
  Status info_ok = info_.Validate();
  if (!info_ok.ok()) return Corruption(info_ok.message());
  layers_offset_ = kHeaderBytes + sizes.metadata_bytes;
  layer_bytes_ = sizes.layer_bytes;
  return OkStatus();
}

Status TraceReader::LoadLayer(uint32_t index, TraceLayer* layer) {
  if (index >= info_.num_layers) {
    return InvalidArgument("layer " + std::to_string(index) + " out of range (trace has " +
                           std::to_string(info_.num_layers) + ")");
  }
  layer->Resize(info_);
  uint64_t off = layers_offset_ + uint64_t{index} * layer_bytes_;  // bounded by the file length
  uint64_t checksum = index;
  std::vector<uint16_t> half;
  for (const TensorRef& t : kTensors) {
    std::vector<float>& v = (*layer).*t.member;
    void* bytes = v.data();
    size_t n = v.size() * sizeof(float);
    if (dtype_ == TraceDType::kF16) {
      half.resize(v.size());
      bytes = half.data();
      n = half.size() * sizeof(uint16_t);
    }
    RETURN_IF_ERROR(PreadFull(fd_, bytes, n, off, path_));
    off += n;
    checksum = Checksum64(bytes, n, checksum);
    if (dtype_ == TraceDType::kF16) {
      for (size_t i = 0; i < v.size(); ++i) v[i] = kernels::F16ToFloat(half[i]);
    }
  }
  uint64_t stored = 0;
  RETURN_IF_ERROR(PreadFull(fd_, &stored, sizeof(stored), off, path_));
  if (stored != checksum) {
    return Corruption("trace " + path_ + ": layer " + std::to_string(index) + " checksum mismatch");
  }
  for (const TensorRef& t : kTensors) {
    const std::vector<float>& v = (*layer).*t.member;
    const size_t bad = FirstNonFinite(v.data(), v.size());
    if (bad != v.size()) {
      return Corruption("trace " + path_ + ": layer " + std::to_string(index) + " " + t.name + "[" +
                        std::to_string(bad) + "] is not finite");
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------

Status WriteTrace(const std::string& path, const Trace& trace, TraceDType dtype) {
  if (trace.layers.size() != trace.info.num_layers) {
    return InvalidArgument("trace has " + std::to_string(trace.layers.size()) + " layers, info says " +
                           std::to_string(trace.info.num_layers));
  }
  ASSIGN_OR_RETURN(auto writer, TraceWriter::Create(path, trace.info, dtype));
  for (const TraceLayer& layer : trace.layers) RETURN_IF_ERROR(writer->WriteLayer(layer));
  return writer->Finish();
}

Result<Trace> ReadTrace(const std::string& path) {
  ASSIGN_OR_RETURN(auto reader, TraceReader::Open(path));
  Trace trace;
  trace.info = reader->info();
  trace.layers.resize(trace.info.num_layers);
  for (uint32_t l = 0; l < trace.info.num_layers; ++l) RETURN_IF_ERROR(reader->LoadLayer(l, &trace.layers[l]));
  return trace;
}

Result<Trace> TraceSource::GenerateAll() {
  Trace trace;
  trace.info = info();
  trace.layers.resize(trace.info.num_layers);
  for (uint32_t l = 0; l < trace.info.num_layers; ++l) RETURN_IF_ERROR(LoadLayer(l, &trace.layers[l]));
  return trace;
}

LayerKeys LayerKeysOf(const TraceInfo& info, const TraceLayer& layer) {
  LayerKeys v;
  v.num_kv_heads = info.num_kv_heads;
  v.head_dim = info.head_dim;
  v.num_tokens = info.num_tokens;
  v.keys = layer.keys.data();
  v.keys_pre = layer.keys_pre.data();
  v.values = layer.values.data();
  v.sentence_starts = info.sentence_starts;
  v.rope_style = info.rope_style;
  v.rope_theta = info.rope_theta;
  return v;
}

QueryView StepQuery(const TraceInfo& info, const TraceLayer& layer, uint64_t step) {
  QueryView q;
  q.num_q_heads = info.num_q_heads;
  q.head_dim = info.head_dim;
  const size_t off = step * info.num_q_heads * info.head_dim;
  q.q = layer.queries.data() + off;
  q.q_pre = layer.queries_pre.data() + off;
  q.position = info.step_positions[step];
  return q;
}

}  // namespace tierkv::index
