#include "remora/config/parser.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

#include "remora/config/config.h"

namespace remora::config {
namespace {

// Raw strings in this file start with a newline for readability; drop it so that the first line
// of text is line 1, as the expected positions assume.
std::string yaml(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return std::string(text);
}

// Every error of `text` loaded as "t.yaml", formatted.
std::vector<std::string> errorsOf(std::string_view text) {
  const LoadResult r = loadString(yaml(text), "t.yaml");
  std::vector<std::string> out;
  for (const ConfigError& e : r.errors) out.push_back(e.format());
  EXPECT_EQ(r.ok(), out.empty());
  return out;
}

std::string listErrors(const std::vector<std::string>& errors) {
  std::string out;
  for (const std::string& e : errors) out += "\n  " + e;
  return out.empty() ? " (none)" : out;
}

// Exactly one error, at `where` ("line:col"), whose reason contains `reason`.
testing::AssertionResult onlyError(std::string_view text, std::string_view where,
                                   std::string_view reason) {
  const std::vector<std::string> errors = errorsOf(text);
  std::string prefix = "t.yaml:";  // appended, not +: GCC 12 warns falsely (-Wrestrict)
  prefix.append(where).append(": ");
  if (errors.size() == 1 && errors[0].rfind(prefix, 0) == 0 &&
      errors[0].find(reason) != std::string::npos) {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure()
         << "expected only \"" << prefix << "..." << reason << "...\", got:" << listErrors(errors);
}

testing::AssertionResult noErrors(std::string_view text) {
  const std::vector<std::string> errors = errorsOf(text);
  if (errors.empty()) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "expected no errors, got:" << listErrors(errors);
}

ConfigConstSharedPtr load(std::string_view text) {
  LoadResult r = loadString(yaml(text), "t.yaml");
  EXPECT_TRUE(r.ok()) << r.formatErrors();
  return r.config;
}

// The smallest valid config, with the cluster last so that appended lines indented by 4 extend the
// cluster.
constexpr std::string_view kClusterLast = R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - cluster: c
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
)";

// The same with the route last: appended lines indented by 8 extend the route, by 4 the listener.
constexpr std::string_view kRouteLast = R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - cluster: c
)";

std::string with(std::string_view base, std::string_view extra) {
  return yaml(base) + std::string(extra);
}

std::string before(std::string_view extra, std::string_view base) {
  return std::string(extra) + yaml(base);
}

std::string hostName() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

// --- valid configs and defaults -------------------------------------------------------------

TEST(ConfigLoadTest, MinimalConfigGetsEveryDefault) {
  ConfigConstSharedPtr c = load(kClusterLast);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->node_id, hostName());
  EXPECT_EQ(c->workers, 0u);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->drain_timeout, Duration(30000));
  EXPECT_EQ(c->admin.address, (Address{"127.0.0.1", 9901}));
  EXPECT_FALSE(c->control_plane);
  EXPECT_FALSE(c->access_log);
  EXPECT_EQ(c->source_file, "");

  ASSERT_EQ(c->listeners.size(), 1u);
  const Listener& l = c->listeners[0];
  EXPECT_EQ(l.name, "l");
  EXPECT_EQ(l.address, (Address{"127.0.0.1", 15001}));
  EXPECT_EQ(l.idle_timeout, Duration(60000));
  EXPECT_EQ(l.request_headers_timeout, Duration(10000));
  EXPECT_EQ(l.max_request_headers_kb, 60u);
  EXPECT_FALSE(l.tls);
  EXPECT_EQ(l.loc.line, 2);
  EXPECT_EQ(l.loc.column, 5);
  EXPECT_EQ(l.address_loc.line, 3);
  EXPECT_EQ(l.address_loc.column, 14);

  ASSERT_EQ(l.routes.size(), 1u);
  const Route& r = l.routes[0];
  EXPECT_EQ(r.name, "l/0");
  EXPECT_EQ(r.timeout, Duration(15000));
  EXPECT_FALSE(r.match.prefix);
  EXPECT_FALSE(r.match.path);
  EXPECT_FALSE(r.match.method);
  EXPECT_TRUE(r.match.headers.empty());
  ASSERT_EQ(r.clusters.size(), 1u);
  EXPECT_EQ(r.clusters[0].name, "c");
  EXPECT_EQ(r.clusters[0].weight, 1u);
  EXPECT_EQ(r.clusters[0].loc.line, 5);
  EXPECT_EQ(r.clusters[0].loc.column, 18);
  EXPECT_FALSE(r.retry);
  EXPECT_FALSE(r.rate_limit);
  EXPECT_FALSE(r.fallback);

  ASSERT_EQ(c->clusters.size(), 1u);
  const Cluster& cl = c->clusters[0];
  EXPECT_EQ(cl.name, "c");
  EXPECT_EQ(cl.lb_policy, LbPolicy::RoundRobin);
  EXPECT_EQ(cl.connect_timeout, Duration(1000));
  ASSERT_EQ(cl.endpoints.size(), 1u);
  EXPECT_EQ(cl.endpoints[0].address, (Address{"127.0.0.1", 8080}));
  EXPECT_EQ(cl.endpoints[0].weight, 1u);
  EXPECT_EQ(cl.limits.max_connections, 1024u);
  EXPECT_EQ(cl.limits.max_pending_requests, 1024u);
  EXPECT_EQ(cl.limits.max_requests, 1024u);
  EXPECT_EQ(cl.limits.max_retries, 3u);
  EXPECT_FALSE(cl.bulkhead);
  EXPECT_FALSE(cl.circuit_breaker);
  EXPECT_FALSE(cl.health_check);
  EXPECT_FALSE(cl.tls);
  EXPECT_EQ(cl.loc.line, 7);
  EXPECT_EQ(c->findCluster("c"), &cl);
}

