// The proxy's side of discovery without a proxy: DiscoveryClient::parseLine (the snapshot split
// into its clusters' texts by a strict JSON scanner), PushedClusters (clusters parsed from the JSON
// tree, unchanged ones not at all), and a DiscoveryClient against an in-process fake control
// plane (ACKs and NACKs with their reason, all on one keep-alive connection).

#include "discovery_client.h"

#include <gtest/gtest.h>
#include <uv.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http/simple_server.h"
#include "remora/config/json.h"
#include "remora/config/parser.h"

namespace remora {
namespace {

using json = nlohmann::json;

std::string cluster(const std::string& name, int endpoints, int first_octet = 1) {
  json eps = json::array();
  for (int i = 0; i < endpoints; ++i) {
    eps.push_back(
        {{"address", "10.0." + std::to_string(first_octet) + "." + std::to_string(i + 1) + ":8080"},
         {"weight", 1}});
  }
  return json{{"name", name}, {"lb_policy", "weighted_round_robin"}, {"endpoints", eps}}.dump();
}

std::string snapshotLine(const std::string& version, const std::vector<std::string>& clusters) {
  std::string out =
      "{\"version\":\"" + version + "\",\"nonce\":\"n" + version + "\",\"clusters\":[";
  for (size_t i = 0; i < clusters.size(); ++i) out += (i ? "," : "") + clusters[i];
  return out + "]}";
}

// ------------------------------------------------------------------------------------ parseLine

TEST(ParseLineTest, SplitsASnapshotIntoItsClustersTexts) {
  const std::string a = cluster("a", 3);
  const std::string b = cluster("b", 2, 2);
  std::string error;
  auto u = DiscoveryClient::parseLine(snapshotLine("42", {a, b}), error);
  ASSERT_TRUE(u);
  EXPECT_EQ(error, "");
  EXPECT_EQ(u->version, "42");
  EXPECT_EQ(u->nonce, "n42");
  ASSERT_EQ(u->clusters.size(), 2u);
  EXPECT_EQ(u->clusters[0], a);
  EXPECT_EQ(u->clusters[1], b);
}

TEST(ParseLineTest, ToleratesWhitespaceAndKeyOrderAndKeepsTheLastOfARepeatedKey) {
  std::string error;
  auto u = DiscoveryClient::parseLine(
      " { \"clusters\" : [ {\"name\":\"x\"} , { \"name\" : \"y\" } ] ,\t\"nonce\":\"abc\","
      "\"version\":\"1\", \"extra\": {\"deep\": [1, -2.5e3, true, null, \"s\"]},"
      "\"version\":\"2\" }\r",
      error);
  ASSERT_TRUE(u);
  EXPECT_EQ(error, "");
  EXPECT_EQ(u->version, "2");
  EXPECT_EQ(u->nonce, "abc");
  ASSERT_EQ(u->clusters.size(), 2u);
  EXPECT_EQ(u->clusters[0], "{\"name\":\"x\"}");
  EXPECT_EQ(u->clusters[1], "{ \"name\" : \"y\" }");
}

TEST(ParseLineTest, VersionAndNonceOfOtherTypesAreTheirJson) {
  std::string error;
  auto u =
      DiscoveryClient::parseLine(R"({"version": 7, "nonce": "a\u0062c", "clusters": []})", error);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->version, "7");
  EXPECT_EQ(u->nonce, "abc");
  EXPECT_TRUE(u->clusters.empty());
  u = DiscoveryClient::parseLine(R"({"ver\u0073ion": 1.50, "nonce": null})", error);
  ASSERT_TRUE(u) << "an escaped key is still \"version\"";
  EXPECT_EQ(u->version, "1.5");
  EXPECT_EQ(u->nonce, "null");
}

TEST(ParseLineTest, HeartbeatsAreNotUpdates) {
  std::string error = "stale";
  EXPECT_FALSE(DiscoveryClient::parseLine(R"({"heartbeat":true})", error));
  EXPECT_EQ(error, "");
}

TEST(ParseLineTest, ClustersThatAreNotAListAreNacked) {
  std::string error;
  auto u = DiscoveryClient::parseLine(R"({"version":"3","nonce":"n","clusters":{"a":1}})", error);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->version, "3");
  EXPECT_EQ(error, "\"clusters\" is not an array");
}

std::string withNul(const std::string& before, const std::string& after) {
  return before + std::string(1, '\0') + after;
}

