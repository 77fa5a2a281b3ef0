#include "storage/block_codec.h"

#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/quant.h"

namespace tierkv::storage {
namespace {

constexpr uint32_t kEncodedMagic = 0x51564B54;  // "TKVQ"
constexpr uint8_t kEncodedVersion = 1;

struct EncodedBlockHeader {
  uint32_t magic;
  uint8_t version;
  uint8_t encoding;  // PayloadEncoding
  uint8_t dtype;     // DType of the raw block
  uint8_t reserved;
  uint32_t kv_heads;
  uint32_t block_tokens;
  uint32_t head_dim;
  uint32_t group;
  uint32_t k_bytes;
  uint32_t v_bytes;
};
static_assert(sizeof(EncodedBlockHeader) == kEncodedBlockHeaderBytes &&
              std::is_trivially_copyable_v<EncodedBlockHeader>);

struct Specs {
  kernels::QuantSpec k, v;
};

Specs SpecsFor(PayloadEncoding e, uint32_t group) {
  if (e == PayloadEncoding::kKivi2) return {kernels::KiviKeySpec(group), kernels::KiviValueSpec(group)};
  const kernels::QuantSpec k{kernels::QuantBits::kInt8, false, kernels::QuantAxis::kPerChannel, group};
  const kernels::QuantSpec v{kernels::QuantBits::kInt8, false, kernels::QuantAxis::kPerToken, group};
  return {k, v};
}

PayloadEncoding EncodingOf(Compression c) {
  return c == Compression::kKivi2 ? PayloadEncoding::kKivi2 : PayloadEncoding::kInt8;
}

kernels::QuantShape ShapeOf(const ModelSpec& m) { return {m.num_kv_heads, m.block_tokens, m.head_dim}; }

struct Layouts {
  kernels::QuantLayout k, v;
  size_t total() const { return kEncodedBlockHeaderBytes + k.total_bytes + v.total_bytes; }
};

Result<Layouts> LayoutsFor(const ModelSpec& m, PayloadEncoding e, uint32_t group) {
  const Specs s = SpecsFor(e, group);
  Layouts l;
  ASSIGN_OR_RETURN(l.k, kernels::GetQuantLayout(s.k, ShapeOf(m)));
  ASSIGN_OR_RETURN(l.v, kernels::GetQuantLayout(s.v, ShapeOf(m)));
  return l;
}

}  // namespace

Result<size_t> EncodedBlockBytes(const ModelSpec& model, Compression compression, uint32_t group) {
  if (compression == Compression::kNone) return InvalidArgument("EncodedBlockBytes: no compression");
  ASSIGN_OR_RETURN(Layouts l, LayoutsFor(model, EncodingOf(compression), group));
  return l.total();
}

Status EncodeBlock(const ModelSpec& model, Compression compression, uint32_t group, std::span<const std::byte> block,
                   std::vector<std::byte>* out, PayloadEncoding* encoding) {
  out->clear();
  *encoding = PayloadEncoding::kRaw;
  const size_t bytes = model.BlockBytes();
  if (block.size() != bytes) {
    return InvalidArgument("EncodeBlock: block of " + std::to_string(block.size()) + " bytes, expected " +
                           std::to_string(bytes));
  }
  if (compression == Compression::kNone) return OkStatus();
  const PayloadEncoding e = EncodingOf(compression);
  ASSIGN_OR_RETURN(Layouts l, LayoutsFor(model, e, group));
  if (l.total() >= bytes) return OkStatus();  // no gain: stored raw
  out->resize(l.total());
  const EncodedBlockHeader h{kEncodedMagic,      kEncodedVersion,    static_cast<uint8_t>(e),
                             static_cast<uint8_t>(model.dtype), 0,   model.num_kv_heads,
                             model.block_tokens, model.head_dim,     group,
                             static_cast<uint32_t>(l.k.total_bytes), static_cast<uint32_t>(l.v.total_bytes)};
  std::memcpy(out->data(), &h, sizeof h);
  const Specs s = SpecsFor(e, group);
  const size_t half = bytes / 2;
  kernels::QuantizeArgs a;
  a.shape = ShapeOf(model);
  a.dtype = model.dtype;
  a.spec = s.k;
  a.input = block.data();
  a.packed = out->data() + kEncodedBlockHeaderBytes;
  Status st = kernels::Quantize(kernels::Backend::kCpu, a);
  if (st.ok()) {
    a.spec = s.v;
    a.input = block.data() + half;
    a.packed = out->data() + kEncodedBlockHeaderBytes + l.k.total_bytes;
    st = kernels::Quantize(kernels::Backend::kCpu, a);
  }
  if (!st.ok()) {
    out->clear();
    return st;
  }
  *encoding = e;
  return OkStatus();
}

Status DecodeBlock(const ModelSpec& model, PayloadEncoding encoding, std::span<const std::byte> payload,
                   std::span<std::byte> block) {
  const size_t bytes = model.BlockBytes();
  if (encoding == PayloadEncoding::kRaw) return InvalidArgument("DecodeBlock: the payload is raw");
  if (block.size() < bytes) return InvalidArgument("DecodeBlock: output smaller than a block");
  if (encoding != PayloadEncoding::kInt8 && encoding != PayloadEncoding::kKivi2) {
    return Corruption("D payload has unknown encoding " + std::to_string(static_cast<int>(encoding)));
  }
  if (payload.size() < kEncodedBlockHeaderBytes) return Corruption("encoded block shorter than its header");
  EncodedBlockHeader h;
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.magic != kEncodedMagic || h.version != kEncodedVersion || h.encoding != static_cast<uint8_t>(encoding)) {
    return Corruption("encoded block: bad magic, version or encoding");
  }
  if (h.dtype != static_cast<uint8_t>(model.dtype) || h.kv_heads != model.num_kv_heads ||
      h.block_tokens != model.block_tokens || h.head_dim != model.head_dim) {
    return Corruption("encoded block was written for another model shape");
  }
  auto layouts = LayoutsFor(model, encoding, h.group);
  if (!layouts.ok()) return Corruption("encoded block: " + layouts.status().message());
  if (h.k_bytes != layouts->k.total_bytes || h.v_bytes != layouts->v.total_bytes ||
      payload.size() != layouts->total()) {
    return Corruption("encoded block: sizes do not match its header");
  }
  const Specs s = SpecsFor(encoding, h.group);
  kernels::DequantizeArgs a;
  a.shape = ShapeOf(model);
  a.dtype = model.dtype;
  a.spec = s.k;
  a.packed = payload.data() + kEncodedBlockHeaderBytes;
  a.output = block.data();
  RETURN_IF_ERROR(kernels::Dequantize(kernels::Backend::kCpu, a));
  a.spec = s.v;
  a.packed = payload.data() + kEncodedBlockHeaderBytes + h.k_bytes;
  a.output = block.data() + bytes / 2;
  return kernels::Dequantize(kernels::Backend::kCpu, a);
}

}  // namespace tierkv::storage
