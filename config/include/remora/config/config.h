#pragma once

// Typed, immutable configuration of the Remora proxy (contract section 2).
//
// The YAML file is parsed in two passes (config/src/parser.cc): pass 1 turns yaml-cpp nodes into
// these plain structs, pass 2 resolves references (routes -> clusters) and checks cross-field
// constraints. Every error is collected with its file:line:column; nothing is applied unless the
// whole file is valid. The same code validates files (`remora --validate`), SIGHUP reloads and
// control-plane pushes, so there is exactly one notion of "valid".

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::config {

using Duration = std::chrono::milliseconds;

// Where a YAML node came from; used in error messages and kept on the structs so later passes
// (and the control plane) can point at the offending node.
struct SourceLoc {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based; 0 = unknown
  // Where a setting was written is not part of it: two configs that say the same thing are
  // equal wherever they say it (a reload that only moved lines changes nothing).
  friend bool operator==(const SourceLoc&, const SourceLoc&) { return true; }
};

// "host:port". `host` is kept as written; IPv6 literals are written "[::1]:80" and stored without
// brackets.
struct Address {
  std::string host;
  uint16_t port = 0;
  std::string str() const;  // back to "host:port" ("[v6]:port" for IPv6)
  friend bool operator==(const Address&, const Address&) = default;
};

struct Endpoint {
  Address address;
  uint32_t weight = 1;
  SourceLoc loc;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

enum class LbPolicy { RoundRobin, WeightedRoundRobin, Random, LeastRequest };
std::string_view toString(LbPolicy p);
// Inverse of toString(LbPolicy); nullopt for anything else.
std::optional<LbPolicy> parseLbPolicy(std::string_view s);

// Envoy-style thresholds per cluster (per proxy process, summed over workers).
struct Limits {
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;
  friend bool operator==(const Limits&, const Limits&) = default;
};

struct Bulkhead {
  uint32_t max_concurrent_requests = 100;
  uint32_t max_queue = 50;
  Duration queue_timeout{100};
  friend bool operator==(const Bulkhead&, const Bulkhead&) = default;
};

struct FailureRate {
  uint32_t threshold_percent = 50;  // 1..100
  Duration window{10000};
  uint32_t min_requests = 20;
  friend bool operator==(const FailureRate&, const FailureRate&) = default;
};

struct CircuitBreaker {
  uint32_t consecutive_failures = 5;  // 0 = disabled
  std::optional<FailureRate> failure_rate;
  Duration open_duration{30000};
  uint32_t half_open_max_requests = 1;
  uint32_t success_threshold = 2;
  uint32_t max_ejection_percent = 50;  // 0..100
  friend bool operator==(const CircuitBreaker&, const CircuitBreaker&) = default;
};

struct HealthCheck {
  std::string path = "/healthz";
  Duration interval{5000};
  Duration timeout{1000};
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  friend bool operator==(const HealthCheck&, const HealthCheck&) = default;
};

// Upstream TLS origination (and mTLS with a client certificate). The server's certificate is
// verified against `ca_file` (the system store when empty) and must carry `sni` (else the
// endpoint's host) as a DNS name, or the endpoint's IP when the host is an IP and no sni is set.
struct UpstreamTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string sni;
  SourceLoc loc;
  friend bool operator==(const UpstreamTls&, const UpstreamTls&) = default;
};

struct Cluster {
  std::string name;
  LbPolicy lb_policy = LbPolicy::RoundRobin;
  Duration connect_timeout{1000};
  std::vector<Endpoint> endpoints;
  Limits limits;
  std::optional<Bulkhead> bulkhead;
  std::optional<CircuitBreaker> circuit_breaker;
  std::optional<HealthCheck> health_check;
  std::optional<UpstreamTls> tls;
  SourceLoc loc;
  friend bool operator==(const Cluster&, const Cluster&) = default;
};

struct HeaderMatch {
  std::string name;   // lower-cased at parse time
  std::string value;  // exact match
};

// All present conditions must hold. `prefix` and `path` are mutually exclusive; neither means "/".
struct RouteMatch {
  std::optional<std::string> prefix;
  std::optional<std::string> path;    // exact path (query string excluded)
  std::optional<std::string> method;  // upper-case
  std::vector<HeaderMatch> headers;
  // mTLS listeners: the verified client certificate must carry this SAN URI or DNS name
  // (a trailing '*' matches a prefix, e.g. "spiffe://mesh/ns/shop/*").
  std::optional<std::string> client_identity;
};

struct WeightedCluster {
  std::string name;
  uint32_t weight = 1;
  SourceLoc loc;  // the cluster name node, for "unknown cluster" errors
};

// Bit flags for RetryPolicy::on.
enum RetryOn : uint32_t {
  kRetryConnectFailure = 1u << 0,
  kRetryReset = 1u << 1,
  kRetryTimeout = 1u << 2,
  kRetryGatewayError = 1u << 3,  // 502, 503, 504
  kRetry5xx = 1u << 4,
  kRetryRetriableStatusCodes = 1u << 5,
};

struct RetryBudget {
  double ratio = 0.2;  // 0..1
  uint32_t min_retries_per_second = 10;
};

struct RetryPolicy {
  uint32_t attempts = 1;  // total tries, the first included
  uint32_t on = kRetryConnectFailure | kRetryReset | kRetryGatewayError;
  std::vector<uint16_t> retriable_status_codes;
  std::optional<Duration> per_try_timeout;
  Duration backoff_base{25};
  Duration backoff_max{250};
  std::vector<std::string> methods = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
  std::optional<RetryBudget> budget;
  uint32_t buffer_limit_kb = 64;
};

struct RateLimit {
  uint32_t requests_per_second = 0;
  uint32_t burst = 0;  // bucket size; default = requests_per_second
};

struct Fallback {
  uint16_t status = 503;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string cluster;  // non-empty: answer from this cluster instead of a static response
  SourceLoc cluster_loc;
};

struct Route {
  std::string name;  // `name:` key, default "<listener>/<index>"
  RouteMatch match;
  std::vector<WeightedCluster> clusters;  // `cluster: x` becomes one entry of weight 1
  Duration timeout{15000};                // whole request, retries included; 0 = none
  std::optional<RetryPolicy> retry;
  std::optional<RateLimit> rate_limit;
  std::optional<Fallback> fallback;
  // Protocols an HTTP/1.1 Upgrade may switch to on this route (lower-case, e.g. "websocket").
  // Unset: any but h2c. Empty: none (Upgrade is dropped and the request is an ordinary one).
  std::optional<std::vector<std::string>> upgrades;
  SourceLoc loc;
};

struct CertificateFiles {
  std::string cert_file;
  std::string key_file;
};

// Downstream TLS termination. `cert_file`/`key_file` is the default certificate; `certificates`
// adds more, chosen by SNI against each certificate's DNS names (the default answers when none
// matches). At least one certificate is required.
struct ListenerTls {
  std::string cert_file;
  std::string key_file;
  std::vector<CertificateFiles> certificates;
  std::string client_ca_file;  // non-empty: mTLS required
  SourceLoc loc;
};

struct Listener {
  std::string name;
  Address address;
  Duration idle_timeout{60000};
  Duration request_headers_timeout{10000};
  uint32_t max_request_headers_kb = 60;
  // Open client connections the listener keeps (all workers together); a connection accepted
  // beyond it is closed at once. 0 (the key left out) = no cap, as with Envoy.
  uint32_t max_connections = 0;
  std::optional<ListenerTls> tls;
  std::vector<Route> routes;
  SourceLoc loc;
  SourceLoc address_loc;  // for "address already in use" errors
};

struct Admin {
  Address address{"127.0.0.1", 9901};
};

struct ControlPlane {
  Address address;
  std::string token_file;
  std::optional<UpstreamTls> tls;  // the discovery connection over TLS (mTLS with a cert)
};

// Optional JSON-lines access log (one object per request). Not in the contract's example; documented
// in docs/configuration.md.
struct AccessLog {
  std::string path;  // file path, or "/dev/stdout"
};

struct Config {
  std::string node_id;                 // default: hostname
  uint32_t workers = 0;                // 0 = number of CPUs
  std::string log_level = "info";      // trace|debug|info|warn|error|critical|off
  Duration drain_timeout{30000};       // SIGTERM: finish in-flight requests up to this long
  Admin admin;
  std::optional<ControlPlane> control_plane;
  std::optional<AccessLog> access_log;
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
  std::string source_file;  // the file it came from ("" when built from a string)

  const Cluster* findCluster(std::string_view name) const;
};

using ConfigConstSharedPtr = std::shared_ptr<const Config>;

struct ConfigError {
  SourceLoc loc;
  std::string reason;
  // "file:line:col: reason" (parts that are unknown are left out).
  std::string format() const;
};

struct LoadResult {
  ConfigConstSharedPtr config;      // set only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
  bool ok() const { return config != nullptr && errors.empty(); }
  std::string formatErrors() const;  // one formatted error per line
};

// Reads and validates a whole proxy config file.
LoadResult loadFile(const std::string& path);
// Same, from a string; `file_name` is used in error locations.
LoadResult loadString(std::string_view yaml, std::string_view file_name = "<string>");

// Longest accepted duration (365 days); anything longer is a typo, not a timeout.
inline constexpr int64_t kMaxDurationMs = int64_t{365} * 24 * 60 * 60 * 1000;
// "250ms", "2s", "1m", "1h", "1.5s"; returns nullopt for anything else (negative included, and
// values that are not a whole number of milliseconds, such as "1.5ms").
std::optional<Duration> parseDuration(std::string_view s);
// Inverse of parseDuration with the largest exact unit: 250ms, 2s, 90s, 1m, 1h, 0s.
std::string formatDuration(Duration d);
// "host:port", "[v6]:port"; returns nullopt for anything else.
std::optional<Address> parseAddress(std::string_view s);

}  // namespace remora::config
