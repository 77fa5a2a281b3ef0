// Factory strings for retrievers and triggers, in the style of FAISS's
// index_factory: "name" or "name:key=value,key=value". Keys are lower-case
// identifiers; values are numbers or words. Each key may appear once.
//
//   ParsedSpec s;  RETURN_IF_ERROR(ParseSpec("mean:r=4,pick=kcenter", &s));
//   uint32_t r;    RETURN_IF_ERROR(s.GetUint("r", 1, 1, 64, &r));
//   RETURN_IF_ERROR(s.CheckAllUsed());   // kInvalidArgument naming an unknown key
//
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tierkv::index {

class ParsedSpec {
 public:
  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }

  // Reads `key` into *out (or `def` when absent). kInvalidArgument when the value
  // is not a number in [lo, hi].
  Status GetUint(const std::string& key, uint64_t def, uint64_t lo, uint64_t hi, uint64_t* out);
  Status GetUint32(const std::string& key, uint32_t def, uint32_t lo, uint32_t hi, uint32_t* out);
  Status GetDouble(const std::string& key, double def, double lo, double hi, double* out);
  // kInvalidArgument unless the value (or `def`) is one of `allowed`.
  Status GetWord(const std::string& key, const std::string& def, std::initializer_list<std::string_view> allowed,
                 std::string* out);
  // Any non-empty value (a path); `def` when absent.
  Status GetString(const std::string& key, const std::string& def, std::string* out);
  // kInvalidArgument naming the first key no Get* call asked for.
  Status CheckAllUsed() const;

 private:
  friend Status ParseSpec(std::string_view text, ParsedSpec* out);
  Status Bad(const std::string& key, const std::string& why) const;

  std::string text_, name_;
  std::map<std::string, std::string> args_;
  std::set<std::string> used_;
};

// kInvalidArgument on an empty name, a malformed or repeated key=value, or text
// longer than 1024 characters.
Status ParseSpec(std::string_view text, ParsedSpec* out);

}  // namespace tierkv::index
