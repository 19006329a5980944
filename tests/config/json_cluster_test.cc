// parseCluster() on an nlohmann::json tree (a cluster pushed by the control plane) against the
// same cluster read by yaml-cpp from its JSON text (the former proxy path, and what the control
// plane does with a policy): one validator, the same values, the same error reasons in the same
// order; JSON errors carry no position.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "remora/config/json.h"
#include "remora/config/parser.h"

namespace remora::config {
namespace {

using json = nlohmann::json;

struct Parsed {
  std::optional<Cluster> cluster;
  std::vector<ConfigError> errors;
};

Parsed fromJson(const json& j, bool endpoints_required = false) {
  Parsed p;
  p.cluster = parseClusterJson(j, "control-plane", p.errors, endpoints_required);
  return p;
}

// What the proxy did before: the cluster's JSON text (nlohmann's dump, so keys sorted) read by
// yaml-cpp.
Parsed viaYaml(const json& j, bool endpoints_required = false) {
  Parsed p;
  p.cluster = parseCluster(YAML::Load(j.dump()), "control-plane", p.errors, endpoints_required);
  return p;
}

std::vector<std::string> reasons(const std::vector<ConfigError>& errors) {
  std::vector<std::string> out;
  for (const ConfigError& e : errors) out.push_back(e.reason);
  return out;
}

TEST(JsonClusterTest, AValidClusterReadsTheSameAsFromYaml) {
  const json j = json::parse(R"({
    "name": "orders", "lb_policy": "least_request", "connect_timeout": "250ms",
    "endpoints": [{"address": "10.0.0.1:80", "weight": 2}, {"address": "[::1]:8080"},
                  {"address": "localhost:81", "weight": "3"}],
    "limits": {"max_connections": 10, "max_pending_requests": 0, "max_requests": 5,
               "max_retries": 2},
    "bulkhead": {"max_concurrent_requests": 4, "max_queue": 8, "queue_timeout": "1s"},
    "circuit_breaker": {"consecutive_failures": 3,
                        "failure_rate": {"threshold_percent": 50, "window": "10s",
                                         "min_requests": 20},
                        "open_duration": "5s", "half_open_max_requests": 1,
                        "success_threshold": 2, "max_ejection_percent": 50},
    "health_check": {"path": "/health", "interval": "2s", "timeout": "1s",
                     "healthy_threshold": 2, "unhealthy_threshold": 3},
    "tls": {"ca_file": "/ca.pem", "sni": "orders.internal"}
  })");
  const Parsed a = fromJson(j);
  const Parsed b = viaYaml(j);
  ASSERT_TRUE(a.cluster) << a.errors[0].format();
  ASSERT_TRUE(b.cluster);
  EXPECT_EQ(toJson(*a.cluster), toJson(*b.cluster));
  EXPECT_EQ(a.cluster->endpoints[0].weight, 2u);
  EXPECT_EQ(a.cluster->endpoints[2].weight, 3u) << "a number written as a string, as in YAML";
  EXPECT_EQ(a.cluster->endpoints[1].address.host, "::1");
  ASSERT_TRUE(a.cluster->circuit_breaker && a.cluster->circuit_breaker->failure_rate);
  EXPECT_EQ(a.cluster->circuit_breaker->failure_rate->threshold_percent, 50u);
  EXPECT_EQ(a.cluster->loc.file, "control-plane");
  EXPECT_EQ(a.cluster->loc.line, 0);
}

TEST(JsonClusterTest, RoundTripsWhatTheControlPlanePushes) {
  // The control plane pushes config::toJson(cluster): reading it back gives the same cluster.
  const Parsed first = viaYaml(json::parse(
      R"({"name": "web", "endpoints": [{"address": "10.0.0.1:80"}, {"address": "10.0.0.2:80",
          "weight": 0}], "circuit_breaker": {"consecutive_failures": 5}})"));
  ASSERT_TRUE(first.cluster);
  const json pushed = toJson(*first.cluster);
  const Parsed back = fromJson(pushed);
  ASSERT_TRUE(back.cluster) << back.errors[0].format();
  EXPECT_EQ(toJson(*back.cluster), pushed);
}