// Whatever the scanner accepts, a JSON parser accepts, and the other way round (for objects).
TEST(ParseLineTest, AcceptsExactlyTheJsonObjects) {
  const std::vector<std::string> inputs = {
      R"({"version":"1"})",
      R"({})",
      R"([])",
      R"("s")",
      R"(1)",
      R"()",
      R"(   )",
      R"({"version":"1"} x)",
      R"({"version":"1"}})",
      R"({"version":"1",})",
      R"({"version" "1"})",
      R"({"version":})",
      R"({version:"1"})",
      R"({'version':'1'})",
      R"({"version":"1","clusters":[1,]})",
      R"({"version":"1","clusters":[,1]})",
      R"({"version":"1","clusters":[{"a":1}{"b":2}]})",
      R"({"version":"1","clusters":[{"a":1]})",
      R"({"version":"1","clusters":[[[[]]]]})",
      R"({"version":"1","x":01})",
      R"({"version":"1","x":1.})",
      R"({"version":"1","x":.5})",
      R"({"version":"1","x":-})",
      R"({"version":"1","x":-0})",
      R"({"version":"1","x":1e})",
      R"({"version":"1","x":1E+9})",
      R"({"version":"1","x":+1})",
      R"({"version":"1","x":tru})",
      R"({"version":"1","x":truex})",
      R"({"version":"1","x":nul})",
      R"({"version":"1","x":NaN})",
      R"({"version":"1","x":"\x"})",
      R"({"version":"1","x":"\u12"})",
      R"({"version":"1","x":"\u12g4"})",
      R"({"version":"1","x":"\ud800"})",
      R"({"version":"1","x":"\udc00"})",
      R"({"version":"1","x":"\ud83d\ude00"})",
      R"({"version":"1","x":"\ud83d\u0041"})",
      R"({"version":"1","x":"\/\b\f\n\r\t\"\\"})",
      std::string("{\"version\":\"1\",\"x\":\"a\tb\"}"),
      std::string("{\"version\":\"1\",\"x\":\"\xc3\xa9\"}"),
      std::string("{\"version\":\"1\",\"x\":\"\xc3\"}"),
      std::string("{\"version\":\"1\",\"x\":\"\xed\xa0\x80\"}"),
      std::string("{\"version\":\"1\",\"x\":\"\xf4\x90\x80\x80\"}"),
      std::string("{\"version\":\"1\",\"x\":\"\xff\"}"),
      withNul("{\"version\":\"1\",\"x\":\"a", "b\"}"),
      withNul("{\"version\":\"1\"", "}"),
      R"({"version":"1","x":{"a":{"b":{"c":[{"d":null}]}}}})",
      R"({"version":"1","x":{"a" : 1 , "b" : [ 1 , 2 ] }})",
      R"({"version":"1","x":{"a":1,}})",
      R"({"version":"1","x":{,"a":1}})",
      R"({"version":"1","x":{"a":1 "b":2}})",
      R"({"version":"1","x":{1:2}})",
  };
  for (const std::string& in : inputs) {
    const json j = json::parse(in, nullptr, false);
    const bool want = !j.is_discarded() && j.is_object();
    std::string error;
    const auto u = DiscoveryClient::parseLine(in, error);
    const bool got = u.has_value() || error.empty();
    EXPECT_EQ(got, want) << "input: "
                         << json(in).dump(-1, ' ', false, json::error_handler_t::replace)
                         << " error: " << error;
  }
}

TEST(ParseLineTest, DeepNestingIsRefusedWithoutRecursion) {
  std::string deep = R"({"version":"1","x":)";
  deep += std::string(200000, '[');
  std::string error;
  EXPECT_FALSE(DiscoveryClient::parseLine(deep, error));
  EXPECT_EQ(error, "a line that is not a JSON object");
  deep += std::string(200000, ']') + "}";
  EXPECT_TRUE(DiscoveryClient::parseLine(deep, error));
  EXPECT_EQ(error, "");
}

// nlohmann's dump() recurses once per level: a deeply nested version or nonce is reported as the
// text it came as, never parsed and dumped (a few hundred KiB of "[[[..." overflowed the stack).
TEST(ParseLineTest, ADeeplyNestedVersionIsReportedAsItsTextWithoutRecursion) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  std::string error;
  auto u = DiscoveryClient::parseLine(R"({"version":)" + deep + R"(,"nonce":)" + deep + "}", error);
  ASSERT_TRUE(u);
  EXPECT_EQ(error, "");
  EXPECT_EQ(u->version, deep);
  EXPECT_EQ(u->nonce, deep);
  auto shallow = DiscoveryClient::parseLine(R"({"version":[[1]],"nonce":"n"})", error);
  ASSERT_TRUE(shallow);
  EXPECT_EQ(shallow->version, "[[1]]");  // dumped as before
}

