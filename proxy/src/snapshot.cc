#include "snapshot.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

#include "remora/config/parser.h"

namespace remora {

std::string resolveAddress(const config::Address& address, sockaddr_storage& out,
                           socklen_t& out_len, bool* by_name) {
  if (by_name != nullptr) *by_name = false;
  std::memset(&out, 0, sizeof(out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, address.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(address.port);
    out_len = sizeof(sockaddr_in);
    return {};
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, address.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(address.port);
    out_len = sizeof(sockaddr_in6);
    return {};
  }
  if (by_name != nullptr) *by_name = true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(address.host.c_str(), nullptr, &hints, &result);
  if (rc != 0 || result == nullptr) {
    return "cannot resolve host \"" + address.host + "\": " + gai_strerror(rc);
  }
  std::memcpy(&out, result->ai_addr, result->ai_addrlen);
  out_len = result->ai_addrlen;
  freeaddrinfo(result);
  if (out.ss_family == AF_INET) {
    v4->sin_port = htons(address.port);
  } else {
    v6->sin6_port = htons(address.port);
  }
  return {};
}

void addPlaceholderClusters(config::Config& config) {
  auto ensure = [&](const std::string& name) {
    if (name.empty() || config.findCluster(name) != nullptr) return;
    config::Cluster placeholder;
    placeholder.name = name;
    config.clusters.push_back(std::move(placeholder));
  };
  for (const auto& l : config.listeners) {
    for (const auto& r : l.routes) {
      for (const auto& wc : r.clusters) ensure(wc.name);
      if (r.fallback) ensure(r.fallback->cluster);
    }
  }
}

config::ConfigConstSharedPtr mergePushedClusters(const config::ConfigConstSharedPtr& file,
                                                 const std::vector<config::Cluster>& pushed,
                                                 std::string& error) {
  if (!file->control_plane && pushed.empty()) return file;
  auto merged = std::make_shared<config::Config>(*file);
  for (const auto& c : pushed) {
    auto it = std::find_if(merged->clusters.begin(), merged->clusters.end(),
                           [&](const config::Cluster& x) { return x.name == c.name; });
    if (it != merged->clusters.end()) {
      *it = c;  // the pushed cluster wins (contract section 5)
    } else {
      merged->clusters.push_back(c);
    }
  }
  addPlaceholderClusters(*merged);
  std::vector<config::ConfigError> errors;
  config::validateReferences(*merged, errors);
  if (!errors.empty()) {
    error = errors.front().format();
    for (size_t i = 1; i < errors.size(); ++i) error += "; " + errors[i].format();
    return nullptr;
  }
  return merged;
}

const ClusterInfo* RouteInfo::pickCluster(uint32_t random) const {
  if (clusters.size() == 1) return clusters[0];
  uint32_t point = static_cast<uint32_t>((static_cast<uint64_t>(random) * total_weight) >> 32);
  auto it = std::upper_bound(cumulative_weights.begin(), cumulative_weights.end(), point);
  return clusters[static_cast<size_t>(it - cumulative_weights.begin())];
}

SnapshotConstSharedPtr Snapshot::build(config::ConfigConstSharedPtr config, uint64_t version,
                                       std::string source, StatsStore& stats,
                                       RuntimeRegistry& runtime, std::string& error,
                                       const Snapshot* previous) {
  auto snap = std::shared_ptr<Snapshot>(new Snapshot());
  snap->config_ = std::move(config);
  snap->version_ = version;
  snap->source_ = std::move(source);
  const config::Config& cfg = *snap->config_;

  // Pass 1: everything that can fail, before any shared state is touched, so a rejected config
  // changes nothing.
  auto tlsError = [&](const config::SourceLoc& loc, const std::string& who,
                      const std::string& why) {
    error = config::ConfigError{loc, who + " tls: " + why}.format();
  };
  // Per cluster, its endpoints' keys, for the runtime state in pass 2 (empty for a cluster whose
  // endpoint set is shared with `previous`: its runtime state is already configured).
  std::vector<std::vector<std::string>> endpoint_keys;
  std::vector<std::shared_ptr<std::vector<EndpointInfo>>> new_sets;
  endpoint_keys.reserve(cfg.clusters.size());
  new_sets.reserve(cfg.clusters.size());
  snap->clusters_.reserve(cfg.clusters.size());
  for (const auto& c : cfg.clusters) {
    auto info = std::make_unique<ClusterInfo>();
    info->config = &c;
    info->index = snap->clusters_.size();
    if (c.tls) {
      std::string why;
      info->tls = runtime.tlsContexts().client(*c.tls, why);
      if (!info->tls) {
        tlsError(c.tls->loc, "cluster \"" + c.name + "\"", why);
        return nullptr;
      }
    }
    std::vector<std::string>& keys = endpoint_keys.emplace_back();
    std::shared_ptr<std::vector<EndpointInfo>>& fresh = new_sets.emplace_back();
    const ClusterInfo* old = previous != nullptr ? previous->findCluster(c.name) : nullptr;
    if (old != nullptr && !old->resolves_names && old->tls == info->tls && *old->config == c) {
      info->endpoint_set = old->endpoint_set;
      info->breakers = old->breakers;
      info->bulkhead = old->bulkhead;
      info->limits = old->limits;
      snap->clusters_.push_back(std::move(info));
      continue;
    }
    const std::string tls_suffix = info->tls ? "|tls:" + info->tls->digest().substr(0, 16) : "";
    fresh = std::make_shared<std::vector<EndpointInfo>>();
    keys.reserve(c.endpoints.size());
    fresh->reserve(c.endpoints.size());
    for (const auto& e : c.endpoints) {
      EndpointInfo& ep = fresh->emplace_back();
      ep.config = e;
      ep.key = e.address.str();
      ep.tls = info->tls;
      ep.pool_key = ep.key + tls_suffix;
      bool by_name = false;
      std::string err = resolveAddress(e.address, ep.addr, ep.addr_len, &by_name);
      if (!err.empty()) {
        error = "cluster \"" + c.name + "\" endpoint " + ep.key + ": " + err;
        return nullptr;
      }
      info->resolves_names |= by_name;
      keys.push_back(ep.key);
    }
    info->endpoint_set = fresh;
    snap->clusters_.push_back(std::move(info));
  }
  // The validator refuses two clusters of one name; the first wins, as a linear search would.
  snap->clusters_by_name_.reserve(snap->clusters_.size());
  for (const auto& c : snap->clusters_) snap->clusters_by_name_.emplace(c->name(), c.get());
  if (cfg.control_plane && cfg.control_plane->tls) {
    std::string why;
    snap->control_plane_tls_ = runtime.tlsContexts().client(*cfg.control_plane->tls, why);
    if (!snap->control_plane_tls_) {
      tlsError(cfg.control_plane->tls->loc, "control_plane", why);
      return nullptr;
    }
  }
  std::vector<tls::ServerContextConstSharedPtr> listener_tls;
  for (const auto& l : cfg.listeners) {
    tls::ServerContextConstSharedPtr ctx;
    if (l.tls) {
      std::string why;
      ctx = runtime.tlsContexts().server(*l.tls, why);
      if (!ctx) {
        tlsError(l.tls->loc, "listener \"" + l.name + "\"", why);
        return nullptr;
      }
    }
    listener_tls.push_back(std::move(ctx));
    for (const auto& r : l.routes) {
      // The validator resolves references; failing here is a bug, reported rather than crashed on.
      for (const auto& wc : r.clusters) {
        if (snap->findCluster(wc.name) == nullptr) {
          error = "route \"" + r.name + "\" references unknown cluster \"" + wc.name + "\"";
          return nullptr;
        }
      }
      if (r.fallback && !r.fallback->cluster.empty() &&
          snap->findCluster(r.fallback->cluster) == nullptr) {
        error = "route \"" + r.name + "\" falls back to unknown cluster \"" +
                r.fallback->cluster + "\"";
        return nullptr;
      }
    }
  }

  // Pass 2: link stats and the shared resilience state.
  for (auto& info : snap->clusters_) {
    const config::Cluster& c = *info->config;
    info->stats = &stats.cluster(c.name);
    std::vector<EndpointInfo>* fresh = new_sets[info->index].get();
    if (fresh == nullptr) continue;  // shared with `previous`, linked when it was built
    ClusterRuntime& crt = runtime.configureCluster(c, endpoint_keys[info->index]);
    info->breakers = crt.breakers;
    info->bulkhead = crt.bulkhead;
    info->limits = crt.limits;
    for (size_t i = 0; i < fresh->size(); ++i) {
      EndpointInfo& ep = (*fresh)[i];
      ep.runtime = crt.endpoints[i];
      if (crt.breakers) ep.breaker = crt.breakers->get(ep.key);
    }
  }
  for (const auto& l : cfg.listeners) {
    ListenerInfo li;
    li.config = &l;
    li.tls = listener_tls[snap->listeners_.size()];
    li.stats = &stats.listener(l.name);
    for (const auto& r : l.routes) {
      RouteInfo ri;
      ri.config = &r;
      ri.stats = &stats.route(r.name);
      RouteRuntime& rrt = runtime.configureRoute(r);
      ri.rate_limit = rrt.rate_limit;
      ri.retry_budget = rrt.retry_budget;
      if (r.fallback && !r.fallback->cluster.empty()) {
        ri.fallback_cluster = snap->findCluster(r.fallback->cluster);
      }
      for (const auto& wc : r.clusters) {
        if (wc.weight == 0) continue;
        ri.total_weight += wc.weight;
        ri.clusters.push_back(snap->findCluster(wc.name));
        ri.cumulative_weights.push_back(ri.total_weight);
      }
      li.routes.push_back(std::move(ri));
    }
    snap->listeners_.push_back(std::move(li));
  }
  runtime.retain(cfg);
  return snap;
}

const ListenerInfo* Snapshot::findListener(std::string_view name) const {
  for (const auto& l : listeners_) {
    if (l.name() == name) return &l;
  }
  return nullptr;
}

const ClusterInfo* Snapshot::findCluster(std::string_view name) const {
  auto it = clusters_by_name_.find(name);
  return it != clusters_by_name_.end() ? it->second : nullptr;
}

const RouteInfo* matchRoute(const ListenerInfo& listener, std::string_view method,
                            std::string_view path, const http::HeaderMap& headers,
                            const tls::PeerIdentity* peer) {
  for (const auto& route : listener.routes) {
    const config::RouteMatch& m = route.config->match;
    if (m.client_identity && (peer == nullptr || !peer->matches(*m.client_identity))) continue;
    if (m.path && path != *m.path) continue;
    if (m.prefix && !path.starts_with(*m.prefix)) continue;
    if (m.method && method != *m.method) continue;
    bool headers_ok = true;
    for (const auto& hm : m.headers) {
      const std::string* v = headers.get(hm.name);
      if (v == nullptr || *v != hm.value) {
        headers_ok = false;
        break;
      }
    }
    if (!headers_ok) continue;
    return &route;
  }
  return nullptr;
}

}  // namespace remora
