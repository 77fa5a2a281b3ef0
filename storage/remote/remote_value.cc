#include "storage/remote/remote_value.h"

#include <cstdio>
#include <cstring>

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
  char buf[96];
  const int n = std::snprintf(buf, sizeof buf, "tkv1:{%016llx%016llx%016llx}:%u",
                              static_cast<unsigned long long>(key.fp.hi), static_cast<unsigned long long>(key.fp.lo),
                              static_cast<unsigned long long>(key.hash), key.layer);
  return std::string(buf, static_cast<size_t>(n));
}

namespace {
SlotInfo InfoFor(const RemoteBlockKey& key, size_t bytes) {
  SlotInfo info;
  info.tag.key = BlockKey{0, key.layer, key.hash, 0, 0};
  info.tag.generation = key.fp.lo;
  info.length = static_cast<uint32_t>(bytes);
  info.encoding = PayloadEncoding::kRaw;
  return info;
}
}  // namespace

std::string EncodeRemoteValue(const RemoteBlockKey& key, std::span<const std::byte> block) {
  std::string value(sizeof(SlotHeader) + block.size(), '\0');
  EncodeSlotHeader(SlotLayout{}, kRemoteSlot, InfoFor(key, block.size()), Checksum64(block.data(), block.size()),
                   reinterpret_cast<std::byte*>(value.data()));
  std::memcpy(value.data() + sizeof(SlotHeader), block.data(), block.size());
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
  if (h.version != kSlabFormatVersion || h.slot != kRemoteSlot) return Corruption("remote value: unknown format");
  const SlotInfo want = InfoFor(key, block_bytes);
  if (!(h.key == want.tag.key) || h.generation != want.tag.generation) {
    return Corruption("remote value belongs to another block or namespace");
  }
  if (h.encoding != static_cast<uint8_t>(PayloadEncoding::kRaw)) return Corruption("remote value: unknown encoding");
  if (h.payload_length != block_bytes || value.size() != sizeof h + block_bytes) {
    return Corruption("remote value: length " + std::to_string(value.size() - sizeof h) + ", expected " +
                      std::to_string(block_bytes));
  }
  if (Checksum64(value.data() + sizeof h, block_bytes) != h.payload_checksum) {
    return Corruption("remote value: payload checksum mismatch");
  }
  return OkStatus();
}

std::span<const std::byte> RemotePayload(std::string_view value) {
  if (value.size() < sizeof(SlotHeader)) return {};
  return std::as_bytes(std::span(value.data() + sizeof(SlotHeader), value.size() - sizeof(SlotHeader)));
}

Status DecodeRemoteValue(const RemoteBlockKey& key, std::string_view value, std::span<std::byte> out) {
  RETURN_IF_ERROR(VerifyRemoteValue(key, value, out.size()));
  std::memcpy(out.data(), value.data() + sizeof(SlotHeader), out.size());
  return OkStatus();
}

}  // namespace tierkv::storage::remote