// The discovery fuzzer's seeds (tests/fuzz/corpus/discovery_fuzzer): the scanner agrees with a
// JSON parser on each, and nothing throws on the way to the validator.
TEST(ParseLineTest, FuzzerSeedsAgreeWithAJsonParser) {
  size_t seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(REMORA_DISCOVERY_CORPUS_DIR)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ++seeds;
    const json j = json::parse(input, nullptr, false);
    const bool want = !j.is_discarded() && j.is_object();
    std::string error;
    std::optional<DiscoveryClient::Update> u;
    ASSERT_NO_THROW(u = DiscoveryClient::parseLine(input, error)) << entry.path();
    EXPECT_EQ(u.has_value() || error.empty(), want) << entry.path() << ": " << error;
    if (u && error.empty()) {
      PushedClusters parser;
      std::vector<config::ConfigError> errors;
      EXPECT_NO_THROW(parser.parse(*u, errors)) << entry.path();
      for (const auto& e : errors) EXPECT_FALSE(e.reason.empty()) << entry.path();
    }
  }
  EXPECT_GT(seeds, 5u);
}

// -------------------------------------------------------------------------------- PushedClusters

DiscoveryClient::Update update(const std::string& version, std::vector<std::string> clusters) {
  DiscoveryClient::Update u;
  u.version = version;
  u.nonce = "n" + version;
  u.clusters = std::move(clusters);
  return u;
}

TEST(PushedClustersTest, ParsesFromJsonAndSkipsUnchangedClusters) {
  PushedClusters parser;
  std::vector<config::ConfigError> errors;
  const std::string a = cluster("a", 100);
  const std::string b = cluster("b", 100, 2);
  std::vector<config::Cluster> first = parser.parse(update("1", {a, b}), errors);
  ASSERT_TRUE(errors.empty()) << errors[0].format();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(parser.lastParsed(), 2u);
  EXPECT_EQ(first[0].name, "a");
  EXPECT_EQ(first[0].endpoints.size(), 100u);
  EXPECT_EQ(first[0].lb_policy, config::LbPolicy::WeightedRoundRobin);

  // One cluster changed: only that one is parsed; the result is what a fresh parse gives.
  const std::string b2 = cluster("b", 101, 2);
  std::vector<config::Cluster> second = parser.parse(update("2", {a, b2}), errors);
  ASSERT_TRUE(errors.empty());
  EXPECT_EQ(parser.lastParsed(), 1u);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1].endpoints.size(), 101u);
  PushedClusters fresh;
  std::vector<config::Cluster> again = fresh.parse(update("2", {a, b2}), errors);
  ASSERT_EQ(again.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(config::toJson(second[i]), config::toJson(again[i]));

  // Nothing changed: nothing parsed.
  parser.parse(update("3", {a, b2}), errors);
  EXPECT_EQ(parser.lastParsed(), 0u);
}

// The pushed JSON goes through the same validator as a file: the same reasons as the former path
// (the cluster's JSON text read by yaml-cpp), without positions (JSON has none).
TEST(PushedClustersTest, ABadClusterIsRefusedWithTheValidatorsReason) {
  PushedClusters parser;
  std::vector<config::ConfigError> errors;
  const std::string bad =
      R"({"name":"a","lb_policy":"best","endpoints":[{"address":"10.0.0.1:80","weight":"x"}]})";
  EXPECT_TRUE(parser.parse(update("1", {cluster("ok", 2), bad}), errors).size() == 1);
  ASSERT_EQ(errors.size(), 2u);
  std::vector<config::ConfigError> yaml_errors;
  EXPECT_FALSE(config::parseCluster(YAML::Load(bad), "control-plane", yaml_errors, false));
  ASSERT_EQ(yaml_errors.size(), 2u);
  for (size_t i = 0; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i].reason, yaml_errors[i].reason);
    EXPECT_EQ(errors[i].loc.line, 0);
  }
  EXPECT_EQ(errors[0].format(),
            "control-plane: unknown lb_policy \"best\"; use one of: round_robin, "
            "weighted_round_robin, random, least_request");
  EXPECT_EQ(errors[1].format(), "control-plane: \"weight\" must be an integer, got \"x\"");
}

