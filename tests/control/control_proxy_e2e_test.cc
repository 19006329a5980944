// remora-control with the real proxy: the proxy subscribes, applies, ACKs, and routes to the
// instances the registry knows. Skipped when the build has no `remora` target.

#include <gtest/gtest.h>

#include "control_process.h"
#include "harness.h"

namespace remora::control::test {
namespace {

using nlohmann::json;

constexpr const char* kProxyYaml = R"(
node_id: e2e-proxy-1
admin: { address: ${ADMIN} }
control_plane: { address: ${CP}, token_file: ${DIR}/proxy.token }
listeners:
  - name: ingress
    address: ${LISTEN}
    routes:
      - match: { prefix: / }
        cluster: orders
)";

TEST(ControlProxyE2ETest, ProxyAppliesAcksAndRoutesToRegisteredInstances) {
  if (!REMORA_TARGET_DEFINED || !itest::remoraBinaryExists()) GTEST_SKIP() << "no remora binary";
  itest::TempDir dir;
  auto tokens = dir.writeFile("tokens", "ops:ops-token\nproxy:proxy-token\n");
  dir.writeFile("proxy.token", "proxy-token\n");
  ControlProcess cp(dir);
  ASSERT_TRUE(cp.start("auth: { tokens_file: " + tokens.string() + " }\n"));

  itest::FakeUpstream a(dir, "a");
  ASSERT_TRUE(a.start());
  JsonResponse r = cp.call("PUT", "/v1/services/orders/instances/a",
                           json{{"address", a.address()}}.dump(), "ops-token");
  ASSERT_EQ(r.status, 201) << r.raw;

  itest::RemoraProcess proxy(dir);
  ASSERT_TRUE(proxy.start(kProxyYaml, {{"CP", cp.address()}}))
      << "the proxy is ready only once it ACKed the first snapshot";

  auto nodeAcked = [&](const std::string& version) {
    JsonResponse nodes = cp.get("/v1/nodes");
    for (const json& n : nodes.body) {
      if (n["node_id"] == "e2e-proxy-1" && n["connected"] == true &&
          n["acked_version"] == version) {
        return true;
      }
    }
    return false;
  };
  const std::string v1 = cp.get("/healthz").body["version"];
  EXPECT_TRUE(itest::waitFor([&] { return nodeAcked(v1); }, itest::Duration(5000)))
      << cp.get("/v1/nodes").raw;

  itest::HttpClient client = proxy.client();
  itest::Response resp = client.get("/hello");
  EXPECT_EQ(resp.status, 200) << resp.body;
  EXPECT_EQ(resp.header("x-upstream-name"), "a");

  // A second instance: pushed, applied, acknowledged, and it gets traffic.
  itest::FakeUpstream b(dir, "b");
  ASSERT_TRUE(b.start());
  r = cp.call("PUT", "/v1/services/orders/instances/b", json{{"address", b.address()}}.dump(),
              "ops-token");
  ASSERT_EQ(r.status, 201) << r.raw;
  const std::string v2 = r.body["version"];
  EXPECT_TRUE(itest::waitFor([&] { return nodeAcked(v2); }, itest::Duration(5000)))
      << cp.get("/v1/nodes").raw;
  EXPECT_TRUE(
      itest::waitFor([&] { return proxy.client().get("/x").header("x-upstream-name") == "b"; },
                     itest::Duration(5000)));

  // Deregistered: the proxy stops sending there.
  ASSERT_EQ(cp.call("DELETE", "/v1/services/orders/instances/a", "", "ops-token").status, 200);
  const std::string v3 = cp.get("/healthz").body["version"];
  EXPECT_TRUE(itest::waitFor([&] { return nodeAcked(v3); }, itest::Duration(5000)));
  a.resetStats();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(proxy.client().get("/y").header("x-upstream-name"), "b");
  EXPECT_EQ(a.stats()->requests, 0u);
}

}  // namespace
}  // namespace remora::control::test
