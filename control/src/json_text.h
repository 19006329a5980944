#pragma once

// Writing JSON text directly into a string. The state file is rewritten on every change, and
// building an nlohmann::json tree of the whole state first costs several times more than the
// text itself (allocations per key); this keeps the write path lean. Reading still uses
// nlohmann::json.

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace remora::control {

// Appends `s` as a JSON string literal. `s` must be UTF-8 (everything the control plane stores
// is: validated names and addresses, JSON-parsed metadata, nlohmann-dumped policies).
inline void appendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  // Runs of characters that need no escape are appended at once (most strings are one run).
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != '"' && u != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (s[i]) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out.push_back(kHex[u >> 4]);
        out.push_back(kHex[u & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

// Appends the decimal digits of `n` (no temporary string).
inline void appendInt(std::string& out, int64_t n) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), n);
  out.append(buf, end);
}

// `"key":` (with a leading comma unless `first`).
inline void appendJsonKey(std::string& out, std::string_view key, bool first = false) {
  if (!first) out.push_back(',');
  appendJsonString(out, key);
  out.push_back(':');
}

}  // namespace remora::control
