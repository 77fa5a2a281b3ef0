#include "storage/block_records.h"

#include "storage/manifest.h"

namespace tierkv::storage {

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
  if (k.size() != 1 + 4 + 8 + 4 + 4 || (k[0] != 'B' && k[0] != 'P' && k[0] != 'L')) {
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

}  // namespace tierkv::storage
