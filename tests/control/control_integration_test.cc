// remora-control end to end: the real binary over loopback (contract section 5).

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "control_process.h"
#include "stream_reader.h"
#include "util.h"

namespace remora::control::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// The next snapshot line of a discovery stream, skipping heartbeats; null on timeout.
json nextSnapshot(StreamReader& reader, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return nullptr;
    std::optional<std::string> line = reader.nextLine(left);
    if (!line) return nullptr;
    json j = json::parse(*line, nullptr, false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "not JSON: " << *line;
      return nullptr;
    }
    if (j.contains("clusters")) return j;
  }
}

const json* findCluster(const json& snapshot, const std::string& name) {
  for (const json& c : snapshot.at("clusters")) {
    if (c.at("name") == name) return &c;
  }
  return nullptr;
}

uint64_t versionOf(const json& j) { return std::stoull(j.at("version").get<std::string>()); }

std::string instanceBody(const std::string& address, int weight = 1,
                         const std::string& ttl = "30s") {
  return json{{"address", address}, {"weight", weight}, {"ttl", ttl}}.dump();
}

TEST(ControlIntegrationTest, RegistryHappyPath) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());

  JsonResponse r = cp.call(
      "PUT", "/v1/services/orders/instances/o1",
      json{{"address", "10.0.0.1:8080"}, {"weight", 3}, {"metadata", {{"zone", "a"}}}}.dump());
  ASSERT_EQ(r.status, 201) << r.raw;
  EXPECT_EQ(r.body["instance"]["status"], "UP");
  EXPECT_EQ(r.body["instance"]["ttl"], "30s") << "default_ttl applies";
  const uint64_t v1 = versionOf(r.body);

  r = cp.call("PUT", "/v1/services/orders/instances/o1", instanceBody("10.0.0.1:8080", 5));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_GT(versionOf(r.body), v1);
  ASSERT_EQ(
      cp.call("PUT", "/v1/services/orders/instances/o2", instanceBody("10.0.0.2:8080")).status,
      201);

  r = cp.get("/v1/services");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.body.size(), 1u);
  EXPECT_EQ(r.body[0]["name"], "orders");
  EXPECT_EQ(r.body[0]["instances"].size(), 2u);
  r = cp.get("/v1/services/orders");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["instances"][0]["weight"], 5);

  const std::string before_renewal = cp.get("/healthz").body["version"];
  r = cp.call("PUT", "/v1/services/orders/instances/o2/heartbeat", "");
  ASSERT_EQ(r.status, 200) << r.raw;
  // A renewal's answer (written as text on the hot path) is the instance as GET shows it.
  EXPECT_EQ(r.body["service"], "orders");
  EXPECT_EQ(r.body["version"], before_renewal) << "a renewal is not a change";
  JsonResponse got = cp.get("/v1/services/orders/instances/o2");
  ASSERT_EQ(got.status, 200) << got.raw;
  for (const char* volatile_key : {"since_heartbeat", "last_heartbeat"}) {
    ASSERT_TRUE(r.body["instance"].contains(volatile_key)) << r.raw;
    r.body["instance"].erase(volatile_key);
    got.body.erase(volatile_key);
  }
  EXPECT_EQ(r.body["instance"], got.body);
  r = cp.call("PUT", "/v1/services/orders/instances/o2/heartbeat", R"({"status":"DOWN"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["instance"]["status"], "DOWN");
  r = cp.get("/v1/clusters/orders");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["cluster"]["endpoints"].size(), 1u) << "DOWN is not an endpoint";
  EXPECT_EQ(r.body["source"], "registry");
  EXPECT_EQ(r.body["cluster"]["lb_policy"], "weighted_round_robin");

  r = cp.call("DELETE", "/v1/services/orders/instances/o2");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(cp.call("DELETE", "/v1/services/orders/instances/o2").status, 404);

  r = cp.get("/v1/history");
  ASSERT_EQ(r.status, 200);
  ASSERT_GE(r.body.size(), 5u);
  EXPECT_EQ(r.body.back()["actor"], "anonymous");
  EXPECT_NE(r.body.back()["change"].get<std::string>().find("deregister orders/o2"),
            std::string::npos);
  r = cp.get("/v1/history?limit=2");
  EXPECT_EQ(r.body.size(), 2u);
}

