// SequenceOwners: which uid owns each sequence of one namespace (issue 14,
// docs/decisions/0007-owners-and-prefix-scope.md). A sequence belongs to the uid
// whose put (or LoadPrefix) opened it; only that uid or an admin may put over its
// blocks or close it. Reads (Get, Retrieve) stay open to every member.
//
// Persisted in the manifest's "sequences" column family under 'O' + ns + seq (the
// block links use 'L'), written without fsync: a crash may lose the newest claims,
// and such a sequence is claimed again by its next put (said in docs/security.md).
//
// Thread-safe (one mutex; the manifest write of a claim runs under it, once per sequence).
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>

#include "common/ids.h"
#include "common/mutex.h"
#include "common/status.h"
#include "storage/manifest.h"

namespace tierkv::daemon {

// Who is asking: the channel's peer as the control socket saw it (SO_PEERCRED).
struct Caller {
  uint32_t uid = 0;
  bool admin = false;
};

class SequenceOwners {
 public:
  SequenceOwners(NamespaceId ns, storage::Manifest* manifest) : ns_(ns), manifest_(manifest) {}
  // Reads the persisted owners of the namespace. Sequences for which `has_blocks`
  // says false (their blocks lived in G/H only and went with the last run) lose
  // their owner record: the next put opens them afresh.
  Status Load(const std::function<bool(SequenceId)>& has_blocks);
  // Before a write to `seq`: OK when the caller owns it or is an admin; an unowned
  // sequence becomes the caller's. kPermissionDenied naming both uids otherwise.
  Status ClaimForWrite(SequenceId seq, const Caller& caller);
  // Before closing `seq`: same rule, without claiming an unowned sequence.
  Status CheckClose(SequenceId seq, const Caller& caller) const;
  // After the sequence was closed: forgets its owner.
  void Forget(SequenceId seq);
  // The owner of `seq`, or -1 when it has none.
  int64_t OwnerOf(SequenceId seq) const;
  size_t size() const;

 private:
  std::string Key(SequenceId seq) const;
  Status Denied(SequenceId seq, uint32_t owner, const Caller& caller, const char* what) const;

  const NamespaceId ns_;
  storage::Manifest* const manifest_;
  mutable Mutex mu_;
  std::unordered_map<SequenceId, uint32_t> owners_ GUARDED_BY(mu_);
};

}  // namespace tierkv::daemon
