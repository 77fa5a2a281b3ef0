// Attention traces: the Q/K/V of one sequence, captured from a model (or made by
// the synthetic generator), stored in a versioned binary file (docs/trace-format.md)
// and replayed by the retrieval evaluation (DESIGN §4).
//
// Layout conventions used everywhere in index/ and eval/ (index/layer_view.h):
//   keys, values: [num_kv_heads][num_tokens][head_dim], row-major, float32.
//   queries:      [num_steps][num_q_heads][head_dim].
//   GQA: query head h reads KV head h / (num_q_heads / num_kv_heads).
//   Decode step s sits at token position step_positions[s] and attends to the
//   tokens [0, step_positions[s]] (its own key included, as in decoding).
//
// Thread-safety: the value types are plain data; a TraceReader or TraceWriter is
// not thread-safe (one user at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "index/layer_view.h"
#include "index/rope.h"

namespace tierkv::index {

// Element type of the tensors in a trace file. Readers always return float32.
enum class TraceDType : uint32_t { kF32 = 0, kF16 = 1 };

// Limits a trace must respect; a file outside them is refused by the reader.
struct TraceLimits {
  static constexpr uint32_t kMaxLayers = 1024;
  static constexpr uint32_t kMaxHeads = 1024;
  static constexpr uint32_t kMaxHeadDim = 1024;
  static constexpr uint64_t kMaxTokens = uint64_t{1} << 30;
  static constexpr uint64_t kMaxSteps = uint64_t{1} << 24;
  static constexpr uint64_t kMaxDescriptionBytes = 64 << 10;
};

// Everything of a trace but the per-layer tensors.
struct TraceInfo {
  uint32_t num_layers = 0;
  uint32_t num_q_heads = 0;
  uint32_t num_kv_heads = 0;  // divides num_q_heads
  uint32_t head_dim = 0;      // even (RoPE rotates pairs)
  uint64_t num_tokens = 0;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  double rope_theta = 10000.0;
  // One entry per decode step: its token position (< num_tokens).
  std::vector<uint64_t> step_positions;
  // Optional: empty, or num_tokens token ids (each >= 0).
  std::vector<int32_t> token_ids;
  // Optional: first token of each sentence, strictly increasing, < num_tokens.
  std::vector<uint64_t> sentence_starts;
  // Free text naming the source ("stories260K seed=1 temperature=1"), at most
  // kMaxDescriptionBytes.
  std::string description;

  uint64_t num_steps() const { return step_positions.size(); }
  uint32_t group_size() const { return num_kv_heads == 0 ? 0 : num_q_heads / num_kv_heads; }
  // Elements of one key/value tensor of a layer: num_kv_heads * num_tokens * head_dim.
  uint64_t KeyElems() const;
  // Elements of one query tensor of a layer: num_steps * num_q_heads * head_dim.
  uint64_t QueryElems() const;
  // OK when every field is within TraceLimits and consistent; else kInvalidArgument
  // naming the field.
  Status Validate() const;
};

// The tensors of one layer (sizes per TraceInfo::KeyElems / QueryElems).
struct TraceLayer {
  std::vector<float> keys_pre;     // pre-RoPE keys
  std::vector<float> keys;         // post-RoPE keys (what attention uses)
  std::vector<float> values;
  std::vector<float> queries_pre;  // pre-RoPE decode-step queries
  std::vector<float> queries;      // post-RoPE decode-step queries

