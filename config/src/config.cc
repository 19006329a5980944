#include "remora/config/config.h"

#include <algorithm>
#include <charconv>
#include <limits>

namespace remora::config {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Hostnames and IPv4 literals: RFC 1123 labels, plus '_' which some service registries use.
bool isHostChar(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' ||
         c == '_';
}

// IPv6 literals as written inside brackets, with an optional zone ("fe80::1%eth0").
bool isV6Char(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

bool isValidV6(std::string_view host) {
  std::string_view addr = host.substr(0, host.find('%'));
  if (addr.size() < 2 || addr.find(':') == std::string_view::npos) return false;
  if (!std::all_of(addr.begin(), addr.end(), isV6Char)) return false;
  if (host.size() > addr.size()) {
    // A zone must name something: "fe80::1%" is not an address.
    std::string_view zone = host.substr(addr.size() + 1);
    if (zone.empty() || !std::all_of(zone.begin(), zone.end(), isHostChar)) return false;
  }
  return true;
}

std::optional<uint16_t> parsePort(std::string_view s) {
  // from_chars would accept nothing weirder than digits here, but a leading '+' or spaces must not
  // sneak in through another path either, so check the characters first.
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), isDigit)) return std::nullopt;
  uint32_t port = 0;
  std::from_chars(s.data(), s.data() + s.size(), port);
  if (port < 1 || port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

}  // namespace

std::string Address::str() const {
  // Called per endpoint on every snapshot: one allocation at most (none for a short IPv4 key).
  char port_text[8];
  const auto [port_end, ec] = std::to_chars(port_text, port_text + sizeof(port_text), port);
  const bool v6 = host.find(':') != std::string::npos;
  std::string out;
  out.reserve(host.size() + (v6 ? 2 : 0) + 1 + static_cast<size_t>(port_end - port_text));
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out.append(port_text, port_end);
  return out;
}

std::string_view toString(LbPolicy p) {
  switch (p) {
    case LbPolicy::RoundRobin:
      return "round_robin";
    case LbPolicy::WeightedRoundRobin:
      return "weighted_round_robin";
    case LbPolicy::Random:
      return "random";
    case LbPolicy::LeastRequest:
      return "least_request";
  }
  return "unknown";
}

std::optional<LbPolicy> parseLbPolicy(std::string_view s) {
  for (LbPolicy p : {LbPolicy::RoundRobin, LbPolicy::WeightedRoundRobin, LbPolicy::Random,
                     LbPolicy::LeastRequest}) {
    if (toString(p) == s) return p;
  }
  return std::nullopt;
}

const Cluster* Config::findCluster(std::string_view name) const {
  for (const Cluster& c : clusters) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string ConfigError::format() const {
  std::string out = loc.file;
  if (loc.line > 0) {
    if (!out.empty()) out += ":";
    out += std::to_string(loc.line);
    if (loc.column > 0) {
      out += ':';
      out += std::to_string(loc.column);
    }
  }
  if (!out.empty()) out += ": ";
  out += reason;
  return out;
}

std::string LoadResult::formatErrors() const {
  std::string out;
  for (const ConfigError& e : errors) {
    out += e.format();
    out += "\n";
  }
  return out;
}

std::optional<Duration> parseDuration(std::string_view s) {
  // Digits, an optional fraction, then a unit. Computed in integers so that "1.1s" is exactly
  // 1100ms rather than whatever the nearest double gives.
  size_t i = 0;
  while (i < s.size() && isDigit(s[i])) ++i;
  const std::string_view whole = s.substr(0, i);
  std::string_view frac;
  if (i < s.size() && s[i] == '.') {
    size_t start = ++i;
    while (i < s.size() && isDigit(s[i])) ++i;
    frac = s.substr(start, i - start);
    if (frac.empty()) return std::nullopt;  // "1.s"
  }
  if (whole.empty()) return std::nullopt;  // "s", ".5s", "-1s"
  const std::string_view unit = s.substr(i);
  int64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 60 * 60 * 1000;
  } else {
    return std::nullopt;
  }
  // Bounding the digit counts keeps every product below int64 overflow; 12 digits of hours is
  // already absurd for a timeout.
  if (whole.size() > 12 || frac.size() > 9) return std::nullopt;
  int64_t whole_value = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), whole_value);
  int64_t frac_value = 0;
  int64_t frac_scale = 1;
  if (!frac.empty()) {
    std::from_chars(frac.data(), frac.data() + frac.size(), frac_value);
    for (size_t k = 0; k < frac.size(); ++k) frac_scale *= 10;
  }
  // Durations are milliseconds; "1.5ms" cannot be represented and silently rounding it would make
  // the config say something it does not do.
  const int64_t frac_ms_scaled = frac_value * unit_ms;
  if (frac_ms_scaled % frac_scale != 0) return std::nullopt;
  const int64_t ms = whole_value * unit_ms + frac_ms_scaled / frac_scale;
  if (ms > kMaxDurationMs) return std::nullopt;
  return Duration(ms);
}

std::string formatDuration(Duration d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % (60 * 60 * 1000) == 0) return std::to_string(ms / (60 * 60 * 1000)) + "h";
  if (ms % (60 * 1000) == 0) return std::to_string(ms / (60 * 1000)) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<Address> parseAddress(std::string_view s) {
  Address out;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return std::nullopt;
    }
    const std::string_view host = s.substr(1, close - 1);
    if (!isValidV6(host)) return std::nullopt;
    out.host = std::string(host);
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    const std::string_view host = s.substr(0, colon);
    // An unbracketed ':' in the host is an IPv6 literal without brackets, where the port cannot
    // be told apart from the last group.
    if (!std::all_of(host.begin(), host.end(), isHostChar)) return std::nullopt;
    out.host = std::string(host);
    port = s.substr(colon + 1);
  }
  const std::optional<uint16_t> p = parsePort(port);
  if (!p) return std::nullopt;
  out.port = *p;
  return out;
}

}  // namespace remora::config
