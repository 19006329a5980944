#include "runtime.h"

#include <spdlog/spdlog.h>

#include <set>
#include <string_view>
#include <unordered_map>

namespace remora {

ClusterRuntime& RuntimeRegistry::configureCluster(const config::Cluster& c,
                                                  const std::vector<std::string>& keys) {
  ClusterRuntime& rt = clusters_[c.name];
  if (keys != rt.endpoint_keys) {
    std::unordered_map<std::string_view, EndpointRuntimeSharedPtr> old;
    old.reserve(rt.endpoint_keys.size());
    for (size_t i = 0; i < rt.endpoint_keys.size(); ++i) {
      old.emplace(rt.endpoint_keys[i], rt.endpoints[i]);
    }
    std::vector<EndpointRuntimeSharedPtr> endpoints;
    endpoints.reserve(keys.size());
    for (const std::string& key : keys) {
      auto it = old.find(key);
      // The same address twice in a cluster is one endpoint: one state.
      if (it == old.end()) it = old.emplace(key, std::make_shared<EndpointRuntime>()).first;
      endpoints.push_back(it->second);
    }
    old.clear();  // its keys point into rt.endpoint_keys
    rt.endpoint_keys = keys;
    rt.endpoints = std::move(endpoints);
  }

  if (c.circuit_breaker) {
    if (rt.breakers) {
      rt.breakers->reconfigure(*c.circuit_breaker, keys);
    } else {
      ClusterStats* stats = &stats_.cluster(c.name);
      rt.breakers = std::make_shared<lb::CircuitBreakerSet>(
          c.name, *c.circuit_breaker, keys, time_source_,
          [stats](const lb::BreakerTransition& t) {
            if (t.to == lb::CircuitBreaker::State::Open) {
              stats->circuit_breaker_opened.inc();
              spdlog::warn("circuit breaker: endpoint {} of cluster {} opened: {}; it leaves "
                           "rotation until a half-open probe succeeds",
                           t.endpoint, t.cluster, t.reason);
            } else if (t.to == lb::CircuitBreaker::State::Closed) {
              spdlog::info("circuit breaker: endpoint {} of cluster {} closed: {}", t.endpoint,
                           t.cluster, t.reason);
            } else {
              spdlog::info("circuit breaker: endpoint {} of cluster {} half-open: {}",
                           t.endpoint, t.cluster, t.reason);
            }
          });
    }
  } else {
    rt.breakers.reset();
  }

  if (c.bulkhead) {
    if (rt.bulkhead) {
      rt.bulkhead->reconfigure(*c.bulkhead);
    } else {
      rt.bulkhead = std::make_shared<resilience::Bulkhead>(*c.bulkhead, time_source_);
    }
  } else {
    rt.bulkhead.reset();
  }

  if (rt.limits) {
    rt.limits->reconfigure(c.limits);
  } else {
    rt.limits = std::make_shared<resilience::ResourceLimits>(c.limits);
  }
  return rt;
}

RouteRuntime& RuntimeRegistry::configureRoute(const config::Route& r) {
  RouteRuntime& rt = routes_[r.name];
  if (r.rate_limit) {
    if (rt.rate_limit) {
      rt.rate_limit->reconfigure(*r.rate_limit);
    } else {
      rt.rate_limit = std::make_shared<resilience::TokenBucket>(*r.rate_limit, time_source_);
    }
  } else {
    rt.rate_limit.reset();
  }
  if (r.retry && r.retry->budget) {
    if (rt.retry_budget) {
      rt.retry_budget->reconfigure(*r.retry->budget);
    } else {
      rt.retry_budget = std::make_shared<resilience::RetryBudget>(*r.retry->budget, time_source_);
    }
  } else {
    rt.retry_budget.reset();
  }
  return rt;
}

void RuntimeRegistry::retain(const config::Config& config) {
  std::set<std::string> clusters;
  std::set<std::string> routes;
  for (const auto& c : config.clusters) clusters.insert(c.name);
  for (const auto& l : config.listeners) {
    for (const auto& r : l.routes) routes.insert(r.name);
  }
  std::erase_if(clusters_, [&](const auto& kv) { return !clusters.contains(kv.first); });
  std::erase_if(routes_, [&](const auto& kv) { return !routes.contains(kv.first); });
}

}  // namespace remora
