#include "remora/config/parser.h"

#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "node.h"
#include "yaml_reader.h"

namespace remora::config {

namespace {

using detail::ErrorSink;
using detail::Field;
using detail::MapReader;
using detail::Node;
using detail::quote;

constexpr uint32_t kMaxWorkers = 256;
// Weights are summed by the load balancer; bounding each keeps any realistic sum within uint32.
constexpr uint32_t kMaxWeight = 1000000;

const std::vector<std::string>& logLevels() {
  static const std::vector<std::string> levels = {"trace", "debug",    "info", "warn",
                                                  "error", "critical", "off"};
  return levels;
}

struct RetryCondition {
  std::string_view name;
  uint32_t bit;
};
constexpr RetryCondition kRetryConditions[] = {
    {"connect-failure", kRetryConnectFailure},
    {"reset", kRetryReset},
    {"timeout", kRetryTimeout},
    {"gateway-error", kRetryGatewayError},
    {"5xx", kRetry5xx},
    {"retriable-status-codes", kRetryRetriableStatusCodes},
};

std::string retryConditionNames() {
  std::string out;
  for (const RetryCondition& c : kRetryConditions) {
    if (!out.empty()) out += ", ";
    out += c.name;
  }
  return out;
}

std::string lbPolicyNames() {
  std::string out;
  for (LbPolicy p : {LbPolicy::RoundRobin, LbPolicy::WeightedRoundRobin, LbPolicy::Random,
                     LbPolicy::LeastRequest}) {
    if (!out.empty()) out += ", ";
    out += toString(p);
  }
  return out;
}

// Cluster and listener names end up in stat labels and in control-plane URLs
// (/v1/clusters/{name}), so they are restricted to characters that need no escaping anywhere.
bool isName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.';
  });
}

std::string label(std::string_view kind, const std::string& name) {
  return name.empty() ? std::string(kind) : std::string(kind) + " " + quote(name);
}

std::string lineOf(const SourceLoc& loc) { return "line " + std::to_string(loc.line); }

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "remora";
  return buf;
}

// Required `name:`; kept even when its characters are invalid so that pass 2 does not add a
// misleading "unknown cluster" on top of the real problem.
void readName(MapReader& m, std::string_view kind, std::string& out) {
  if (!m.require("name") || !m.readString("name", out)) return;
  if (!isName(out)) {
    m.sink().add(m.valueLoc(*m.find("name")), "invalid " + std::string(kind) + " name " +
                                                  quote(out) +
                                                  "; use only letters, digits, '-', '_' and '.'");
  }
}

// A non-empty string that must start with '/' (route prefix/path, health-check path).
void readPath(MapReader& m, std::string_view key, std::string& out) {
  std::string value;
  if (!m.readString(key, value)) return;
  if (value[0] != '/') {
    m.sink().add(m.valueLoc(*m.find(key)),
                 quote(key) + " must start with '/', got " + quote(value));
    return;
  }
  out = value;
}

// `{ name: value, ... }` with HTTP header names as keys; names are lower-cased because header
// lookups are case-insensitive and the data plane compares lower-case names.
void readHeaderMap(ErrorSink& sink, const Field& field, std::string_view what,
                   std::vector<std::pair<std::string, std::string>>& out) {
  for (const auto& [key, item] : field.value.entries()) {
    if (!key.isScalar()) {
      sink.add(key, "header names in " + std::string(what) + " must be strings, got " +
                        detail::describe(key));
      continue;
    }
    if (!detail::isToken(key.scalar())) {
      sink.add(key, "invalid header name " + quote(key.scalar()) + " in " + std::string(what) +
                        "; use letters, digits and '-'");
      continue;
    }
    const std::string name = detail::toLower(key.scalar());
    const SourceLoc value_loc = item.isNull() ? sink.loc(key) : sink.loc(item);
    std::string value;
    if (!detail::readString(sink, item, value_loc, name, value, /*allow_empty=*/true)) {
      continue;
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      // Written as is into responses: a line break would split the header block.
      sink.add(value_loc, "header " + quote(name) + " in " + std::string(what) +
                              " must not contain CR, LF or NUL");
      continue;
    }
    const bool duplicate =
        std::any_of(out.begin(), out.end(), [&](const auto& h) { return h.first == name; });
    if (duplicate) {
      sink.add(key, "header " + quote(name) + " appears twice in " + std::string(what) +
                        " (header names are case-insensitive); remove one");
      continue;
    }
    out.emplace_back(name, std::move(value));
  }
}

void parseEndpoint(ErrorSink& sink, const Node& node, Endpoint& out) {
  out.loc = sink.loc(node);
  MapReader m(sink, node, "endpoint", {"address", "weight"});
  if (!m.ok()) return;
  m.require("address");
  m.readAddress("address", out.address);
  m.readUint32("weight", out.weight, 0, kMaxWeight);
}