TEST(ControlIntegrationTest, RegistryRejectsBadRequestsWithReasons) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  struct Case {
    std::string method, path, body;
    int status;
    std::string reason;  // a fragment of the error
  };
  const std::vector<Case> cases = {
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"nohost"})", 400, "host:port"},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:99999"})", 400, "port"},
      {"PUT", "/v1/services/orders/instances/a", R"({"weight":1})", 400, "\"address\" is required"},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","weight":-1})", 400,
       "\"weight\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","weight":"x"})", 400,
       "\"weight\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","ttl":"soon"})", 400,
       "\"ttl\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","ttl":"-1s"})", 400,
       "\"ttl\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","colour":1})", 400,
       "unknown key \"colour\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":"h:1","metadata":[1]})", 400,
       "\"metadata\""},
      {"PUT", "/v1/services/orders/instances/a", R"({"address":)", 400, "not valid JSON"},
      {"PUT", "/v1/services/orders/instances/a", "", 400, "JSON body"},
      {"PUT", "/v1/services/bad%20name/instances/a", R"({"address":"h:1"})", 400,
       "invalid service name"},
      {"PUT", "/v1/services/orders/instances/a%2Fb", R"({"address":"h:1"})", 400,
       "invalid instance id"},
      // Dot segments: clients and proxies remove them from URLs, so curl could never reach or
      // delete what such a name would create.
      {"PUT", "/v1/services/../instances/a", R"({"address":"h:1"})", 400, "invalid service name"},
      {"PUT", "/v1/services/./instances/a", R"({"address":"h:1"})", 400, "invalid service name"},
      {"PUT", "/v1/services/orders/instances/..", R"({"address":"h:1"})", 400,
       "invalid instance id"},
      {"PUT", "/v1/clusters/..", R"({"lb_policy":"random"})", 400, "invalid cluster name"},
      // nlohmann's dump() recurses per level: this deep a body once overflowed the stack.
      {"PUT", "/v1/services/orders/instances/a",
       R"({"address":"h:1","metadata":{"m":)" + std::string(100000, '[') +
           std::string(100000, ']') + "}}",
       400, "more than 64 levels deep"},
      {"PUT", "/v1/services/orders/instances/ghost/heartbeat", "", 404, "register it first"},
      {"GET", "/v1/services/ghost", "", 404, "no service"},
      {"DELETE", "/v1/services/orders/instances/ghost", "", 404, "no instance"},
      {"POST", "/v1/services", "{}", 405, "not allowed"},
      {"GET", "/v1/nothing", "", 404, "no such resource"},
      {"GET", "/v1/discovery", "", 400, "node"},
  };
  for (const Case& c : cases) {
    JsonResponse r = cp.call(c.method, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body << " -> " << r.raw;
    ASSERT_TRUE(r.body.is_object() && r.body.contains("error")) << r.raw;
    EXPECT_NE(r.body["error"].get<std::string>().find(c.reason), std::string::npos)
        << c.method << " " << c.path << " " << c.body << " -> " << r.raw;
  }
  // A bad status on an existing instance.
  ASSERT_EQ(cp.call("PUT", "/v1/services/orders/instances/a", R"({"address":"h:1"})").status, 201);
  JsonResponse r =
      cp.call("PUT", "/v1/services/orders/instances/a/heartbeat", R"({"status":"MAYBE"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.raw.find("UP"), std::string::npos);
}

TEST(ControlIntegrationTest, PoliciesAreValidatedLikeTheProxysClusters) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("clusters:\n  - name: seeded\n    lb_policy: random\n"));

  JsonResponse r = cp.get("/v1/clusters/seeded");
  ASSERT_EQ(r.status, 200) << "the config file's clusters are initial policies";
  EXPECT_EQ(r.body["policy"]["lb_policy"], "random");

  r = cp.call("PUT", "/v1/clusters/orders",
              R"({"lb_policy":"least_request","circuit_breaker":{"consecutive_failures":3}})");
  ASSERT_EQ(r.status, 201) << r.raw;
  r = cp.call("PUT", "/v1/clusters/orders", R"({"lb_policy":"round_robin"})");
  ASSERT_EQ(r.status, 200) << r.raw;

  r = cp.call("PUT", "/v1/clusters/orders",
              "{\n  \"lb_policy\": \"fastest\",\n  \"bulkhead\": 3\n}");
  ASSERT_EQ(r.status, 400) << r.raw;
  const std::string error = r.body["error"];
  EXPECT_NE(error.find("<request body>:2:"), std::string::npos) << error;
  EXPECT_NE(error.find("fastest"), std::string::npos) << error;
  EXPECT_NE(error.find("bulkhead"), std::string::npos) << "every error at once: " << error;
  EXPECT_EQ(r.body["errors"].size(), 2u);

  r = cp.call("PUT", "/v1/clusters/orders", R"({"name":"other"})");
  EXPECT_EQ(r.status, 400);
  r = cp.call("PUT", "/v1/clusters/orders", R"({"connect_timeout":"-1s"})");
  EXPECT_EQ(r.status, 400);

  ASSERT_EQ(cp.call("PUT", "/v1/services/orders/instances/a", instanceBody("10.0.0.1:80")).status,
            201);
  r = cp.get("/v1/clusters/orders");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["source"], "policy");
  EXPECT_EQ(r.body["cluster"]["lb_policy"], "round_robin");
  EXPECT_EQ(r.body["cluster"]["endpoints"][0]["address"], "10.0.0.1:80");
  r = cp.get("/v1/clusters");
  EXPECT_EQ(r.body.size(), 2u);

  EXPECT_EQ(cp.call("DELETE", "/v1/clusters/orders").status, 200);
  EXPECT_EQ(cp.call("DELETE", "/v1/clusters/orders").status, 404);
  r = cp.get("/v1/clusters/orders");
  EXPECT_EQ(r.body["source"], "registry") << "the instances still make a cluster";
  EXPECT_EQ(cp.get("/v1/clusters/nothing").status, 404);
}

