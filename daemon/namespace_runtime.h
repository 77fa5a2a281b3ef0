// NamespaceRuntime: what a namespace is while the daemon runs — its tiers (G, H, D
// arenas sized by its budgets), its BlockStore, its retrieval index and its policy.
// Created at start for every namespace in the manifest, and at create_namespace.
//
// Thread-safe: the BlockStore and RetrievalIndex are; the policy has its own mutex.
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/mutex.h"
#include "daemon/append.h"
#include "daemon/namespace_gate.h"
#include "daemon/namespace_registry.h"
#include "daemon/retrieval.h"
#include "daemon/sequence_owners.h"
#include "storage/arena_tier.h"
#include "storage/block_store.h"
#include "storage/disk_tier.h"
#include "storage/manifest.h"
#include "storage/remote/remote_tier.h"

namespace tierkv::daemon {

struct PolicyStats {
  std::atomic<uint64_t> changes{0};
};

class NamespaceRuntime {
 public:
  // Opens the tiers and the BlockStore (recovering D blocks), loads the persisted
  // policy. `manifest` must outlive the runtime.
  static Result<std::unique_ptr<NamespaceRuntime>> Open(const NamespaceRecord& record, const Config& config,
                                                        storage::Manifest* manifest);
  ~NamespaceRuntime();

  const NamespaceRecord& record() const { return record_; }
  // The engine's model (what Put, Get, Append and Retrieve requests are shaped by).
  const ModelSpec& model() const { return record_.spec.model; }
  // The shape of one stored block: model() per layer; per KV head, one KV head's
  // tokens under stored layer layer * kv + head (NamespaceSpec::StoredModel). The
  // store, the tiers, the retrieval index and R work in stored blocks.
  const ModelSpec& stored_model() const { return stored_model_; }
  bool per_head() const { return record_.spec.granularity == Granularity::kKvHead; }
  storage::BlockStore& store() { return *store_; }
  const storage::BlockStore& store() const { return *store_; }
  RetrievalIndex& retrieval() { return retrieval_; }
  RetrievalStats& retrieval_stats() { return retrieval_stats_; }
  SequenceOwners& owners() { return owners_; }
  OpenBlocks& open_blocks() { return open_blocks_; }
  storage::ArenaTier& gpu() const { return *g_; }
  storage::ArenaTier& host() const { return *h_; }
  storage::DiskTier* disk() const { return d_.get(); }
  bool gpu_emulated() const { return gpu_emulated_; }
  // Held by every channel of the namespace (GatedOps); closed by delete-namespace.
  const std::shared_ptr<NamespaceGate>& gate() const { return gate_; }

  // The full policy as JSON (storage fields and retrieval fields).
  nlohmann::json PolicyJson() const;
  RetrievalPolicy retrieval_policy() const;
  // Validates changes to any field, persists the result, then applies it. On any
  // error nothing changes.
  Status SetPolicy(const nlohmann::json& changes);
  uint64_t policy_changes() const { return policy_stats_.changes.load(); }

  // The remote tier R (daemon/remote_link.h). Set once, before the namespace serves;
  // a namespace without a model_id never uses R (remote() is null).
  void AttachRemote(storage::remote::RemoteTier* remote) {
    if (record_.spec.model_id.empty()) return;
    remote_ = remote;
    remote_fp_ = storage::remote::NamespaceFingerprint(record_.spec.name, record_.spec.model_id, stored_model());
  }
  storage::remote::RemoteTier* remote() const { return remote_; }
  const storage::remote::Fingerprint& remote_fingerprint() const { return remote_fp_; }

 private:
  NamespaceRuntime(NamespaceRecord record, storage::Manifest* manifest)
      : record_(std::move(record)),
        manifest_(manifest),
        stored_model_(record_.spec.StoredModel()),
        retrieval_(stored_model_),
        owners_(record_.id, manifest) {}
  Status LoadPolicy(storage::Policy* storage_policy);

  const NamespaceRecord record_;
  storage::Manifest* const manifest_;
  const ModelSpec stored_model_;
  std::unique_ptr<storage::ArenaTier> g_, h_;
  std::unique_ptr<storage::DiskTier> d_;
  bool gpu_emulated_ = true;
  std::unique_ptr<storage::BlockStore> store_;
  RetrievalIndex retrieval_;
  RetrievalStats retrieval_stats_;
  SequenceOwners owners_;
  OpenBlocks open_blocks_;
  mutable Mutex policy_mu_;
  RetrievalPolicy retrieval_policy_ GUARDED_BY(policy_mu_);
  PolicyStats policy_stats_;
  storage::remote::RemoteTier* remote_ = nullptr;
  storage::remote::Fingerprint remote_fp_;
  const std::shared_ptr<NamespaceGate> gate_ = std::make_shared<NamespaceGate>();
};

}  // namespace tierkv::daemon
