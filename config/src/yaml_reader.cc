#include "yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "remora/config/utf8.h"

namespace remora::config::detail {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Keeps "must be between" messages readable: "between 1 and 100" vs "at least 1".
std::string rangeText(uint64_t min, uint64_t max, uint64_t type_max) {
  if (max >= type_max) {
    return min == 0 ? "must not be negative" : "must be at least " + std::to_string(min);
  }
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string doubleText(double d) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, res.ptr);
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

SourceLoc ErrorSink::loc(const YAML::Mark& mark) const {
  SourceLoc out;
  out.file = file_;
  // yaml-cpp marks are 0-based and -1 when unknown (e.g. the root of an empty document).
  if (mark.line >= 0) {
    out.line = mark.line + 1;
    out.column = mark.column >= 0 ? mark.column + 1 : 0;
  }
  return out;
}

void ErrorSink::add(SourceLoc loc, std::string reason) {
  errors_.push_back(ConfigError{std::move(loc), std::move(reason)});
}

std::string describe(const Node& node) {
  switch (node.kind()) {
    case Node::Kind::Map:
      return "a map";
    case Node::Kind::Sequence:
      return "a list";
    case Node::Kind::Scalar:
      return quote(node.scalar());
    case Node::Kind::Null:
      break;
  }
  return "nothing (null)";
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;  // only suggest near misses: typos, not different words
  for (const std::string& c : candidates) {
    const size_t d = editDistance(word, c);
    if (d < best_distance && d < word.size()) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    if (isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

std::string toLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string toUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool readString(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                std::string& out, bool allow_empty) {
  if (!node.isScalar()) {
    sink.add(std::move(where), quote(what) + " must be a string, got " + describe(node));
    return false;
  }
  if (!allow_empty && node.scalar().empty()) {
    sink.add(std::move(where), quote(what) + " must not be empty");
    return false;
  }
  // Config strings end up in JSON (GET /config, the control plane's API), which must be UTF-8.
  if (const size_t bad = invalidUtf8At(node.scalar()); bad != std::string_view::npos) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned char>(node.scalar()[bad]));
    sink.add(std::move(where), quote(what) + " must be UTF-8 text; byte " + hex + " at offset " +
                                   std::to_string(bad) + " is not");
    return false;
  }
  out = node.scalar();
  return true;
}

bool readUint(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
              uint64_t min, uint64_t max, uint64_t& out) {
  if (!node.isScalar()) {
    sink.add(std::move(where), quote(what) + " must be an integer, got " + describe(node));
    return false;
  }
  const std::string& s = node.scalar();
  const bool negative = !s.empty() && s[0] == '-';
  const std::string_view digits = std::string_view(s).substr(negative ? 1 : 0);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), isDigit)) {
    sink.add(std::move(where), quote(what) + " must be an integer, got " + quote(s));
    return false;
  }
  uint64_t value = 0;
  const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  const bool overflow = res.ec == std::errc::result_out_of_range;
  constexpr uint64_t kTypeMax = std::numeric_limits<uint32_t>::max();
  // "-0" is zero, not a negative number.
  if ((negative && value != 0) || value < min) {
    sink.add(std::move(where), quote(what) + " " + rangeText(min, max, kTypeMax) + ", got " + s);
    return false;
  }
  if (overflow || value > max) {
    const std::string range =
        max >= kTypeMax ? "must be at most " + std::to_string(max) : rangeText(min, max, kTypeMax);
    sink.add(std::move(where), quote(what) + " " + range + ", got " + s);
    return false;
  }
  out = value;
  return true;
}

bool readDouble(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                double min, double max, double& out) {
  if (!node.isScalar()) {
    sink.add(std::move(where), quote(what) + " must be a number, got " + describe(node));
    return false;
  }
  const std::string& s = node.scalar();
  double value = 0;
  const auto res = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || res.ec != std::errc() || res.ptr != s.data() + s.size() ||
      !std::isfinite(value)) {
    sink.add(std::move(where), quote(what) + " must be a number, got " + quote(s));
    return false;
  }
  if (value < min || value > max) {
    sink.add(std::move(where), quote(what) + " must be between " + doubleText(min) + " and " +
                                   doubleText(max) + ", got " + s);
    return false;
  }
  out = value;
  return true;
}