TEST(ConfigLoadTest, EmptySectionsGetDefaults) {
  ConfigConstSharedPtr c = load(with(kClusterLast, R"(    bulkhead: {}
    circuit_breaker: { failure_rate: {} }
    health_check: {}
    limits: {}
    tls: {}
)"));
  ASSERT_NE(c, nullptr);
  const Cluster& cl = c->clusters[0];
  ASSERT_TRUE(cl.bulkhead);
  EXPECT_EQ(cl.bulkhead->max_concurrent_requests, 100u);
  EXPECT_EQ(cl.bulkhead->max_queue, 50u);
  EXPECT_EQ(cl.bulkhead->queue_timeout, Duration(100));
  ASSERT_TRUE(cl.circuit_breaker);
  EXPECT_EQ(cl.circuit_breaker->consecutive_failures, 5u);
  ASSERT_TRUE(cl.circuit_breaker->failure_rate);
  EXPECT_EQ(cl.circuit_breaker->failure_rate->threshold_percent, 50u);
  EXPECT_EQ(cl.circuit_breaker->failure_rate->window, Duration(10000));
  EXPECT_EQ(cl.circuit_breaker->failure_rate->min_requests, 20u);
  EXPECT_EQ(cl.circuit_breaker->open_duration, Duration(30000));
  EXPECT_EQ(cl.circuit_breaker->half_open_max_requests, 1u);
  EXPECT_EQ(cl.circuit_breaker->success_threshold, 2u);
  EXPECT_EQ(cl.circuit_breaker->max_ejection_percent, 50u);
  ASSERT_TRUE(cl.health_check);
  EXPECT_EQ(cl.health_check->path, "/healthz");
  EXPECT_EQ(cl.health_check->interval, Duration(5000));
  EXPECT_EQ(cl.health_check->timeout, Duration(1000));
  EXPECT_EQ(cl.health_check->healthy_threshold, 2u);
  EXPECT_EQ(cl.health_check->unhealthy_threshold, 3u);
  ASSERT_TRUE(cl.tls);
  EXPECT_EQ(cl.tls->sni, "");
}

TEST(ConfigLoadTest, RouteSectionDefaults) {
  ConfigConstSharedPtr c = load(with(kRouteLast, R"(        retry: {}
        rate_limit: { requests_per_second: 50 }
        fallback: {}
)"));
  ASSERT_NE(c, nullptr);
  const Route& r = c->listeners[0].routes[0];
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.retry->attempts, 1u);
  EXPECT_EQ(r.retry->on, kRetryConnectFailure | kRetryReset | kRetryGatewayError);
  EXPECT_TRUE(r.retry->retriable_status_codes.empty());
  EXPECT_FALSE(r.retry->per_try_timeout);
  EXPECT_EQ(r.retry->backoff_base, Duration(25));
  EXPECT_EQ(r.retry->backoff_max, Duration(250));
  EXPECT_EQ(r.retry->methods,
            (std::vector<std::string>{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}));
  EXPECT_FALSE(r.retry->budget);
  EXPECT_EQ(r.retry->buffer_limit_kb, 64u);
  ASSERT_TRUE(r.rate_limit);
  EXPECT_EQ(r.rate_limit->requests_per_second, 50u);
  EXPECT_EQ(r.rate_limit->burst, 50u);  // defaults to requests_per_second
  ASSERT_TRUE(r.fallback);
  EXPECT_EQ(r.fallback->status, 503);
  EXPECT_EQ(r.fallback->body, "");
  EXPECT_TRUE(r.fallback->headers.empty());
  EXPECT_EQ(r.fallback->cluster, "");
}

TEST(ConfigLoadTest, NormalisesHeaderNamesAndMethods) {
  ConfigConstSharedPtr c = load(
      with(kRouteLast, R"(        match: { method: post, headers: { X-Canary: "1", x-Empty: "" } }
        retry: { methods: [get, Put] }
        fallback: { headers: { Content-Type: text/plain }, body: degraded }
)"));
  ASSERT_NE(c, nullptr);
  const Route& r = c->listeners[0].routes[0];
  EXPECT_EQ(r.match.method, "POST");
  ASSERT_EQ(r.match.headers.size(), 2u);
  EXPECT_EQ(r.match.headers[0].name, "x-canary");
  EXPECT_EQ(r.match.headers[0].value, "1");
  EXPECT_EQ(r.match.headers[1].name, "x-empty");
  EXPECT_EQ(r.match.headers[1].value, "");
  EXPECT_EQ(r.retry->methods, (std::vector<std::string>{"GET", "PUT"}));
  ASSERT_EQ(r.fallback->headers.size(), 1u);
  EXPECT_EQ(r.fallback->headers[0].first, "content-type");
  EXPECT_EQ(r.fallback->headers[0].second, "text/plain");
  EXPECT_EQ(r.fallback->body, "degraded");
}

TEST(ConfigLoadTest, RouteNamesDefaultToListenerAndIndex) {
  ConfigConstSharedPtr c = load(R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: edge
    address: 127.0.0.1:15001
    routes:
      - { match: { path: /a }, cluster: c }
      - { name: named, match: { prefix: /b }, cluster: c }
      - { cluster: c }
)");
  ASSERT_NE(c, nullptr);
  const auto& routes = c->listeners[0].routes;
  ASSERT_EQ(routes.size(), 3u);
  EXPECT_EQ(routes[0].name, "edge/0");
  EXPECT_EQ(routes[0].match.path, "/a");
  EXPECT_EQ(routes[1].name, "named");
  EXPECT_EQ(routes[1].match.prefix, "/b");
  EXPECT_EQ(routes[2].name, "edge/2");
}

TEST(ConfigLoadTest, WeightedClustersAndRetryOnString) {
  ConfigConstSharedPtr c = load(R"(
control_plane: { address: 127.0.0.1:18000, token_file: /etc/remora/token }
clusters:
  - { name: a, endpoints: [{ address: 127.0.0.1:8080 }] }
  - { name: b, endpoints: [{ address: "[::1]:8080", weight: 0 }, { address: h:1, weight: 7 }] }
  - { name: c }
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - clusters: [{ name: a, weight: 90 }, { name: b, weight: 0 }, { name: c }]
        retry: { on: "5xx, reset" }
)");
  ASSERT_NE(c, nullptr);
  const Route& r = c->listeners[0].routes[0];
  ASSERT_EQ(r.clusters.size(), 3u);
  EXPECT_EQ(r.clusters[0].name, "a");
  EXPECT_EQ(r.clusters[0].weight, 90u);
  EXPECT_EQ(r.clusters[1].weight, 0u);
  EXPECT_EQ(r.clusters[2].weight, 1u);
  EXPECT_EQ(r.retry->on, kRetry5xx | kRetryReset);
  EXPECT_EQ(c->clusters[1].endpoints[0].address.host, "::1");
  EXPECT_EQ(c->clusters[1].endpoints[0].weight, 0u);
  EXPECT_TRUE(c->clusters[2].endpoints.empty());
  ASSERT_TRUE(c->control_plane);
  EXPECT_EQ(c->control_plane->address, (Address{"127.0.0.1", 18000}));
  EXPECT_EQ(c->control_plane->token_file, "/etc/remora/token");
}

TEST(ConfigLoadTest, AcceptsLimitValues) {
  EXPECT_TRUE(noErrors(before("workers: 256\n", kClusterLast)));
  EXPECT_TRUE(noErrors(before("workers: 0\n", kClusterLast)));
  EXPECT_TRUE(noErrors(before("log_level: WARN\n", kClusterLast)));
  EXPECT_TRUE(noErrors(with(kClusterLast,
                            "    circuit_breaker: { max_ejection_percent: 100, "
                            "failure_rate: { threshold_percent: 100 } }\n")));
  EXPECT_TRUE(noErrors(with(kClusterLast,
                            "    circuit_breaker: { max_ejection_percent: 0, "
                            "failure_rate: { threshold_percent: 1 } }\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        retry: { budget: { ratio: 0 } }\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        retry: { budget: { ratio: 1 } }\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        fallback: { status: 200 }\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        fallback: { status: 599 }\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        timeout: 0s\n")));
  EXPECT_TRUE(noErrors(with(kRouteLast, "        retry: { backoff: { base: 1s, max: 1s } }\n")));
  EXPECT_TRUE(noErrors(with(kClusterLast, "    limits: { max_retries: 4294967295 }\n")));
}

// --- the example files --------------------------------------------------------------------

TEST(ExampleConfigTest, QuickstartLoads) {
  const std::string path = REMORA_CONFIG_EXAMPLES_DIR "/quickstart.yaml";
  const LoadResult r = loadFile(path);
  ASSERT_TRUE(r.ok()) << r.formatErrors();
  const Config& c = *r.config;
  EXPECT_EQ(c.source_file, path);
  EXPECT_EQ(c.workers, 2u);
  EXPECT_EQ(c.admin.address.str(), "127.0.0.1:9901");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "ingress");
  EXPECT_EQ(c.listeners[0].address.str(), "127.0.0.1:15001");
  ASSERT_EQ(c.listeners[0].routes.size(), 1u);
  const Route& route = c.listeners[0].routes[0];
  EXPECT_EQ(route.match.prefix, "/");
  EXPECT_EQ(route.timeout, Duration(5000));
  ASSERT_EQ(route.clusters.size(), 1u);
  EXPECT_EQ(route.clusters[0].name, "demo");
  const Cluster* demo = c.findCluster("demo");
  ASSERT_NE(demo, nullptr);
  ASSERT_EQ(demo->endpoints.size(), 1u);
  EXPECT_EQ(demo->endpoints[0].address.str(), "127.0.0.1:18081");
}

TEST(ExampleConfigTest, FullLoadsWithEveryKey) {
  const LoadResult r = loadFile(REMORA_CONFIG_EXAMPLES_DIR "/full.yaml");
  ASSERT_TRUE(r.ok()) << r.formatErrors();
  const Config& c = *r.config;
  EXPECT_EQ(c.node_id, "orders-sidecar-1");
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.drain_timeout, Duration(45000));
  EXPECT_EQ(c.admin.address.str(), "127.0.0.1:9902");
  ASSERT_TRUE(c.control_plane);
  EXPECT_EQ(c.control_plane->address.str(), "127.0.0.1:18000");
  EXPECT_EQ(c.control_plane->token_file, "/etc/remora/token");
  ASSERT_TRUE(c.access_log);
  EXPECT_EQ(c.access_log->path, "/var/log/remora/access.log");

  ASSERT_EQ(c.listeners.size(), 2u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.idle_timeout, Duration(90000));
  EXPECT_EQ(l.request_headers_timeout, Duration(5000));
  EXPECT_EQ(l.max_request_headers_kb, 32u);
  // tls is a comment in full.yaml (--validate loads certificate files); its keys are covered
  // by ConfigErrorsTest.Tls and the TLS tests.
  EXPECT_FALSE(l.tls);
  EXPECT_EQ(l.max_connections, 20000u);
  ASSERT_EQ(l.routes.size(), 2u);

  const Route& api = l.routes[0];
  EXPECT_EQ(api.name, "orders-api");
  EXPECT_EQ(api.match.prefix, "/api/");
  EXPECT_EQ(api.match.method, "GET");
  ASSERT_EQ(api.match.headers.size(), 1u);
  EXPECT_EQ(api.match.headers[0].name, "x-canary");
  ASSERT_EQ(api.clusters.size(), 2u);
  EXPECT_EQ(api.clusters[0].name, "orders-v1");
  EXPECT_EQ(api.clusters[0].weight, 90u);
  EXPECT_EQ(api.clusters[1].name, "orders-v2");
  EXPECT_EQ(api.clusters[1].weight, 10u);
  EXPECT_EQ(api.timeout, Duration(3000));
  ASSERT_TRUE(api.retry);
  EXPECT_EQ(api.retry->attempts, 3u);
  EXPECT_EQ(api.retry->on, kRetryConnectFailure | kRetryReset | kRetryTimeout | kRetryGatewayError |
                               kRetry5xx | kRetryRetriableStatusCodes);
  EXPECT_EQ(api.retry->retriable_status_codes, std::vector<uint16_t>{409});
  EXPECT_EQ(api.retry->per_try_timeout, Duration(500));
  EXPECT_EQ(api.retry->backoff_base, Duration(25));
  EXPECT_EQ(api.retry->backoff_max, Duration(250));
  EXPECT_EQ(api.retry->methods,
            (std::vector<std::string>{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}));
  ASSERT_TRUE(api.retry->budget);
  EXPECT_DOUBLE_EQ(api.retry->budget->ratio, 0.2);
  EXPECT_EQ(api.retry->budget->min_retries_per_second, 10u);
  EXPECT_EQ(api.retry->buffer_limit_kb, 64u);
  ASSERT_TRUE(api.rate_limit);
  EXPECT_EQ(api.rate_limit->requests_per_second, 1000u);
  EXPECT_EQ(api.rate_limit->burst, 200u);
  ASSERT_TRUE(api.fallback);
  EXPECT_EQ(api.fallback->status, 503);
  EXPECT_EQ(api.fallback->body, R"({"error":"orders degraded"})");
  ASSERT_EQ(api.fallback->headers.size(), 1u);
  EXPECT_EQ(api.fallback->headers[0],
            (std::pair<std::string, std::string>{"content-type", "application/json"}));

  const Route& health = l.routes[1];
  EXPECT_EQ(health.name, "ingress/1");
  EXPECT_EQ(health.match.path, "/healthz");
  ASSERT_TRUE(health.fallback);
  EXPECT_EQ(health.fallback->cluster, "orders-readonly");
  EXPECT_EQ(c.listeners[1].address.str(), "[::1]:15002");

  ASSERT_EQ(c.clusters.size(), 3u);
  const Cluster& v1 = c.clusters[0];
  EXPECT_EQ(v1.lb_policy, LbPolicy::LeastRequest);
  EXPECT_EQ(v1.connect_timeout, Duration(2000));
  ASSERT_EQ(v1.endpoints.size(), 2u);
  EXPECT_EQ(v1.endpoints[1].address.str(), "127.0.0.1:8082");
  EXPECT_EQ(v1.endpoints[1].weight, 3u);
  EXPECT_EQ(v1.limits.max_connections, 512u);
  EXPECT_EQ(v1.limits.max_pending_requests, 256u);
  EXPECT_EQ(v1.limits.max_requests, 2048u);
  EXPECT_EQ(v1.limits.max_retries, 5u);
  ASSERT_TRUE(v1.bulkhead);
  EXPECT_EQ(v1.bulkhead->max_concurrent_requests, 64u);
  EXPECT_EQ(v1.bulkhead->max_queue, 32u);
  EXPECT_EQ(v1.bulkhead->queue_timeout, Duration(150));
  ASSERT_TRUE(v1.circuit_breaker);
  EXPECT_EQ(v1.circuit_breaker->consecutive_failures, 7u);
  ASSERT_TRUE(v1.circuit_breaker->failure_rate);
  EXPECT_EQ(v1.circuit_breaker->failure_rate->threshold_percent, 40u);
  EXPECT_EQ(v1.circuit_breaker->failure_rate->window, Duration(20000));
  EXPECT_EQ(v1.circuit_breaker->failure_rate->min_requests, 25u);
  EXPECT_EQ(v1.circuit_breaker->open_duration, Duration(60000));
  EXPECT_EQ(v1.circuit_breaker->half_open_max_requests, 2u);
  EXPECT_EQ(v1.circuit_breaker->success_threshold, 3u);
  EXPECT_EQ(v1.circuit_breaker->max_ejection_percent, 60u);
  ASSERT_TRUE(v1.health_check);
  EXPECT_EQ(v1.health_check->path, "/ready");
  EXPECT_EQ(v1.health_check->interval, Duration(10000));
  EXPECT_EQ(v1.health_check->timeout, Duration(2000));
  EXPECT_EQ(v1.health_check->healthy_threshold, 3u);
  EXPECT_EQ(v1.health_check->unhealthy_threshold, 4u);
  EXPECT_FALSE(v1.tls);  // a comment in full.yaml, see the listener above
  EXPECT_EQ(c.clusters[1].lb_policy, LbPolicy::WeightedRoundRobin);
  EXPECT_EQ(c.clusters[1].endpoints[1].address.host, "::1");
  EXPECT_EQ(c.clusters[2].lb_policy, LbPolicy::Random);
  EXPECT_TRUE(c.clusters[2].endpoints.empty());
}