void parseEndpoints(MapReader& m, Cluster& c, bool endpoints_required) {
  ErrorSink& sink = m.sink();
  const std::string who = label("cluster", c.name);
  if (!m.has("endpoints")) {
    if (endpoints_required) {
      sink.add(m.loc(), who +
                            " has no endpoints; add at least one under \"endpoints\", e.g. "
                            "{ address: 127.0.0.1:8080 } (only a proxy with a control_plane "
                            "may leave them out)");
    }
    return;
  }
  const Field* f = m.list("endpoints");
  if (f == nullptr) return;
  size_t valid = 0;
  const std::vector<Node> items = f->value.elements();
  c.endpoints.reserve(items.size());
  // Address hash -> index in c.endpoints: a pushed cluster can have thousands of endpoints, too
  // many to compare each with every other.
  std::unordered_multimap<size_t, size_t> seen;
  seen.reserve(items.size());
  for (const Node& item : items) {
    Endpoint e;
    const size_t before = sink.count();
    parseEndpoint(sink, item, e);
    if (sink.count() != before) continue;
    ++valid;
    const size_t hash = std::hash<std::string>()(e.address.host) * 31 + e.address.port;
    const Endpoint* same = nullptr;
    for (auto [it, end] = seen.equal_range(hash); it != end && same == nullptr; ++it) {
      if (c.endpoints[it->second].address == e.address) same = &c.endpoints[it->second];
    }
    if (same != nullptr) {
      // JSON (a pushed cluster) has no line numbers to point at.
      const std::string first = same->loc.line > 0 ? " (first at " + lineOf(same->loc) + ")" : "";
      sink.add(e.loc, "endpoint " + e.address.str() + " appears twice in " + who + first +
                          "; list each address once and use \"weight\"");
      continue;
    }
    seen.emplace(hash, c.endpoints.size());
    c.endpoints.push_back(std::move(e));
  }
  if (items.empty()) {
    if (endpoints_required) {
      sink.add(m.valueLoc(*f), who +
                                   " has no endpoints; add at least one, e.g. "
                                   "{ address: 127.0.0.1:8080 } (only a proxy with a "
                                   "control_plane may leave them out)");
    }
    return;
  }
  // Only judge the weights when every endpoint parsed: a broken weight is already reported.
  if (valid == items.size() && !c.endpoints.empty() &&
      std::all_of(c.endpoints.begin(), c.endpoints.end(),
                  [](const Endpoint& e) { return e.weight == 0; })) {
    sink.add(m.valueLoc(*f), "every endpoint of " + who +
                                 " has weight 0, so none would get traffic; give at least one "
                                 "a weight > 0");
  }
}

void parseLimits(ErrorSink& sink, const Node& node, Limits& out) {
  MapReader m(sink, node, "limits",
              {"max_connections", "max_pending_requests", "max_requests", "max_retries"});
  if (!m.ok()) return;
  m.readUint32("max_connections", out.max_connections, 1);
  m.readUint32("max_pending_requests", out.max_pending_requests);
  m.readUint32("max_requests", out.max_requests, 1);
  m.readUint32("max_retries", out.max_retries);
}

void parseBulkhead(ErrorSink& sink, const Node& node, Bulkhead& out) {
  MapReader m(sink, node, "bulkhead", {"max_concurrent_requests", "max_queue", "queue_timeout"});
  if (!m.ok()) return;
  m.readUint32("max_concurrent_requests", out.max_concurrent_requests, 1);
  m.readUint32("max_queue", out.max_queue);
  m.readDuration("queue_timeout", out.queue_timeout);
}

void parseCircuitBreaker(ErrorSink& sink, const Node& node, CircuitBreaker& out) {
  MapReader m(sink, node, "circuit_breaker",
              {"consecutive_failures", "failure_rate", "open_duration", "half_open_max_requests",
               "success_threshold", "max_ejection_percent"});
  if (!m.ok()) return;
  m.readUint32("consecutive_failures", out.consecutive_failures);
  if (const Field* f = m.map("failure_rate")) {
    FailureRate rate;
    MapReader r(sink, f->value, "failure_rate", {"threshold_percent", "window", "min_requests"});
    r.readUint32("threshold_percent", rate.threshold_percent, 1, 100);
    r.readDuration("window", rate.window, /*allow_zero=*/false);
    r.readUint32("min_requests", rate.min_requests);
    out.failure_rate = rate;
  }
  m.readDuration("open_duration", out.open_duration, /*allow_zero=*/false);
  m.readUint32("half_open_max_requests", out.half_open_max_requests, 1);
  m.readUint32("success_threshold", out.success_threshold, 1);
  m.readUint32("max_ejection_percent", out.max_ejection_percent, 0, 100);
}

void parseHealthCheck(ErrorSink& sink, const Node& node, HealthCheck& out) {
  MapReader m(sink, node, "health_check",
              {"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold"});
  if (!m.ok()) return;
  readPath(m, "path", out.path);
  m.readDuration("interval", out.interval, /*allow_zero=*/false);
  m.readDuration("timeout", out.timeout, /*allow_zero=*/false);
  m.readUint32("healthy_threshold", out.healthy_threshold, 1);
  m.readUint32("unhealthy_threshold", out.unhealthy_threshold, 1);
}

