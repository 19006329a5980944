// remora-control with real proxies: registry changes, TTL expiry, policy pushes, NACKs, control
// plane restarts and many proxies. Real processes over loopback. Skipped without `remora`.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "control_process.h"
#include "harness.h"
#include "test_certs.h"

namespace remora::control::test {
namespace {

using nlohmann::json;

constexpr const char* kProxyYaml = R"(
node_id: ${NODE}
workers: 1
admin: { address: ${ADMIN} }
control_plane: { address: ${CP} }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: svc
)";

uint64_t toVersion(const json& v) {
  if (!v.is_string()) return 0;
  try {
    return std::stoull(v.get<std::string>());
  } catch (...) {
    return 0;
  }
}

class MeshE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!REMORA_TARGET_DEFINED || !itest::remoraBinaryExists()) GTEST_SKIP() << "no remora binary";
    cp_ = std::make_unique<ControlProcess>(dir_);
    ASSERT_TRUE(cp_->start());
  }

  std::unique_ptr<itest::FakeUpstream> upstream(const std::string& name) {
    auto up = std::make_unique<itest::FakeUpstream>(dir_, name);
    EXPECT_TRUE(up->start());
    return up;
  }

  // Registers; returns the version (0 on failure, with a test failure).
  uint64_t registerInstance(const std::string& id, const json& body) {
    JsonResponse r = cp_->call("PUT", "/v1/services/svc/instances/" + id, body.dump());
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.raw;
    return toVersion(r.body.is_object() ? r.body["version"] : json());
  }

  uint64_t currentVersion() { return toVersion(cp_->get("/healthz").body["version"]); }

  json node(const std::string& node_id) {
    JsonResponse nodes = cp_->get("/v1/nodes");
    if (!nodes.body.is_array()) return json();
    for (const json& n : nodes.body) {
      if (n.value("node_id", "") == node_id) return n;
    }
    return json();
  }

  // The node is connected and has ACKed `version` or newer.
  bool acked(const std::string& node_id, uint64_t version) {
    json n = node(node_id);
    return n.is_object() && n["connected"] == true && toVersion(n["acked_version"]) >= version;
  }

  ::testing::AssertionResult waitAcked(const std::string& node_id, uint64_t version,
                                       int ms = 5000) {
    if (itest::waitFor([&] { return acked(node_id, version); }, itest::Duration(ms))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << node_id << " did not ACK " << version << ": " << cp_->get("/v1/nodes").raw;
  }

  std::unique_ptr<itest::RemoraProcess> startProxy(const std::string& node_id,
                                                   const std::string& name = "remora") {
    auto p = std::make_unique<itest::RemoraProcess>(dir_, name);
    p->setExtraArgs({"--log-level", "info"});
    EXPECT_TRUE(p->start(kProxyYaml, {{"CP", cp_->address()}, {"NODE", node_id}}));
    return p;
  }

  itest::LoadResult load(itest::RemoraProcess& p, int total, int threads = 4) {
    itest::LoadOptions o;
    o.port = p.listenPort();
    o.threads = threads;
    o.requests_per_thread = total / threads;
    o.path = "/mesh";
    return itest::runLoad(o);
  }

  itest::TempDir dir_;
  std::unique_ptr<ControlProcess> cp_;
};