// --- errors, one kind at a time, each with its position -----------------------------------

TEST(ConfigErrorsTest, UnknownKeyListsTheAllowedKeys) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "colour: blue\n"), "9:1",
                        "unknown key \"colour\" in the top level; allowed keys: node_id, workers, "
                        "log_level, drain_timeout, admin, control_plane, access_log, listeners, "
                        "clusters"));
  EXPECT_EQ(errorsOf(with(kClusterLast, "    conect_timeout: 1s\n")),
            std::vector<std::string>{
                "t.yaml:9:5: unknown key \"conect_timeout\" in cluster (did you mean "
                "\"connect_timeout\"?); allowed keys: name, lb_policy, connect_timeout, "
                "endpoints, limits, bulkhead, circuit_breaker, health_check, tls"});
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retries: 3\n"), "9:9",
                        "unknown key \"retries\" in route; allowed keys: name, match, cluster, "
                        "clusters, timeout, retry, rate_limit, fallback"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { attempt: 3 }\n"), "9:18",
                        "unknown key \"attempt\" in retry (did you mean \"attempts\"?)"));
}

// YAML merge keys: a block anchored once and merged into several clusters; the cluster's own
// keys win, then the earlier of several merged maps.
TEST(ConfigLoadTest, MergeKeysShareAnAnchoredBlock) {
  ConfigConstSharedPtr c = load(R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - cluster: a
clusters:
  - name: a
    <<: &defaults { connect_timeout: 100ms, lb_policy: least_request }
    endpoints: [{ address: 127.0.0.1:8080 }]
  - name: b
    <<: *defaults
    lb_policy: random
    endpoints: [{ address: 127.0.0.1:8081 }]
  - name: c
    <<: [ { connect_timeout: 300ms }, *defaults ]
    endpoints: [{ address: 127.0.0.1:8082 }]
)");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->clusters.size(), 3u);
  EXPECT_EQ(c->clusters[0].connect_timeout, Duration(100));
  EXPECT_EQ(c->clusters[0].lb_policy, LbPolicy::LeastRequest);
  EXPECT_EQ(c->clusters[1].connect_timeout, Duration(100));
  EXPECT_EQ(c->clusters[1].lb_policy, LbPolicy::Random);
  EXPECT_EQ(c->clusters[2].connect_timeout, Duration(300));
  EXPECT_EQ(c->clusters[2].lb_policy, LbPolicy::LeastRequest);
}

