#include "remora/config/json.h"

namespace remora::config {

namespace {

using nlohmann::json;

json headersJson(const std::vector<std::pair<std::string, std::string>>& headers) {
  json out = json::object();
  for (const auto& [name, value] : headers) out[name] = value;
  return out;
}

json retryOnJson(uint32_t on) {
  // Same names and order as the parser accepts.
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {kRetryConnectFailure, "connect-failure"},
      {kRetryReset, "reset"},
      {kRetryTimeout, "timeout"},
      {kRetryGatewayError, "gateway-error"},
      {kRetry5xx, "5xx"},
      {kRetryRetriableStatusCodes, "retriable-status-codes"},
  };
  json out = json::array();
  for (const auto& [bit, name] : kNames) {
    if (on & bit) out.push_back(name);
  }
  return out;
}

json retryJson(const RetryPolicy& r) {
  json out = {
      {"attempts", r.attempts},
      {"on", retryOnJson(r.on)},
      {"backoff",
       {{"base", formatDuration(r.backoff_base)}, {"max", formatDuration(r.backoff_max)}}},
      {"methods", r.methods},
      {"buffer_limit_kb", r.buffer_limit_kb},
  };
  if (!r.retriable_status_codes.empty()) out["retriable_status_codes"] = r.retriable_status_codes;
  if (r.per_try_timeout) out["per_try_timeout"] = formatDuration(*r.per_try_timeout);
  if (r.budget) {
    out["budget"] = {{"ratio", r.budget->ratio},
                     {"min_retries_per_second", r.budget->min_retries_per_second}};
  }
  return out;
}

json routeJson(const Route& r) {
  json match = json::object();
  if (r.match.prefix) match["prefix"] = *r.match.prefix;
  if (r.match.path) match["path"] = *r.match.path;
  if (r.match.method) match["method"] = *r.match.method;
  if (!r.match.headers.empty()) {
    json headers = json::object();
    for (const HeaderMatch& h : r.match.headers) headers[h.name] = h.value;
    match["headers"] = std::move(headers);
  }
  if (r.match.client_identity) {
    match["client_identity"] = *r.match.client_identity;
  }
  json out = {
      {"name", r.name}, {"match", std::move(match)}, {"timeout", formatDuration(r.timeout)}};
  // `cluster: x` and a single-entry `clusters:` mean the same; print the short form the user most
  // likely wrote.
  if (r.clusters.size() == 1 && r.clusters[0].weight == 1) {
    out["cluster"] = r.clusters[0].name;
  } else {
    json clusters = json::array();
    for (const WeightedCluster& wc : r.clusters) {
      clusters.push_back({{"name", wc.name}, {"weight", wc.weight}});
    }
    out["clusters"] = std::move(clusters);
  }
  if (r.retry) out["retry"] = retryJson(*r.retry);
  if (r.upgrades) out["upgrades"] = *r.upgrades;
  if (r.rate_limit) {
    out["rate_limit"] = {{"requests_per_second", r.rate_limit->requests_per_second},
                         {"burst", r.rate_limit->burst}};
  }
  if (r.fallback) {
    if (!r.fallback->cluster.empty()) {
      out["fallback"] = {{"cluster", r.fallback->cluster}};
    } else {
      out["fallback"] = {{"status", r.fallback->status},
                         {"body", r.fallback->body},
                         {"headers", headersJson(r.fallback->headers)}};
    }
  }
  return out;
}

// Only what was set: an empty string would not load back (the parser rejects empty paths).
json upstreamTlsJson(const UpstreamTls& t) {
  json tls = json::object();
  if (!t.ca_file.empty()) tls["ca_file"] = t.ca_file;
  if (!t.cert_file.empty()) tls["cert_file"] = t.cert_file;
  if (!t.key_file.empty()) tls["key_file"] = t.key_file;
  if (!t.sni.empty()) tls["sni"] = t.sni;
  return tls;
}

json listenerJson(const Listener& l) {
  json out = {
      {"name", l.name},
      {"address", l.address.str()},
      {"idle_timeout", formatDuration(l.idle_timeout)},
      {"request_headers_timeout", formatDuration(l.request_headers_timeout)},
      {"max_request_headers_kb", l.max_request_headers_kb},
  };
  if (l.max_connections != 0) out["max_connections"] = l.max_connections;
  if (l.tls) {
    json tls = json::object();
    if (!l.tls->cert_file.empty()) {
      tls["cert_file"] = l.tls->cert_file;
      tls["key_file"] = l.tls->key_file;
    }
    if (!l.tls->certificates.empty()) {
      json certs = json::array();
      for (const auto& c : l.tls->certificates) {
        certs.push_back({{"cert_file", c.cert_file}, {"key_file", c.key_file}});
      }
      tls["certificates"] = std::move(certs);
    }
    if (!l.tls->client_ca_file.empty()) tls["client_ca_file"] = l.tls->client_ca_file;
    out["tls"] = std::move(tls);
  }
  json routes = json::array();
  for (const Route& r : l.routes) routes.push_back(routeJson(r));
  out["routes"] = std::move(routes);
  return out;
}

}  // namespace

