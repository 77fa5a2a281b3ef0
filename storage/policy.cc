#include "storage/policy.h"

#include <array>

namespace tierkv::storage {
namespace {
using Json = nlohmann::json;

template <typename E, size_t N>
Result<E> ParseEnum(const Json& v, const std::array<std::string_view, N>& names, const std::string& field) {
  if (v.is_string()) {
    for (size_t i = 0; i < N; ++i) {
      if (names[i] == v.get<std::string>()) return static_cast<E>(i);
    }
  }
  std::string all;
  for (auto n : names) all += (all.empty() ? "" : ", ") + std::string(n);
  return InvalidArgument("policy." + field + " must be one of " + all);
}

constexpr std::array<std::string_view, 3> kEvictions = {"lru", "lfu", "score"};
constexpr std::array<std::string_view, 2> kWrites = {"write-back", "write-through"};
constexpr std::array<std::string_view, 3> kCompressions = {"none", "int8", "kivi2"};
constexpr std::array<std::string_view, 2> kMissModes = {"wait", "defer"};
constexpr std::array<std::string_view, 2> kRemoteBlocks = {"prefixes", "closed-sequences"};

Result<uint32_t> ParseCount(const Json& v, const std::string& field, uint32_t max) {
  if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0) ||
      v.get<uint64_t>() > max) {
    return InvalidArgument("policy." + field + " must be an integer in [0, " + std::to_string(max) + "]");
  }
  return v.get<uint32_t>();
}

Result<double> ParseShare(const Json& v, const std::string& field) {
  if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 1) {
    return InvalidArgument("policy." + field + " must be a number in (0, 1]");
  }
  return v.get<double>();
}
}  // namespace

std::string_view EvictionName(Eviction e) { return kEvictions[static_cast<size_t>(e)]; }
std::string_view WritePolicyName(WritePolicy w) { return kWrites[static_cast<size_t>(w)]; }
std::string_view CompressionName(Compression c) { return kCompressions[static_cast<size_t>(c)]; }
std::string_view MissModeName(MissMode m) { return kMissModes[static_cast<size_t>(m)]; }
std::string_view RemoteBlocksName(RemoteBlocks r) { return kRemoteBlocks[static_cast<size_t>(r)]; }

Status Policy::Validate() const {
  for (auto [name, w] : {std::pair{"gpu", gpu}, std::pair{"host", host}}) {
    if (!(w.low > 0 && w.low <= w.high && w.high <= 1)) {
      return InvalidArgument(std::string("policy.") + name + "_low_watermark must be in (0, " + name +
                             "_high_watermark] and the high one at most 1");
    }
  }
  if (compression_group < 4 || compression_group > 4096 || (compression_group & (compression_group - 1)) != 0) {
    return InvalidArgument("policy.compression_group must be a power of two in [4, 4096]");
  }
  return OkStatus();
}

Json PolicyToJson(const Policy& p) {
  return Json{{"eviction", EvictionName(p.eviction)},
              {"sink_blocks", p.sink_blocks},
              {"recent_window", p.recent_window},
              {"write", WritePolicyName(p.write)},
              {"compression", CompressionName(p.compression)},
              {"compression_group", p.compression_group},
              {"prefetch_depth", p.prefetch_depth},
              {"miss_mode", MissModeName(p.miss_mode)},
              {"gpu_high_watermark", p.gpu.high},
              {"gpu_low_watermark", p.gpu.low},
              {"host_high_watermark", p.host.high},
              {"host_low_watermark", p.host.low},
              {"remote_ttl_s", p.remote_ttl_s},
              {"remote_blocks", RemoteBlocksName(p.remote_blocks)}};
}

Result<Policy> ApplyPolicyChanges(const Policy& base, const Json& changes) {
  if (!changes.is_object()) return InvalidArgument("policy must be an object");
  Policy p = base;
  for (const auto& [field, v] : changes.items()) {
    if (field == "eviction") {
      ASSIGN_OR_RETURN(p.eviction, ParseEnum<Eviction>(v, kEvictions, field));
    } else if (field == "write") {
      ASSIGN_OR_RETURN(p.write, ParseEnum<WritePolicy>(v, kWrites, field));
    } else if (field == "compression") {
      ASSIGN_OR_RETURN(p.compression, ParseEnum<Compression>(v, kCompressions, field));
    } else if (field == "miss_mode") {
      ASSIGN_OR_RETURN(p.miss_mode, ParseEnum<MissMode>(v, kMissModes, field));
    } else if (field == "sink_blocks") {
      ASSIGN_OR_RETURN(p.sink_blocks, ParseCount(v, field, 1 << 16));
    } else if (field == "recent_window") {
      ASSIGN_OR_RETURN(p.recent_window, ParseCount(v, field, 1 << 16));
    } else if (field == "compression_group") {
      ASSIGN_OR_RETURN(p.compression_group, ParseCount(v, field, 1 << 16));
    } else if (field == "prefetch_depth") {
      ASSIGN_OR_RETURN(p.prefetch_depth, ParseCount(v, field, 1024));
    } else if (field == "remote_blocks") {
      ASSIGN_OR_RETURN(p.remote_blocks, ParseEnum<RemoteBlocks>(v, kRemoteBlocks, field));
    } else if (field == "remote_ttl_s") {
      ASSIGN_OR_RETURN(p.remote_ttl_s, ParseCount(v, field, 30u * 24 * 3600));
    } else if (field == "gpu_high_watermark") {
      ASSIGN_OR_RETURN(p.gpu.high, ParseShare(v, field));
    } else if (field == "gpu_low_watermark") {
      ASSIGN_OR_RETURN(p.gpu.low, ParseShare(v, field));
    } else if (field == "host_high_watermark") {
      ASSIGN_OR_RETURN(p.host.high, ParseShare(v, field));
    } else if (field == "host_low_watermark") {
      ASSIGN_OR_RETURN(p.host.low, ParseShare(v, field));
    } else {
      return InvalidArgument("policy has no field '" + field.substr(0, 64) + "'");
    }
  }
  RETURN_IF_ERROR(p.Validate());
  return p;
}

}  // namespace tierkv::storage