TEST(ConfigErrorsTest, MergeKeysAreCheckedLikeTheKeysTheyBringIn) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "    <<: { colour: blue }\n"), "9:11",
                        "unknown key \"colour\" in cluster (merged in with <<)"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    <<: 5\n"), "9:9",
                        "<< (a YAML merge key) in cluster takes a map or a list of maps"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    <<: { <<: { lb_policy: random } }\n"), "9:11",
                        "a merged map has a << of its own"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    <<: { lb_policy: random, lb_policy: random }\n"),
                        "9:30", "key \"lb_policy\" appears twice in a map merged into cluster"));
}

TEST(ConfigErrorsTest, RepeatedKey) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "    name: d\n"), "9:5",
                        "key \"name\" appears twice in cluster (first at line 7); remove one"));
}

TEST(ConfigErrorsTest, WrongTypes) {
  EXPECT_TRUE(onlyError(before("node_id: { a: 1 }\n", kClusterLast), "1:10",
                        "\"node_id\" must be a string, got a map"));
  EXPECT_TRUE(onlyError(before("workers: abc\n", kClusterLast), "1:10",
                        "\"workers\" must be an integer, got \"abc\""));
  EXPECT_TRUE(onlyError(before("workers: 1.5\n", kClusterLast), "1:10",
                        "\"workers\" must be an integer, got \"1.5\""));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    limits: [1]\n"), "9:13",
                        "\"limits\" must be a map, got a list"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    bulkhead:\n"), "9:5",
                        "\"bulkhead\" must be a map, got nothing (null) (write {} for the "
                        "defaults)"));
  EXPECT_TRUE(onlyError(before("admin: [1]\n", kClusterLast), "1:8",
                        "\"admin\" must be a map, got a list"));
  EXPECT_TRUE(onlyError("control_plane: { address: 127.0.0.1:18000 }\nlisteners: { name: l }\n",
                        "2:12", "\"listeners\" must be a list, got a map"));
  EXPECT_TRUE(onlyError(with(kRouteLast,
                             "        retry: { retriable_status_codes: x, on: "
                             "[retriable-status-codes] }\n"),
                        "9:42", "\"retriable_status_codes\" must be a list, got \"x\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { headers: { x-a: [1] } }\n"), "9:34",
                        "\"x-a\" must be a string, got a list"));
  EXPECT_TRUE(onlyError("- a\n", "1:1", "the top level must be a map, got a list"));
}

TEST(ConfigErrorsTest, BadDurations) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "    connect_timeout: 5x\n"), "9:22",
                        "invalid duration \"5x\" for \"connect_timeout\"; use a number and a unit "
                        "(ms, s, m or h), e.g. 250ms, 1.5s, 1m"));
  EXPECT_TRUE(onlyError(before("drain_timeout: -1s\n", kClusterLast), "1:16",
                        "invalid duration \"-1s\" for \"drain_timeout\": must not be negative"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        timeout: 30\n"), "9:18",
                        "invalid duration \"30\" for \"timeout\": missing unit; write e.g. "
                        "\"30s\" or \"30ms\""));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    connect_timeout: 0s\n"), "9:22",
                        "\"connect_timeout\" must be greater than 0s"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { per_try_timeout: 1.5ms }\n"), "9:35",
                        "invalid duration \"1.5ms\" for \"per_try_timeout\""));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    connect_timeout: { s: 1 }\n"), "9:22",
                        "\"connect_timeout\" must be a duration such as 250ms or 2s, got a map"));
}

