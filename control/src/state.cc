#include "state.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "json_text.h"
#include "remora/config/json.h"
#include "remora/config/parser.h"

namespace remora::control {

bool isDotSegment(std::string_view s) { return s == "." || s == ".."; }

bool isValidName(std::string_view s) {
  return !s.empty() && s.size() <= 128 && !isDotSegment(s) &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '_' || c == '.';
         });
}

uint64_t ControlState::commit(const std::string& actor, std::string change) {
  ++version_;
  history_.push_back(
      {version_, formatWallTime(std::chrono::system_clock::now()), actor, std::move(change)});
  while (history_.size() > history_limit_) history_.pop_front();
  return version_;
}

bool ControlState::setPolicy(config::Cluster policy) {
  const std::string name = policy.name;
  auto it = policies_.find(name);
  if (it != policies_.end() && config::toJson(it->second) == config::toJson(policy)) return false;
  policies_[name] = std::move(policy);
  touchPolicy(name);
  return true;
}

bool ControlState::removePolicy(const std::string& name) {
  if (policies_.erase(name) == 0) return false;
  touchPolicy(name);
  return true;
}

uint64_t ControlState::policyRevision(const std::string& name) const {
  auto it = policy_revisions_.find(name);
  return it == policy_revisions_.end() ? 0 : it->second;
}

const config::Cluster* ControlState::findPolicy(const std::string& name) const {
  auto it = policies_.find(name);
  return it == policies_.end() ? nullptr : &it->second;
}

config::Cluster ControlState::effectiveCluster(const std::string& name,
                                               const config::Cluster* policy) const {
  config::Cluster c;
  if (policy != nullptr) {
    c = *policy;
  } else {
    c.name = name;
    c.lb_policy = config::LbPolicy::WeightedRoundRobin;
  }
  std::set<std::string> seen;
  for (const config::Endpoint& e : c.endpoints) seen.insert(e.address.str());
  for (config::Endpoint& e : registry_.endpoints(name)) {
    if (seen.insert(e.address.str()).second) c.endpoints.push_back(std::move(e));
  }
  return c;
}

std::vector<config::Cluster> ControlState::clusters() const {
  std::set<std::string> names;
  for (const auto& [name, p] : policies_) names.insert(name);
  for (const auto& [name, s] : registry_.services()) names.insert(name);
  std::vector<config::Cluster> out;
  out.reserve(names.size());
  for (const std::string& name : names) out.push_back(effectiveCluster(name, findPolicy(name)));
  return out;
}

std::optional<config::Cluster> ControlState::cluster(const std::string& name) const {
  const config::Cluster* policy = findPolicy(name);
  if (policy == nullptr && registry_.findService(name) == nullptr) return std::nullopt;
  return effectiveCluster(name, policy);
}

nlohmann::json ControlState::clustersJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const config::Cluster& c : clusters()) out.push_back(config::toJson(c));
  return out;
}

std::string ControlState::clustersText() const {
  std::set<std::string> names;
  for (const auto& [name, p] : policies_) names.insert(name);
  for (const auto& [name, svc] : registry_.services()) names.insert(name);
  auto& cache = cluster_texts_.entries;
  // Clusters that are gone.
  for (auto it = cache.begin(); it != cache.end();) {
    it = names.count(it->first) != 0 ? std::next(it) : cache.erase(it);
  }
  std::string out = "[";
  for (const std::string& name : names) {
    const Service* service = registry_.findService(name);
    const uint64_t service_revision = service != nullptr ? service->revision : 0;
    const uint64_t policy_revision = policyRevision(name);
    auto [it, inserted] = cache.try_emplace(name);
    CachedCluster& c = it->second;
    if (inserted || c.service_revision != service_revision ||
        c.policy_revision != policy_revision) {
      c.text = config::toJson(effectiveCluster(name, findPolicy(name))).dump();
      c.service_revision = service_revision;
      c.policy_revision = policy_revision;
    }
    if (out.size() > 1) out.push_back(',');
    out += c.text;
  }
  out.push_back(']');
  return out;
}