json toJson(const Cluster& c) {
  json endpoints = json::array();
  for (const Endpoint& e : c.endpoints) {
    endpoints.push_back({{"address", e.address.str()}, {"weight", e.weight}});
  }
  json out = {
      {"name", c.name},
      {"lb_policy", toString(c.lb_policy)},
      {"connect_timeout", formatDuration(c.connect_timeout)},
      {"endpoints", std::move(endpoints)},
      {"limits",
       {{"max_connections", c.limits.max_connections},
        {"max_pending_requests", c.limits.max_pending_requests},
        {"max_requests", c.limits.max_requests},
        {"max_retries", c.limits.max_retries}}},
  };
  if (c.bulkhead) {
    out["bulkhead"] = {{"max_concurrent_requests", c.bulkhead->max_concurrent_requests},
                       {"max_queue", c.bulkhead->max_queue},
                       {"queue_timeout", formatDuration(c.bulkhead->queue_timeout)}};
  }
  if (c.circuit_breaker) {
    const CircuitBreaker& cb = *c.circuit_breaker;
    json breaker = {
        {"consecutive_failures", cb.consecutive_failures},
        {"open_duration", formatDuration(cb.open_duration)},
        {"half_open_max_requests", cb.half_open_max_requests},
        {"success_threshold", cb.success_threshold},
        {"max_ejection_percent", cb.max_ejection_percent},
    };
    if (cb.failure_rate) {
      breaker["failure_rate"] = {{"threshold_percent", cb.failure_rate->threshold_percent},
                                 {"window", formatDuration(cb.failure_rate->window)},
                                 {"min_requests", cb.failure_rate->min_requests}};
    }
    out["circuit_breaker"] = std::move(breaker);
  }
  if (c.health_check) {
    const HealthCheck& hc = *c.health_check;
    out["health_check"] = {{"path", hc.path},
                           {"interval", formatDuration(hc.interval)},
                           {"timeout", formatDuration(hc.timeout)},
                           {"healthy_threshold", hc.healthy_threshold},
                           {"unhealthy_threshold", hc.unhealthy_threshold}};
  }
  if (c.tls) out["tls"] = upstreamTlsJson(*c.tls);
  return out;
}

json toJson(const Config& config) {
  json out = {
      {"node_id", config.node_id},
      {"workers", config.workers},
      {"log_level", config.log_level},
      {"drain_timeout", formatDuration(config.drain_timeout)},
      {"admin", {{"address", config.admin.address.str()}}},
  };
  if (config.control_plane) {
    json cp = {{"address", config.control_plane->address.str()}};
    if (!config.control_plane->token_file.empty()) {
      cp["token_file"] = config.control_plane->token_file;
    }
    if (config.control_plane->tls) cp["tls"] = upstreamTlsJson(*config.control_plane->tls);
    out["control_plane"] = std::move(cp);
  }
  if (config.access_log) out["access_log"] = {{"path", config.access_log->path}};
  json listeners = json::array();
  for (const Listener& l : config.listeners) listeners.push_back(listenerJson(l));
  out["listeners"] = std::move(listeners);
  json clusters = json::array();
  for (const Cluster& c : config.clusters) clusters.push_back(toJson(c));
  out["clusters"] = std::move(clusters);
  return out;
}

bool jsonNestsDeeperThan(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, a quote included
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace remora::config
