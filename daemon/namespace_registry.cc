#include "daemon/namespace_registry.h"

#include "common/log.h"
#include "common/wire.h"

namespace tierkv::daemon {
namespace {
std::string Key(NamespaceId id) {
  std::string k;
  storage::AppendBigEndian32(&k, id);
  return k;
}

std::string Encode(const NamespaceRecord& r) {
  wire::Json j{{"id", r.id}, {"spec", wire::ToJson(r.spec)}, {"created_by_uid", r.created_by_uid}};
  return j.dump();
}

// Cf::kMeta: the next namespace id, written when a namespace is removed so that
// its id is never handed out again (not even after a restart).
constexpr std::string_view kNextIdKey = "next_namespace_id";

Result<NamespaceRecord> Decode(std::string_view key, std::string_view value) {
  auto j = wire::ParseBody(value);
  if (!j.ok()) return Corruption("namespace record is not JSON");
  NamespaceRecord r;
  auto id = wire::GetUint(*j, "id", "", UINT32_MAX);
  auto uid = wire::GetUint(*j, "created_by_uid", "", UINT32_MAX);
  if (!id.ok() || !uid.ok() || key.size() != 4 || storage::ReadBigEndian32(key) != *id || !j->contains("spec")) {
    return Corruption("namespace record has a bad id");
  }
  auto spec = wire::NamespaceSpecFromJson((*j)["spec"]);
  if (!spec.ok()) return Corruption("namespace record: " + spec.status().message());
  r.id = static_cast<NamespaceId>(*id);
  r.created_by_uid = static_cast<uint32_t>(*uid);
  r.spec = std::move(spec).value();
  return r;
}
}  // namespace

Result<std::unique_ptr<NamespaceRegistry>> NamespaceRegistry::Load(storage::Manifest* manifest,
                                                                   size_t max_namespaces) {
  std::unique_ptr<NamespaceRegistry> reg(new NamespaceRegistry(manifest, max_namespaces));
  Status decode_error;
  MutexLock lock(&reg->mu_);  // not shared yet: for the analysis (Scan calls back on this thread)
  RETURN_IF_ERROR(manifest->Scan(storage::Cf::kNamespaces, "", [&](std::string_view k, std::string_view v) {
    reg->mu_.AssertHeld();  // Scan calls back on this thread, under the lock taken above
    auto rec = Decode(k, v);
    if (!rec.ok()) {
      decode_error = rec.status();
      return false;
    }
    reg->by_name_[rec->spec.name] = rec->id;
    reg->next_id_ = std::max(reg->next_id_, rec->id + 1);
    reg->by_id_[rec->id] = std::move(rec).value();
    return true;
  }));
  RETURN_IF_ERROR(decode_error);
  auto next = manifest->Get(storage::Cf::kMeta, kNextIdKey);
  if (next.ok() && next->size() == 4) reg->next_id_ = std::max(reg->next_id_, storage::ReadBigEndian32(*next));
  else if (!next.ok() && next.status().code() != StatusCode::kNotFound) return next.status();
  return reg;
}

Result<NamespaceRegistry::CreateResult> NamespaceRegistry::Create(
    NamespaceSpec spec, uint32_t creator_uid, const std::function<Status(const NamespaceRecord&)>& open) {
  MutexLock lock(&mu_);
  if (auto it = by_name_.find(spec.name); it != by_name_.end()) {
    const NamespaceRecord& existing = by_id_.at(it->second);
    if (existing.spec.model != spec.model) {
      return AlreadyExists("namespace '" + spec.name + "' exists with another model shape (" +
                           existing.spec.model.ToString() + "; asked for " + spec.model.ToString() + ")");
    }
    if (existing.spec.model_id != spec.model_id) {  // another model (or one stored without identity)
      return AlreadyExists("namespace '" + spec.name + "' exists with model_id '" + existing.spec.model_id +
                           "'; asked for '" + spec.model_id + "' (a namespace holds one model's blocks)");
    }
    if (existing.spec.granularity != spec.granularity) {  // another block layout
      return AlreadyExists("namespace '" + spec.name + "' exists with granularity " +
                           std::string(GranularityName(existing.spec.granularity)) + "; asked for " +
                           std::string(GranularityName(spec.granularity)));
    }
    return CreateResult{existing, false};
  }
  if (by_id_.size() >= max_) {
    return ResourceExhausted("the daemon holds its maximum of " + std::to_string(max_) + " namespaces");
  }
  if (spec.acl.uids.empty() && spec.acl.gids.empty()) spec.acl.uids.push_back(creator_uid);
  NamespaceRecord rec{next_id_, std::move(spec), creator_uid};
  if (open) RETURN_IF_ERROR(open(rec));  // nothing persisted yet
  RETURN_IF_ERROR(manifest_->Put(storage::Cf::kNamespaces, Key(rec.id), Encode(rec)));
  ++next_id_;
  by_name_[rec.spec.name] = rec.id;
  by_id_[rec.id] = rec;
  LOG(INFO) << "namespace " << rec.id << " '" << rec.spec.name << "' created: " << rec.spec.model.ToString()
            << " granularity=" << GranularityName(rec.spec.granularity);
  return CreateResult{std::move(rec), true};
}

Status NamespaceRegistry::Remove(NamespaceId id) {
  MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return NotFound("no namespace " + std::to_string(id));
  storage::Manifest::Batch batch;
  batch.Delete(storage::Cf::kNamespaces, Key(id));
  batch.Put(storage::Cf::kMeta, kNextIdKey, Key(next_id_));
  RETURN_IF_ERROR(manifest_->Write(batch));
  by_name_.erase(it->second.spec.name);
  by_id_.erase(it);
  return OkStatus();
}

std::optional<NamespaceRecord> NamespaceRegistry::FindByName(const std::string& name) const {
  MutexLock lock(&mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return std::nullopt;
  return by_id_.at(it->second);
}

std::optional<NamespaceRecord> NamespaceRegistry::FindById(NamespaceId id) const {
  MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

std::vector<NamespaceRecord> NamespaceRegistry::List() const {
  MutexLock lock(&mu_);
  std::vector<NamespaceRecord> out;
  for (const auto& [id, rec] : by_id_) out.push_back(rec);
  return out;
}

size_t NamespaceRegistry::size() const {
  MutexLock lock(&mu_);
  return by_id_.size();
}

}  // namespace tierkv::daemon