bool readDuration(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                  bool allow_zero, Duration& out) {
  if (!node.isScalar()) {
    sink.add(std::move(where),
             quote(what) + " must be a duration such as 250ms or 2s, got " + describe(node));
    return false;
  }
  const std::string& s = node.scalar();
  const std::optional<Duration> d = parseDuration(s);
  if (!d) {
    std::string reason = "invalid duration " + quote(s) + " for " + quote(what);
    if (!s.empty() && s[0] == '-') {
      reason += ": must not be negative";
    } else if (!s.empty() && std::all_of(s.begin(), s.end(), isDigit)) {
      reason += ": missing unit; write e.g. " + quote(s + "s") + " or " + quote(s + "ms");
    } else {
      reason +=
          "; use a number and a unit (ms, s, m or h), e.g. 250ms, 1.5s, 1m; whole "
          "milliseconds, at most " +
          formatDuration(Duration(kMaxDurationMs));
    }
    sink.add(std::move(where), std::move(reason));
    return false;
  }
  if (!allow_zero && d->count() == 0) {
    sink.add(std::move(where), quote(what) + " must be greater than 0s");
    return false;
  }
  out = *d;
  return true;
}

bool readAddress(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                 Address& out) {
  if (!node.isScalar()) {
    sink.add(std::move(where),
             quote(what) + " must be an address host:port, got " + describe(node));
    return false;
  }
  const std::optional<Address> a = parseAddress(node.scalar());
  if (!a) {
    sink.add(std::move(where), "invalid address " + quote(node.scalar()) + " for " + quote(what) +
                                   "; expected host:port with a port from 1 to 65535 "
                                   "(IPv6: [::1]:8080)");
    return false;
  }
  out = *a;
  return true;
}

MapReader::MapReader(ErrorSink& sink, const Node& node, std::string_view what,
                     std::initializer_list<std::string_view> allowed)
    : sink_(sink), node_(node), what_(what) {
  if (!node.isMap()) {
    sink_.add(node, what_ + " must be a map, got " + describe(node));
    return;
  }
  ok_ = true;
  std::vector<std::pair<Node, Node>> entries = node.entries();
  fields_.reserve(entries.size());
  // YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`), which yaml-cpp reads as a plain "<<" key:
  // the merged maps' entries count as if written here, the map's own keys winning, then the
  // earlier merged map's (the YAML 1.1 merge key type), so clusters can share an anchored block.
  std::vector<std::pair<Node, Node>> merged;
  auto add = [&](Node key, Node value, bool from_merge) {
    Field field{key.isScalar() ? key.scalar() : std::string(), std::move(key), std::move(value)};
    if (!field.key_node.isScalar()) {
      sink_.add(field.key_node,
                "keys in " + what_ + " must be plain names, got " + describe(field.key_node));
      return;
    }
    if (from_merge && find(field.key) != nullptr) return;  // overridden here
    if (std::find(allowed.begin(), allowed.end(), field.key) == allowed.end()) {
      const std::vector<std::string> allowed_names(allowed.begin(), allowed.end());
      std::string reason = "unknown key " + quote(field.key) + " in " + what_;
      if (from_merge) reason += " (merged in with <<)";
      const std::string suggestion = closest(field.key, allowed_names);
      if (!suggestion.empty()) reason += " (did you mean " + quote(suggestion) + "?)";
      reason += "; allowed keys: " + join(allowed_names);
      sink_.add(field.key_node, std::move(reason));
      return;
    }
    // yaml-cpp keeps both copies of a repeated key; silently using one would hide a mistake.
    if (const Field* first = find(field.key)) {
      const SourceLoc first_loc = sink_.loc(first->key_node);
      sink_.add(field.key_node, "key " + quote(field.key) + " appears twice in " + what_ +
                                    " (first at line " + std::to_string(first_loc.line) +
                                    "); remove one");
      return;
    }
    fields_.push_back(std::move(field));
  };
  for (auto& [key, value] : entries) {
    if (!key.isScalar() || key.scalar() != "<<") {
      add(std::move(key), std::move(value), false);
      continue;
    }
    const std::vector<Node> sources =
        value.isSequence() ? value.elements() : std::vector<Node>{value};
    for (const Node& source : sources) {
      if (!source.isMap()) {
        sink_.add(source, "<< (a YAML merge key) in " + what_ +
                              " takes a map or a list of maps, such as <<: *defaults; got " +
                              describe(source));
        continue;
      }
      std::vector<std::pair<std::string, SourceLoc>> seen;  // a repeated key is still a mistake
      for (auto& entry : source.entries()) {
        if (entry.first.isScalar() && entry.first.scalar() == "<<") {
          sink_.add(entry.first,
                    "a merged map has a << of its own; merge both maps where they "
                    "are used instead: <<: [*a, *b]");
          continue;
        }
        if (entry.first.isScalar()) {
          const std::string& k = entry.first.scalar();
          auto it =
              std::find_if(seen.begin(), seen.end(), [&](const auto& p) { return p.first == k; });
          if (it != seen.end()) {
            sink_.add(entry.first, "key " + quote(k) + " appears twice in a map merged into " +
                                       what_ + " (first at line " +
                                       std::to_string(it->second.line) + "); remove one");
            continue;
          }
          seen.emplace_back(k, sink_.loc(entry.first));
        }
        merged.push_back(std::move(entry));
      }
    }
  }
  for (auto& [key, value] : merged) add(std::move(key), std::move(value), true);
}