TEST(ControlIntegrationTest, MutatingCallsNeedABearerToken) {
  itest::TempDir dir;
  auto tokens = dir.writeFile("tokens", "alice:s3cret\nproxy:p-token\n");
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("auth: { tokens_file: " + tokens.string() + " }\n"));

  const std::string path = "/v1/services/orders/instances/a";
  JsonResponse r = cp.call("PUT", path, instanceBody("10.0.0.1:80"));
  EXPECT_EQ(r.status, 401);
  EXPECT_TRUE(r.body.contains("error"));
  EXPECT_EQ(cp.call("PUT", path, instanceBody("10.0.0.1:80"), "wrong").status, 401);
  EXPECT_EQ(cp.call("PUT", "/v1/clusters/x", "{}").status, 401);
  EXPECT_EQ(cp.call("DELETE", path).status, 401);
  EXPECT_EQ(cp.call("POST", "/v1/discovery/ack", R"({"node":"n"})").status, 401);
  r = cp.call("PUT", path, instanceBody("10.0.0.1:80"), "s3cret");
  ASSERT_EQ(r.status, 201) << r.raw;
  // Reads are open.
  EXPECT_EQ(cp.get("/v1/services").status, 200);
  r = cp.get("/v1/history");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body.back()["actor"], "alice");
}