// 1. Three instances all get traffic; deregistering one under load fails nothing, and once the
// proxy ACKed the change the instance gets no more requests.
TEST_F(MeshE2ETest, RoutesToAllInstancesAndDeregisterIsHitless) {
  auto a = upstream("a"), b = upstream("b"), c = upstream("c");
  for (auto* u : {a.get(), b.get(), c.get()}) registerInstance(u->name(), {{"address", u->address()}});
  auto proxy = startProxy("mesh-1");
  ASSERT_TRUE(waitAcked("mesh-1", currentVersion()));

  itest::LoadResult r = load(*proxy, 60);
  EXPECT_TRUE(r.allStatus(200)) << r.summary();
  for (const char* n : {"a", "b", "c"}) EXPECT_GE(r.by_header[n], 10u) << n << " " << r.summary();

  itest::LoadOptions o;
  o.port = proxy->listenPort();
  o.threads = 4;
  o.path = "/bg";
  itest::BackgroundLoad bg(o);
  ASSERT_TRUE(itest::waitFor([&] { return bg.completed() >= 50; }, itest::Duration(5000)));
  JsonResponse del = cp_->call("DELETE", "/v1/services/svc/instances/c");
  ASSERT_EQ(del.status, 200) << del.raw;
  const uint64_t v = toVersion(del.body["version"]);
  ASSERT_TRUE(waitAcked("mesh-1", v));
  const uint64_t after_ack = bg.completed();
  ASSERT_TRUE(itest::waitFor([&] { return bg.completed() >= after_ack + 50; },
                             itest::Duration(5000)));
  itest::LoadResult bgr = bg.stop();
  EXPECT_EQ(bgr.failures, 0u) << bgr.summary();
  EXPECT_TRUE(bgr.allStatus(200)) << bgr.summary();

  auto before = c->stats();
  ASSERT_TRUE(before);
  r = load(*proxy, 60);
  EXPECT_TRUE(r.allStatus(200)) << r.summary();
  EXPECT_EQ(r.by_header["c"], 0u) << r.summary();
  EXPECT_GE(r.by_header["a"], 10u) << r.summary();
  EXPECT_GE(r.by_header["b"], 10u) << r.summary();
  auto after = c->stats();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->requests, before->requests);
}

// 2. An instance that never heartbeats becomes UNKNOWN, then is removed; the proxy stops routing
// to it while the others keep serving.
TEST_F(MeshE2ETest, ExpiredInstanceStopsGettingTraffic) {
  auto a = upstream("a"), b = upstream("b"), c = upstream("c");
  registerInstance("a", {{"address", a->address()}});
  registerInstance("b", {{"address", b->address()}});
  auto proxy = startProxy("mesh-2");
  itest::LoadOptions o;
  o.port = proxy->listenPort();
  o.threads = 2;
  o.path = "/bg";
  itest::BackgroundLoad bg(o);
  const uint64_t v = registerInstance("c", {{"address", c->address()}, {"ttl", "300ms"}});
  auto status = [&] {
    JsonResponse r = cp_->get("/v1/services/svc/instances/c");
    if (r.status == 404) return std::string("GONE");
    return r.body.is_object() ? r.body.value("status", std::string()) : std::string();
  };
  EXPECT_TRUE(itest::waitFor([&] { return status() == "UNKNOWN"; }, itest::Duration(3000)))
      << status();
  EXPECT_TRUE(itest::waitFor([&] { return status() == "GONE"; }, itest::Duration(5000)))
      << status();
  const uint64_t cur = currentVersion();
  EXPECT_GT(cur, v);
  ASSERT_TRUE(waitAcked("mesh-2", cur));
  itest::LoadResult bgr = bg.stop();
  EXPECT_TRUE(bgr.allStatus(200)) << bgr.summary();
  EXPECT_GT(bgr.by_header["c"], 0u) << "c got traffic while UP: " << bgr.summary();

  auto before = c->stats();
  ASSERT_TRUE(before);
  itest::LoadResult r = load(*proxy, 40);
  EXPECT_TRUE(r.allStatus(200)) << r.summary();
  EXPECT_EQ(r.by_header["c"], 0u) << r.summary();
  EXPECT_GE(r.by_header["a"], 10u) << r.summary();
  EXPECT_GE(r.by_header["b"], 10u) << r.summary();
  EXPECT_EQ(c->stats()->requests, before->requests);
  JsonResponse hist = cp_->get("/v1/history");
  EXPECT_NE(hist.raw.find("\"ttl\""), std::string::npos) << hist.raw;
}

