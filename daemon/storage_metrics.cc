#include "daemon/storage_metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <map>

namespace tierkv::daemon {
namespace {
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Families by name, filled in order of first use.
class Families {
 public:
  void Add(const std::string& name, const char* help, MetricType type, Labels labels, double value) {
    auto [it, fresh] = index_.try_emplace(name, families_.size());
    if (fresh) families_.push_back(MetricFamily{name, help, type, {}});
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    families_[it->second].metric.push_back(std::move(m));
  }
  void Counter(const std::string& name, const char* help, Labels l, double v) {
    Add(name, help, MetricType::Counter, std::move(l), v);
  }
  void Gauge(const std::string& name, const char* help, Labels l, double v) {
    Add(name, help, MetricType::Gauge, std::move(l), v);
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<MetricFamily> families_;
};

void TierMetrics(Families& f, const std::string& ns, const char* tier, const storage::Tier& t) {
  const Labels l{{"namespace", ns}, {"tier", tier}};
  const auto s = t.stats().Snapshot();
  f.Gauge("tierkv_tier_capacity_bytes", "Bytes of block slots in the tier", l, double(t.num_slots()) * t.slot_capacity());
  f.Gauge("tierkv_tier_used_bytes", "Bytes of occupied block slots", l, double(t.used_slots()) * t.slot_capacity());
  f.Gauge("tierkv_tier_blocks", "Blocks held by the tier", l, t.used_slots());
  f.Counter("tierkv_tier_reads_total", "Successful reads", l, s.reads);
  f.Counter("tierkv_tier_read_bytes_total", "Payload bytes read", l, s.read_bytes);
  f.Counter("tierkv_tier_writes_total", "Successful writes", l, s.writes);
  f.Counter("tierkv_tier_write_bytes_total", "Payload bytes written", l, s.write_bytes);
  f.Counter("tierkv_tier_io_errors_total", "I/O errors (EIO, short transfers)", l, s.io_errors);
  f.Counter("tierkv_tier_no_space_total", "Writes refused for lack of space (ENOSPC)", l, s.no_space);
  f.Counter("tierkv_tier_checksum_failures_total", "Reads that failed verification (never served)", l,
            s.checksum_failures);
}

// One series per D tier device (storage.disk_dirs), label device = its index, dir = its folder.
void DiskDeviceMetrics(Families& f, const std::string& ns, const storage::DiskTier& d) {
  const std::vector<storage::DiskTier::DeviceStats> devs = d.device_stats();
  for (size_t i = 0; i < devs.size(); ++i) {
    const Labels l{{"namespace", ns}, {"device", std::to_string(i)}, {"dir", devs[i].dir}};
    f.Gauge("tierkv_disk_device_failed", "1 when the D tier device failed (its blocks are lost, the rest serves)", l,
            devs[i].failed ? 1 : 0);
    f.Counter("tierkv_disk_device_reads_total", "Reads completed by the device", l, double(devs[i].reads));
    f.Counter("tierkv_disk_device_writes_total", "Writes completed by the device", l, double(devs[i].writes));
    f.Counter("tierkv_disk_device_read_bytes_total", "Bytes read from the device (headers included)", l,
              double(devs[i].read_bytes));
    f.Counter("tierkv_disk_device_write_bytes_total", "Bytes written to the device (headers included)", l,
              double(devs[i].write_bytes));
    f.Counter("tierkv_disk_device_io_errors_total", "Failed I/Os of the device", l, double(devs[i].errors));
  }
  // How payloads moved: straight to/from registered memory (no page pinning), straight
  // to/from other memory (the kernel pins its pages per transfer), or copied through
  // the tier's bounce buffers.
  const char* help = "D tier transfers by payload path (fixed: registered H memory; pinned: pinned per transfer; "
                     "bounce: copied)";
  const double fixed = double(d.fixed_transfers());
  f.Counter("tierkv_disk_transfers_total", help, {{"namespace", ns}, {"path", "fixed"}}, fixed);
  f.Counter("tierkv_disk_transfers_total", help, {{"namespace", ns}, {"path", "pinned"}},
            double(d.zero_copy_transfers()) - fixed);
  f.Counter("tierkv_disk_transfers_total", help, {{"namespace", ns}, {"path", "bounce"}}, double(d.bounce_transfers()));
  f.Counter("tierkv_disk_payload_only_reads_total",
            "D tier reads that moved the payload alone (the slot's header remembered since its write)", {{"namespace", ns}},
            double(d.payload_only_reads()));
}

void StoreMetrics(Families& f, const std::string& ns, NamespaceRuntime& rt) {
  const Labels l{{"namespace", ns}};
  const auto& s = rt.store().stats();
  f.Gauge("tierkv_blocks", "Blocks stored", l, rt.store().num_blocks());
  f.Gauge("tierkv_sequences", "Sequences with blocks", l, rt.store().num_sequences());
  f.Gauge("tierkv_leases", "Leases (pinned retrievals) not released yet", l, rt.store().num_leases());
  f.Gauge("tierkv_metadata_bytes", "Daemon memory of the placement map", l, rt.store().MetadataBytes());
  f.Gauge("tierkv_summary_bytes", "Daemon memory of retrieval summaries", l, rt.retrieval().SummaryBytes());
  f.Gauge("tierkv_summary_device_bytes", "GPU memory of the summaries' device mirrors (GPU scoring)", l,
          rt.retrieval().DeviceSummaryBytes());
  f.Counter("tierkv_puts_total", "Blocks stored by clients", l, s.puts.load());
  f.Counter("tierkv_puts_deduplicated_total", "Puts of prefix blocks already stored", l, s.puts_deduplicated.load());
  f.Counter("tierkv_puts_rejected_total", "Puts refused (busy, no space, errors)", l, s.puts_rejected.load());
  f.Counter("tierkv_gets_total", "Blocks read by clients", l, s.gets.load());
  f.Counter("tierkv_get_misses_total", "Gets of absent blocks", l, s.get_misses.load());
  for (auto [tier, v] : {std::pair{"G", &s.hits_gpu}, std::pair{"H", &s.hits_host}, std::pair{"D", &s.hits_disk}}) {
    f.Counter("tierkv_tier_hits_total", "Blocks found in the tier by gets and retrievals",
              {{"namespace", ns}, {"tier", tier}}, v->load());
  }
  struct Move {
    const char *from, *to;
    const std::atomic<uint64_t>*count, *bytes;
  } moves[] = {{"H", "G", &s.promotions_h_to_g, &s.bytes_h_to_g},
               {"D", "H", &s.promotions_d_to_h, &s.bytes_d_to_h},
               {"G", "H", &s.demotions_g_to_h, &s.bytes_g_to_h},
               {"H", "D", &s.demotions_h_to_d, &s.bytes_h_to_d}};
  for (const Move& m : moves) {
    const Labels ml{{"namespace", ns}, {"from", m.from}, {"to", m.to}};
    const bool up = std::string(m.to) == "G" || (std::string(m.from) == "D");
    f.Counter(up ? "tierkv_promotions_total" : "tierkv_demotions_total", "Blocks moved between tiers", ml,
              m.count->load());
    f.Counter("tierkv_bytes_moved_total", "Bytes moved between tiers", ml, m.bytes->load());
  }
  f.Counter("tierkv_promotion_batches_total", "H->G copies issued as one batch (one gather launch on a GPU)",
            {{"namespace", ns}, {"path", std::string(rt.store().promotion_path())}}, s.promotion_batches.load());
  f.Counter("tierkv_disk_admission_stops_total", "D writes refused (disk full or failing)", l,
            s.disk_admission_stops.load());
  f.Counter("tierkv_corrupt_blocks_total", "Blocks that failed verification and were dropped", l,
            s.corrupt_blocks.load());
  f.Counter("tierkv_recovered_blocks_total", "Blocks recovered from D at start", l, s.recovered_blocks.load());
  f.Counter("tierkv_stale_records_total", "Manifest records dropped at start (slot header disagreed)", l,
            s.stale_records.load());
  f.Counter("tierkv_unfinished_writes_total",
            "D copies of the last commit found not whole at start (a crash inside the commit; never acknowledged)", l,
            s.unfinished_writes.load());
  f.Counter("tierkv_restored_records_total",
            "Manifest records put back to a block's previous D copy because the last commit's copy was not whole", l,
            s.restored_records.load());
  f.Counter("tierkv_puts_not_durable_total", "Write-through puts kept in G/H only because D refused them", l,
            s.puts_not_durable.load());
  f.Counter("tierkv_disk_writes_total", "Blocks written to D", l, s.disk_writes.load());
  f.Counter("tierkv_disk_write_batches_total", "Batches of D writes (put, demotion or drain calls)", l,
            s.disk_write_batches.load());
  f.Counter("tierkv_disk_commits_total", "D commits: one fdatasync and one manifest batch each (group commit)", l,
            s.disk_commits.load());
  f.Counter("tierkv_disk_encoded_bytes_total", "Payload bytes written to D after compression", l,
            s.disk_encoded_bytes.load());
  f.Counter("tierkv_disk_write_failures_total", "Blocks whose D write, sync or record failed", l,
            s.disk_write_failures.load());
  f.Counter("tierkv_disk_read_failures_total", "D reads that failed (I/O error or verification)", l,
            s.disk_read_failures.load());
}

void RetrievalMetrics(Families& f, const std::string& ns, NamespaceRuntime& rt) {
  const Labels l{{"namespace", ns}};
  const auto& r = rt.retrieval_stats();
  f.Counter("tierkv_retrieval_steps_total", "Retrieve calls served", l, r.steps.load());
  f.Counter("tierkv_retrieval_triggers_total", "Retrievals that scored (taken) or reused the last selection (skipped)",
            {{"namespace", ns}, {"result", "taken"}}, r.triggers_taken.load());
  f.Counter("tierkv_retrieval_triggers_total", "", {{"namespace", ns}, {"result", "skipped"}},
            r.triggers_skipped.load());
  f.Counter("tierkv_retrieval_selected_blocks_total", "Blocks returned in block tables", l, r.selected_blocks.load());
  f.Counter("tierkv_retrieval_misses_total", "Selected blocks not on G, by miss mode",
            {{"namespace", ns}, {"mode", "wait"}}, r.misses_waited.load());
  f.Counter("tierkv_retrieval_misses_total", "", {{"namespace", ns}, {"mode", "defer"}}, r.misses_deferred.load());
  f.Counter("tierkv_retrieval_gpu_steps_total", "Retrieve calls served through a channel's GPU exchange", l,
            r.gpu_steps.load());
  f.Counter("tierkv_retrieval_scored_total", "Selections scored from summaries (minmax, mean), by device",
            {{"namespace", ns}, {"device", "gpu"}}, rt.retrieval().gpu_selections());
  f.Counter("tierkv_retrieval_scored_total", "", {{"namespace", ns}, {"device", "cpu"}},
            rt.retrieval().cpu_selections());
  f.Counter("tierkv_retrieval_gpu_fallbacks_total", "Selections whose GPU scoring failed and ran on the CPU", l,
            rt.retrieval().gpu_fallbacks());
  f.Counter("tierkv_retrieval_gpu_batches_total",
            "GPU scoring runs; selections that arrive together share one (scored_total{device=gpu} / this)", l,
            rt.retrieval().gpu_batches());
  f.Counter("tierkv_retrieval_phase_seconds_total", "Time spent per retrieval phase",
            {{"namespace", ns}, {"phase", "select"}}, r.select_ns.load() * 1e-9);
  f.Counter("tierkv_retrieval_phase_seconds_total", "", {{"namespace", ns}, {"phase", "acquire"}},
            r.acquire_ns.load() * 1e-9);
}

void PolicyMetrics(Families& f, const std::string& ns, NamespaceRuntime& rt) {
  const auto p = rt.PolicyJson();
  Labels info{{"namespace", ns}};
  for (const auto& [k, v] : p.items()) {
    if (v.is_string()) info.push_back({k, v.get<std::string>()});
    else if (v.is_number()) {
      f.Gauge("tierkv_policy", "Numeric fields of the namespace policy", {{"namespace", ns}, {"field", k}},
              v.get<double>());
    }
  }
  f.Gauge("tierkv_policy_info", "Choices of the namespace policy (value always 1)", info, 1);
  f.Counter("tierkv_policy_changes_total", "Policy changes applied at run time", {{"namespace", ns}},
            rt.policy_changes());
}
}  // namespace

std::vector<MetricFamily> StorageMetrics::Collect() const {
  Families f;
  f.Counter("tierkv_channel_requests_total", "Data-plane requests", {}, channel_stats_->requests.load());
  f.Counter("tierkv_channel_rejected_total", "Data-plane requests refused as malformed", {},
            channel_stats_->rejected.load());
  for (const std::shared_ptr<NamespaceRuntime>& rt : runtimes_->Shared()) {
    const std::string& ns = rt->record().spec.name;
    TierMetrics(f, ns, "G", rt->gpu());
    TierMetrics(f, ns, "H", rt->host());
    if (rt->disk()) {
      TierMetrics(f, ns, "D", *rt->disk());
      DiskDeviceMetrics(f, ns, *rt->disk());
    }
    StoreMetrics(f, ns, *rt);
    RetrievalMetrics(f, ns, *rt);
    PolicyMetrics(f, ns, *rt);
  }
  return f.Take();
}

}  // namespace tierkv::daemon
