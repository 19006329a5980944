#include "control_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "remora/config/parser.h"

namespace remora::control {

namespace {

using config::ConfigError;
using config::SourceLoc;

constexpr uint32_t kMaxHistoryLimit = 1000000;

const std::vector<std::string>& logLevels() {
  static const std::vector<std::string> levels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
  return levels;
}

// Turns yaml-cpp's 0-based marks into the 1-based positions people and editors use.
class Reader {
 public:
  Reader(std::string_view file, std::vector<ConfigError>& errors) : file_(file), errors_(errors) {}

  SourceLoc loc(const YAML::Node& node) const {
    const YAML::Mark m = node.Mark();
    if (m.line < 0) return {file_, 0, 0};
    return {file_, m.line + 1, m.column + 1};
  }
  void error(const YAML::Node& node, std::string reason) {
    errors_.push_back({loc(node), std::move(reason)});
  }
  void error(SourceLoc where, std::string reason) {
    errors_.push_back({std::move(where), std::move(reason)});
  }
  const std::string& file() const { return file_; }
  std::vector<ConfigError>& errors() { return errors_; }

  // A scalar value; reports and returns false otherwise.
  bool scalar(const YAML::Node& key, const YAML::Node& value, std::string& out) {
    if (!value.IsScalar()) {
      error(value.IsNull() ? key : value,
            "\"" + key.Scalar() + "\" must be a single value, got " + describe(value));
      return false;
    }
    out = value.Scalar();
    return true;
  }
  bool duration(const YAML::Node& key, const YAML::Node& value, Duration& out, bool allow_zero) {
    std::string s;
    if (!scalar(key, value, s)) return false;
    const std::optional<Duration> d = config::parseDuration(s);
    if (!d || (!allow_zero && d->count() == 0)) {
      error(value, "\"" + key.Scalar() + "\" must be a " +
                       std::string(allow_zero ? "" : "positive ") +
                       "duration such as 250ms, 2s or 1m, got \"" + s + "\"");
      return false;
    }
    out = *d;
    return true;
  }

  static std::string describe(const YAML::Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    if (node.IsNull()) return "nothing";
    return "\"" + node.Scalar() + "\"";
  }

 private:
  std::string file_;
  std::vector<ConfigError>& errors_;
};

void parseDiscovery(Reader& r, const YAML::Node& node, DiscoveryOptions& out) {
  if (!node.IsMap()) {
    r.error(node, "\"discovery\" must be a map, got " + Reader::describe(node));
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "debounce") {
      r.duration(it->first, it->second, out.debounce, /*allow_zero=*/true);
    } else if (key == "max_delay") {
      r.duration(it->first, it->second, out.max_delay, /*allow_zero=*/true);
    } else if (key == "heartbeat_interval") {
      r.duration(it->first, it->second, out.heartbeat_interval, /*allow_zero=*/false);
    } else {
      r.error(it->first, "unknown key \"" + key +
                             "\" in discovery; allowed: debounce, max_delay, heartbeat_interval");
    }
  }
  if (out.max_delay < out.debounce) {
    r.error(node, "discovery max_delay (" + config::formatDuration(out.max_delay) +
                      ") is shorter than debounce (" + config::formatDuration(out.debounce) +
                      "); make it at least as long");
  }
}

ControlConfig parseTop(Reader& r, const YAML::Node& root) {
  ControlConfig cfg;
  if (root.IsNull()) return cfg;  // an empty file: every default
  if (!root.IsMap()) {
    r.error(root, "the top level must be a map, got " + Reader::describe(root));
    return cfg;
  }
  std::set<std::string> seen;
  for (auto it = root.begin(); it != root.end(); ++it) {
    // Copies: the iterator hands out a temporary pair.
    const YAML::Node k = it->first;
    const YAML::Node v = it->second;
    const std::string key = k.Scalar();
    if (!seen.insert(key).second) {
      r.error(k, "key \"" + key + "\" appears twice at the top level; keep one");
      continue;
    }
    std::string s;
    if (key == "listen") {
      if (!r.scalar(k, v, s)) continue;
      if (auto a = config::parseAddress(s)) {
        cfg.listen = *a;
      } else {
        r.error(v, "\"listen\" must be host:port (e.g. 127.0.0.1:18000), got \"" + s + "\"");
      }
    } else if (key == "state_file") {
      // An explicitly empty value keeps the state in memory only (tests, throwaway setups).
      if (v.IsNull()) {
        cfg.state_file.clear();
      } else if (r.scalar(k, v, s)) {
        cfg.state_file = s;
      }
    } else if (key == "auth") {
      if (!v.IsMap()) {
        r.error(v.IsNull() ? k : v, "\"auth\" must be a map such as { tokens_file: FILE }");
        continue;
      }
      for (auto a = v.begin(); a != v.end(); ++a) {
        if (a->first.Scalar() == "tokens_file") {
          if (r.scalar(a->first, a->second, s)) {
            if (s.empty()) {
              r.error(a->second, "\"tokens_file\" must name a file");
            } else {
              cfg.tokens_file = s;
            }
          }
        } else {
          r.error(a->first, "unknown key \"" + a->first.Scalar() +
                                "\" in auth; allowed: "
                                "tokens_file");
        }
      }
    } else if (key == "tls") {
      if (!v.IsMap()) {
        r.error(v.IsNull() ? k : v,
                "\"tls\" must be a map such as { cert_file: FILE, key_file: FILE }");
        continue;
      }
      config::ListenerTls& t = cfg.tls.emplace();
      t.loc = r.loc(v);
      for (auto a = v.begin(); a != v.end(); ++a) {
        const std::string name = a->first.Scalar();
        std::string* target = name == "cert_file"        ? &t.cert_file
                              : name == "key_file"       ? &t.key_file
                              : name == "client_ca_file" ? &t.client_ca_file
                                                         : nullptr;
        if (target == nullptr) {
          r.error(a->first, "unknown key \"" + name +
                                "\" in tls; allowed: cert_file, key_file, client_ca_file");
        } else if (r.scalar(a->first, a->second, s)) {
          *target = s;
        }
      }
      if (t.cert_file.empty() || t.key_file.empty()) {
        r.error(v, "tls needs \"cert_file\" and \"key_file\"");
      }
    } else if (key == "default_ttl") {
      r.duration(k, v, cfg.default_ttl, /*allow_zero=*/false);
    } else if (key == "log_level") {
      if (!r.scalar(k, v, s)) continue;
      std::transform(s.begin(), s.end(), s.begin(), ::tolower);
      if (std::find(logLevels().begin(), logLevels().end(), s) == logLevels().end()) {
        r.error(v, "unknown log_level \"" + s +
                       "\"; use one of: trace, debug, info, warn, error, critical, off");
      } else {
        cfg.log_level = s;
      }
    } else if (key == "history_limit") {
      if (!r.scalar(k, v, s)) continue;
      char* end = nullptr;
      const unsigned long n = std::strtoul(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || n < 1 || n > kMaxHistoryLimit) {
        r.error(v, "\"history_limit\" must be a whole number from 1 to " +
                       std::to_string(kMaxHistoryLimit) + ", got \"" + s + "\"");
      } else {
        cfg.history_limit = static_cast<uint32_t>(n);
      }
    } else if (key == "discovery") {
      parseDiscovery(r, v, cfg.discovery);
    } else if (key == "clusters") {
      if (!v.IsSequence()) {
        r.error(v.IsNull() ? k : v, "\"clusters\" must be a list of cluster policies");
        continue;
      }
      std::map<std::string, SourceLoc> names;
      for (const YAML::Node& item : v) {
        std::optional<config::Cluster> c =
            config::parseCluster(item, r.file(), r.errors(), /*endpoints_required=*/false);
        if (!c) continue;
        auto [pos, inserted] = names.emplace(c->name, c->loc);
        if (!inserted) {
          r.error(c->loc, "cluster \"" + c->name + "\" is defined twice (first at line " +
                              std::to_string(pos->second.line) + "); keep one");
          continue;
        }
        cfg.clusters.push_back(std::move(*c));
      }
    } else {
      r.error(k, "unknown key \"" + key +
                     "\" at the top level; allowed: listen, state_file, auth, tls, default_ttl, "
                     "log_level, history_limit, discovery, clusters");
    }
  }
  return cfg;
}

}  // namespace

