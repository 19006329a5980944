#include "stats.h"

#include <cstdio>

namespace remora {

namespace {

// Prometheus label values escape backslash, double quote and newline.
std::string escapeLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, const char* name, const std::string& labels, double value) {
  // Durations are kept in microseconds: six decimals are exact.
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", value);
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(buf).append("\n");
}

void sample(std::string& out, const char* name, const std::string& labels, int64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

void sample(std::string& out, const char* name, const std::string& labels, uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

std::string label(const char* k, const std::string& v) {
  return std::string(k) + "=\"" + escapeLabel(v) + "\"";
}

template <class T>
T& getOrCreate(std::map<std::string, std::unique_ptr<T>>& map, const std::string& name) {
  auto& slot = map[name];
  if (!slot) slot = std::make_unique<T>();
  return *slot;
}

}  // namespace

const char* toString(FallbackReason r) {
  switch (r) {
    case FallbackReason::CircuitOpen: return "circuit-open";
    case FallbackReason::BulkheadFull: return "bulkhead-full";
    case FallbackReason::RetriesExhausted: return "retries-exhausted";
    case FallbackReason::RateLimited: return "rate-limited";
    case FallbackReason::NoHealthyEndpoint: return "no-healthy-endpoint";
    case FallbackReason::Timeout: return "timeout";
    case FallbackReason::Count: break;
  }
  return "unknown";
}

void Histogram::record(std::chrono::microseconds d) {
  double s = static_cast<double>(d.count()) / 1e6;
  size_t i = 0;
  while (i < kBoundsSeconds.size() && s > kBoundsSeconds[i]) ++i;
  buckets_[i].inc();
  count_.inc();
  sum_us_.inc(static_cast<uint64_t>(d.count() < 0 ? 0 : d.count()));
}

ListenerStats& StatsStore::listener(const std::string& name) {
  std::lock_guard lock(mutex_);
  return getOrCreate(listeners_, name);
}

ClusterStats& StatsStore::cluster(const std::string& name) {
  std::lock_guard lock(mutex_);
  return getOrCreate(clusters_, name);
}

RouteStats& StatsStore::route(const std::string& name) {
  std::lock_guard lock(mutex_);
  return getOrCreate(routes_, name);
}

void StatsStore::recordConfigUpdate(const std::string& source, bool accepted) {
  std::lock_guard lock(mutex_);
  auto& slot = config_updates_[{source, accepted ? "ack" : "nack"}];
  if (!slot) slot = std::make_unique<Counter>();
  slot->inc();
}

std::string StatsStore::renderPrometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(8192);

  header(out, "remora_downstream_requests_total", "counter",
         "Requests received by listener and response code sent.");
  for (const auto& entry : listeners_) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const std::string& name = entry.first;
    entry.second->downstream_requests.forEachNonZero([&](int code, uint64_t v) {
      sample(out, "remora_downstream_requests_total",
             label("listener", name) + "," + label("code", std::to_string(code)), v);
    });
  }
  struct ListenerMetric {
    const char* name;
    const char* type;
    const char* help;
    int64_t (*value)(const ListenerStats&);
  };
  static const ListenerMetric kListenerMetrics[] = {
      {"remora_downstream_connections_total", "counter", "Connections accepted.",
       [](const ListenerStats& s) {
         return static_cast<int64_t>(s.downstream_connections.value());
       }},
      {"remora_downstream_connections_active", "gauge", "Open downstream connections.",
       [](const ListenerStats& s) { return s.downstream_connections_active.value(); }},
      {"remora_downstream_connections_rejected_total", "counter",
       "Connections closed as soon as accepted because the listener was at max_connections.",
       [](const ListenerStats& s) {
         return static_cast<int64_t>(s.downstream_connections_rejected.value());
       }},
      {"remora_downstream_upgrades_total", "counter",
       "Connections upgraded to another protocol (WebSocket...): the upstream's 101 relayed.",
       [](const ListenerStats& s) { return static_cast<int64_t>(s.downstream_upgrades.value()); }},
      {"remora_downstream_upgrades_active", "gauge", "Upgraded connections (tunnels) open now.",
       [](const ListenerStats& s) { return s.downstream_upgrades_active.value(); }},
      {"remora_downstream_tls_handshakes_total", "counter",
       "TLS handshakes completed on the listener.",
       [](const ListenerStats& s) { return static_cast<int64_t>(s.tls_handshakes.value()); }},
      {"remora_downstream_tls_handshake_errors_total", "counter",
       "TLS handshakes that failed (no or bad client certificate, protocol or cipher mismatch).",
       [](const ListenerStats& s) { return static_cast<int64_t>(s.tls_handshake_errors.value()); }},
  };
  for (const auto& m : kListenerMetrics) {
    header(out, m.name, m.type, m.help);
    for (const auto& [name, s] : listeners_) {
      sample(out, m.name, label("listener", name), m.value(*s));
    }
  }