TEST(ControlIntegrationTest, DiscoverySendsTheSnapshotAtOnceAndAfterEachChange) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("clusters:\n  - name: orders\n    lb_policy: least_request\n"));
  ASSERT_EQ(
      cp.call("PUT", "/v1/services/orders/instances/a", instanceBody("10.0.0.1:80", 2)).status,
      201);

  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=proxy-1"));
  EXPECT_EQ(reader.status(), 200);
  EXPECT_TRUE(reader.chunked());
  json first = nextSnapshot(reader);
  ASSERT_TRUE(first.is_object()) << "no snapshot on connect";
  ASSERT_TRUE(first["version"].is_string());
  ASSERT_TRUE(first["nonce"].is_string());
  EXPECT_FALSE(first["nonce"].get<std::string>().empty());
  const json* orders = findCluster(first, "orders");
  ASSERT_NE(orders, nullptr) << first.dump();
  EXPECT_EQ((*orders)["lb_policy"], "least_request");
  ASSERT_EQ((*orders)["endpoints"].size(), 1u);
  EXPECT_EQ((*orders)["endpoints"][0], json({{"address", "10.0.0.1:80"}, {"weight", 2}}));
  EXPECT_EQ((*orders)["connect_timeout"], "1s") << "the proxy's full cluster schema";

  ASSERT_EQ(cp.call("PUT", "/v1/services/users/instances/u", instanceBody("10.0.1.1:80")).status,
            201);
  json second = nextSnapshot(reader);
  ASSERT_TRUE(second.is_object()) << "no push after a change";
  EXPECT_GT(versionOf(second), versionOf(first));
  EXPECT_NE(second["nonce"], first["nonce"]);
  EXPECT_NE(findCluster(second, "users"), nullptr);

  // A reconnecting proxy gets the current state at once.
  StreamReader again;
  ASSERT_TRUE(again.open(cp.port(), "/v1/discovery?node=proxy-2"));
  json current = nextSnapshot(again, 2000ms);
  ASSERT_TRUE(current.is_object());
  EXPECT_EQ(current["version"], second["version"]);
  EXPECT_EQ(current["clusters"], second["clusters"]);
}

TEST(ControlIntegrationTest, ABurstOfRegistrationsMakesAHandfulOfPushes) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=burst"));
  ASSERT_TRUE(nextSnapshot(reader).is_object());

  // Concurrent clients, as many sidecars registering at once would be; their changes share
  // fsyncs (group commit).
  constexpr int kThreads = 100;
  constexpr int kPerThread = 10;
  std::atomic<int> failures{0};
  const auto burst_start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      itest::HttpClient client(cp.port(), "127.0.0.1", Duration(20000));
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * kPerThread + i;
        const std::string path = "/v1/services/bulk/instances/i" + std::to_string(n);
        const std::string address =
            "10.1." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1) + ":8080";
        itest::Response r = client.request("PUT", path, {}, instanceBody(address));
        if (r.status != 201) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto burst_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - burst_start)
                            .count();
  ASSERT_EQ(failures.load(), 0);
  const json health = cp.get("/healthz").body;
  const uint64_t final_version = versionOf(health);

  int pushes = 0;
  json last;
  while (true) {
    json s = nextSnapshot(reader, 3000ms);
    ASSERT_TRUE(s.is_object()) << "the final state never arrived after " << pushes << " pushes";
    ++pushes;
    last = s;
    if (versionOf(s) == final_version) break;
  }
  const json* bulk = findCluster(last, "bulk");
  ASSERT_NE(bulk, nullptr);
  EXPECT_EQ((*bulk)["endpoints"].size(), 1000u);
  // Every change is fsynced before it can be pushed, so the burst lasts as long as its writes
  // (about a second in Release, several under ASan). The debounce pushes at least every
  // max_delay (500 ms) during a burst that long, and once after it: a handful on a fast build,
  // and never more than the burst's length allows.
  const int bound = std::max<int>(10, static_cast<int>(burst_ms / 500) + 3);
  EXPECT_LE(pushes, bound) << "1,000 changes in " << burst_ms << " ms should be coalesced";
  // And nothing more follows once the burst is over.
  EXPECT_FALSE(nextSnapshot(reader, 300ms).is_object());
  std::printf("[ info ] 1000 registrations in %lld ms -> %d push(es), %d state write(s)\n",
              static_cast<long long>(burst_ms), pushes, health["state_writes"].get<int>());
}