void parseUpstreamTls(ErrorSink& sink, const Node& node, UpstreamTls& out) {
  out.loc = sink.loc(node);
  MapReader m(sink, node, "tls", {"ca_file", "cert_file", "key_file", "sni"});
  if (!m.ok()) return;
  // File existence is the TLS code's business (it reports the OS error); here only the shape.
  m.readString("ca_file", out.ca_file);
  m.readString("cert_file", out.cert_file);
  m.readString("key_file", out.key_file);
  m.readString("sni", out.sni);
  if (m.has("cert_file") != m.has("key_file")) {
    sink.add(m.loc(),
             "upstream tls needs both \"cert_file\" and \"key_file\" (the client "
             "certificate and its key), or neither");
  }
}

void parseClusterInto(ErrorSink& sink, const Node& node, bool endpoints_required, Cluster& c) {
  c.loc = sink.loc(node);
  MapReader m(sink, node, "cluster",
              {"name", "lb_policy", "connect_timeout", "endpoints", "limits", "bulkhead",
               "circuit_breaker", "health_check", "tls"});
  if (!m.ok()) return;
  readName(m, "cluster", c.name);
  std::string policy;
  if (m.readString("lb_policy", policy)) {
    if (const std::optional<LbPolicy> p = parseLbPolicy(policy)) {
      c.lb_policy = *p;
    } else {
      sink.add(m.valueLoc(*m.find("lb_policy")),
               "unknown lb_policy " + quote(policy) + "; use one of: " + lbPolicyNames());
    }
  }
  m.readDuration("connect_timeout", c.connect_timeout, /*allow_zero=*/false);
  parseEndpoints(m, c, endpoints_required);
  if (const Field* f = m.map("limits")) parseLimits(sink, f->value, c.limits);
  if (const Field* f = m.map("bulkhead")) parseBulkhead(sink, f->value, c.bulkhead.emplace());
  if (const Field* f = m.map("circuit_breaker")) {
    parseCircuitBreaker(sink, f->value, c.circuit_breaker.emplace());
  }
  if (const Field* f = m.map("health_check")) {
    parseHealthCheck(sink, f->value, c.health_check.emplace());
  }
  if (const Field* f = m.map("tls")) parseUpstreamTls(sink, f->value, c.tls.emplace());
}

void parseMatch(ErrorSink& sink, const Node& node, RouteMatch& out) {
  MapReader m(sink, node, "match", {"prefix", "path", "method", "headers", "client_identity"});
  if (!m.ok()) return;
  std::string value;
  if (m.has("prefix")) readPath(m, "prefix", out.prefix.emplace());
  if (m.has("path")) readPath(m, "path", out.path.emplace());
  if (m.has("prefix") && m.has("path")) {
    sink.add(m.keyLoc(*m.find("path")),
             "match has both \"prefix\" and \"path\"; use \"prefix\" to match a path prefix or "
             "\"path\" to match one exact path");
  }
  if (m.readString("method", value)) {
    if (detail::isToken(value)) {
      out.method = detail::toUpper(value);
    } else {
      sink.add(m.valueLoc(*m.find("method")),
               "invalid \"method\" " + quote(value) + "; use an HTTP method such as GET");
    }
  }
  if (const Field* f = m.map("headers")) {
    std::vector<std::pair<std::string, std::string>> headers;
    readHeaderMap(sink, *f, "match headers", headers);
    for (auto& [name, v] : headers) out.headers.push_back(HeaderMatch{name, std::move(v)});
  }
  if (m.readString("client_identity", value)) {
    if (value.empty()) {
      sink.add(m.valueLoc(*m.find("client_identity")),
               "empty \"client_identity\"; use a SAN URI or DNS name such as "
               "spiffe://mesh/ns/shop/sa/web (a trailing * matches a prefix)");
    } else {
      out.client_identity = value;
    }
  }
}

void parseRetryOn(ErrorSink& sink, MapReader& m, RetryPolicy& out) {
  const Field* f = m.find("on");
  if (f == nullptr) return;
  // Envoy users write `retry_on: "5xx,reset"`; accept that spelling next to a YAML list.
  std::vector<std::pair<std::string, SourceLoc>> items;
  if (f->value.isSequence()) {
    for (const Node& item : f->value.elements()) {
      std::string name;
      if (detail::readString(sink, item, sink.loc(item), "on", name, false)) {
        items.emplace_back(name, sink.loc(item));
      }
    }
  } else if (f->value.isScalar()) {
    std::string_view rest = f->value.scalar();
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) items.emplace_back(std::string(item), m.valueLoc(*f));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  } else {
    sink.add(m.valueLoc(*f), "\"on\" must be a list of retry conditions, got " +
                                 detail::describe(f->value) +
                                 "; use any of: " + retryConditionNames());
    return;
  }
  uint32_t bits = 0;
  bool bad = false;
  for (const auto& item : items) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda below.
    const std::string& name = item.first;
    const SourceLoc& loc = item.second;
    const auto* c = std::find_if(std::begin(kRetryConditions), std::end(kRetryConditions),
                                 [&](const RetryCondition& rc) { return rc.name == name; });
    if (c == std::end(kRetryConditions)) {
      sink.add(loc, "unknown retry condition " + quote(name) +
                        " in \"on\"; use any of: " + retryConditionNames());
      bad = true;
      continue;
    }
    bits |= c->bit;
  }
  if (bad) return;
  if (bits == 0) {
    sink.add(m.valueLoc(*f),
             "\"on\" must list at least one retry condition: " + retryConditionNames());
    return;
  }
  out.on = bits;
}

