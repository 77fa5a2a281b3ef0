# Writes OUT, a C++ source defining `std::string_view NAME()` with the text of IN.
# Usage: cmake -DIN=... -DOUT=... -DNAME=... -DNAMESPACE=... -P embed_file.cmake
file(READ "${IN}" content)
set(delim "tierkv_embed")
file(WRITE "${OUT}.tmp"
  "// Generated from ${IN} by cmake/embed_file.cmake. Do not edit.\n"
  "#include <string_view>\n"
  "namespace ${NAMESPACE} {\n"
  "std::string_view ${NAME}() {\n"
  "  static constexpr char kText[] = R\"${delim}(${content})${delim}\";\n"
  "  return std::string_view(kText, sizeof(kText) - 1);\n"
  "}\n"
  "}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
