#include "daemon/sequence_owners.h"

#include "common/log.h"

namespace tierkv::daemon {
namespace {
constexpr char kOwnerTag = 'O';
}

std::string SequenceOwners::Key(SequenceId seq) const {
  std::string k(1, kOwnerTag);
  storage::AppendBigEndian32(&k, ns_);
  storage::AppendBigEndian64(&k, seq);
  return k;
}

Status SequenceOwners::Load(const std::function<bool(SequenceId)>& has_blocks) {
  std::string prefix(1, kOwnerTag);
  storage::AppendBigEndian32(&prefix, ns_);
  MutexLock lock(&mu_);
  storage::Manifest::Batch stale;
  size_t bad = 0;
  RETURN_IF_ERROR(manifest_->Scan(storage::Cf::kSequences, prefix, [&](std::string_view k, std::string_view v) {
    mu_.AssertHeld();  // Scan calls back on this thread, under the lock taken above
    if (k.size() != 13 || v.size() != 4) {
      ++bad;
      stale.Delete(storage::Cf::kSequences, k);
      return true;
    }
    const SequenceId seq = storage::ReadBigEndian64(k.substr(5));
    if (has_blocks(seq)) owners_[seq] = storage::ReadBigEndian32(v);
    else stale.Delete(storage::Cf::kSequences, k);
    return true;
  }));
  if (bad) LOG(WARNING) << "namespace " << ns_ << ": " << bad << " malformed sequence owner record(s) dropped";
  if (stale.Count() > 0) RETURN_IF_ERROR(manifest_->Write(stale, /*sync=*/false));
  return OkStatus();
}

Status SequenceOwners::Denied(SequenceId seq, uint32_t owner, const Caller& caller, const char* what) const {
  return PermissionDenied("sequence " + std::to_string(seq) + " belongs to uid " + std::to_string(owner) + "; uid " +
                          std::to_string(caller.uid) + " may not " + what + " (only its owner or an admin may)");
}

Status SequenceOwners::ClaimForWrite(SequenceId seq, const Caller& caller) {
  MutexLock lock(&mu_);
  auto it = owners_.find(seq);
  if (it != owners_.end()) {
    if (it->second == caller.uid || caller.admin) return OkStatus();
    return Denied(seq, it->second, caller, "put to it");
  }
  std::string v;
  storage::AppendBigEndian32(&v, caller.uid);
  RETURN_IF_ERROR(manifest_->Put(storage::Cf::kSequences, Key(seq), v, /*sync=*/false));
  owners_.emplace(seq, caller.uid);
  return OkStatus();
}

Status SequenceOwners::CheckClose(SequenceId seq, const Caller& caller) const {
  MutexLock lock(&mu_);
  auto it = owners_.find(seq);
  if (it == owners_.end() || it->second == caller.uid || caller.admin) return OkStatus();
  return Denied(seq, it->second, caller, "close it");
}

void SequenceOwners::Forget(SequenceId seq) {
  MutexLock lock(&mu_);
  if (owners_.erase(seq) == 0) return;
  const Status st = manifest_->Delete(storage::Cf::kSequences, Key(seq), /*sync=*/false);
  if (!st.ok()) LOG(WARNING) << "namespace " << ns_ << ": forget owner of sequence " << seq << ": " << st.ToString();
}

int64_t SequenceOwners::OwnerOf(SequenceId seq) const {
  MutexLock lock(&mu_);
  auto it = owners_.find(seq);
  return it == owners_.end() ? -1 : int64_t{it->second};
}

size_t SequenceOwners::size() const {
  MutexLock lock(&mu_);
  return owners_.size();
}

}  // namespace tierkv::daemon