std::string ControlConfigResult::formatErrors() const {
  std::string out;
  for (const ConfigError& e : errors) out += e.format() + "\n";
  return out;
}

ControlConfigResult loadControlConfigString(std::string_view yaml, std::string_view file_name) {
  ControlConfigResult result;
  Reader r(file_name, result.errors);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    result.errors.push_back(
        {{std::string(file_name), e.mark.line + 1, e.mark.column + 1}, "invalid YAML: " + e.msg});
    return result;
  }
  ControlConfig cfg;
  try {
    cfg = parseTop(r, root);
  } catch (const YAML::Exception& e) {
    result.errors.push_back({{std::string(file_name), e.mark.line + 1, e.mark.column + 1},
                             std::string("cannot read the file: ") + e.what()});
  }
  config::sortErrors(result.errors);
  if (result.errors.empty()) {
    cfg.source_file = std::string(file_name);
    result.config = std::move(cfg);
  }
  return result;
}

ControlConfigResult loadControlConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ControlConfigResult result;
    ConfigError error;
    error.loc.file = path;
    error.reason = "cannot read the file";
    result.errors.push_back(std::move(error));
    return result;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return loadControlConfigString(ss.str(), path);
}

std::optional<std::vector<Token>> loadTokens(const std::string& path,
                                             std::vector<std::string>& errors) {
  std::ifstream in(path);
  if (!in) {
    errors.push_back(path + ": cannot read the tokens file");
    return std::nullopt;
  }
  std::vector<Token> tokens;
  std::string line;
  int n = 0;
  const size_t before = errors.size();
  auto trim = [](std::string s) {
    const char* ws = " \t\r\n";
    s.erase(0, s.find_first_not_of(ws));
    s.erase(s.find_last_not_of(ws) + 1);
    return s;
  };
  while (std::getline(in, line)) {
    ++n;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    const std::string where = path + ":" + std::to_string(n) + ": ";
    if (colon == std::string::npos) {
      errors.push_back(where + "expected \"name:token\"");
      continue;
    }
    Token t{trim(line.substr(0, colon)), trim(line.substr(colon + 1))};
    if (t.name.empty() || t.token.empty()) {
      errors.push_back(where + "both the name and the token must be non-empty");
      continue;
    }
    // The name is the audit log's actor: keep it a plain word.
    const bool plain = std::all_of(t.name.begin(), t.name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
             c == '@';
    });
    if (!plain) {
      errors.push_back(where + "the name \"" + t.name +
                       "\" may only have letters, digits, '-', '_', '.' and '@'");
      continue;
    }
    const bool duplicate = std::any_of(tokens.begin(), tokens.end(),
                                       [&](const Token& o) { return o.token == t.token; });
    if (duplicate) {
      errors.push_back(where + "this token is already listed; give every client its own");
      continue;
    }
    tokens.push_back(std::move(t));
  }
  if (errors.size() != before) return std::nullopt;
  if (tokens.empty()) {
    errors.push_back(path +
                     ": no tokens; add lines \"name:token\" (an empty file would lock "
                     "every mutating call out)");
    return std::nullopt;
  }
  return tokens;
}

}  // namespace remora::control