void parseRetry(ErrorSink& sink, const Node& node, RetryPolicy& out) {
  MapReader m(sink, node, "retry",
              {"attempts", "on", "retriable_status_codes", "per_try_timeout", "backoff", "methods",
               "budget", "buffer_limit_kb"});
  if (!m.ok()) return;
  m.readUint32("attempts", out.attempts, 1);
  parseRetryOn(sink, m, out);
  if (const Field* f = m.list("retriable_status_codes")) {
    for (const Node& item : f->value.elements()) {
      uint64_t code = 0;
      if (detail::readUint(sink, item, sink.loc(item), "retriable_status_codes", 100, 599, code)) {
        out.retriable_status_codes.push_back(static_cast<uint16_t>(code));
      }
    }
  }
  // The two keys only work together (as in Envoy); one without the other is a silent no-op.
  if (m.has("on") && (out.on & kRetryRetriableStatusCodes) && !m.has("retriable_status_codes")) {
    sink.add(m.valueLoc(*m.find("on")),
             "\"on\" includes retriable-status-codes but \"retriable_status_codes\" is not set; "
             "list the status codes to retry, e.g. retriable_status_codes: [409]");
  }
  if (const Field* f = m.find("retriable_status_codes");
      f != nullptr && !(out.on & kRetryRetriableStatusCodes)) {
    sink.add(m.keyLoc(*f),
             "\"retriable_status_codes\" has no effect unless \"on\" includes "
             "retriable-status-codes; add it to \"on\"");
  }
  if (m.has("per_try_timeout")) {
    Duration d{0};
    if (m.readDuration("per_try_timeout", d, /*allow_zero=*/false)) out.per_try_timeout = d;
  }
  if (const Field* f = m.map("backoff")) {
    MapReader b(sink, f->value, "backoff", {"base", "max"});
    const bool base_ok = !b.has("base") || b.readDuration("base", out.backoff_base);
    const bool max_ok = !b.has("max") || b.readDuration("max", out.backoff_max);
    if (base_ok && max_ok && out.backoff_base > out.backoff_max) {
      sink.add(b.loc(), "backoff \"base\" (" + formatDuration(out.backoff_base) +
                            ") must not be greater than \"max\" (" +
                            formatDuration(out.backoff_max) + ")");
    }
  }
  if (const Field* f = m.list("methods")) {
    std::vector<std::string> methods;
    for (const Node& item : f->value.elements()) {
      std::string method;
      if (!detail::readString(sink, item, sink.loc(item), "methods", method, false)) continue;
      if (!detail::isToken(method)) {
        sink.add(item, "invalid method " + quote(method) + " in \"methods\"");
        continue;
      }
      methods.push_back(detail::toUpper(method));
    }
    if (f->value.size() == 0) {
      sink.add(m.valueLoc(*f),
               "\"methods\" must list at least one method; leave it out for "
               "the default (idempotent methods only)");
    }
    out.methods = std::move(methods);
  }
  if (const Field* f = m.map("budget")) {
    RetryBudget budget;
    MapReader b(sink, f->value, "budget", {"ratio", "min_retries_per_second"});
    b.readDouble("ratio", budget.ratio, 0.0, 1.0);
    b.readUint32("min_retries_per_second", budget.min_retries_per_second);
    out.budget = budget;
  }
  m.readUint32("buffer_limit_kb", out.buffer_limit_kb);
}

void parseRateLimit(ErrorSink& sink, const Node& node, RateLimit& out) {
  MapReader m(sink, node, "rate_limit", {"requests_per_second", "burst"});
  if (!m.ok()) return;
  m.require("requests_per_second");
  m.readUint32("requests_per_second", out.requests_per_second, 1);
  out.burst = out.requests_per_second;
  m.readUint32("burst", out.burst, 1);
}

void parseFallback(ErrorSink& sink, const Node& node, Fallback& out) {
  MapReader m(sink, node, "fallback", {"status", "body", "headers", "cluster"});
  if (!m.ok()) return;
  m.readUint16("status", out.status, 200, 599);
  m.readString("body", out.body, /*allow_empty=*/true);
  if (const Field* f = m.map("headers")) readHeaderMap(sink, *f, "fallback headers", out.headers);
  if (const Field* f = m.find("cluster")) {
    out.cluster_loc = m.valueLoc(*f);
    m.readString("cluster", out.cluster);
    if (m.has("status") || m.has("body") || m.has("headers")) {
      sink.add(m.keyLoc(*f),
               "fallback has both \"cluster\" and a static response "
               "(\"status\", \"body\", \"headers\"); use one or the other");
    }
  }
}