TEST(ControlIntegrationTest, AcksAndNacksShowInNodes) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=edge%2F1"));  // percent-encoded id
  json s1 = nextSnapshot(reader);
  ASSERT_TRUE(s1.is_object());

  JsonResponse r = cp.get("/v1/nodes");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.body.size(), 1u);
  EXPECT_EQ(r.body[0]["node_id"], "edge/1");
  EXPECT_EQ(r.body[0]["connected"], true);
  EXPECT_TRUE(r.body[0]["acked_version"].is_null());
  EXPECT_TRUE(r.body[0]["acked_at"].is_null());
  // "2024-05-01T12:00:00.123Z": fixed width, so the strings order like the times.
  auto is_time = [](const json& v) {
    return v.is_string() && v.get<std::string>().size() == 24 && v.get<std::string>()[10] == 'T' &&
           v.get<std::string>().back() == 'Z';
  };
  ASSERT_TRUE(is_time(r.body[0]["sent_at"])) << r.raw;
  const std::string sent_at = r.body[0]["sent_at"];

  r = cp.call("POST", "/v1/discovery/ack",
              json{{"node", "edge/1"}, {"version", s1["version"]}, {"nonce", s1["nonce"]}}.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["accepted"], true);
  r = cp.get("/v1/nodes");
  EXPECT_EQ(r.body[0]["acked_version"], s1["version"]);
  ASSERT_TRUE(is_time(r.body[0]["acked_at"])) << r.raw;
  const std::string acked_at = r.body[0]["acked_at"];
  EXPECT_GE(acked_at, sent_at);

  ASSERT_EQ(cp.call("PUT", "/v1/clusters/x", R"({"lb_policy":"random"})").status, 201);
  json s2 = nextSnapshot(reader);
  ASSERT_TRUE(s2.is_object());
  r = cp.call("POST", "/v1/discovery/ack",
              json{{"node", "edge/1"},
                   {"version", s2["version"]},
                   {"nonce", s2["nonce"]},
                   {"error", "cluster x: no such lb"}}
                  .dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  r = cp.get("/v1/nodes");
  EXPECT_EQ(r.body[0]["acked_version"], s1["version"]) << "a NACK keeps the last ACK";
  EXPECT_EQ(r.body[0]["acked_at"], acked_at) << "and its time";
  EXPECT_GE(r.body[0]["sent_at"].get<std::string>(), acked_at) << "s2 was sent after s1's ACK";
  EXPECT_EQ(r.body[0]["nacked_version"], s2["version"]);
  EXPECT_EQ(r.body[0]["last_error"], "cluster x: no such lb");

  // A stale nonce is ignored.
  r = cp.call("POST", "/v1/discovery/ack",
              json{{"node", "edge/1"}, {"version", s1["version"]}, {"nonce", s1["nonce"]}}.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["accepted"], false);
  EXPECT_EQ(cp.get("/v1/nodes").body[0]["acked_version"], s1["version"]);
  // Unknown nodes and malformed ACKs.
  EXPECT_EQ(cp.call("POST", "/v1/discovery/ack",
                    json{{"node", "ghost"}, {"version", "1"}, {"nonce", "x"}}.dump())
                .status,
            404);
  EXPECT_EQ(cp.call("POST", "/v1/discovery/ack", R"({"node":"edge/1"})").status, 400);

  reader.close();
  EXPECT_TRUE(itest::waitFor([&] { return cp.get("/v1/nodes").body[0]["connected"] == false; },
                             Duration(3000)));
}

TEST(ControlIntegrationTest, KillNineKeepsEveryAcknowledgedChangeAndVersionsIncrease) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(cp.call("PUT", "/v1/services/orders/instances/i" + std::to_string(i),
                      instanceBody("10.0.0." + std::to_string(i + 1) + ":80"))
                  .status,
              201);
  }
  ASSERT_EQ(cp.call("DELETE", "/v1/services/orders/instances/i0").status, 200);
  JsonResponse last = cp.call("PUT", "/v1/clusters/orders", R"({"lb_policy":"random"})");
  ASSERT_EQ(last.status, 201);
  const uint64_t before = versionOf(last.body);
  const json clusters_before = cp.get("/v1/clusters").body;
  const size_t history_before = cp.get("/v1/history").body.size();

  cp.kill9();
  ASSERT_TRUE(cp.restart());

  JsonResponse services = cp.get("/v1/services/orders");
  ASSERT_EQ(services.status, 200);
  EXPECT_EQ(services.body["instances"].size(), 19u);
  EXPECT_EQ(cp.get("/v1/clusters/orders").body["policy"]["lb_policy"], "random");
  EXPECT_EQ(cp.get("/v1/clusters").body.size(), clusters_before.size());
  EXPECT_EQ(cp.get("/v1/history").body.size(), history_before);
  EXPECT_EQ(versionOf(cp.get("/healthz").body), before);

  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=n"));
  json s = nextSnapshot(reader);
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(versionOf(s), before) << "same state, same version";
  JsonResponse next =
      cp.call("PUT", "/v1/services/orders/instances/new", instanceBody("10.9.0.1:80"));
  ASSERT_EQ(next.status, 201);
  EXPECT_GT(versionOf(next.body), before);
  json s2 = nextSnapshot(reader);
  ASSERT_TRUE(s2.is_object());
  EXPECT_GT(versionOf(s2), before);
}

