#include "remora/config/json.h"

#include <gtest/gtest.h>

#include <string>

#include "remora/config/config.h"

namespace remora::config {
namespace {

ConfigConstSharedPtr loadExample(const std::string& name) {
  const LoadResult r = loadFile(std::string(REMORA_CONFIG_EXAMPLES_DIR) + "/" + name);
  EXPECT_TRUE(r.ok()) << r.formatErrors();
  return r.config;
}

TEST(ConfigJsonTest, QuickstartShape) {
  ConfigConstSharedPtr c = loadExample("quickstart.yaml");
  ASSERT_NE(c, nullptr);
  const nlohmann::json j = toJson(*c);
  EXPECT_EQ(j["workers"], 2);
  EXPECT_EQ(j["log_level"], "info");
  EXPECT_EQ(j["drain_timeout"], "30s");
  EXPECT_EQ(j["admin"]["address"], "127.0.0.1:9901");
  EXPECT_FALSE(j.contains("control_plane"));
  EXPECT_FALSE(j.contains("access_log"));
  const nlohmann::json& l = j["listeners"][0];
  EXPECT_EQ(l["name"], "ingress");
  EXPECT_EQ(l["address"], "127.0.0.1:15001");
  EXPECT_EQ(l["idle_timeout"], "1m");
  EXPECT_EQ(l["request_headers_timeout"], "10s");
  EXPECT_EQ(l["max_request_headers_kb"], 60);
  const nlohmann::json& r = l["routes"][0];
  EXPECT_EQ(r["name"], "ingress/0");
  EXPECT_EQ(r["match"], (nlohmann::json{{"prefix", "/"}}));
  EXPECT_EQ(r["cluster"], "demo");
  EXPECT_EQ(r["timeout"], "5s");
  EXPECT_FALSE(r.contains("retry"));
  const nlohmann::json& cl = j["clusters"][0];
  EXPECT_EQ(cl["name"], "demo");
  EXPECT_EQ(cl["lb_policy"], "round_robin");
  EXPECT_EQ(cl["connect_timeout"], "1s");
  EXPECT_EQ(cl["endpoints"],
            nlohmann::json::parse(R"([{"address": "127.0.0.1:18081", "weight": 1}])"));
  EXPECT_EQ(cl["limits"]["max_retries"], 3);
}

TEST(ConfigJsonTest, TlsShape) {
  const LoadResult r = loadString(R"(
listeners:
  - name: in
    address: 127.0.0.1:15001
    tls:
      cert_file: /a.pem
      key_file: /a.key
      certificates: [{ cert_file: /b.pem, key_file: /b.key }]
      client_ca_file: /ca.pem
    routes: [{ match: { prefix: /, client_identity: "spiffe://mesh/*" }, cluster: c }]
clusters:
  - name: c
    endpoints: [{ address: 127.0.0.1:8080 }]
    tls: { ca_file: /ca.pem, sni: orders.internal }
)");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].format());
  const nlohmann::json j = toJson(*r.config);
  EXPECT_EQ(j["listeners"][0]["tls"], nlohmann::json::parse(R"({"cert_file": "/a.pem",
      "key_file": "/a.key", "certificates": [{"cert_file": "/b.pem", "key_file": "/b.key"}],
      "client_ca_file": "/ca.pem"})"));
  EXPECT_EQ(j["listeners"][0]["routes"][0]["match"]["client_identity"], "spiffe://mesh/*");
  EXPECT_EQ(j["clusters"][0]["tls"],
            nlohmann::json::parse(R"({"ca_file": "/ca.pem", "sni": "orders.internal"})"));
  // The dump loads back to the same config.
  const LoadResult again = loadString(j.dump(2), "dump.json");
  ASSERT_TRUE(again.config);
  EXPECT_EQ(toJson(*again.config), j);
}

TEST(ConfigJsonTest, FullShape) {
  ConfigConstSharedPtr c = loadExample("full.yaml");
  ASSERT_NE(c, nullptr);
  const nlohmann::json j = toJson(*c);
  EXPECT_EQ(j["node_id"], "orders-sidecar-1");
  EXPECT_EQ(j["drain_timeout"], "45s");
  EXPECT_EQ(j["control_plane"], nlohmann::json::parse(R"({"address": "127.0.0.1:18000",
                                      "token_file": "/etc/remora/token"})"));
  EXPECT_EQ(j["access_log"]["path"], "/var/log/remora/access.log");
  EXPECT_EQ(j["listeners"][0]["max_connections"], 20000);
  EXPECT_EQ(j["listeners"][1]["address"], "[::1]:15002");

  const nlohmann::json& api = j["listeners"][0]["routes"][0];
  EXPECT_EQ(api["match"], nlohmann::json::parse(R"({"prefix": "/api/", "method": "GET",
                                                    "headers": {"x-canary": "1"}})"));
  EXPECT_EQ(api["clusters"], nlohmann::json::parse(R"([{"name": "orders-v1", "weight": 90},
                                                       {"name": "orders-v2", "weight": 10}])"));
  EXPECT_FALSE(api.contains("cluster"));
  EXPECT_EQ(api["retry"], nlohmann::json::parse(R"({
      "attempts": 3,
      "on": ["connect-failure", "reset", "timeout", "gateway-error", "5xx",
             "retriable-status-codes"],
      "retriable_status_codes": [409],
      "per_try_timeout": "500ms",
      "backoff": {"base": "25ms", "max": "250ms"},
      "methods": ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"],
      "budget": {"ratio": 0.2, "min_retries_per_second": 10},
      "buffer_limit_kb": 64})"));
  EXPECT_EQ(api["rate_limit"],
            nlohmann::json::parse(R"({"requests_per_second": 1000, "burst": 200})"));
  EXPECT_EQ(api["fallback"], nlohmann::json::parse(R"({"status": 503,
      "body": "{\"error\":\"orders degraded\"}",
      "headers": {"content-type": "application/json"}})"));
  EXPECT_EQ(j["listeners"][0]["routes"][1]["fallback"],
            nlohmann::json::parse(R"({"cluster": "orders-readonly"})"));

  const nlohmann::json& v1 = j["clusters"][0];
  EXPECT_EQ(v1["lb_policy"], "least_request");
  EXPECT_EQ(v1["bulkhead"]["queue_timeout"], "150ms");
  EXPECT_EQ(v1["circuit_breaker"]["open_duration"], "1m");
  EXPECT_EQ(v1["circuit_breaker"]["failure_rate"],
            nlohmann::json::parse(R"({"threshold_percent": 40, "window": "20s",
                                      "min_requests": 25})"));
  EXPECT_EQ(v1["health_check"]["path"], "/ready");
  EXPECT_EQ(j["clusters"][1]["endpoints"][1]["address"], "[::1]:8084");
  EXPECT_EQ(j["clusters"][2]["endpoints"], nlohmann::json::array());
}

// The dump is what an operator copies back into a file: it must load into the same config.
TEST(ConfigJsonTest, DumpLoadsBackUnchanged) {
  for (const char* name : {"quickstart.yaml", "full.yaml"}) {
    SCOPED_TRACE(name);
    ConfigConstSharedPtr c = loadExample(name);
    ASSERT_NE(c, nullptr);
    const nlohmann::json first = toJson(*c);
    const LoadResult again = loadString(first.dump(2), "dump.json");
    ASSERT_TRUE(again.ok()) << again.formatErrors() << first.dump(2);
    EXPECT_EQ(toJson(*again.config), first);
  }
}

TEST(ConfigJsonTest, SingleCluster) {
  Cluster c;
  c.name = "x";
  c.endpoints.push_back(Endpoint{Address{"::1", 80}, 5, {}});
  const nlohmann::json j = toJson(c);
  EXPECT_EQ(j["name"], "x");
  EXPECT_EQ(j["endpoints"][0]["address"], "[::1]:80");
  EXPECT_EQ(j["endpoints"][0]["weight"], 5);
  EXPECT_FALSE(j.contains("bulkhead"));
  EXPECT_FALSE(j.contains("tls"));
}

TEST(JsonDepthTest, CountsNestingOutsideStrings) {
  EXPECT_FALSE(jsonNestsDeeperThan(R"({"a":[1,{"b":[]}]})", 4));  // 4 levels
  EXPECT_TRUE(jsonNestsDeeperThan(R"({"a":[1,{"b":[]}]})", 3));
  // Brackets in strings, escaped quotes included, are text.
  EXPECT_FALSE(jsonNestsDeeperThan(R"({"a":"[[[[\"[[[[{{{{"})", 1));
  EXPECT_FALSE(jsonNestsDeeperThan(std::string(64, '[') + std::string(64, ']')));
  EXPECT_TRUE(jsonNestsDeeperThan(std::string(65, '[')));
  EXPECT_FALSE(jsonNestsDeeperThan(""));
  EXPECT_FALSE(jsonNestsDeeperThan("]]]]"));  // not JSON: the parser says so, not this scan
}

}  // namespace
}  // namespace remora::config
