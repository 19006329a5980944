#include <gtest/gtest.h>

#include <map>

#include "snapshot.h"

namespace remora {
namespace {

SnapshotConstSharedPtr buildSnapshot(const std::string& yaml, StatsStore& stats) {
  config::LoadResult r = config::loadString(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.formatErrors();
  if (!r.ok()) return nullptr;
  std::string error;
  static RuntimeRegistry* runtime = new RuntimeRegistry(stats, RealTimeSource::instance());
  auto snap = Snapshot::build(r.config, 1, "file", stats, *runtime, error);
  EXPECT_NE(snap, nullptr) << error;
  return snap;
}

constexpr const char* kConfig = R"(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: in
    address: 127.0.0.1:15001
    routes:
      - name: exact
        match: { path: /exact }
        cluster: a
      - name: canary
        match: { prefix: /api/, headers: { X-Canary: "1" } }
        cluster: b
      - name: api-get
        match: { prefix: /api/, method: GET }
        cluster: a
      - name: split
        match: { prefix: /split }
        clusters: [{name: a, weight: 90}, {name: b, weight: 10}]
      - name: fallthrough
        match: { prefix: / }
        cluster: b
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:8081}]
  - name: b
    endpoints: [{address: 127.0.0.1:8082}, {address: "[::1]:8083"}]
)";

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snap_ = buildSnapshot(kConfig, stats_);
    ASSERT_NE(snap_, nullptr);
    listener_ = snap_->findListener("in");
    ASSERT_NE(listener_, nullptr);
  }
  std::string match(std::string_view method, std::string_view path,
                    const http::HeaderMap& headers = {}) {
    const RouteInfo* r = matchRoute(*listener_, method, path, headers);
    return r == nullptr ? "<none>" : r->config->name;
  }
  StatsStore stats_;
  SnapshotConstSharedPtr snap_;
  const ListenerInfo* listener_ = nullptr;
};

TEST_F(RouterTest, ExactPathMatchesOnlyThatPath) {
  EXPECT_EQ(match("GET", "/exact"), "exact");
  EXPECT_EQ(match("GET", "/exact/more"), "fallthrough");
  EXPECT_EQ(match("GET", "/exac"), "fallthrough");
}

TEST_F(RouterTest, FirstMatchWinsWithHeadersAndMethod) {
  http::HeaderMap canary;
  canary.add("x-canary", "1");
  EXPECT_EQ(match("POST", "/api/x", canary), "canary");
  EXPECT_EQ(match("GET", "/api/x", canary), "canary");  // listed first
  EXPECT_EQ(match("GET", "/api/x"), "api-get");
  EXPECT_EQ(match("POST", "/api/x"), "fallthrough");
  http::HeaderMap wrong;
  wrong.add("x-canary", "2");
  EXPECT_EQ(match("GET", "/api/x", wrong), "api-get");
}

TEST_F(RouterTest, RoutesLinkToClustersAndResolveEndpoints) {
  const RouteInfo& exact = listener_->routes[0];
  ASSERT_EQ(exact.clusters.size(), 1u);
  EXPECT_EQ(exact.clusters[0]->name(), "a");
  const ClusterInfo* b = snap_->findCluster("b");
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->endpoints().size(), 2u);
  EXPECT_EQ(b->endpoints()[0].key, "127.0.0.1:8082");
  EXPECT_EQ(b->endpoints()[0].addr.ss_family, AF_INET);
  EXPECT_EQ(b->endpoints()[1].addr.ss_family, AF_INET6);
}

TEST_F(RouterTest, WeightedSplitFollowsWeights) {
  const RouteInfo& split = listener_->routes[3];
  ASSERT_EQ(split.total_weight, 100u);
  std::map<std::string, int> counts;
  // Evenly spaced points over the 32-bit range: the split must be exact to within one step.
  constexpr int kN = 10000;
  for (int i = 0; i < kN; ++i) {
    uint32_t r = static_cast<uint32_t>((static_cast<uint64_t>(i) << 32) / kN);
    counts[split.pickCluster(r)->name()]++;
  }
  EXPECT_NEAR(counts["a"], 9000, 1);
  EXPECT_NEAR(counts["b"], 1000, 1);
}

TEST(SnapshotTest, UnresolvableHostIsAnError) {
  config::LoadResult r = config::loadString(R"(
listeners:
  - name: in
    address: 127.0.0.1:15001
    routes: [{match: {prefix: /}, cluster: a}]
clusters:
  - name: a
    endpoints: [{address: "no-such-host.invalid:80"}]
)",
                                            "t.yaml");
  ASSERT_TRUE(r.ok()) << r.formatErrors();
  StatsStore stats;
  RuntimeRegistry runtime(stats, RealTimeSource::instance());
  std::string error;
  EXPECT_EQ(Snapshot::build(r.config, 1, "file", stats, runtime, error), nullptr);
  EXPECT_NE(error.find("no-such-host.invalid"), std::string::npos) << error;
}

}  // namespace
}  // namespace remora
