#pragma once

// Resilience state that outlives config snapshots and is shared by every worker: per-endpoint
// active-request counts, health and circuit breakers; per-cluster bulkheads and limits; per-route
// token buckets and retry budgets. A reload (or a control-plane push) reconfigures these objects in
// place, so a kept endpoint keeps its breaker state and a kept route its budget.
//
// Only the main thread touches the registry. Each Snapshot copies the shared pointers it needs, and
// workers reach the state only through their snapshot, so no worker ever reads a pointer the main
// thread is replacing.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lb/circuit_breaker.h"
#include "remora/config/config.h"
#include "remora/time_source.h"
#include "resilience/bulkhead.h"
#include "resilience/resource_limits.h"
#include "resilience/retry_budget.h"
#include "resilience/token_bucket.h"
#include "stats.h"
#include "tls/tls.h"

namespace remora {

struct EndpointRuntime {
  std::atomic<uint32_t> active_requests{0};  // attempts in flight from all workers
  std::atomic<bool> healthy{true};           // written by the health checker
};
using EndpointRuntimeSharedPtr = std::shared_ptr<EndpointRuntime>;

struct ClusterRuntime {
  // Per endpoint, in the order of the endpoint keys ("host:port") last given to
  // configureCluster(): `endpoints[i]` is the state of `endpoint_keys[i]`.
  std::vector<std::string> endpoint_keys;
  std::vector<EndpointRuntimeSharedPtr> endpoints;
  std::shared_ptr<lb::CircuitBreakerSet> breakers;            // null: no circuit_breaker
  std::shared_ptr<resilience::Bulkhead> bulkhead;             // null: no bulkhead
  std::shared_ptr<resilience::ResourceLimits> limits;
};

struct RouteRuntime {
  std::shared_ptr<resilience::TokenBucket> rate_limit;  // null: no rate_limit
  std::shared_ptr<resilience::RetryBudget> retry_budget;  // null: no budget
};

class RuntimeRegistry {
 public:
  RuntimeRegistry(StatsStore& stats, const TimeSource& time_source)
      : stats_(stats), time_source_(time_source) {}

  // Brings the cluster's shared state in line with `config`, whose endpoints have the keys
  // `endpoint_keys` ("host:port", in order), and returns it. An endpoint that stays keeps its
  // state; when the keys are the same as last time (a push that changed another cluster) nothing
  // per endpoint is done.
  ClusterRuntime& configureCluster(const config::Cluster& config,
                                   const std::vector<std::string>& endpoint_keys);
  RouteRuntime& configureRoute(const config::Route& config);
  // Drops state of clusters and routes not in `config` (after a snapshot without them is live,
  // in-flight requests keep theirs alive through their snapshot's shared pointers).
  void retain(const config::Config& config);
  // TLS contexts, reused while their settings and files are unchanged (pools and TLS session
  // caches survive a reload that does not rotate a certificate).
  tls::ContextCache& tlsContexts() { return tls_contexts_; }

 private:
  tls::ContextCache tls_contexts_;
  StatsStore& stats_;
  const TimeSource& time_source_;
  std::map<std::string, ClusterRuntime> clusters_;
  std::map<std::string, RouteRuntime> routes_;
};

}  // namespace remora