TEST(ConfigErrorsTest, BadAddresses) {
  EXPECT_EQ(errorsOf(R"(
listeners:
  - name: l
    address: localhost
    routes: [{ cluster: c }]
clusters:
  - name: c
    endpoints: [{ address: "127.0.0.1:0" }]
)"),
            (std::vector<std::string>{
                "t.yaml:3:14: invalid address \"localhost\" for \"address\"; expected host:port "
                "with a port from 1 to 65535 (IPv6: [::1]:8080)",
                "t.yaml:7:28: invalid address \"127.0.0.1:0\" for \"address\"; expected "
                "host:port with a port from 1 to 65535 (IPv6: [::1]:8080)"}));
  EXPECT_TRUE(onlyError(before("admin: { address: 127.0.0.1:65536 }\n", kClusterLast), "1:19",
                        "invalid address \"127.0.0.1:65536\" for \"address\""));
  EXPECT_TRUE(onlyError(before("control_plane: { address: \"::1:80\" }\n", kClusterLast), "1:27",
                        "invalid address \"::1:80\" for \"address\""));
}

TEST(ConfigErrorsTest, NegativeAndOutOfRangeNumbers) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "    bulkhead: { max_queue: -1 }\n"), "9:28",
                        "\"max_queue\" must not be negative, got -1"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    limits: { max_retries: 4294967296 }\n"), "9:28",
                        "\"max_retries\" must be at most 4294967295, got 4294967296"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    limits: { max_connections: 0 }\n"), "9:32",
                        "\"max_connections\" must be at least 1, got 0"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    health_check: { healthy_threshold: 0 }\n"), "9:40",
                        "\"healthy_threshold\" must be at least 1, got 0"));
  EXPECT_TRUE(onlyError(with(kRouteLast,
                             "        retry: { retriable_status_codes: [99], on: "
                             "[retriable-status-codes] }\n"),
                        "9:43", "\"retriable_status_codes\" must be between 100 and 599, got 99"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        rate_limit: { requests_per_second: 0 }\n"),
                        "9:44", "\"requests_per_second\" must be at least 1, got 0"));
  EXPECT_TRUE(onlyError(with(kClusterLast,
                             "  - name: d\n"
                             "    endpoints: [{ address: a:1, weight: -1 }]\n"),
                        "10:41", "\"weight\" must be between 0 and 1000000, got -1"));
}

TEST(ConfigErrorsTest, Workers) {
  EXPECT_TRUE(onlyError(before("workers: 257\n", kClusterLast), "1:10",
                        "\"workers\" must be between 0 and 256, got 257"));
  EXPECT_TRUE(onlyError(before("workers: -1\n", kClusterLast), "1:10",
                        "\"workers\" must be between 0 and 256, got -1"));
}

TEST(ConfigErrorsTest, UnknownLogLevel) {
  EXPECT_EQ(errorsOf(before("log_level: verbose\n", kClusterLast)),
            std::vector<std::string>{"t.yaml:1:12: unknown log_level \"verbose\"; use one of: "
                                     "trace, debug, info, warn, error, critical, off"});
}

TEST(ConfigErrorsTest, UnknownLbPolicy) {
  EXPECT_EQ(errorsOf(with(kClusterLast, "    lb_policy: fastest\n")),
            std::vector<std::string>{"t.yaml:9:16: unknown lb_policy \"fastest\"; use one of: "
                                     "round_robin, weighted_round_robin, random, least_request"});
}

TEST(ConfigErrorsTest, UnknownRetryCondition) {
  EXPECT_EQ(errorsOf(with(kRouteLast, "        retry: { attempts: 2, on: [reset, sometimes] }\n")),
            std::vector<std::string>{
                "t.yaml:9:43: unknown retry condition \"sometimes\" in \"on\"; use any of: "
                "connect-failure, reset, timeout, gateway-error, 5xx, retriable-status-codes"});
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { on: [] }\n"), "9:22",
                        "\"on\" must list at least one retry condition"));
}

TEST(ConfigLoadTest, RouteUpgrades) {
  LoadResult unset = loadString(yaml(kRouteLast), "t.yaml");
  ASSERT_TRUE(unset.ok()) << unset.formatErrors();
  EXPECT_FALSE(unset.config->listeners[0].routes[0].upgrades.has_value());  // any but h2c

  LoadResult some = loadString(with(kRouteLast, "        upgrades: [WebSocket, foo]\n"), "t.yaml");
  ASSERT_TRUE(some.ok()) << some.formatErrors();
  EXPECT_EQ(some.config->listeners[0].routes[0].upgrades,
            (std::vector<std::string>{"websocket", "foo"}));

  LoadResult none = loadString(with(kRouteLast, "        upgrades: []\n"), "t.yaml");
  ASSERT_TRUE(none.ok()) << none.formatErrors();
  EXPECT_EQ(none.config->listeners[0].routes[0].upgrades, std::vector<std::string>{});
}

TEST(ConfigErrorsTest, RouteUpgradesAreTokensAndNotH2c) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        upgrades: [websocket, h2c]\n"), "9:31",
                        "\"upgrades\" cannot list h2c"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        upgrades: [\"web socket\"]\n"), "9:20",
                        "invalid protocol \"web socket\" in \"upgrades\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        upgrades: websocket\n"), "9:19", "list"));
}

TEST(ConfigErrorsTest, RetriableStatusCodesNeedEachOther) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { on: [retriable-status-codes] }\n"),
                        "9:22",
                        "\"on\" includes retriable-status-codes but \"retriable_status_codes\" "
                        "is not set"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { retriable_status_codes: [409] }\n"),
                        "9:18",
                        "\"retriable_status_codes\" has no effect unless \"on\" includes "
                        "retriable-status-codes"));
}

TEST(ConfigErrorsTest, RouteNeedsExactlyOneOfClusterAndClusters) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        clusters: [{ name: c }]\n"), "9:9",
                        "route has both \"cluster\" and \"clusters\""));
  EXPECT_TRUE(onlyError(R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - match: { prefix: / }
)",
                        "8:9", "route has neither \"cluster\" nor \"clusters\""));
}

TEST(ConfigErrorsTest, MatchPrefixAndPath) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { prefix: /a, path: /b }\n"), "9:30",
                        "match has both \"prefix\" and \"path\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { prefix: api }\n"), "9:26",
                        "\"prefix\" must start with '/', got \"api\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { path: x }\n"), "9:24",
                        "\"path\" must start with '/', got \"x\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { prefix: \"\" }\n"), "9:26",
                        "\"prefix\" must not be empty"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        match: { method: \"GE T\" }\n"), "9:26",
                        "invalid \"method\" \"GE T\""));
}