std::string ControlState::serializeState() const {
  std::string out;
  out.reserve(256 * (registry_.instanceCount() + history_.size()) + 1024);
  out += "{\"format\":" + std::to_string(kStateFormat);
  out += ",\"version\":" + std::to_string(version_);
  out += ",\"services\":";
  registry_.appendStateJson(out);
  out += ",\"policies\":[";
  bool first = true;
  for (const auto& [name, p] : policies_) {
    if (!first) out.push_back(',');
    first = false;
    out += config::toJson(p).dump();
  }
  out += "],\"history\":[";
  first = true;
  for (const HistoryEntry& h : history_) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"version\":";
    appendInt(out, static_cast<int64_t>(h.version));
    appendJsonKey(out, "time");
    appendJsonString(out, h.time);
    appendJsonKey(out, "actor");
    appendJsonString(out, h.actor);
    appendJsonKey(out, "change");
    appendJsonString(out, h.change);
    out.push_back('}');
  }
  out += "]}";
  return out;
}

nlohmann::json ControlState::toStateJson() const { return nlohmann::json::parse(serializeState()); }

bool ControlState::loadStateJson(const nlohmann::json& j, std::string& error) {
  try {
    if (!j.is_object() || j.value("format", 0) != kStateFormat) {
      error =
          "unsupported state format (expected \"format\": " + std::to_string(kStateFormat) + ")";
      return false;
    }
    const uint64_t version = j.at("version").get<uint64_t>();
    std::map<std::string, config::Cluster> policies;
    for (const nlohmann::json& p : j.at("policies")) {
      std::vector<std::string> errors;
      const std::string name = p.value("name", "");
      std::optional<config::Cluster> c = parsePolicy(p.dump(), name, "state", errors);
      if (!c) {
        error = "policy \"" + name + "\": " + (errors.empty() ? "invalid" : errors.front());
        return false;
      }
      policies[c->name] = std::move(*c);
    }
    std::deque<HistoryEntry> history;
    for (const nlohmann::json& h : j.at("history")) {
      history.push_back({h.at("version").get<uint64_t>(), h.at("time").get<std::string>(),
                         h.at("actor").get<std::string>(), h.at("change").get<std::string>()});
    }
    // Last: it replaces the registry only when it succeeds, so a failure leaves all untouched.
    if (!registry_.loadStateJson(j.at("services"), error)) return false;
    while (history.size() > history_limit_) history.pop_front();
    policies_ = std::move(policies);
    policy_revisions_.clear();
    for (const auto& [name, p] : policies_) touchPolicy(name);
    cluster_texts_.entries.clear();
    history_ = std::move(history);
    version_ = version;
  } catch (const nlohmann::json::exception& e) {
    error = std::string("malformed state: ") + e.what();
    return false;
  }
  return true;
}

std::optional<config::Cluster> parsePolicy(const std::string& text, const std::string& name,
                                           const std::string& file,
                                           std::vector<std::string>& errors) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    errors.push_back(file + ":" + std::to_string(e.mark.line + 1) + ":" +
                     std::to_string(e.mark.column + 1) + ": not valid JSON or YAML: " + e.msg);
    return std::nullopt;
  }
  if (!node.IsMap()) {
    errors.push_back(file +
                     ": a cluster policy must be a JSON object such as "
                     "{\"lb_policy\": \"round_robin\"}");
    return std::nullopt;
  }
  if (!name.empty()) {
    const YAML::Node n = node["name"];
    if (!n) {
      node["name"] = name;
    } else if (!n.IsScalar() || n.Scalar() != name) {
      const YAML::Mark m = n.Mark();
      errors.push_back(file + ":" + std::to_string(m.line + 1) + ":" +
                       std::to_string(m.column + 1) + ": \"name\" is \"" +
                       (n.IsScalar() ? n.Scalar() : std::string("?")) +
                       "\" but the URL names cluster \"" + name +
                       "\"; leave \"name\" out or make them the same");
      return std::nullopt;
    }
  }
  std::vector<config::ConfigError> config_errors;
  std::optional<config::Cluster> c =
      config::parseCluster(node, file, config_errors, /*endpoints_required=*/false);
  config::sortErrors(config_errors);
  for (const config::ConfigError& e : config_errors) errors.push_back(e.format());
  if (!c || !config_errors.empty()) return std::nullopt;
  return c;
}

}  // namespace remora::control