void parseRouteClusters(MapReader& m, Route& r) {
  ErrorSink& sink = m.sink();
  const Field* single = m.find("cluster");
  const Field* multi = m.find("clusters");
  if (single != nullptr && multi != nullptr) {
    sink.add(m.keyLoc(*multi),
             "route has both \"cluster\" and \"clusters\"; use \"cluster: "
             "NAME\" for one cluster or \"clusters: [{name, weight}]\" to "
             "split traffic");
  } else if (single == nullptr && multi == nullptr) {
    sink.add(m.loc(),
             "route has neither \"cluster\" nor \"clusters\"; name the cluster its "
             "requests go to, e.g. cluster: NAME");
  }
  if (single != nullptr) {
    WeightedCluster wc;
    wc.loc = m.valueLoc(*single);
    if (m.readString("cluster", wc.name)) r.clusters.push_back(std::move(wc));
  }
  if (multi == nullptr || (multi = m.list("clusters")) == nullptr) return;
  // With both keys present the single cluster is already in r.clusters; it is not a duplicate of
  // a list entry, only the conflict reported above.
  const size_t first = r.clusters.size();
  size_t valid = 0;
  for (const Node& item : multi->value.elements()) {
    WeightedCluster wc;
    MapReader c(sink, item, "route cluster", {"name", "weight"});
    if (!c.ok()) continue;
    const size_t before = sink.count();
    c.require("name");
    if (const Field* name = c.find("name")) wc.loc = c.valueLoc(*name);
    c.readString("name", wc.name);
    c.readUint32("weight", wc.weight, 0, kMaxWeight);
    if (sink.count() != before) {
      // Keep the name for pass 2 only if it was read; a bad weight is reported already.
      if (!wc.name.empty()) r.clusters.push_back(std::move(wc));
      continue;
    }
    ++valid;
    const bool duplicate = std::any_of(r.clusters.begin() + first, r.clusters.end(),
                                       [&](const WeightedCluster& o) { return o.name == wc.name; });
    if (duplicate) {
      sink.add(wc.loc, "cluster " + quote(wc.name) +
                           " appears twice in \"clusters\"; list it once with the sum of the "
                           "weights");
      continue;
    }
    r.clusters.push_back(std::move(wc));
  }
  if (multi->value.size() == 0) {
    sink.add(m.valueLoc(*multi), "\"clusters\" is empty; list at least one {name, weight}");
  } else if (valid == multi->value.size() &&
             std::all_of(r.clusters.begin(), r.clusters.end(),
                         [](const WeightedCluster& wc) { return wc.weight == 0; })) {
    sink.add(m.valueLoc(*multi),
             "every cluster of the route has weight 0, so no request could "
             "be sent; give at least one a weight > 0");
  }
}

void parseRoute(ErrorSink& sink, const Node& node, const std::string& listener_name, size_t index,
                Route& r) {
  r.loc = sink.loc(node);
  r.name = listener_name + "/" + std::to_string(index);
  MapReader m(
      sink, node, "route",
      {"name", "match", "cluster", "clusters", "timeout", "retry", "rate_limit", "fallback",
       "upgrades"});
  if (!m.ok()) return;
  m.readString("name", r.name);
  if (const Field* f = m.map("match")) parseMatch(sink, f->value, r.match);
  parseRouteClusters(m, r);
  m.readDuration("timeout", r.timeout);
  if (const Field* f = m.map("retry")) parseRetry(sink, f->value, r.retry.emplace());
  if (const Field* f = m.map("rate_limit")) {
    parseRateLimit(sink, f->value, r.rate_limit.emplace());
  }
  if (const Field* f = m.map("fallback")) parseFallback(sink, f->value, r.fallback.emplace());
  if (const Field* f = m.list("upgrades")) {
    std::vector<std::string>& protocols = r.upgrades.emplace();
    for (const Node& item : f->value.elements()) {
      std::string protocol;
      if (!detail::readString(sink, item, sink.loc(item), "upgrades", protocol, false)) continue;
      protocol = detail::toLower(protocol);
      if (!detail::isToken(protocol)) {
        sink.add(item, "invalid protocol " + quote(protocol) + " in \"upgrades\" (a token, "
                       "as in the Upgrade header, e.g. websocket)");
      } else if (protocol == "h2c") {
        sink.add(item, "\"upgrades\" cannot list h2c: HTTP/2 over cleartext would be HTTP/2 to "
                       "the proxy, which speaks HTTP/1.1; leave it out");
      } else {
        protocols.push_back(std::move(protocol));
      }
    }
  }
}

void parseCertificatePair(ErrorSink& sink, const Node& node, CertificateFiles& out) {
  MapReader m(sink, node, "certificate", {"cert_file", "key_file"});
  if (!m.ok()) return;
  m.require("cert_file");
  m.require("key_file");
  m.readString("cert_file", out.cert_file);
  m.readString("key_file", out.key_file);
}