TEST(ConfigErrorsTest, UnknownClusterInRoute) {
  const std::string text = R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - cluster: ordrs
clusters:
  - name: orders
    endpoints: [{ address: 127.0.0.1:8080 }]
  - name: payments
    endpoints: [{ address: 127.0.0.1:8081 }]
)";
  EXPECT_EQ(errorsOf(text), std::vector<std::string>{"t.yaml:5:18: unknown cluster \"ordrs\" in "
                                                     "route; defined clusters: orders, payments"});

  EXPECT_TRUE(onlyError(R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - clusters: [{ name: orders, weight: 1 }, { name: pay, weight: 1 }]
clusters:
  - name: orders
    endpoints: [{ address: 127.0.0.1:8080 }]
)",
                        "5:57", "unknown cluster \"pay\" in route; defined clusters: orders"));
}

TEST(ConfigErrorsTest, UnknownFallbackCluster) {
  EXPECT_EQ(errorsOf(with(kRouteLast, "        fallback: { cluster: nope }\n")),
            std::vector<std::string>{
                "t.yaml:9:30: unknown fallback cluster \"nope\"; defined clusters: c"});
  EXPECT_TRUE(onlyError(with(kRouteLast, "        fallback: { status: 503, cluster: c }\n"), "9:34",
                        "fallback has both \"cluster\" and a static response"));
}

TEST(ConfigErrorsTest, DuplicateNames) {
  EXPECT_TRUE(onlyError(with(kClusterLast,
                             "  - name: c\n"
                             "    endpoints: [{ address: 127.0.0.1:8081 }]\n"),
                        "9:5",
                        "duplicate cluster name \"c\" (first defined at line 7); cluster names "
                        "must be unique"));
  EXPECT_TRUE(onlyError(with(kRouteLast,
                             "  - name: l\n"
                             "    address: 127.0.0.1:15002\n"
                             "    routes: [{ cluster: c }]\n"),
                        "9:5",
                        "duplicate listener name \"l\" (first defined at line 5); listener names "
                        "must be unique"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "      - { name: l/0, cluster: c }\n"), "9:9",
                        "duplicate route name \"l/0\" (first used at line 8)"));
}

TEST(ConfigErrorsTest, ListenersOnTheSameAddress) {
  EXPECT_TRUE(onlyError(with(kRouteLast,
                             "  - name: m\n"
                             "    address: 127.0.0.1:15001\n"
                             "    routes: [{ cluster: c }]\n"),
                        "10:14",
                        "listener \"m\" address 127.0.0.1:15001 is already used by listener \"l\" "
                        "(line 6); use another port"));
  // A wildcard address takes the port on every interface.
  EXPECT_TRUE(onlyError(with(kRouteLast,
                             "  - name: m\n"
                             "    address: 0.0.0.0:15001\n"
                             "    routes: [{ cluster: c }]\n"),
                        "10:14", "is already used by listener \"l\""));
  EXPECT_TRUE(noErrors(with(kRouteLast,
                            "  - name: m\n"
                            "    address: \"[::1]:15001\"\n"
                            "    routes: [{ cluster: c }]\n")));
}

TEST(ConfigErrorsTest, ListenerOnTheAdminAddress) {
  EXPECT_TRUE(onlyError(before("admin: { address: 127.0.0.1:15001 }\n", kClusterLast), "4:14",
                        "listener \"l\" address 127.0.0.1:15001 is the admin address "
                        "(127.0.0.1:15001); use another port here or set admin.address"));
  // The default admin address counts too.
  EXPECT_TRUE(onlyError(R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 0.0.0.0:9901
    routes: [{ cluster: c }]
)",
                        "6:14", "is the admin address (127.0.0.1:9901)"));
}

constexpr std::string_view kNoEndpoints = R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes: [{ cluster: c }, { cluster: d }]
clusters:
  - name: c
  - name: d
    endpoints: []
)";

TEST(ConfigErrorsTest, ClusterWithoutEndpoints) {
  EXPECT_EQ(errorsOf(kNoEndpoints),
            (std::vector<std::string>{
                "t.yaml:6:5: cluster \"c\" has no endpoints; add at least one under "
                "\"endpoints\", e.g. { address: 127.0.0.1:8080 } (only a proxy with a "
                "control_plane may leave them out)",
                "t.yaml:8:16: cluster \"d\" has no endpoints; add at least one, e.g. "
                "{ address: 127.0.0.1:8080 } (only a proxy with a control_plane may leave them "
                "out)"}));
  // A control plane fills endpoints in.
  EXPECT_TRUE(noErrors(before("control_plane: { address: 127.0.0.1:18000 }\n", kNoEndpoints)));
}

TEST(ConfigErrorsTest, EveryEndpointWeightZero) {
  EXPECT_TRUE(onlyError(R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes: [{ cluster: c }]
clusters:
  - name: c
    endpoints: [{ address: a:1, weight: 0 }, { address: b:1, weight: 0 }]
)",
                        "7:16",
                        "every endpoint of cluster \"c\" has weight 0, so none would get "
                        "traffic; give at least one a weight > 0"));
  EXPECT_TRUE(noErrors(with(kClusterLast,
                            "  - name: d\n"
                            "    endpoints: [{ address: a:1, weight: 0 }, "
                            "{ address: b:1, weight: 1 }]\n")));
}

TEST(ConfigErrorsTest, DuplicateEndpoint) {
  EXPECT_TRUE(onlyError(with(kClusterLast,
                             "  - name: d\n"
                             "    endpoints: [{ address: a:1 }, { address: a:1 }]\n"),
                        "10:35", "endpoint a:1 appears twice in cluster \"d\" (first at line 10)"));
}

TEST(ConfigErrorsTest, EveryRouteClusterWeightZero) {
  EXPECT_TRUE(onlyError(R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes:
      - clusters: [{ name: c, weight: 0 }]
)",
                        "8:19",
                        "every cluster of the route has weight 0, so no request could be sent; "
                        "give at least one a weight > 0"));
  EXPECT_TRUE(
      onlyError(with(kRouteLast, "      - clusters: []\n"), "9:19", "\"clusters\" is empty"));
}

TEST(ConfigErrorsTest, RetryAttemptsAndBackoff) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { attempts: 0 }\n"), "9:28",
                        "\"attempts\" must be at least 1, got 0"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { backoff: { base: 1s, max: 100ms } }\n"),
                        "9:27", "backoff \"base\" (1s) must not be greater than \"max\" (100ms)"));
  // Against the default max (250ms).
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { backoff: { base: 500ms } }\n"), "9:27",
                        "backoff \"base\" (500ms) must not be greater than \"max\" (250ms)"));
}

