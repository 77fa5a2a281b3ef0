#include "common/wire.h"

#include <limits>

namespace tierkv::wire {
namespace {
bool IsNonNegativeInteger(const Json& j) {
  return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0);
}

std::string Join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

Result<std::vector<uint32_t>> GetIdList(const Json& obj, std::string_view key, std::string_view path) {
  std::vector<uint32_t> out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  const std::string name = Join(path, key);
  if (!it->is_array()) return InvalidArgument(name + " must be an array of ids");
  if (it->size() > NamespaceSpec::kMaxAclEntries) {
    return InvalidArgument(name + " may hold at most " + std::to_string(NamespaceSpec::kMaxAclEntries) + " ids");
  }
  for (const Json& e : *it) {
    if (!IsNonNegativeInteger(e) || e.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
      return InvalidArgument(name + " must hold ids in [0, 4294967295]");
    }
    out.push_back(e.get<uint32_t>());
  }
  return out;
}
}  // namespace

uint32_t DecodeFrameLength(const uint8_t h[kFrameHeaderBytes]) {
  return uint32_t{h[0]} | (uint32_t{h[1]} << 8) | (uint32_t{h[2]} << 16) | (uint32_t{h[3]} << 24);
}

std::string EncodeFrame(std::string_view body) {
  std::string out(kFrameHeaderBytes + body.size(), '\0');
  const auto n = static_cast<uint32_t>(body.size());
  for (size_t i = 0; i < kFrameHeaderBytes; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out.replace(kFrameHeaderBytes, body.size(), body);
  return out;
}

Status CheckJsonShape(std::string_view body, uint32_t max_depth, uint32_t max_elements) {
  uint32_t depth = 0;
  uint64_t elements = 1;
  bool in_string = false, escaped = false;
  for (const char ch : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\') {
        escaped = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    switch (ch) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) {
          return InvalidArgument("message nests arrays and objects deeper than " + std::to_string(max_depth));
        }
        [[fallthrough]];
      case ',':
        if (++elements > max_elements) {
          return InvalidArgument("message holds more than " + std::to_string(max_elements) + " values");
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return OkStatus();
}

Result<Json> ParseBody(std::string_view body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("message is not valid JSON");
  if (!j.is_object()) return InvalidArgument("message must be a JSON object");
  return j;
}

std::string DumpBody(const Json& body) {
  return body.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

Json ErrorReply(const Status& st) {
  return Json{{"ok", false}, {"code", std::string(StatusCodeName(st.code()))}, {"error", st.message()}};
}

Status StatusFromReply(const Json& reply) {
  if (!reply.is_object()) return Internal("reply is not a JSON object");
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) return Internal("reply has no boolean 'ok'");
  if (ok->get<bool>()) return OkStatus();
  StatusCode code = StatusCode::kInternal;
  std::string msg = "unknown error";
  if (auto c = reply.find("code"); c != reply.end() && c->is_string()) {
    code = StatusCodeFromName(c->get<std::string>()).value_or(StatusCode::kInternal);
  }
  if (auto e = reply.find("error"); e != reply.end() && e->is_string()) msg = e->get<std::string>();
  if (code == StatusCode::kOk) code = StatusCode::kInternal;
  return Status(code, msg);
}

Result<uint64_t> GetUint(const Json& obj, std::string_view key, std::string_view path, uint64_t max) {
  const std::string name = Join(path, key);
  auto it = obj.find(key);
  if (it == obj.end()) return InvalidArgument(name + " is required");
  if (!IsNonNegativeInteger(*it)) return InvalidArgument(name + " must be a non-negative integer");
  uint64_t v = it->get<uint64_t>();
  if (v > max) return InvalidArgument(name + " must be at most " + std::to_string(max) + ", got " + std::to_string(v));
  return v;
}

Result<std::string> GetString(const Json& obj, std::string_view key, std::string_view path, size_t max_len) {
  const std::string name = Join(path, key);
  auto it = obj.find(key);
  if (it == obj.end()) return InvalidArgument(name + " is required");
  if (!it->is_string()) return InvalidArgument(name + " must be a string");
  std::string v = it->get<std::string>();
  if (v.size() > max_len) return InvalidArgument(name + " is longer than " + std::to_string(max_len));
  return v;
}

std::string ToHex(const void* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

Status FromHex(std::string_view hex, void* out, size_t n) {
  if (hex.size() != 2 * n) return InvalidArgument("hex string of " + std::to_string(hex.size()) + " digits, expected " + std::to_string(2 * n));
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  auto* p = static_cast<uint8_t*>(out);
  for (size_t i = 0; i < n; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgument("not a hex string");
    p[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return OkStatus();
}

Json ToJson(const ModelSpec& m) {
  return Json{{"num_layers", m.num_layers}, {"num_q_heads", m.num_q_heads}, {"num_kv_heads", m.num_kv_heads},
              {"head_dim", m.head_dim},     {"block_tokens", m.block_tokens}, {"dtype", DTypeName(m.dtype)}};
}

Json ToJson(const NamespaceSpec& ns) {
  Json j{{"name", ns.name},
              {"model", ToJson(ns.model)},
              {"budgets",
               {{"gpu_bytes", ns.budgets.gpu_bytes},
                {"host_bytes", ns.budgets.host_bytes},
                {"disk_bytes", ns.budgets.disk_bytes}}},
              {"acl", {{"uids", ns.acl.uids}, {"gids", ns.acl.gids}}},
              {"prefix_publishers", ns.prefix_publishers}};
  if (!ns.model_id.empty()) j["model_id"] = ns.model_id;  // records stay as they were without one
  if (ns.granularity != Granularity::kLayer) j["granularity"] = GranularityName(ns.granularity);  // likewise
  return j;
}

Result<ModelSpec> ModelSpecFromJson(const Json& j) {
  if (!j.is_object()) return InvalidArgument("model must be an object");
  constexpr uint64_t kU32 = std::numeric_limits<uint32_t>::max();
  ModelSpec m;
  ASSIGN_OR_RETURN(uint64_t layers, GetUint(j, "num_layers", "model", kU32));
  ASSIGN_OR_RETURN(uint64_t qh, GetUint(j, "num_q_heads", "model", kU32));
  ASSIGN_OR_RETURN(uint64_t kvh, GetUint(j, "num_kv_heads", "model", kU32));
  ASSIGN_OR_RETURN(uint64_t hd, GetUint(j, "head_dim", "model", kU32));
  ASSIGN_OR_RETURN(uint64_t bt, GetUint(j, "block_tokens", "model", kU32));
  ASSIGN_OR_RETURN(std::string dtype, GetString(j, "dtype", "model", 16));
  ASSIGN_OR_RETURN(m.dtype, ParseDType(dtype));
  m.num_layers = static_cast<uint32_t>(layers);
  m.num_q_heads = static_cast<uint32_t>(qh);
  m.num_kv_heads = static_cast<uint32_t>(kvh);
  m.head_dim = static_cast<uint32_t>(hd);
  m.block_tokens = static_cast<uint32_t>(bt);
  RETURN_IF_ERROR(m.Validate());
  return m;
}

Result<NamespaceSpec> NamespaceSpecFromJson(const Json& j) {
  if (!j.is_object()) return InvalidArgument("namespace must be an object");
  NamespaceSpec ns;
  ASSIGN_OR_RETURN(ns.name, GetString(j, "name", "namespace", NamespaceSpec::kMaxNameLength));
  auto model = j.find("model");
  if (model == j.end()) return InvalidArgument("namespace.model is required");
  ASSIGN_OR_RETURN(ns.model, ModelSpecFromJson(*model));
  if (auto b = j.find("budgets"); b != j.end()) {
    if (!b->is_object()) return InvalidArgument("namespace.budgets must be an object");
    const std::pair<const char*, uint64_t*> fields[] = {{"gpu_bytes", &ns.budgets.gpu_bytes},
                                                         {"host_bytes", &ns.budgets.host_bytes},
                                                         {"disk_bytes", &ns.budgets.disk_bytes}};
    for (auto [field, out] : fields) {
      if (!b->contains(field)) continue;
      ASSIGN_OR_RETURN(*out, GetUint(*b, field, "namespace.budgets", Budgets::kMaxBytes));
    }
  }
  if (auto a = j.find("acl"); a != j.end()) {
    if (!a->is_object()) return InvalidArgument("namespace.acl must be an object");
    ASSIGN_OR_RETURN(ns.acl.uids, GetIdList(*a, "uids", "namespace.acl"));
    ASSIGN_OR_RETURN(ns.acl.gids, GetIdList(*a, "gids", "namespace.acl"));
  }
  ASSIGN_OR_RETURN(ns.prefix_publishers, GetIdList(j, "prefix_publishers", "namespace"));
  if (j.contains("model_id")) {  // absent in records and requests from before it existed
    ASSIGN_OR_RETURN(ns.model_id, GetString(j, "model_id", "namespace", NamespaceSpec::kMaxModelIdLength));
  }
  if (j.contains("granularity")) {  // absent: per layer (and in records from before it existed)
    ASSIGN_OR_RETURN(std::string g, GetString(j, "granularity", "namespace", 16));
    ASSIGN_OR_RETURN(ns.granularity, ParseGranularity(g));
  }
  RETURN_IF_ERROR(ns.Validate());
  return ns;
}

}  // namespace tierkv::wire