// 3. Policies pushed live: weighted round robin shares, a circuit breaker visible in the proxy's
// /config, and a bad policy refused with the proxy config unchanged.
TEST_F(MeshE2ETest, PolicyPushChangesBehaviourLive) {
  auto a = upstream("a"), b = upstream("b");
  registerInstance("a", {{"address", a->address()}, {"weight", 1}});
  registerInstance("b", {{"address", b->address()}, {"weight", 3}});
  JsonResponse p = cp_->call("PUT", "/v1/clusters/svc",
                             json{{"lb_policy", "weighted_round_robin"}}.dump());
  ASSERT_TRUE(p.status == 201 || p.status == 200) << p.raw;
  auto proxy = startProxy("mesh-3");
  ASSERT_TRUE(waitAcked("mesh-3", toVersion(p.body["version"])));

  itest::LoadResult r = load(*proxy, 400);
  ASSERT_TRUE(r.allStatus(200)) << r.summary();
  const double share_a = 100.0 * r.by_header["a"] / r.total;
  const double share_b = 100.0 * r.by_header["b"] / r.total;
  EXPECT_NEAR(share_a, 25.0, 5.0) << r.summary();
  EXPECT_NEAR(share_b, 75.0, 5.0) << r.summary();

  json policy = {{"lb_policy", "round_robin"},
                 {"circuit_breaker",
                  {{"consecutive_failures", 3}, {"open_duration", "1s"}, {"success_threshold", 1}}}};
  p = cp_->call("PUT", "/v1/clusters/svc", policy.dump());
  ASSERT_EQ(p.status, 200) << p.raw;
  ASSERT_TRUE(waitAcked("mesh-3", toVersion(p.body["version"])));
  itest::Response cfg = proxy->admin("/config");
  ASSERT_EQ(cfg.status, 200);
  json cj = json::parse(cfg.body, nullptr, false);
  ASSERT_TRUE(cj.is_object()) << cfg.body;
  EXPECT_EQ(cj["source"], "control-plane") << cfg.body;
  EXPECT_EQ(toVersion(cj["version"]), toVersion(p.body["version"])) << cfg.body;
  json svc;
  for (const json& c : cj["config"]["clusters"]) {
    if (c.value("name", "") == "svc") svc = c;
  }
  ASSERT_TRUE(svc.is_object()) << cfg.body;
  EXPECT_EQ(svc["lb_policy"], "round_robin") << svc;
  EXPECT_EQ(svc["circuit_breaker"]["consecutive_failures"], 3) << svc;
  EXPECT_EQ(svc["circuit_breaker"]["open_duration"], "1s") << svc;
  // Round robin now: 1:1 whatever the weights.
  r = load(*proxy, 100);
  ASSERT_TRUE(r.allStatus(200)) << r.summary();
  EXPECT_NEAR(100.0 * r.by_header["a"] / r.total, 50.0, 5.0) << r.summary();

  // The pushed breaker works: b failing opens b's breaker, and a takes the traffic.
  auto breakerOf = [&](const std::string& address) {
    json cl = json::parse(proxy->admin("/clusters").body, nullptr, false);
    if (!cl.is_object()) return std::string();
    for (const json& c : cl["clusters"]) {
      if (c.value("name", "") != "svc") continue;
      for (const json& e : c["endpoints"]) {
        if (e.value("address", "") == address) return e.value("circuit_breaker", std::string());
      }
    }
    return std::string();
  };
  EXPECT_EQ(breakerOf(b->address()), "closed") << proxy->admin("/clusters").body;
  ASSERT_TRUE(b->control("status=503"));
  itest::HttpClient client = proxy->client();
  EXPECT_TRUE(itest::waitFor(
      [&] {
        client.get("/trip");
        return breakerOf(b->address()) == "open";
      },
      itest::Duration(5000)))
      << proxy->admin("/clusters").body;
  EXPECT_EQ(breakerOf(a->address()), "closed");
  ASSERT_TRUE(b->resetStats());
  r = load(*proxy, 20, 2);
  EXPECT_TRUE(r.allStatus(200)) << r.summary();
  EXPECT_EQ(r.by_header["a"], r.total) << r.summary();
  EXPECT_EQ(b->stats()->requests, 0u);
  ASSERT_TRUE(b->control("clear"));
  cfg = proxy->admin("/config");

  const uint64_t v_before = currentVersion();
  JsonResponse bad = cp_->call("PUT", "/v1/clusters/svc", json{{"lb_policy", "bogus"}}.dump());
  EXPECT_EQ(bad.status, 400) << bad.raw;
  ASSERT_TRUE(bad.body.is_object()) << bad.raw;
  EXPECT_FALSE(bad.body.value("error", std::string()).empty()) << bad.raw;
  EXPECT_EQ(currentVersion(), v_before);
  itest::Response cfg2 = proxy->admin("/config");
  EXPECT_EQ(cfg2.body, cfg.body);
  EXPECT_EQ(cfg2.body.find("bogus"), std::string::npos);
}