TEST(ConfigErrorsTest, RetryBudgetRatio) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { budget: { ratio: 1.5 } }\n"), "9:35",
                        "\"ratio\" must be between 0 and 1, got 1.5"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { budget: { ratio: -0.1 } }\n"), "9:35",
                        "\"ratio\" must be between 0 and 1, got -0.1"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        retry: { budget: { ratio: lots } }\n"), "9:35",
                        "\"ratio\" must be a number, got \"lots\""));
}

TEST(ConfigErrorsTest, CircuitBreakerPercentages) {
  const std::string prefix = "    circuit_breaker: { failure_rate: { threshold_percent: ";
  EXPECT_TRUE(onlyError(with(kClusterLast, prefix + "0 } }\n"), "9:59",
                        "\"threshold_percent\" must be between 1 and 100, got 0"));
  EXPECT_TRUE(onlyError(with(kClusterLast, prefix + "101 } }\n"), "9:59",
                        "\"threshold_percent\" must be between 1 and 100, got 101"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    circuit_breaker: { max_ejection_percent: 101 }\n"),
                        "9:46", "\"max_ejection_percent\" must be between 0 and 100, got 101"));
}

TEST(ConfigErrorsTest, FallbackStatus) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "        fallback: { status: 600 }\n"), "9:29",
                        "\"status\" must be between 200 and 599, got 600"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        fallback: { status: 199 }\n"), "9:29",
                        "\"status\" must be between 200 and 599, got 199"));
}

TEST(ConfigErrorsTest, ListenerWithoutRoutes) {
  EXPECT_EQ(errorsOf(R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 127.0.0.1:15001
  - name: m
    address: 127.0.0.1:15002
    routes: []
)"),
            (std::vector<std::string>{
                "t.yaml:5:5: listener \"l\" has no routes; add at least one under \"routes\", "
                "e.g. { match: { prefix: / }, cluster: NAME }",
                "t.yaml:9:13: listener \"m\" has no routes; add at least one under \"routes\", "
                "e.g. { match: { prefix: / }, cluster: NAME }"}));
}

TEST(ConfigErrorsTest, NoListeners) {
  const std::string clusters = "clusters:\n  - name: c\n    endpoints: [{ address: a:1 }]\n";
  EXPECT_TRUE(onlyError(clusters, "1:1",
                        "no listeners; add at least one under \"listeners\" (only a proxy with a "
                        "control_plane may start without)"));
  EXPECT_TRUE(onlyError("listeners: []\n" + clusters, "1:12", "no listeners;"));
  EXPECT_TRUE(noErrors("control_plane: { address: 127.0.0.1:18000 }\n" + clusters));
  EXPECT_TRUE(noErrors("control_plane: { address: 127.0.0.1:18000 }\nlisteners: []\n"));
  // An empty file has no position to point at.
  EXPECT_EQ(errorsOf(""), std::vector<std::string>{
                              "t.yaml: no listeners; add at least one under \"listeners\" (only a "
                              "proxy with a control_plane may start without)"});
  EXPECT_EQ(errorsOf("# nothing but a comment\n").size(), 1u);
}

TEST(ConfigErrorsTest, Tls) {
  EXPECT_TRUE(onlyError(with(kRouteLast, "    tls: { cert_file: /c.pem }\n"), "9:10",
                        "listener tls needs both \"cert_file\" and \"key_file\""));
  EXPECT_TRUE(onlyError(with(kRouteLast, "    tls: { client_ca_file: /ca.pem }\n"), "9:10",
                        "listener tls has no certificate"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "    tls: { certificates: [{ cert_file: /c.pem }] }\n"),
                        "9:27", "missing required key \"key_file\" in certificate"));
  EXPECT_TRUE(noErrors(with(kRouteLast, "    tls: { certificates: [{ cert_file: /c.pem, key_file: "
                                        "/k.pem }] }\n")));
  EXPECT_TRUE(onlyError(with(kRouteLast, "    tls: { cert_file: \"\", key_file: /k.pem }\n"),
                        "9:23", "\"cert_file\" must not be empty"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "    tls: { cert_file: /c.pem }\n"), "9:10",
                        "upstream tls needs both \"cert_file\" and \"key_file\""));
  EXPECT_TRUE(noErrors(with(kClusterLast, "    tls: { sni: x.internal }\n")));
}

TEST(ConfigErrorsTest, ClientIdentityNeedsMutualTls) {
  const std::string base = R"(
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
listeners:
  - name: l
    address: 127.0.0.1:15001
)";
  const std::string routes = R"(    routes:
      - match: { prefix: /, client_identity: "spiffe://mesh/web" }
        cluster: c
)";
  EXPECT_TRUE(onlyError(yaml(base + routes), "8:9",
                        "route \"l/0\" matches on \"client_identity\" but listener \"l\" does "
                        "not verify client certificates"));
  EXPECT_TRUE(noErrors(yaml(base + "    tls: { cert_file: /c, key_file: /k, client_ca_file: /ca }\n" +
                            routes)));
}

TEST(ConfigErrorsTest, InvalidNames) {
  EXPECT_TRUE(onlyError(
      R"(
listeners:
  - name: l
    address: 127.0.0.1:15001
    routes: [{ cluster: "c d" }]
clusters:
  - name: "c d"
    endpoints: [{ address: a:1 }]
)",
      "6:11", "invalid cluster name \"c d\"; use only letters, digits, '-', '_' and '.'"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "  - endpoints: [{ address: a:1 }]\n"), "9:5",
                        "missing required key \"name\" in cluster"));
}

TEST(ConfigErrorsTest, MissingRequiredKeys) {
  EXPECT_TRUE(onlyError(before("control_plane: { token_file: /t }\n", kClusterLast), "1:16",
                        "missing required key \"address\" in control_plane"));
  EXPECT_TRUE(onlyError(before("access_log: {}\n", kClusterLast), "1:13",
                        "missing required key \"path\" in access_log"));
  EXPECT_TRUE(onlyError(with(kRouteLast, "        rate_limit: { burst: 5 }\n"), "9:21",
                        "missing required key \"requests_per_second\" in rate_limit"));
  EXPECT_TRUE(onlyError(with(kClusterLast, "  - name: d\n    endpoints: [{ weight: 1 }]\n"),
                        "10:17", "missing required key \"address\" in endpoint"));
}

TEST(ConfigErrorsTest, MoreThanOneDocument) {
  EXPECT_TRUE(onlyError(with(kClusterLast, "---\nworkers: 1\n"), "10:1",
                        "a config file holds one YAML document"));
}

// --- whole files ------------------------------------------------------------------------

