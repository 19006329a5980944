#pragma once

// One immutable, fully resolved view of the configuration: listeners with their compiled routes,
// clusters with resolved endpoint addresses, and pointers to the stats each one updates.
//
// The server publishes a new Snapshot as one shared pointer; every worker switches to it on its
// next wake-up, and each request keeps the snapshot it started on alive until it ends, so a reload
// never changes the rules under a request in flight.

#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/headers.h"
#include "remora/config/config.h"
#include "runtime.h"
#include "stats.h"
#include "tls/tls.h"

namespace remora {

struct EndpointInfo {
  config::Endpoint config;
  std::string key;  // "host:port": identifies the endpoint (runtime state, breaker, stats)
  // Identifies the endpoint's connection pool in a worker: the key, plus the TLS context for a
  // TLS cluster, so a rotated certificate or another cluster's TLS settings get their own pool.
  std::string pool_key;
  tls::ClientContextConstSharedPtr tls;  // null: plain TCP
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  EndpointRuntimeSharedPtr runtime;     // shared by workers, survives reloads
  lb::CircuitBreakerSharedPtr breaker;  // null: the cluster has no circuit_breaker
};

using EndpointSetConstSharedPtr = std::shared_ptr<const std::vector<EndpointInfo>>;

// One cluster of one snapshot. The endpoint set (the part that grows with the cluster: resolved
// addresses, keys, runtime and breaker links) is shared with the previous snapshot when the
// cluster did not change, so a push that touches one cluster of many rebuilds only that one, and
// workers keep the load-balancer state of the others (compare endpoint_set pointers).
struct ClusterInfo {
  const config::Cluster* config = nullptr;
  ClusterStats* stats = nullptr;
  EndpointSetConstSharedPtr endpoint_set;  // never null
  size_t index = 0;  // position in Snapshot::clusters(), for per-worker state arrays
  std::shared_ptr<lb::CircuitBreakerSet> breakers;  // null: no circuit_breaker
  std::shared_ptr<resilience::Bulkhead> bulkhead;    // null: no bulkhead
  std::shared_ptr<resilience::ResourceLimits> limits;
  tls::ClientContextConstSharedPtr tls;  // null: plain TCP
  // Some endpoint host is a DNS name: the cluster is rebuilt (names resolved again) on every
  // snapshot rather than shared.
  bool resolves_names = false;
  const std::string& name() const { return config->name; }
  const std::vector<EndpointInfo>& endpoints() const { return *endpoint_set; }
};

struct RouteInfo {
  const config::Route* config = nullptr;
  RouteStats* stats = nullptr;
  std::vector<const ClusterInfo*> clusters;
  std::vector<uint32_t> cumulative_weights;  // same order as clusters
  uint32_t total_weight = 0;
  const ClusterInfo* fallback_cluster = nullptr;  // fallback: { cluster: ... }
  std::shared_ptr<resilience::TokenBucket> rate_limit;    // null: no rate_limit
  std::shared_ptr<resilience::RetryBudget> retry_budget;  // null: no budget
  // Picks a cluster for a weighted split; `random` is uniform in [0, 2^32).
  const ClusterInfo* pickCluster(uint32_t random) const;
};

struct ListenerInfo {
  const config::Listener* config = nullptr;
  ListenerStats* stats = nullptr;
  std::vector<RouteInfo> routes;
  tls::ServerContextConstSharedPtr tls;  // null: plain HTTP
  const std::string& name() const { return config->name; }
};

class Snapshot;
using SnapshotConstSharedPtr = std::shared_ptr<const Snapshot>;

class Snapshot {
 public:
  // Resolves endpoint addresses and links routes to clusters. Returns nullptr and sets `error` when
  // something the validator cannot see fails (e.g. a host name that does not resolve).
  // `runtime` supplies the shared resilience state and is reconfigured to match `config`.
  // `previous` (the snapshot being replaced, or null) lends the endpoint sets of clusters that
  // are equal in both configs, use the same TLS context and name no DNS host; `runtime` must be
  // the registry `previous` was built with.
  static SnapshotConstSharedPtr build(config::ConfigConstSharedPtr config, uint64_t version,
                                      std::string source, StatsStore& stats,
                                      RuntimeRegistry& runtime, std::string& error,
                                      const Snapshot* previous = nullptr);

  const config::Config& config() const { return *config_; }
  const config::ConfigConstSharedPtr& configPtr() const { return config_; }
  uint64_t version() const { return version_; }
  const std::string& source() const { return source_; }
  const std::vector<ListenerInfo>& listeners() const { return listeners_; }
  const std::vector<std::unique_ptr<ClusterInfo>>& clusters() const { return clusters_; }
  const ListenerInfo* findListener(std::string_view name) const;
  const ClusterInfo* findCluster(std::string_view name) const;
  // TLS for the discovery connection (control_plane.tls), null when plain.
  const tls::ClientContextConstSharedPtr& controlPlaneTls() const { return control_plane_tls_; }

 private:
  tls::ClientContextConstSharedPtr control_plane_tls_;
  config::ConfigConstSharedPtr config_;
  uint64_t version_ = 0;
  std::string source_;
  std::vector<ListenerInfo> listeners_;
  std::vector<std::unique_ptr<ClusterInfo>> clusters_;
  std::unordered_map<std::string_view, const ClusterInfo*> clusters_by_name_;
};

// First route whose match holds (contract: first match wins); nullptr when none does.
// `path` excludes the query string.
// `peer` is the verified client certificate on an mTLS listener, else null.
const RouteInfo* matchRoute(const ListenerInfo& listener, std::string_view method,
                            std::string_view path, const http::HeaderMap& headers,
                            const tls::PeerIdentity* peer = nullptr);

// Routes may name clusters the control plane has not sent (yet): adds them with no endpoints, so
// requests to them get 503 no-healthy-endpoint rather than the whole config failing. Used by the
// running proxy and by `--validate`, so both accept the same files.
void addPlaceholderClusters(config::Config& config);

// The file config with the control plane's clusters merged in by name (a pushed cluster wins,
// contract section 5) and placeholders for routes' clusters not pushed yet. nullptr and `error`
// (every reference error, "; "-joined) when the result does not hold together.
config::ConfigConstSharedPtr mergePushedClusters(const config::ConfigConstSharedPtr& file,
                                                 const std::vector<config::Cluster>& pushed,
                                                 std::string& error);

// Resolves "host" to a socket address (numeric IPs without a DNS query). Empty on success,
// otherwise the reason. `by_name` (optional) tells whether it took a DNS query.
std::string resolveAddress(const config::Address& address, sockaddr_storage& out,
                           socklen_t& out_len, bool* by_name = nullptr);

}  // namespace remora