// A cluster nested too deep for the validator (whose messages dump() values, recursively) is
// NACKed with the reason, the other clusters of the push read as usual.
TEST(PushedClustersTest, AClusterNestedTooDeepIsRefusedWithoutRecursion) {
  PushedClusters parser;
  std::vector<config::ConfigError> errors;
  const std::string deep = R"({"name":"deep","lb_policy":)" + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  EXPECT_EQ(parser.parse(update("1", {cluster("ok", 2), deep}), errors).size(), 1u);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].reason.find("more than 64 levels deep"), std::string::npos)
      << errors[0].reason;
}

// ------------------------------------------------------------------ DiscoveryClient, end to end

// A fake control plane on the test's loop: serves `lines` on /v1/discovery and records ACKs.
class FakeControlPlane {
 public:
  FakeControlPlane(uv_loop_t* loop, std::vector<std::string> lines)
      : lines_(std::move(lines)),
        server_(loop, [this](const http::SimpleRequest& req, const http::ResponderSharedPtr& r) {
          handle(req, r);
        }) {
    EXPECT_EQ(server_.listen({"127.0.0.1", 0}), 0);
  }
  uint16_t port() const { return server_.boundPort(); }
  const std::vector<json>& acks() const { return acks_; }
  size_t connections() const { return server_.connectionCount(); }
  void close() {
    stream_.reset();
    server_.close();
  }

 private:
  void handle(const http::SimpleRequest& req, const http::ResponderSharedPtr& r) {
    if (req.method == "GET" && req.path == "/v1/discovery") {
      stream_ = r->startStream(200, "application/x-ndjson");
      // Everything at once: several lines in one chunk, the proxy splits them.
      std::string all;
      for (const std::string& l : lines_) all += l + "\n";
      stream_->write(std::move(all));
      return;
    }
    if (req.method == "POST" && req.path == "/v1/discovery/ack") {
      acks_.push_back(json::parse(req.body, nullptr, false));
      r->respond(http::SimpleResponse::json(200, R"({"accepted":true})"));
      return;
    }
    r->respond(http::SimpleResponse::text(404, "no"));
  }

  std::vector<std::string> lines_;
  http::SimpleHttpServer server_;
  http::ResponseStreamSharedPtr stream_;
  std::vector<json> acks_;
};

// Runs `loop` until `done()` or 10 s.
bool runUntil(uv_loop_t* loop, const std::function<bool()>& done) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 5, 5);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return done();
}

TEST(DiscoveryClientTest, AcksAndNacksWithTheReasonOnOneConnection) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    const std::string a = cluster("a", 50);
    const std::string b = cluster("b", 50, 2);
    const std::string bad = R"({"name":"b","lb_policy":"best"})";
    FakeControlPlane cp(
        &loop, {R"({"heartbeat":true})", snapshotLine("1", {a, b}), snapshotLine("2", {a, bad}),
                snapshotLine("3", {a, cluster("b", 51, 2)})});
    PushedClusters parser;
    std::vector<size_t> parsed;
    std::vector<size_t> sizes;
    DiscoveryClient client(&loop, {"127.0.0.1", cp.port()}, "node-1", "",
                           [&](const DiscoveryClient::Update& u) -> std::string {
                             std::vector<config::ConfigError> errors;
                             std::vector<config::Cluster> clusters = parser.parse(u, errors);
                             parsed.push_back(parser.lastParsed());
                             if (!errors.empty()) return errors.front().format();
                             sizes.push_back(clusters.at(1).endpoints.size());
                             return {};
                           });
    client.start();
    ASSERT_TRUE(runUntil(&loop, [&] { return cp.acks().size() == 3; }))
        << cp.acks().size() << " ACK(s)";
    EXPECT_TRUE(client.connected());
    // The discovery stream and one keep-alive connection for all three ACKs.
    EXPECT_EQ(cp.connections(), 2u);
    EXPECT_EQ(cp.acks()[0], json({{"node", "node-1"}, {"version", "1"}, {"nonce", "n1"}}));
    EXPECT_EQ(cp.acks()[1]["version"], "2");
    EXPECT_EQ(cp.acks()[1]["nonce"], "n2");
    EXPECT_EQ(cp.acks()[1]["error"],
              "control-plane: unknown lb_policy \"best\"; use one of: round_robin, "
              "weighted_round_robin, random, least_request")
        << "a NACK carries the validator's reason";
    EXPECT_EQ(cp.acks()[2], json({{"node", "node-1"}, {"version", "3"}, {"nonce", "n3"}}));
    EXPECT_EQ(parsed, (std::vector<size_t>{2, 1, 1})) << "unchanged clusters are not parsed";
    EXPECT_EQ(sizes, (std::vector<size_t>{50, 51}));
    client.stop();
    cp.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace remora