void parseListenerTls(ErrorSink& sink, const Node& node, ListenerTls& out) {
  out.loc = sink.loc(node);
  MapReader m(sink, node, "tls", {"cert_file", "key_file", "certificates", "client_ca_file"});
  if (!m.ok()) return;
  // File contents are the TLS code's business (it names the file and the OpenSSL reason when the
  // snapshot is built, which --validate does too); here only the shape.
  m.readString("cert_file", out.cert_file);
  m.readString("key_file", out.key_file);
  m.readString("client_ca_file", out.client_ca_file);
  if (m.has("cert_file") != m.has("key_file")) {
    sink.add(m.loc(), "listener tls needs both \"cert_file\" and \"key_file\"");
  }
  if (m.has("certificates")) {
    if (const Field* f = m.list("certificates")) {
      for (const Node& item : f->value.elements()) {
        parseCertificatePair(sink, item, out.certificates.emplace_back());
      }
    }
  }
  if (!m.has("cert_file") && !m.has("key_file") && out.certificates.empty()) {
    sink.add(m.loc(),
             "listener tls has no certificate; set \"cert_file\" and \"key_file\" (and, for "
             "more names chosen by SNI, \"certificates\": [{cert_file, key_file}])");
  }
}

void parseListener(ErrorSink& sink, const Node& node, size_t index, Listener& l) {
  l.loc = sink.loc(node);
  MapReader m(sink, node, "listener",
              {"name", "address", "idle_timeout", "request_headers_timeout",
               "max_request_headers_kb", "max_connections", "tls", "routes"});
  if (!m.ok()) return;
  readName(m, "listener", l.name);
  m.require("address");
  m.readAddress("address", l.address, &l.address_loc);
  m.readDuration("idle_timeout", l.idle_timeout);
  m.readDuration("request_headers_timeout", l.request_headers_timeout);
  m.readUint32("max_request_headers_kb", l.max_request_headers_kb, 1);
  m.readUint32("max_connections", l.max_connections, 1);
  if (const Field* f = m.map("tls")) parseListenerTls(sink, f->value, l.tls.emplace());

  const std::string who = label("listener", l.name);
  const std::string hint =
      "add at least one under \"routes\", e.g. "
      "{ match: { prefix: / }, cluster: NAME }";
  if (!m.has("routes")) {
    sink.add(m.loc(), who + " has no routes; " + hint);
    return;
  }
  const Field* f = m.list("routes");
  if (f == nullptr) return;
  if (f->value.size() == 0) {
    sink.add(m.valueLoc(*f), who + " has no routes; " + hint);
    return;
  }
  const std::string route_prefix = l.name.empty() ? "listener" + std::to_string(index) : l.name;
  size_t i = 0;
  for (const Node& item : f->value.elements()) {
    Route r;
    parseRoute(sink, item, route_prefix, i++, r);
    if (r.match.client_identity && (!l.tls || l.tls->client_ca_file.empty())) {
      sink.add(r.loc, "route " + quote(r.name) + " matches on \"client_identity\" but " + who +
                          " does not verify client certificates; set tls.client_ca_file on the "
                          "listener (mTLS)");
    }
    l.routes.push_back(std::move(r));
  }
}

// Two sockets conflict on the same port when the hosts are equal or either is a wildcard.
bool addressesConflict(const Address& a, const Address& b) {
  auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  return a.port != 0 && a.port == b.port &&
         (a.host == b.host || wildcard(a.host) || wildcard(b.host));
}

std::string definedClusters(const Config& config) {
  std::vector<std::string> names;
  for (const Cluster& c : config.clusters) {
    if (!c.name.empty() && std::find(names.begin(), names.end(), c.name) == names.end()) {
      names.push_back(c.name);
    }
  }
  if (names.empty()) return "no clusters are defined; add it under \"clusters\"";
  return "defined clusters: " + detail::join(names);
}

bool readWholeFile(const std::string& path, std::string& out, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = std::strerror(errno);
    return false;
  }
  char buf[64 * 1024];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  // fopen() succeeds on a directory on Linux; the read is what fails (EISDIR).
  const bool failed = std::ferror(f) != 0;
  const int saved_errno = errno;
  std::fclose(f);
  if (failed) {
    error = std::strerror(saved_errno);
    return false;
  }
  return true;
}

}  // namespace

namespace {

std::optional<Cluster> parseClusterNode(const Node& node, std::string_view file,
                                        std::vector<ConfigError>& errors, bool endpoints_required) {
  ErrorSink sink(file, errors);
  const size_t before = sink.count();
  Cluster c;
  try {
    parseClusterInto(sink, node, endpoints_required, c);
  } catch (const YAML::Exception& e) {
    // Every access above is guarded, so this is a bug; still, a config error beats a crash.
    sink.add(e.mark, std::string("internal error while reading the cluster: ") + e.what());
  } catch (const nlohmann::json::exception& e) {
    sink.add(SourceLoc{std::string(file)},
             std::string("internal error while reading the cluster: ") + e.what());
  }
  if (sink.count() != before) return std::nullopt;
  return c;
}

}  // namespace

std::optional<Cluster> parseCluster(const YAML::Node& node, std::string_view file,
                                    std::vector<ConfigError>& errors, bool endpoints_required) {
  return parseClusterNode(Node(node), file, errors, endpoints_required);
}