  header(out, "remora_upstream_requests_total", "counter",
         "Upstream responses by cluster and status code (attempts without a response count as resets, timeouts or connect failures).");
  for (const auto& entry : clusters_) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const std::string& name = entry.first;
    entry.second->upstream_requests.forEachNonZero([&](int code, uint64_t v) {
      sample(out, "remora_upstream_requests_total",
             label("cluster", name) + "," + label("code", std::to_string(code)), v);
    });
  }
  struct ClusterCounter {
    const char* name;
    const char* help;
    const Counter ClusterStats::*member;
  };
  static const ClusterCounter kClusterCounters[] = {
      {"remora_upstream_retries_total", "Retries (attempts after the first).",
       &ClusterStats::upstream_retries},
      {"remora_upstream_timeouts_total", "Requests or attempts that timed out.",
       &ClusterStats::upstream_timeouts},
      {"remora_upstream_connect_failures_total", "Upstream connections that failed to connect.",
       &ClusterStats::upstream_connect_failures},
      {"remora_upstream_resets_total", "Upstream connections reset before the response ended.",
       &ClusterStats::upstream_resets},
      {"remora_upstream_connections_total", "Upstream connections opened.",
       &ClusterStats::upstream_connections},
      {"remora_circuit_breaker_opened_total", "Times an endpoint's circuit breaker opened.",
       &ClusterStats::circuit_breaker_opened},
      {"remora_bulkhead_rejected_total", "Requests rejected by the cluster's bulkhead.",
       &ClusterStats::bulkhead_rejected},
      {"remora_upstream_tls_handshakes_total", "Upstream TLS handshakes completed.",
       &ClusterStats::upstream_tls_handshakes},
      {"remora_upstream_tls_resumed_total",
       "Upstream TLS handshakes that resumed a cached session (no full handshake).",
       &ClusterStats::upstream_tls_resumed},
  };
  for (const auto& c : kClusterCounters) {
    header(out, c.name, "counter", c.help);
    for (const auto& [name, s] : clusters_) {
      sample(out, c.name, label("cluster", name), ((*s).*(c.member)).value());
    }
  }
  header(out, "remora_upstream_connections_active", "gauge", "Open upstream connections.");
  for (const auto& [name, s] : clusters_) {
    sample(out, "remora_upstream_connections_active", label("cluster", name),
           s->upstream_connections_active.value());
  }
  header(out, "remora_upstream_requests_active", "gauge", "Requests in flight to the cluster.");
  for (const auto& [name, s] : clusters_) {
    sample(out, "remora_upstream_requests_active", label("cluster", name),
           s->upstream_requests_active.value());
  }

  header(out, "remora_request_duration_seconds", "histogram",
         "Time from request headers received to response end, by cluster.");
  for (const auto& [name, s] : clusters_) {
    const auto& h = s->request_duration;
    uint64_t cumulative = 0;
    char le[32];
    for (size_t i = 0; i < Histogram::kBoundsSeconds.size(); ++i) {
      cumulative += h.bucket(i);
      std::snprintf(le, sizeof(le), "%g", Histogram::kBoundsSeconds[i]);
      sample(out, "remora_request_duration_seconds_bucket",
             label("cluster", name) + "," + label("le", le), cumulative);
    }
    cumulative += h.bucket(Histogram::kBoundsSeconds.size());
    sample(out, "remora_request_duration_seconds_bucket",
           label("cluster", name) + ",le=\"+Inf\"", cumulative);
    sample(out, "remora_request_duration_seconds_sum", label("cluster", name), h.sumSeconds());
    sample(out, "remora_request_duration_seconds_count", label("cluster", name), h.count());
  }

  header(out, "remora_rate_limited_total", "counter", "Requests refused by a route's rate limit.");
  for (const auto& [name, s] : routes_) {
    sample(out, "remora_rate_limited_total", label("route", name), s->rate_limited.value());
  }
  header(out, "remora_fallback_total", "counter", "Responses answered by a route's fallback.");
  for (const auto& [name, s] : routes_) {
    for (size_t i = 0; i < s->fallback.size(); ++i) {
      uint64_t v = s->fallback[i].value();
      if (v == 0) continue;
      sample(out, "remora_fallback_total",
             label("route", name) + "," +
                 label("reason", toString(static_cast<FallbackReason>(i))),
             v);
    }
  }

  header(out, "remora_config_version", "gauge", "Version of the active configuration.");
  sample(out, "remora_config_version", "", config_version_.value());
  header(out, "remora_config_updates_total", "counter",
         "Configuration updates by source and result (ack = applied, nack = rejected).");
  for (const auto& [key, c] : config_updates_) {
    sample(out, "remora_config_updates_total",
           label("source", key.first) + "," + label("result", key.second), c->value());
  }
  return out;
}

}  // namespace remora