TEST(ControlIntegrationTest, TtlLapseRemovesEndpointsAndIsPushed) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  ASSERT_EQ(
      cp.call("PUT", "/v1/services/svc/instances/short", instanceBody("10.0.0.1:80", 1, "300ms"))
          .status,
      201);
  ASSERT_EQ(cp.call("PUT", "/v1/services/svc/instances/long", instanceBody("10.0.0.2:80", 1, "1h"))
                .status,
            201);
  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=n"));
  json s = nextSnapshot(reader);
  ASSERT_TRUE(s.is_object());

  auto statusOf = [&](const std::string& id) -> std::string {
    JsonResponse r = cp.get("/v1/services/svc/instances/" + id);
    return r.status == 200 ? r.body["status"].get<std::string>() : "gone";
  };
  EXPECT_TRUE(itest::waitFor([&] { return statusOf("short") == "UNKNOWN"; }, Duration(3000)));
  bool pushed_without_it = false;
  for (int i = 0; i < 5 && !pushed_without_it; ++i) {
    s = nextSnapshot(reader, 2000ms);
    ASSERT_TRUE(s.is_object());
    pushed_without_it = findCluster(s, "svc")->at("endpoints").size() == 1;
  }
  EXPECT_TRUE(pushed_without_it);
  EXPECT_TRUE(itest::waitFor([&] { return statusOf("short") == "gone"; }, Duration(3000)));
  EXPECT_EQ(statusOf("long"), "UP");
  JsonResponse h = cp.get("/v1/history");
  EXPECT_EQ(h.body.back()["actor"], "ttl");
}

TEST(ControlIntegrationTest, IdleStreamsGetHeartbeatsAndManyNodesAreServed) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("discovery: { heartbeat_interval: 200ms }\n"));
  constexpr int kNodes = 60;
  std::vector<std::unique_ptr<StreamReader>> readers;
  for (int i = 0; i < kNodes; ++i) {
    auto r = std::make_unique<StreamReader>();
    ASSERT_TRUE(r->open(cp.port(), "/v1/discovery?node=node-" + std::to_string(i)));
    ASSERT_TRUE(nextSnapshot(*r).is_object());
    readers.push_back(std::move(r));
  }
  // Idle: a heartbeat line arrives.
  std::optional<std::string> line = readers[0]->nextLine(2000ms);
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(json::parse(*line), json({{"heartbeat", true}}));

  JsonResponse change = cp.call("PUT", "/v1/services/s/instances/a", instanceBody("10.0.0.1:80"));
  ASSERT_EQ(change.status, 201);
  for (auto& r : readers) {
    json s = nextSnapshot(*r);
    ASSERT_TRUE(s.is_object());
    EXPECT_EQ(s["version"], change.body["version"]);
  }
  JsonResponse nodes = cp.get("/v1/nodes");
  EXPECT_EQ(nodes.body.size(), static_cast<size_t>(kNodes));
}

TEST(ControlIntegrationTest, ASecondStreamForTheSameNodeReplacesTheFirst) {
  itest::TempDir dir;
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start());
  StreamReader first;
  ASSERT_TRUE(first.open(cp.port(), "/v1/discovery?node=n"));
  ASSERT_TRUE(nextSnapshot(first).is_object());
  StreamReader second;
  ASSERT_TRUE(second.open(cp.port(), "/v1/discovery?node=n"));
  ASSERT_TRUE(nextSnapshot(second).is_object());
  EXPECT_TRUE(first.waitClosed(2000ms));
  JsonResponse nodes = cp.get("/v1/nodes");
  ASSERT_EQ(nodes.body.size(), 1u);
  EXPECT_EQ(nodes.body[0]["connected"], true);
}