std::optional<Cluster> parseClusterJson(const nlohmann::json& node, std::string_view file,
                                        std::vector<ConfigError>& errors, bool endpoints_required) {
  return parseClusterNode(Node(node), file, errors, endpoints_required);
}

Config parseConfig(const YAML::Node& root, std::string_view file,
                   std::vector<ConfigError>& errors) {
  ErrorSink sink(file, errors);
  Config config;
  config.node_id = hostname();
  // An empty file (or one with only comments) is an empty map, which then lacks listeners.
  const Node top_node(root.IsNull() ? YAML::Node(YAML::NodeType::Map) : root);
  MapReader top(sink, top_node, "the top level",
                {"node_id", "workers", "log_level", "drain_timeout", "admin", "control_plane",
                 "access_log", "listeners", "clusters"});
  if (!top.ok()) return config;

  top.readString("node_id", config.node_id);
  top.readUint32("workers", config.workers, 0, kMaxWorkers);
  std::string level;
  if (top.readString("log_level", level)) {
    level = detail::toLower(level);
    if (std::find(logLevels().begin(), logLevels().end(), level) == logLevels().end()) {
      sink.add(top.valueLoc(*top.find("log_level")),
               "unknown log_level " + quote(level) + "; use one of: " + detail::join(logLevels()));
    } else {
      config.log_level = level;
    }
  }
  top.readDuration("drain_timeout", config.drain_timeout);
  if (const Field* f = top.map("admin")) {
    MapReader m(sink, f->value, "admin", {"address"});
    m.readAddress("address", config.admin.address);
  }
  if (const Field* f = top.map("control_plane")) {
    ControlPlane& cp = config.control_plane.emplace();
    MapReader m(sink, f->value, "control_plane", {"address", "token_file", "tls"});
    m.require("address");
    m.readAddress("address", cp.address);
    m.readString("token_file", cp.token_file);
    if (const Field* t = m.map("tls")) parseUpstreamTls(sink, t->value, cp.tls.emplace());
  }
  if (const Field* f = top.map("access_log")) {
    AccessLog& log = config.access_log.emplace();
    MapReader m(sink, f->value, "access_log", {"path"});
    m.require("path");
    m.readString("path", log.path);
  }
  // Judged on the key, not on whether its value parsed: a broken control_plane is reported once,
  // not once more per empty cluster.
  const bool has_control_plane = top.has("control_plane");

  if (const Field* f = top.list("listeners")) {
    size_t i = 0;
    for (const Node& item : f->value.elements()) {
      Listener l;
      parseListener(sink, item, i++, l);
      config.listeners.push_back(std::move(l));
    }
  }
  if (const Field* f = top.list("clusters")) {
    for (const Node& item : f->value.elements()) {
      Cluster c;
      parseClusterInto(sink, item, !has_control_plane, c);
      config.clusters.push_back(std::move(c));
    }
  }
  const Field* listeners = top.find("listeners");
  if (!has_control_plane &&
      (listeners == nullptr || (listeners->value.isSequence() && listeners->value.size() == 0))) {
    const std::string reason =
        "no listeners; add at least one under \"listeners\" (only a proxy with a control_plane "
        "may start without)";
    if (listeners != nullptr) {
      sink.add(top.valueLoc(*listeners), reason);
    } else {
      sink.add(root.IsNull() ? SourceLoc{std::string(file)} : sink.loc(root.Mark()), reason);
    }
  }
  return config;
}

void validateReferences(const Config& config, std::vector<ConfigError>& errors,
                        const ReferenceCheckOptions& options) {
  auto add = [&](const SourceLoc& loc, std::string reason) {
    errors.push_back(ConfigError{loc, std::move(reason)});
  };

  std::map<std::string, const Cluster*> clusters;
  for (const Cluster& c : config.clusters) {
    if (c.name.empty()) continue;
    auto [it, inserted] = clusters.emplace(c.name, &c);
    if (!inserted) {
      add(c.loc, "duplicate cluster name " + quote(c.name) + " (first defined at " +
                     lineOf(it->second->loc) + "); cluster names must be unique");
    }
  }

  std::map<std::string, const Listener*> listeners;
  std::map<std::string, const Route*> routes;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const Listener& l = config.listeners[i];
    bool duplicate_listener = false;
    if (!l.name.empty()) {
      auto [it, inserted] = listeners.emplace(l.name, &l);
      duplicate_listener = !inserted;
      if (!inserted) {
        add(l.loc, "duplicate listener name " + quote(l.name) + " (first defined at " +
                       lineOf(it->second->loc) + "); listener names must be unique");
      }
    }
    if (addressesConflict(l.address, config.admin.address)) {
      add(l.address_loc, label("listener", l.name) + " address " + l.address.str() +
                             " is the admin address (" + config.admin.address.str() +
                             "); use another port here or set admin.address");
    }
    for (size_t j = 0; j < i; ++j) {
      const Listener& other = config.listeners[j];
      if (addressesConflict(l.address, other.address)) {
        add(l.address_loc, label("listener", l.name) + " address " + l.address.str() +
                               " is already used by " + label("listener", other.name) + " (" +
                               lineOf(other.address_loc) + "); use another port");
        break;
      }
    }
    for (const Route& r : l.routes) {
      // Route names label the rate-limit and fallback stats; two routes sharing one would merge
      // their numbers.
      // Under a duplicate listener name the default route names repeat too; that is the same
      // mistake, already reported.
      auto [it, inserted] = routes.emplace(r.name, &r);
      if (!inserted && !duplicate_listener) {
        add(r.loc, "duplicate route name " + quote(r.name) + " (first used at " +
                       lineOf(it->second->loc) + "); route names must be unique");
      }
      if (options.allow_unknown_clusters) continue;
      for (const WeightedCluster& wc : r.clusters) {
        if (!wc.name.empty() && clusters.count(wc.name) == 0) {
          add(wc.loc,
              "unknown cluster " + quote(wc.name) + " in route; " + definedClusters(config));
        }
      }
      if (r.fallback && !r.fallback->cluster.empty() && clusters.count(r.fallback->cluster) == 0) {
        add(r.fallback->cluster_loc, "unknown fallback cluster " + quote(r.fallback->cluster) +
                                         "; " + definedClusters(config));
      }
    }
  }
}

