#pragma once

// Everything the control plane knows and persists: the registry, the cluster policies, the audit
// history and the version counter. Every change that a proxy could see (or an operator made) goes
// through commit(): it bumps the version and appends a history entry. The state is plain data on
// the loop thread; persistence and pushes are the server's business (control_server.h).

#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "registry.h"
#include "remora/config/config.h"

namespace remora::control {

struct HistoryEntry {
  uint64_t version = 0;
  std::string time;  // formatWallTime()
  std::string actor;
  std::string change;
};

// Actors that are not a client: the TTL sweep and the config file's initial policies.
inline constexpr const char* kActorTtl = "ttl";
inline constexpr const char* kActorConfigFile = "config-file";
inline constexpr const char* kActorAnonymous = "anonymous";

// Format version of the state file; bumped when the layout changes incompatibly.
inline constexpr int kStateFormat = 1;

class ControlState {
 public:
  ControlState(const TimeSource& time, size_t history_limit)
      : registry_(time), history_limit_(history_limit) {}

  Registry& registry() { return registry_; }
  const Registry& registry() const { return registry_; }
  uint64_t version() const { return version_; }

  // Records a change already applied to the registry or the policies: the version goes up by one
  // and the history gains an entry. Returns the new version.
  uint64_t commit(const std::string& actor, std::string change);

  // Policies, by cluster name. setPolicy() returns false when the same policy was already set.
  bool setPolicy(config::Cluster policy);
  bool removePolicy(const std::string& name);
  const config::Cluster* findPolicy(const std::string& name) const;
  const std::map<std::string, config::Cluster>& policies() const { return policies_; }

  const std::deque<HistoryEntry>& history() const { return history_; }

  // The discovery snapshot: every cluster, in name order. A cluster exists when it has a policy
  // or registered instances; it is the policy (or the defaults, with weighted_round_robin so the
  // instances' weights count) with the policy's static endpoints first, then the UP instances of
  // the service of the same name, one endpoint per address.
  std::vector<config::Cluster> clusters() const;
  // The cluster `name` as it would be pushed; nullopt if there is no such cluster.
  std::optional<config::Cluster> cluster(const std::string& name) const;
  // clusters() in the proxy's schema (config::toJson), a JSON array.
  nlohmann::json clustersJson() const;
  // The same as text (clustersJson().dump()), the discovery snapshot's body. Each cluster's text
  // is kept and built again only when its policy or its service's instances changed: a change
  // touches one cluster, and serializing every endpoint of every cluster was most of the control
  // plane's work per change. Not thread-safe (the loop's; a copy of the state starts empty).
  std::string clustersText() const;

  // The whole state, for the state file (serializeState() is the text, toStateJson() the same as
  // a tree); and back. loadStateJson() leaves the state untouched on error.
  std::string serializeState() const;
  nlohmann::json toStateJson() const;
  bool loadStateJson(const nlohmann::json& j, std::string& error);

 private:
  config::Cluster effectiveCluster(const std::string& name, const config::Cluster* policy) const;

  // A policy's revision changes whenever the policy does (see Service::revision).
  uint64_t policyRevision(const std::string& name) const;
  void touchPolicy(const std::string& name) { policy_revisions_[name] = ++last_policy_revision_; }

  struct CachedCluster {
    uint64_t service_revision = 0;
    uint64_t policy_revision = 0;
    std::string text;
  };
  // Copies as empty: the persister's copy of the state never uses it.
  struct ClusterTextCache {
    ClusterTextCache() = default;
    ClusterTextCache(const ClusterTextCache&) {}
    ClusterTextCache& operator=(const ClusterTextCache&) {
      entries.clear();
      return *this;
    }
    std::map<std::string, CachedCluster> entries;
  };

  Registry registry_;
  std::map<std::string, config::Cluster> policies_;
  std::map<std::string, uint64_t> policy_revisions_;
  uint64_t last_policy_revision_ = 0;
  mutable ClusterTextCache cluster_texts_;
  std::deque<HistoryEntry> history_;
  size_t history_limit_;
  uint64_t version_ = 0;
};

// Parses one policy given as JSON or YAML text (yaml-cpp reads both) with the proxy's validator.
// `name` is the cluster name from the URL: a body without "name" gets it, a different one is an
// error. Errors are "file:line:col: reason" with `file` as the source name.
std::optional<config::Cluster> parsePolicy(const std::string& text, const std::string& name,
                                           const std::string& file,
                                           std::vector<std::string>& errors);

// "." or "..": a URL path segment that HTTP clients and proxies remove (RFC 3986 5.2.4), so a
// name or id like that could be created by a raw request but never read or deleted by curl.
bool isDotSegment(std::string_view s);

// Cluster and service names: what the proxy accepts as a cluster name, less the dot segments.
bool isValidName(std::string_view s);

}  // namespace remora::control