// 4. A snapshot the proxy cannot apply is NACKed; the last good config keeps serving.
TEST_F(MeshE2ETest, UnresolvableAddressIsNackedAndLastGoodConfigKeepsServing) {
  auto a = upstream("a"), b = upstream("b");
  registerInstance("a", {{"address", a->address()}});
  registerInstance("b", {{"address", b->address()}});
  auto proxy = startProxy("mesh-4");
  ASSERT_TRUE(waitAcked("mesh-4", currentVersion()));
  const uint64_t good = toVersion(node("mesh-4")["acked_version"]);

  JsonResponse r = cp_->call("PUT", "/v1/services/svc/instances/bad",
                             json{{"address", "no-such-host.invalid:80"}}.dump());
  if (r.status == 400) GTEST_SKIP() << "the control plane refuses host names: " << r.raw;
  ASSERT_EQ(r.status, 201) << r.raw;
  const uint64_t v = toVersion(r.body["version"]);
  EXPECT_TRUE(itest::waitFor(
      [&] {
        json n = node("mesh-4");
        return n.is_object() && toVersion(n["nacked_version"]) >= v;
      },
      itest::Duration(5000)))
      << cp_->get("/v1/nodes").raw;
  json n = node("mesh-4");
  EXPECT_TRUE(n["last_error"].is_string() && !n["last_error"].get<std::string>().empty()) << n;
  EXPECT_EQ(toVersion(n["acked_version"]), good) << n;
  EXPECT_NE(n["last_error"].dump().find("no-such-host.invalid"), std::string::npos) << n;
  json cj = json::parse(proxy->admin("/config").body, nullptr, false);
  ASSERT_TRUE(cj.is_object());
  EXPECT_EQ(toVersion(cj["version"]), good) << cj.dump();
  EXPECT_EQ(cj.dump().find("no-such-host"), std::string::npos) << cj.dump();

  itest::LoadResult l = load(*proxy, 40);
  EXPECT_TRUE(l.allStatus(200)) << l.summary();
  EXPECT_GE(l.by_header["a"], 10u) << l.summary();
  EXPECT_GE(l.by_header["b"], 10u) << l.summary();
  EXPECT_GE(proxy->metric("remora_config_updates_total",
                          {{"source", "control-plane"}, {"result", "nack"}})
                .value_or(0),
            1.0)
      << proxy->stats();
}

// 5. The control plane dies: the proxy keeps serving; it comes back on the same port and state
// file: the proxy reconnects and ACKs the current version.
TEST_F(MeshE2ETest, ControlPlaneKillAndRestart) {
  auto a = upstream("a"), b = upstream("b");
  registerInstance("a", {{"address", a->address()}});
  registerInstance("b", {{"address", b->address()}});
  auto proxy = startProxy("mesh-5");
  const uint64_t v = currentVersion();
  ASSERT_TRUE(waitAcked("mesh-5", v));

  cp_->kill9();
  EXPECT_TRUE(itest::waitFor(
      [&] {
        json cj = json::parse(proxy->admin("/config").body, nullptr, false);
        return cj.is_object() && cj["control_plane_connected"] == false;
      },
      itest::Duration(5000)))
      << proxy->admin("/config").body;
  EXPECT_EQ(proxy->admin("/ready").status, 200) << "the last good config still serves";
  itest::LoadResult l = load(*proxy, 40);
  EXPECT_TRUE(l.allStatus(200)) << l.summary();
  EXPECT_GE(l.by_header["a"], 10u) << l.summary();
  EXPECT_GE(l.by_header["b"], 10u) << l.summary();

  ASSERT_TRUE(cp_->restart());
  const uint64_t cur = currentVersion();
  EXPECT_GE(cur, v);
  EXPECT_TRUE(itest::waitFor(
      [&] {
        json n = node("mesh-5");
        return n.is_object() && n["connected"] == true && toVersion(n["acked_version"]) == cur;
      },
      itest::Duration(10000)))
      << cp_->get("/v1/nodes").raw;
  // And it follows changes again.
  auto c = upstream("c");
  const uint64_t v2 = registerInstance("c", {{"address", c->address()}});
  ASSERT_TRUE(waitAcked("mesh-5", v2));
  l = load(*proxy, 60);
  EXPECT_TRUE(l.allStatus(200)) << l.summary();
  EXPECT_GE(l.by_header["c"], 10u) << l.summary();
}

