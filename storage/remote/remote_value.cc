#include "storage/remote/remote_value.h"

#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/checksum.h"
#include "storage/slot_format.h"

namespace tierkv::storage::remote {

Fingerprint NamespaceFingerprint(std::string_view ns_name, std::string_view model_id, const ModelSpec& m) {
  std::string text = "tierkv-remote-v1|" + std::string(ns_name) + "|" + std::string(model_id) + "|";
  for (uint32_t v : {m.num_layers, m.num_q_heads, m.num_kv_heads, m.head_dim, m.block_tokens,
                     static_cast<uint32_t>(m.dtype)}) {
    text += std::to_string(v) + ",";
  }
  return {Checksum64(text.data(), text.size(), 0x5245'4D4F'5445'3031ull), Checksum64(text.data(), text.size(), 7)};
}

std::string RedisKey(const RemoteBlockKey& key) {
  char buf[128];
  const auto fp_hi = static_cast<unsigned long long>(key.fp.hi), fp_lo = static_cast<unsigned long long>(key.fp.lo);
  const auto hash = static_cast<unsigned long long>(key.hash);
  const int n = key.kind == RemoteKind::kSequence
                    ? std::snprintf(buf, sizeof buf, "tkv1s:{%016llx%016llx%016llx.%x}:%u", fp_hi, fp_lo, hash,
                                    key.index, key.layer)
                    : std::snprintf(buf, sizeof buf, "tkv1:{%016llx%016llx%016llx}:%u", fp_hi, fp_lo, hash, key.layer);
  return std::string(buf, static_cast<size_t>(n));
}

namespace {
uint32_t SlotOf(const RemoteBlockKey& key) {
  return key.kind == RemoteKind::kSequence ? kRemoteSequenceSlot : kRemoteSlot;
}

SlotInfo InfoFor(const RemoteBlockKey& key, size_t bytes, uint8_t encoding) {
  SlotInfo info;
  info.tag.key = BlockKey{0, key.layer, key.hash, key.kind == RemoteKind::kSequence ? key.index : 0, 0};
  info.tag.generation = key.fp.lo;
  info.length = static_cast<uint32_t>(bytes);
  info.encoding = static_cast<PayloadEncoding>(encoding);
  return info;
}

bool ValidElem(uint32_t e) { return e == 1 || e == 2 || e == 4; }

// Byte planes + zstd level 1 into *out; false when it would not be smaller.
bool Compress(std::span<const std::byte> block, uint32_t elem, std::string* out) {
  std::vector<std::byte> planes(block.size());
  const size_t n = block.size() / elem;
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t b = 0; b < elem; ++b) planes[b * n + i] = block[i * elem + b];
  }
  std::memcpy(planes.data() + n * elem, block.data() + n * elem, block.size() - n * elem);
  thread_local ZSTD_CCtx* cctx = [] {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    return c;
  }();
  out->resize(ZSTD_compressBound(block.size()));
  const size_t got = ZSTD_compress2(cctx, out->data(), out->size(), planes.data(), planes.size());
  if (ZSTD_isError(got) || got >= block.size()) return false;
  out->resize(got);
  return true;
}
}  // namespace

std::string EncodeRemoteValue(const RemoteBlockKey& key, std::span<const std::byte> block, RemoteCodec codec,
                              uint32_t elem_bytes) {
  std::string packed;
  const bool zstd = codec == RemoteCodec::kZstd && ValidElem(elem_bytes) && Compress(block, elem_bytes, &packed);
  const auto payload = zstd ? std::as_bytes(std::span(packed.data(), packed.size())) : block;
  const uint8_t encoding = zstd ? static_cast<uint8_t>(kRemoteZstd | elem_bytes) : 0;
  std::string value(sizeof(SlotHeader) + payload.size(), '\0');
  EncodeSlotHeader(SlotLayout{}, SlotOf(key), InfoFor(key, payload.size(), encoding),
                   Checksum64(payload.data(), payload.size()), reinterpret_cast<std::byte*>(value.data()));
  std::memcpy(value.data() + sizeof(SlotHeader), payload.data(), payload.size());
  return value;
}

Status VerifyRemoteValue(const RemoteBlockKey& key, std::string_view value, size_t block_bytes) {
  if (value.size() < sizeof(SlotHeader)) return Corruption("remote value shorter than its header");
  SlotHeader h;
  std::memcpy(&h, value.data(), sizeof h);
  if (h.magic != kSlotMagic) return Corruption("remote value: bad magic");
  if (Checksum64(&h, offsetof(SlotHeader, header_checksum)) != h.header_checksum) {
    return Corruption("remote value: header checksum mismatch");
  }
  if (h.version != kSlabFormatVersion || h.slot != SlotOf(key)) return Corruption("remote value: unknown format");
  const SlotInfo want = InfoFor(key, block_bytes, 0);
  if (!(h.key == want.tag.key) || h.generation != want.tag.generation) {
    return Corruption("remote value belongs to another block or namespace");
  }
  const bool zstd = (h.encoding & 0xF8) == kRemoteZstd && ValidElem(h.encoding & 7);
  if (h.encoding != 0 && !zstd) return Corruption("remote value: unknown encoding");
  const size_t payload = value.size() - sizeof h;
  if (h.payload_length != payload || (!zstd && payload != block_bytes) || (zstd && payload >= block_bytes)) {
    return Corruption("remote value: length " + std::to_string(payload) + ", expected " +
                      std::to_string(block_bytes));
  }
  if (Checksum64(value.data() + sizeof h, payload) != h.payload_checksum) {
    return Corruption("remote value: payload checksum mismatch");
  }
  return OkStatus();
}

Status InflateRemoteValue(std::string* value, size_t block_bytes) {
  SlotHeader h;
  if (value->size() < sizeof h) return Corruption("remote value shorter than its header");
  std::memcpy(&h, value->data(), sizeof h);
  if (h.encoding == 0) return OkStatus();
  const uint32_t elem = h.encoding & 7;
  std::vector<std::byte> planes(block_bytes);
  thread_local ZSTD_DCtx* dctx = ZSTD_createDCtx();
  const size_t got = ZSTD_decompressDCtx(dctx, planes.data(), planes.size(), value->data() + sizeof h,
                                         value->size() - sizeof h);
  if (ZSTD_isError(got) || got != block_bytes) {
    return Corruption(std::string("remote value: compressed payload does not decode to the block (") +
                      (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size") + ")");
  }
  std::string raw(sizeof h + block_bytes, '\0');
  std::memcpy(raw.data(), &h, sizeof h);
  auto* out = reinterpret_cast<std::byte*>(raw.data() + sizeof h);
  const size_t n = block_bytes / elem;
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t b = 0; b < elem; ++b) out[i * elem + b] = planes[b * n + i];
  }
  std::memcpy(out + n * elem, planes.data() + n * elem, block_bytes - n * elem);
  *value = std::move(raw);
  return OkStatus();
}

std::span<const std::byte> RemotePayload(std::string_view value) {
  if (value.size() < sizeof(SlotHeader)) return {};
  return std::as_bytes(std::span(value.data() + sizeof(SlotHeader), value.size() - sizeof(SlotHeader)));
}

Status DecodeRemoteValue(const RemoteBlockKey& key, std::string_view value, std::span<std::byte> out) {
  RETURN_IF_ERROR(VerifyRemoteValue(key, value, out.size()));
  std::string inflated(value);
  RETURN_IF_ERROR(InflateRemoteValue(&inflated, out.size()));
  std::memcpy(out.data(), inflated.data() + sizeof(SlotHeader), out.size());
  return OkStatus();
}

}  // namespace tierkv::storage::remote
