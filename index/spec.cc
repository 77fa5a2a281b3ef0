#include "index/spec.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace tierkv::index {
namespace {

bool IsIdent(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Status ParseSpec(std::string_view text, ParsedSpec* out) {
  *out = ParsedSpec();
  if (text.size() > 1024) return InvalidArgument("spec longer than 1024 characters");
  out->text_ = std::string(text);
  const size_t colon = text.find(':');
  out->name_ = std::string(text.substr(0, colon));
  if (!IsIdent(out->name_)) return InvalidArgument("spec '" + out->text_ + "': bad name '" + out->name_ + "'");
  if (colon == std::string_view::npos) return OkStatus();
  std::string_view rest = text.substr(colon + 1);
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || !IsIdent(item.substr(0, eq)) || eq + 1 == item.size()) {
      return InvalidArgument("spec '" + out->text_ + "': expected key=value, got '" + std::string(item) + "'");
    }
    const std::string key(item.substr(0, eq));
    if (!out->args_.emplace(key, std::string(item.substr(eq + 1))).second) {
      return InvalidArgument("spec '" + out->text_ + "': key '" + key + "' repeated");
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return OkStatus();
}

Status ParsedSpec::Bad(const std::string& key, const std::string& why) const {
  return InvalidArgument("spec '" + text_ + "': " + key + " " + why);
}

Status ParsedSpec::GetDouble(const std::string& key, double def, double lo, double hi, double* out) {
  used_.insert(key);
  auto it = args_.find(key);
  if (it == args_.end()) {
    *out = def;
    return OkStatus();
  }
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
    return Bad(key, "must be a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                        it->second + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParsedSpec::GetUint(const std::string& key, uint64_t def, uint64_t lo, uint64_t hi, uint64_t* out) {
  used_.insert(key);
  auto it = args_.find(key);
  if (it == args_.end()) {
    *out = def;
    return OkStatus();
  }
  const std::string& s = it->second;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0])) || *end != '\0' || s.size() > 19 || v < lo ||
      v > hi) {
    return Bad(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + s + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParsedSpec::GetUint32(const std::string& key, uint32_t def, uint32_t lo, uint32_t hi, uint32_t* out) {
  uint64_t v = 0;
  RETURN_IF_ERROR(GetUint(key, def, lo, hi, &v));
  *out = static_cast<uint32_t>(v);
  return OkStatus();
}

Status ParsedSpec::GetWord(const std::string& key, const std::string& def,
                           std::initializer_list<std::string_view> allowed, std::string* out) {
  used_.insert(key);
  auto it = args_.find(key);
  const std::string& v = it == args_.end() ? def : it->second;
  for (std::string_view a : allowed) {
    if (v == a) {
      *out = v;
      return OkStatus();
    }
  }
  std::string list;
  for (std::string_view a : allowed) list += (list.empty() ? "" : "|") + std::string(a);
  return Bad(key, "must be one of " + list + ", got '" + v + "'");
}

Status ParsedSpec::GetString(const std::string& key, const std::string& def, std::string* out) {
  used_.insert(key);
  auto it = args_.find(key);
  *out = it == args_.end() ? def : it->second;
  return OkStatus();
}

Status ParsedSpec::CheckAllUsed() const {
  for (const auto& [key, value] : args_) {
    if (!used_.count(key)) return InvalidArgument("spec '" + text_ + "': unknown key '" + key + "'");
  }
  return OkStatus();
}

}  // namespace tierkv::index