// 6. Twenty proxies on one control plane all ACK one registry change.
TEST_F(MeshE2ETest, TwentyProxiesAllAckOneChange) {
  auto a = upstream("a");
  registerInstance("a", {{"address", a->address()}});
  std::vector<std::unique_ptr<itest::RemoraProcess>> proxies;
  for (int i = 0; i < 20; ++i) {
    proxies.push_back(startProxy("mesh-6-" + std::to_string(i), "remora-" + std::to_string(i)));
    ASSERT_TRUE(proxies.back()->isReady()) << i;
  }
  auto b = upstream("b");
  const uint64_t v = registerInstance("b", {{"address", b->address()}});
  auto allAcked = [&] {
    JsonResponse nodes = cp_->get("/v1/nodes");
    if (!nodes.body.is_array()) return false;
    int n = 0;
    for (const json& node : nodes.body) {
      if (node["connected"] == true && toVersion(node["acked_version"]) >= v) ++n;
    }
    return n == 20;
  };
  EXPECT_TRUE(itest::waitFor(allAcked, itest::Duration(15000))) << cp_->get("/v1/nodes").raw;
  // Every proxy now routes to b.
  for (auto& p : proxies) {
    EXPECT_TRUE(itest::waitFor([&] { return p->client().get("/m").header("x-upstream-name") == "b"; },
                               itest::Duration(3000)));
  }
}


// 6. The control plane over mTLS: remoractl and the proxy's discovery stream both present client
// certificates; a caller without one is refused.
TEST(MeshTlsTest, ControlPlaneOverMutualTls) {
  if (!REMORA_TARGET_DEFINED || !itest::remoraBinaryExists()) GTEST_SKIP() << "no remora binary";
  itest::TempDir dir;
  remora::testing::TestCa ca("mesh-ca");
  const std::string ca_file = ca.writeCert(dir.path());
  auto server = ca.issue(dir.path(), "control", {"DNS:control.mesh", "IP:127.0.0.1"});
  auto ctl_cert = ca.issue(dir.path(), "operator", {"URI:spiffe://mesh/operator"});
  auto proxy_cert = ca.issue(dir.path(), "sidecar", {"URI:spiffe://mesh/sidecar"});
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("tls: { cert_file: " + server.cert_file + ", key_file: " +
                       server.key_file + ", client_ca_file: " + ca_file + " }\n"));

  // No client certificate: the handshake is refused and remoractl says so.
  CtlResult r = runCtl(dir, cp.address(), {"--cacert", ca_file, "services"});
  EXPECT_NE(r.exit_code, std::optional<int>(0)) << r.output;
  EXPECT_NE(r.output.find("TLS"), std::string::npos) << r.output;
  // Plain HTTP is refused too.
  EXPECT_NE(cp.get("/healthz").status, 200);

  auto up = std::make_unique<itest::FakeUpstream>(dir, "a");
  ASSERT_TRUE(up->start());
  const std::vector<std::string> auth = {"--cacert", ca_file, "--cert", ctl_cert.cert_file,
                                         "--key", ctl_cert.key_file};
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> full = auth;
    full.insert(full.end(), args.begin(), args.end());
    return runCtl(dir, cp.address(), full);
  };
  r = ctl({"register", "svc", "a", up->address()});
  ASSERT_EQ(r.exit_code, std::optional<int>(0)) << r.output;

  // The proxy subscribes over mTLS, verifying the control plane as control.mesh.
  constexpr const char* kTlsProxy = R"(
node_id: tls-node
workers: 1
admin: { address: ${ADMIN} }
control_plane:
  address: ${CP}
  tls: { ca_file: ${CA}, cert_file: ${CERT}, key_file: ${KEY}, sni: control.mesh }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: svc
)";
  itest::RemoraProcess proxy(dir, "remora");
  ASSERT_TRUE(proxy.start(kTlsProxy, {{"CP", cp.address()},
                                      {"CA", ca_file},
                                      {"CERT", proxy_cert.cert_file},
                                      {"KEY", proxy_cert.key_file}}));
  itest::HttpClient client = proxy.client();
  EXPECT_EQ(client.get("/x").status, 200);
  r = ctl({"--json", "nodes"});
  ASSERT_EQ(r.exit_code, std::optional<int>(0)) << r.output;
  EXPECT_NE(r.output.find("tls-node"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace remora::control::test