  // kInvalidArgument when a tensor's size does not match `info`.
  Status CheckShape(const TraceInfo& info) const;
  // Resizes every tensor to the sizes `info` implies (contents unspecified).
  void Resize(const TraceInfo& info);
};

// A whole trace in memory (small traces: tests, the tiny model).
struct Trace {
  TraceInfo info;
  std::vector<TraceLayer> layers;  // num_layers entries
};

// Streams the layers of a trace one at a time, so that 128K-token traces never
// need every layer in memory. Implemented by in-memory traces, the file reader
// and the synthetic generator.
class TraceSource {
 public:
  virtual ~TraceSource() = default;
  virtual const TraceInfo& info() const = 0;
  // Fills *layer (resized as needed) with layer `index`.
  // kInvalidArgument when index >= info().num_layers.
  virtual Status LoadLayer(uint32_t index, TraceLayer* layer) = 0;
  // Every layer in memory (tests, small traces).
  Result<Trace> GenerateAll();
};

// A TraceSource over a Trace owned by the caller.
// REQUIRES: *trace outlives this object and is not modified while in use.
class InMemoryTraceSource final : public TraceSource {
 public:
  explicit InMemoryTraceSource(const Trace* trace) : trace_(trace) {}
  const TraceInfo& info() const override { return trace_->info; }
  Status LoadLayer(uint32_t index, TraceLayer* layer) override;

 private:
  const Trace* trace_;
};

// Writes a trace file layer by layer. The file appears at `path` only after a
// successful Finish() (it is written to path + ".tmp" and renamed); a writer
// destroyed before Finish removes its temporary file.
class TraceWriter {
 public:
  // Validates `info` (kInvalidArgument) and writes the header and metadata.
  static Result<std::unique_ptr<TraceWriter>> Create(const std::string& path, const TraceInfo& info,
                                                     TraceDType dtype);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Appends the next layer (layers are written in order 0..num_layers-1).
  // kInvalidArgument on a shape mismatch, a non-finite value, a value that does
  // not fit in f16 when the dtype is kF16, or more layers than num_layers.
  Status WriteLayer(const TraceLayer& layer);
  // kInvalidArgument unless every layer was written; then syncs and renames.
  Status Finish();

 private:
  TraceWriter(std::string path, TraceInfo info, TraceDType dtype, int fd);
  Status WriteBytes(const void* data, size_t n);

  std::string path_;
  TraceInfo info_;
  TraceDType dtype_;
  int fd_ = -1;
  uint32_t layers_written_ = 0;
  bool finished_ = false;
};

// Reads a trace file. Open() checks the header, the metadata and that the file
// length is exactly what the header implies; LoadLayer() checks the layer's
// checksum and that every value is finite. Every failure is a Status naming what
// was wrong: kNotFound (no file), kCorruption (bad magic, bad checksum, truncated
// or oversized file, out-of-range field, non-finite value), kNotSupported (newer
// version or unknown flags), kIOError.
class TraceReader final : public TraceSource {
 public:
  static Result<std::unique_ptr<TraceReader>> Open(const std::string& path);
  ~TraceReader() override;
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;

  const TraceInfo& info() const override { return info_; }
  TraceDType dtype() const { return dtype_; }
  Status LoadLayer(uint32_t index, TraceLayer* layer) override;

 private:
  TraceReader(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  Status ReadHeader(uint64_t file_bytes);

  std::string path_;
  int fd_ = -1;
  TraceInfo info_;
  TraceDType dtype_ = TraceDType::kF32;
  uint64_t layers_offset_ = 0;  // byte offset of layer 0
  uint64_t layer_bytes_ = 0;    // bytes of one layer record (tensors + checksum)
};

// Convenience: writes a whole in-memory trace (trace.layers.size() must equal
// trace.info.num_layers).
Status WriteTrace(const std::string& path, const Trace& trace, TraceDType dtype);
// Convenience: reads a whole trace into memory.
Result<Trace> ReadTrace(const std::string& path);

// Views into a trace layer (valid while `layer` is alive and unchanged).
// REQUIRES: layer.CheckShape(info) is OK; step < info.num_steps().
LayerKeys LayerKeysOf(const TraceInfo& info, const TraceLayer& layer);
QueryView StepQuery(const TraceInfo& info, const TraceLayer& layer, uint64_t step);

}  // namespace tierkv::index
