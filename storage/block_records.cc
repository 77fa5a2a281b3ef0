#include "storage/block_records.h"

#include "storage/manifest.h"

namespace tierkv::storage {
namespace {
constexpr size_t kRecordKeyBytes = 1 + 4 + 8 + 4 + 4;     // kind, ns, seq, layer, index
constexpr size_t kPendingWriteBytes = kRecordKeyBytes + 3 * 4;  // key, slot, generation, previous
}  // namespace

std::string RecordKeyPrefix(char kind, NamespaceId ns) {
  std::string k(1, kind);
  AppendBigEndian32(&k, ns);
  return k;
}

std::string EncodeRecordKey(const RecordKey& r) {
  std::string k = RecordKeyPrefix(r.kind, r.ns);
  AppendBigEndian64(&k, r.seq);
  AppendBigEndian32(&k, r.layer);
  AppendBigEndian32(&k, r.index);
  return k;
}

Result<RecordKey> DecodeRecordKey(std::string_view k) {
  if (k.size() != kRecordKeyBytes || (k[0] != 'B' && k[0] != 'P' && k[0] != 'L')) {
    return Corruption("malformed block record key");
  }
  RecordKey r;
  r.kind = k[0];
  r.ns = ReadBigEndian32(k.substr(1));
  r.seq = ReadBigEndian64(k.substr(5));
  r.layer = ReadBigEndian32(k.substr(13));
  r.index = ReadBigEndian32(k.substr(17));
  return r;
}

std::string EncodeBlockRecord(const BlockRecord& r) {
  std::string v;
  AppendBigEndian32(&v, r.disk_slot);
  AppendBigEndian32(&v, r.generation);
  AppendBigEndian32(&v, r.length);
  v.push_back(static_cast<char>(r.encoding));
  return v;
}

Result<BlockRecord> DecodeBlockRecord(std::string_view v) {
  if (v.size() != 13) return Corruption("malformed block record");
  BlockRecord r;
  r.disk_slot = ReadBigEndian32(v);
  r.generation = ReadBigEndian32(v.substr(4));
  r.length = ReadBigEndian32(v.substr(8));
  r.encoding = static_cast<uint8_t>(v[12]);
  return r;
}

std::string PendingWritesKey(NamespaceId ns) { return RecordKeyPrefix('C', ns); }

std::string EncodePendingWrites(std::span<const PendingWrite> writes) {
  std::string v;
  v.reserve(writes.size() * kPendingWriteBytes);
  for (const PendingWrite& w : writes) {
    v += w.key;
    AppendBigEndian32(&v, w.slot);
    AppendBigEndian32(&v, w.generation);
    AppendBigEndian32(&v, w.previous);
  }
  return v;
}

Result<std::vector<PendingWrite>> DecodePendingWrites(std::string_view v) {
  if (v.size() % kPendingWriteBytes != 0) return Corruption("malformed pending-writes record");
  std::vector<PendingWrite> writes(v.size() / kPendingWriteBytes);
  for (PendingWrite& w : writes) {
    w.key = std::string(v.substr(0, kRecordKeyBytes));
    if (!DecodeRecordKey(w.key).ok()) return Corruption("malformed key in the pending-writes record");
    w.slot = ReadBigEndian32(v.substr(kRecordKeyBytes));
    w.generation = ReadBigEndian32(v.substr(kRecordKeyBytes + 4));
    w.previous = ReadBigEndian32(v.substr(kRecordKeyBytes + 8));
    v.remove_prefix(kPendingWriteBytes);
  }
  return writes;
}

}  // namespace tierkv::storage