void sortErrors(std::vector<ConfigError>& errors) {
  std::stable_sort(errors.begin(), errors.end(), [](const ConfigError& a, const ConfigError& b) {
    const bool a_unknown = a.loc.line == 0;
    const bool b_unknown = b.loc.line == 0;
    if (a_unknown != b_unknown) return b_unknown;
    if (a.loc.line != b.loc.line) return a.loc.line < b.loc.line;
    return a.loc.column < b.loc.column;
  });
}

namespace {

// Where the root node of each document of a YAML stream is. YAML::LoadAll() is not used: in
// yaml-cpp 0.7 it never returns when a ',' stands outside a flow collection (e.g. a file that is
// just ","): each call yields another empty document without consuming the comma, so it loops
// while its memory grows (found by tests/fuzz/config_fuzzer). Driving the parser here lets us
// stop after a few documents.
class DocumentRoots : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> roots;

  void OnDocumentStart(const YAML::Mark&) override { in_document_without_root_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (!in_document_without_root_) return;
    in_document_without_root_ = false;
    roots.push_back(mark);
  }
  bool in_document_without_root_ = false;
};

LoadResult load(std::string_view yaml, std::string_view file_name, std::string source_file) {
  LoadResult result;
  ErrorSink sink(file_name, result.errors);
  YAML::Node root(YAML::NodeType::Null);  // an empty file is an empty map: see parseConfig()
  try {
    std::istringstream in{std::string(yaml)};
    YAML::Parser parser(in);
    DocumentRoots roots;
    // A config is one document; reading up to three tells "more than one" from "stuck".
    for (int i = 0; i < 3 && parser.HandleNextDocument(roots); ++i) {
    }
    if (roots.roots.size() == 3 && roots.roots[2].pos == roots.roots[1].pos) {
      sink.add(roots.roots[1],
               "YAML syntax error: unexpected ',' outside a [ ] or { } collection");
      return result;
    }
    if (roots.roots.size() > 1) {
      sink.add(roots.roots[1],
               "a config file holds one YAML document; remove the '---' and what follows "
               "or merge the documents");
    }
    if (!roots.roots.empty()) root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    // yaml-cpp stops at the first syntax error, so this is the only error of the file.
    sink.add(e.mark, "YAML syntax error: " + e.msg);
    return result;
  } catch (const YAML::Exception& e) {
    sink.add(e.mark, std::string("cannot parse YAML: ") + e.what());
    return result;
  }
  Config config;
  try {
    config = parseConfig(root, file_name, result.errors);
    // Pass 2 runs even after pass-1 errors: everything wrong is reported in one go, and pass 1
    // keeps what it could read (names in particular) so pass 2 adds no follow-on noise.
    // With a control plane, routes may name clusters only the control plane defines; the proxy
    // checks them again, strictly, against every snapshot it receives.
    ReferenceCheckOptions options;
    options.allow_unknown_clusters = config.control_plane.has_value();
    validateReferences(config, result.errors, options);
  } catch (const YAML::Exception& e) {
    sink.add(e.mark, std::string("internal error while reading the config: ") + e.what());
  }
  sortErrors(result.errors);
  if (result.errors.empty()) {
    config.source_file = std::move(source_file);
    result.config = std::make_shared<const Config>(std::move(config));
  }
  return result;
}

}  // namespace

LoadResult loadString(std::string_view yaml, std::string_view file_name) {
  return load(yaml, file_name, "");
}

LoadResult loadFile(const std::string& path) {
  std::string text;
  std::string os_error;
  if (!readWholeFile(path, text, os_error)) {
    LoadResult result;
    result.errors.push_back(ConfigError{SourceLoc{path}, "cannot read config file: " + os_error});
    return result;
  }
  return load(text, path, path);
}

}  // namespace remora::config
