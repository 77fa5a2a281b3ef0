#include "daemon/namespace_runtime.h"

#include <sys/mman.h>

#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "daemon/namespace_files.h"

namespace tierkv::daemon {
namespace {
using Json = nlohmann::json;

std::string PolicyKey(NamespaceId id) {
  std::string k;
  storage::AppendBigEndian32(&k, id);
  return k;
}

// A D tier keeps the geometry it was created with: when the configured size
// changed (storage.disk_bytes, for a namespace without its own disk budget), the
// recorded slot count wins and the log says so and how to resize
// (docs/decisions/0015-namespace-lifecycle.md).
Status KeepRecordedDiskGeometry(const NamespaceSpec& spec, storage::DiskTierOptions* o) {
  ASSIGN_OR_RETURN(const std::optional<uint32_t> recorded, RecordedDiskSlots(o->dirs.empty() ? o->dir : o->dirs[0]));
  if (!recorded || *recorded == o->num_slots || *recorded == 0) return OkStatus();
  const uint64_t stride = storage::DiskSlotStride(o->slot_capacity);
  LOG(WARNING) << "namespace '" << spec.name << "': its D tier was created for " << *recorded << " slots ("
               << uint64_t{*recorded} * stride << " bytes); the configuration now asks for " << o->num_slots
               << " slots (" << uint64_t{o->num_slots} * stride << " bytes): keeping the recorded "
               << *recorded << " slots and every block on them. To resize D: set storage.disk_bytes back, or "
               << "tierkvctl delete-namespace " << spec.name << " and create it again (its blocks are lost), or "
               << "give the namespace its own budgets.disk_bytes when creating it";
  o->num_slots = *recorded;
  return OkStatus();
}

uint32_t Slots(uint64_t budget, uint64_t fallback, size_t stride) {
  const uint64_t bytes = budget ? budget : fallback;
  return static_cast<uint32_t>(std::min<uint64_t>(bytes / stride, UINT32_MAX - 1));
}

// Splits changes into storage fields and retrieval fields.
void SplitPolicy(const Json& changes, Json* storage_part, Json* retrieval_part) {
  *storage_part = Json::object();
  *retrieval_part = Json::object();
  for (const auto& [k, v] : changes.items()) (IsRetrievalPolicyField(k) ? *retrieval_part : *storage_part)[k] = v;
}
}  // namespace

Result<std::unique_ptr<NamespaceRuntime>> NamespaceRuntime::Open(const NamespaceRecord& rec, const Config& config,
                                                                 storage::Manifest* manifest) {
  const auto opened_at = std::chrono::steady_clock::now();
  std::unique_ptr<NamespaceRuntime> rt(new NamespaceRuntime(rec, manifest));
  const ModelSpec& m = rt->stored_model();
  const auto cap = static_cast<uint32_t>(m.BlockBytes());
  const size_t mem_stride = storage::ArenaTier::SlotStride(cap);
  const std::string tag = "ns" + std::to_string(rec.id);
  const uint32_t g_slots = Slots(rec.spec.budgets.gpu_bytes, config.storage.gpu_bytes, mem_stride);
  const uint32_t h_slots = Slots(rec.spec.budgets.host_bytes, config.storage.host_bytes, mem_stride);
  if (g_slots == 0 || h_slots == 0) {
    return InvalidArgument("namespace '" + rec.spec.name + "': G and H budgets must hold at least one block of " +
                           std::to_string(cap) + " bytes");
  }
  ASSIGN_OR_RETURN(rt->g_, storage::CreateGpuTier({tag + "-G", g_slots, cap, 0}, &rt->gpu_emulated_));
  if (!rt->gpu_emulated_) {
    const Status st = rt->retrieval_.EnableGpuScoring(config.retrieval.gpu_min_work);
    if (!st.ok()) LOG(WARNING) << "namespace '" << rec.spec.name << "': scoring on the CPU: " << st.ToString();
  }
  storage::PinMode pin = config.storage.pin_host == "off"        ? storage::PinMode::kOff
                         : config.storage.pin_host == "required" ? storage::PinMode::kRequired
                                                                 : storage::PinMode::kAuto;
  ASSIGN_OR_RETURN(rt->h_, storage::CreateHostTier({tag + "-H", h_slots, cap, pin}));
  const uint64_t disk_bytes = rec.spec.budgets.disk_bytes ? rec.spec.budgets.disk_bytes : config.storage.disk_bytes;
  if (disk_bytes > 0) {
    storage::DiskTierOptions o;
    o.dir = NamespaceDiskDir(config, rec.id);
    o.dirs = NamespaceStripedDiskDirs(config, rec.id);
    o.name = tag + "-D";
    o.slot_capacity = cap;
    o.num_slots = Slots(disk_bytes, disk_bytes, storage::DiskSlotStride(cap));
    // Slabs of an earlier format (4 KiB headers) keep the slot count they were sized with.
    if (auto existing = storage::DiskTier::ExistingLayout(o); existing.ok() && existing->has_value()) {
      o.num_slots = Slots(disk_bytes, disk_bytes, storage::DiskSlotStride(cap, **existing));
    }
    o.queue_depth = config.storage.disk_queue_depth;
    o.engine = config.storage.disk_engine == "io_uring" ? io::IoEngineKind::kUring
               : config.storage.disk_engine == "psync"  ? io::IoEngineKind::kPsync
                                                        : io::IoEngineKind::kAuto;
    if (o.num_slots == 0) return InvalidArgument("namespace '" + rec.spec.name + "': disk budget below one block");
    // A resident H (pinned for the GPU, or prefaulted) is registered with the D tier's
    // io_uring engines: promotions and demotions then pin no pages per transfer. A
    // lazily committed H is not: registering would commit all of it now.
    if (rt->h_->pinned() || config.storage.prefault) {
      o.registered_memory = {{rt->h_->mutable_memory().base(), rt->h_->memory().bytes()}};
    }
    RETURN_IF_ERROR(KeepRecordedDiskGeometry(rec.spec, &o));
    auto d = storage::DiskTier::Open(o);
    if (!d.ok()) return d.status().WithContext("namespace '" + rec.spec.name + "' disk tier");
    rt->d_ = std::move(d).value();
  }
  if (config.storage.prefault) {
    // Page faults on first touch of a fresh memfd page cost more than the copy of a
    // block into it; take them all now (like pinning does on a GPU machine).
    for (storage::ArenaTier* t : {rt->g_.get(), rt->h_.get()}) {
      if (!t->memory().host_accessible()) continue;
      if (::madvise(t->memory().base(), t->memory().bytes(), MADV_POPULATE_WRITE) != 0) {
        LOG(WARNING) << "prefault of " << t->name() << " failed (" << std::strerror(errno) << "); pages fault on use";
      }
    }
  }
  storage::BlockStoreOptions so;
  so.ns = rec.id;
  so.model = m;
  so.put_wait = std::chrono::milliseconds(config.storage.put_wait_ms);
  so.group_commit = config.storage.group_commit;
  so.group_commit_window = std::chrono::microseconds(config.storage.group_commit_window_us);
  so.overlap_commit_syncs = config.storage.group_commit_overlap;
  RETURN_IF_ERROR(rt->LoadPolicy(&so.policy));
  ASSIGN_OR_RETURN(rt->store_, storage::BlockStore::Open(so, rt->g_.get(), rt->h_.get(), rt->d_.get(), manifest));
  storage::BlockStore* store = rt->store_.get();
  RETURN_IF_ERROR(rt->owners_.Load([store, layers = m.num_layers](SequenceId seq) {
    for (uint32_t layer = 0; layer < layers; ++layer) {
      if (store->SequenceBlocks(seq, layer) > 0) return true;
    }
    return false;
  }));
  LOG(INFO) << "namespace " << rec.id << " '" << rec.spec.name << "': G " << g_slots << " slots"
            << (rt->gpu_emulated_ ? " (emulated in host memory)" : " (device memory)") << ", H " << h_slots
            << " slots, D " << (rt->d_ ? std::to_string(rt->d_->num_slots()) + " slots (" + rt->d_->engine_name() + ")"
                                       : std::string("off"))
            << ", " << rt->store_->num_blocks() << " block(s) recovered, summaries scored on the "
            << (rt->retrieval_.gpu_scoring() ? "GPU" : "CPU") << "; opened in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - opened_at).count()
            << " ms (G/H memory " << (config.storage.prefault ? "committed at once: storage.prefault" : "committed as used")
            << ")";
  return rt;
}

NamespaceRuntime::~NamespaceRuntime() { store_.reset(); }

Status NamespaceRuntime::LoadPolicy(storage::Policy* storage_policy) {
  auto stored = manifest_->Get(storage::Cf::kPolicies, PolicyKey(record_.id));
  if (!stored.ok()) return stored.status().code() == StatusCode::kNotFound ? OkStatus() : stored.status();
  Json j = Json::parse(*stored, nullptr, false);
  if (!j.is_object()) return Corruption("stored policy of namespace '" + record_.spec.name + "' is not JSON");
  Json sp, rp;
  SplitPolicy(j, &sp, &rp);
  ASSIGN_OR_RETURN(*storage_policy, storage::ApplyPolicyChanges(storage::Policy{}, sp));
  ASSIGN_OR_RETURN(RetrievalPolicy retrieval, ApplyRetrievalChanges(RetrievalPolicy{}, rp));
  retrieval_.SetPolicy(retrieval);  // what puts index for
  MutexLock lock(&policy_mu_);  // the runtime is not shared yet; the field is guarded all the same
  retrieval_policy_ = std::move(retrieval);
  return OkStatus();
}

Json NamespaceRuntime::PolicyJson() const {
  Json j = storage::PolicyToJson(store_->policy());
  MutexLock lock(&policy_mu_);
  j.update(RetrievalPolicyToJson(retrieval_policy_));
  return j;
}

RetrievalPolicy NamespaceRuntime::retrieval_policy() const {
  MutexLock lock(&policy_mu_);
  return retrieval_policy_;
}

Status NamespaceRuntime::SetPolicy(const Json& changes) {
  if (!changes.is_object()) return InvalidArgument("policy must be an object");
  MutexLock lock(&policy_mu_);
  Json sp, rp;
  SplitPolicy(changes, &sp, &rp);
  ASSIGN_OR_RETURN(storage::Policy next_storage, storage::ApplyPolicyChanges(store_->policy(), sp));
  ASSIGN_OR_RETURN(RetrievalPolicy next_retrieval, ApplyRetrievalChanges(retrieval_policy_, rp));
  Json full = storage::PolicyToJson(next_storage);
  full.update(RetrievalPolicyToJson(next_retrieval));
  RETURN_IF_ERROR(manifest_->Put(storage::Cf::kPolicies, PolicyKey(record_.id), full.dump()));
  store_->SetPolicy(next_storage);
  retrieval_policy_ = next_retrieval;
  retrieval_.SetPolicy(next_retrieval);
  ++policy_stats_.changes;
  LOG(INFO) << "namespace '" << record_.spec.name << "' policy changed: " << changes.dump();
  return OkStatus();
}

}  // namespace tierkv::daemon