// Every rule a cluster has, broken one way or another: the JSON tree and yaml-cpp report the same
// reasons in the same order.
TEST(JsonClusterTest, BadClustersGetTheSameErrorsAsFromYaml) {
  const std::vector<std::string> bad = {
      R"({"name": "a", "lb_policy": "best"})",
      R"({"name": "a", "lb_policy": 5})",
      R"({"name": "a b"})",
      R"({"name": ""})",
      R"({"name": [7], "endpoints": []})",
      R"({"name": null})",
      R"({"lb_policy": "random"})",
      R"({"name": "a", "nmae": "b"})",
      R"({"name": "a", "endpoint": []})",
      R"({"name": "a", "connect_timeout": 5})",
      R"({"name": "a", "connect_timeout": "0s"})",
      R"({"name": "a", "connect_timeout": "-1s"})",
      R"({"name": "a", "connect_timeout": "5 parsecs"})",
      R"({"name": "a", "connect_timeout": null})",
      R"({"name": "a", "endpoints": {"address": "10.0.0.1:80"}})",
      R"({"name": "a", "endpoints": "10.0.0.1:80"})",
      R"({"name": "a", "endpoints": [{"address": "x"}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:0"}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:70000"}]})",
      R"({"name": "a", "endpoints": [{"address": ["10.0.0.1:80"]}]})",
      R"({"name": "a", "endpoints": [{"weight": 1}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": -1}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": 1.5}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": 1e3}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": 5000000}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": 99999999999999999999}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": true}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": "x"}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "wieght": 1}]})",
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80", "weight": 0}]})",
      R"({"name": "a", "endpoints": [7, null, "s", []]})",
      R"({"name": "a", "limits": null})",
      R"({"name": "a", "limits": []})",
      R"({"name": "a", "limits": {"max_connections": 0, "max_requests": "many"}})",
      R"({"name": "a", "bulkhead": {"max_concurrent_requests": 0, "queue_timeout": "1"}})",
      R"({"name": "a", "circuit_breaker": {"failure_rate": {"threshold_percent": 0,
          "window": "0s"}, "open_duration": "0ms", "max_ejection_percent": 101}})",
      R"({"name": "a", "circuit_breaker": {"failure_rate": 5}})",
      R"({"name": "a", "health_check": {"path": "health", "interval": "0s",
          "healthy_threshold": 0}})",
      R"({"name": "a", "tls": {"cert_file": "/c.pem"}})",
      R"({"name": "a", "tls": {"sni": ""}})",
      R"({"name": "a", "tls": true})",
      R"({"name": "caf\u00e9"})",
      R"([1, 2])",
      R"("cluster")",
      R"(null)",
      R"(12)",
  };
  for (const std::string& text : bad) {
    const json j = json::parse(text);
    const Parsed a = fromJson(j);
    const Parsed b = viaYaml(j);
    EXPECT_FALSE(a.cluster) << text;
    EXPECT_FALSE(b.cluster) << text;
    EXPECT_FALSE(a.errors.empty()) << text;
    EXPECT_EQ(reasons(a.errors), reasons(b.errors)) << text;
    for (const ConfigError& e : a.errors) {
      EXPECT_EQ(e.loc.file, "control-plane") << text;
      EXPECT_EQ(e.loc.line, 0) << text << ": JSON has no positions";
      EXPECT_EQ(e.format(), "control-plane: " + e.reason);
    }
  }
}

TEST(JsonClusterTest, EndpointsRequiredOnlyWhenAsked) {
  const json j = json::parse(R"({"name": "orders"})");
  EXPECT_TRUE(fromJson(j, false).cluster);
  const Parsed p = fromJson(j, true);
  EXPECT_FALSE(p.cluster);
  EXPECT_EQ(reasons(p.errors), reasons(viaYaml(j, true).errors));
}

TEST(JsonClusterTest, DuplicateEndpointsWithoutPositionsSayNoLine) {
  const json j = json::parse(
      R"({"name": "a", "endpoints": [{"address": "10.0.0.1:80"}, {"address": "10.0.0.1:80"}]})");
  const Parsed p = fromJson(j);
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].format(),
            "control-plane: endpoint 10.0.0.1:80 appears twice in cluster \"a\"; list each "
            "address once and use \"weight\"");
  // From YAML, the message points at the first one.
  const Parsed y = viaYaml(j);
  ASSERT_EQ(y.errors.size(), 1u);
  EXPECT_NE(y.errors[0].reason.find("(first at line 1)"), std::string::npos) << y.errors[0].reason;
}

TEST(JsonClusterTest, ManyEndpointsParseWithoutQuadraticDuplicateChecks) {
  json eps = json::array();
  for (int i = 0; i < 20000; ++i) {
    eps.push_back(
        {{"address", "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                         std::to_string(i % 256) + ":80"}});
  }
  eps.push_back({{"address", "10.0.0.7:80"}});
  const Parsed p = fromJson(json{{"name", "big"}, {"endpoints", eps}});
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].reason.find("endpoint 10.0.0.7:80 appears twice"), std::string::npos);
}

}  // namespace
}  // namespace remora::config