TEST(ConfigErrorsTest, EveryErrorOfAFileIsReportedInFileOrder) {
  const std::string path = REMORA_CONFIG_TESTDATA_DIR "/many_errors.yaml";
  const LoadResult r = loadFile(path);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.config, nullptr);
  std::vector<std::string> got;
  for (const ConfigError& e : r.errors) got.push_back(e.format());
  const std::vector<std::string> want = {
      path + ":2:10: \"workers\" must be an integer, got \"many\"",
      path +
          ":5:14: invalid address \"127.0.0.1:99999\" for \"address\"; expected host:port "
          "with a port from 1 to 65535 (IPv6: [::1]:8080)",
      path + ":7:26: \"prefix\" must start with '/', got \"api\"",
      path + ":8:18: unknown cluster \"ordrs\" in route; defined clusters: orders, payments",
      path + ":9:28: \"attempts\" must be at least 1, got 0",
      path +
          ":12:16: unknown lb_policy \"fastest\"; use one of: round_robin, "
          "weighted_round_robin, random, least_request",
      path + ":13:22: invalid duration \"-1s\" for \"connect_timeout\": must not be negative",
      path +
          ":15:7: every endpoint of cluster \"orders\" has weight 0, so none would get "
          "traffic; give at least one a weight > 0",
      path + ":16:46: \"max_ejection_percent\" must be between 0 and 100, got 150",
  };
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.formatErrors().size(), [&] {
    size_t n = 0;
    for (const std::string& s : want) n += s.size() + 1;
    return n;
  }());
}

TEST(ConfigErrorsTest, SyntaxErrorHasItsPosition) {
  EXPECT_EQ(errorsOf("listeners: [\n"),
            std::vector<std::string>{"t.yaml:2:1: YAML syntax error: end of sequence flow not "
                                     "found"});
  EXPECT_EQ(errorsOf("workers: 1: 2\n"),
            std::vector<std::string>{"t.yaml:1:11: YAML syntax error: illegal map value"});
}

TEST(ConfigErrorsTest, MissingFileNamesPathAndReason) {
  LoadResult r = loadFile("/nonexistent/remora.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.formatErrors(),
            "/nonexistent/remora.yaml: cannot read config file: No such file or directory\n");
  r = loadFile(REMORA_CONFIG_TESTDATA_DIR);
  EXPECT_EQ(r.formatErrors(),
            REMORA_CONFIG_TESTDATA_DIR ": cannot read config file: Is a directory\n");
}

// --- the building blocks for the control plane and the proxy ------------------------------

TEST(ParseClusterTest, ParsesJson) {
  std::vector<ConfigError> errors;
  const YAML::Node node =
      YAML::Load(R"({"name": "orders", "lb_policy": "random", "connect_timeout": "250ms",)"
                 R"( "endpoints": [{"address": "10.0.0.1:80", "weight": 2}],)"
                 R"( "circuit_breaker": {"consecutive_failures": 3}})");
  const std::optional<Cluster> c = parseCluster(node, "<request>", errors, true);
  ASSERT_TRUE(c) << errors.size();
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(c->name, "orders");
  EXPECT_EQ(c->lb_policy, LbPolicy::Random);
  EXPECT_EQ(c->connect_timeout, Duration(250));
  ASSERT_EQ(c->endpoints.size(), 1u);
  EXPECT_EQ(c->endpoints[0].address.str(), "10.0.0.1:80");
  EXPECT_EQ(c->endpoints[0].weight, 2u);
  ASSERT_TRUE(c->circuit_breaker);
  EXPECT_EQ(c->circuit_breaker->consecutive_failures, 3u);
}

TEST(ParseClusterTest, EndpointsAreOptionalOnlyWhenAsked) {
  const YAML::Node node = YAML::Load(R"({"name": "orders"})");
  std::vector<ConfigError> errors;
  EXPECT_TRUE(parseCluster(node, "<request>", errors, false));
  EXPECT_TRUE(errors.empty());
  EXPECT_FALSE(parseCluster(node, "<request>", errors, true));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].format(),
            "<request>:1:1: cluster \"orders\" has no endpoints; add at least one under "
            "\"endpoints\", e.g. { address: 127.0.0.1:8080 } (only a proxy with a control_plane "
            "may leave them out)");
}

TEST(ParseClusterTest, ReportsEveryErrorWithJsonPositions) {
  std::vector<ConfigError> errors;
  const YAML::Node node =
      YAML::Load(R"({"name": "o", "lb_policy": "best", "endpoints": [{"address": "x"}]})");
  EXPECT_FALSE(parseCluster(node, "<request>", errors, false));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].format(),
            "<request>:1:28: unknown lb_policy \"best\"; use one of: "
            "round_robin, weighted_round_robin, random, least_request");
  EXPECT_EQ(errors[1].loc.column, 62);
  EXPECT_NE(errors[1].reason.find("invalid address \"x\""), std::string::npos);

  errors.clear();
  EXPECT_FALSE(parseCluster(YAML::Load("[1, 2]"), "<request>", errors, false));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].format(), "<request>:1:1: cluster must be a map, got a list");
}

TEST(ValidateReferencesTest, RechecksAConfigWhoseClustersChanged) {
  ConfigConstSharedPtr loaded = load(kClusterLast);
  ASSERT_NE(loaded, nullptr);
  // What the proxy does with a control-plane snapshot: swap the clusters, check again.
  Config c = *loaded;
  c.clusters[0].name = "other";
  std::vector<ConfigError> errors;
  validateReferences(c, errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].format(),
            "t.yaml:5:18: unknown cluster \"c\" in route; defined clusters: other");

  errors.clear();
  validateReferences(c, errors, ReferenceCheckOptions{.allow_unknown_clusters = true});
  EXPECT_TRUE(errors.empty());

  c.clusters.clear();
  validateReferences(c, errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].reason,
            "unknown cluster \"c\" in route; no clusters are defined; add it under \"clusters\"");
}

TEST(ControlPlaneReferencesTest, RoutesMayNameClustersOnlyTheControlPlaneDefines) {
  const std::string routes = R"(listeners:
  - name: in
    address: 127.0.0.1:15001
    routes: [ { match: { prefix: / }, cluster: orders } ]
)";
  // Without a control plane the route's cluster must be in the file...
  EXPECT_FALSE(noErrors(routes));
  // ...with one, the control plane supplies it (the proxy re-checks every pushed snapshot).
  EXPECT_TRUE(noErrors("control_plane: { address: 127.0.0.1:18000 }\n" + routes));
}

TEST(SortErrorsTest, OrdersByPositionAndKeepsUnknownLast) {
  // Built field by field: brace-initialising the nested SourceLoc makes GCC 12 warn
  // (-Wmaybe-uninitialized, a false positive in its inlined std::string copy).
  std::vector<ConfigError> errors;
  for (auto [line, column, reason] : {std::tuple{0, 0, "nowhere"}, std::tuple{3, 1, "c"},
                                      std::tuple{1, 9, "b"}, std::tuple{1, 2, "a"}}) {
    ConfigError& e = errors.emplace_back();
    e.loc.file.push_back('f');
    e.loc.line = line;
    e.loc.column = column;
    e.reason = reason;
  }
  sortErrors(errors);
  EXPECT_EQ(errors[0].reason, "a");
  EXPECT_EQ(errors[1].reason, "b");
  EXPECT_EQ(errors[2].reason, "c");
  EXPECT_EQ(errors[3].reason, "nowhere");
}

}  // namespace
}  // namespace remora::config