const Field* MapReader::find(std::string_view key) const {
  for (const Field& f : fields_) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

SourceLoc MapReader::valueLoc(const Field& field) const {
  return field.value.isNull() ? sink_.loc(field.key_node) : sink_.loc(field.value);
}

bool MapReader::require(std::string_view key) {
  if (!ok_ || has(key)) return true;
  sink_.add(node_, "missing required key " + quote(key) + " in " + what_);
  return false;
}

bool MapReader::readString(std::string_view key, std::string& out, bool allow_empty) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  return detail::readString(sink_, f->value, valueLoc(*f), key, out, allow_empty);
}

bool MapReader::readUint32(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  uint64_t v = 0;
  if (!detail::readUint(sink_, f->value, valueLoc(*f), key, min, max, v)) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

bool MapReader::readUint16(std::string_view key, uint16_t& out, uint16_t min, uint16_t max) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  uint64_t v = 0;
  if (!detail::readUint(sink_, f->value, valueLoc(*f), key, min, max, v)) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

bool MapReader::readDouble(std::string_view key, double& out, double min, double max) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  return detail::readDouble(sink_, f->value, valueLoc(*f), key, min, max, out);
}

bool MapReader::readDuration(std::string_view key, Duration& out, bool allow_zero) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  return detail::readDuration(sink_, f->value, valueLoc(*f), key, allow_zero, out);
}

bool MapReader::readAddress(std::string_view key, Address& out, SourceLoc* loc) {
  const Field* f = find(key);
  if (f == nullptr) return false;
  if (loc != nullptr) *loc = valueLoc(*f);
  return detail::readAddress(sink_, f->value, valueLoc(*f), key, out);
}

const Field* MapReader::list(std::string_view key) {
  const Field* f = find(key);
  if (f == nullptr) return nullptr;
  if (!f->value.isSequence()) {
    sink_.add(valueLoc(*f), quote(key) + " must be a list, got " + describe(f->value));
    return nullptr;
  }
  return f;
}

const Field* MapReader::map(std::string_view key) {
  const Field* f = find(key);
  if (f == nullptr) return nullptr;
  if (!f->value.isMap()) {
    sink_.add(valueLoc(*f), quote(key) + " must be a map, got " + describe(f->value) +
                                (f->value.isNull() ? " (write {} for the defaults)" : ""));
    return nullptr;
  }
  return f;
}

}  // namespace remora::config::detail