TEST(ControlIntegrationTest, RemoractlCommandsAndExitCodes) {
  itest::TempDir dir;
  auto tokens = dir.writeFile("tokens", "ops:t0k\n");
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("auth: { tokens_file: " + tokens.string() + " }\n"));
  const std::string server = cp.address();
  auto ctl = [&](std::vector<std::string> args) { return runCtl(dir, server, args); };

  CtlResult r = ctl({"--token", "t0k", "register", "orders", "o1", "10.0.0.1:8080", "--weight", "3",
                     "--ttl", "1m"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("registered orders/o1"), std::string::npos) << r.output;

  r = ctl({"register", "orders", "o2", "10.0.0.2:8080"});
  EXPECT_EQ(r.exit_code, 1) << "no token: " << r.output;
  EXPECT_NE(r.output.find("401"), std::string::npos) << r.output;

  r = ctl({"--token", "t0k", "register", "orders", "o2", "not-an-address"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("host:port"), std::string::npos) << r.output;

  r = ctl({"services"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SERVICE"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("10.0.0.1:8080"), std::string::npos) << r.output;

  r = ctl({"--token", "t0k", "heartbeat", "orders", "o1", "--status", "DOWN"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("DOWN"), std::string::npos) << r.output;

  auto good = dir.writeFile("orders.yaml",
                            "lb_policy: least_request\nconnect_timeout: 2s\n"
                            "circuit_breaker:\n  consecutive_failures: 3\n");
  r = ctl({"--token", "t0k", "policy", "set", "orders", good.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(cp.get("/v1/clusters/orders").body["policy"]["connect_timeout"], "2s");

  auto bad = dir.writeFile("bad.yaml", "lb_policy: least_request\nconnect_timeout: forever\n");
  r = ctl({"--token", "t0k", "policy", "set", "orders", bad.string()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("connect_timeout"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bad.yaml:2:"), std::string::npos)
      << "positions in the user's file: " << r.output;

  r = ctl({"policy", "get", "orders"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("least_request"), std::string::npos) << r.output;

  StreamReader reader;
  ASSERT_TRUE(reader.open(cp.port(), "/v1/discovery?node=sidecar-7"));
  ASSERT_TRUE(nextSnapshot(reader).is_object());
  r = ctl({"nodes"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("sidecar-7"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CONNECTED"), std::string::npos) << r.output;

  r = ctl({"history"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ops"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("register orders/o1"), std::string::npos) << r.output;

  r = ctl({"--json", "services"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(json::parse(r.output, nullptr, false).is_discarded()) << r.output;

  r = ctl({"--token", "t0k", "deregister", "orders", "ghost"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  r = ctl({"--token", "t0k", "deregister", "orders", "o1"});
  EXPECT_EQ(r.exit_code, 0) << r.output;

  EXPECT_EQ(ctl({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(ctl({"register", "only-one-arg"}).exit_code, 2);
  EXPECT_EQ(ctl({"policy", "set", "orders", (dir / "missing.yaml").string()}).exit_code, 2);
  r = runCtl(dir, "127.0.0.1:" + std::to_string(itest::freePort()), {"services"});
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("cannot connect"), std::string::npos) << r.output;
}

TEST(ControlIntegrationTest, BadConfigIsReportedWithPositions) {
  itest::TempDir dir;
  auto cfg =
      dir.writeFile("cp.yaml", "listen: nowhere\nclusters:\n  - name: a\n    lb_policy: x\n");
  itest::Process p("remora-control", REMORA_CONTROL_BIN, {"--config", cfg.string()},
                   dir / "bad.log");
  ASSERT_TRUE(p.start());
  EXPECT_EQ(p.waitExit(Duration(5000)), 1);
  const std::string log = p.log();
  EXPECT_NE(log.find("cp.yaml:1:9:"), std::string::npos) << log;
  EXPECT_NE(log.find("cp.yaml:4:16:"), std::string::npos) << log;
}

}  // namespace
}  // namespace remora::control::test
