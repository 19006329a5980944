// Snapshot::build(..., previous): a cluster equal in both configs shares its endpoint set (and
// with it the endpoints' runtime and breakers) with the snapshot it replaces; any change to the
// cluster, or a DNS host in it, builds a fresh set.

#include <gtest/gtest.h>

#include <string>

#include "snapshot.h"

namespace remora {
namespace {

constexpr const char* kBase = R"(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: in
    address: 127.0.0.1:15001
    routes:
      - { name: a, match: { prefix: /a }, cluster: a }
      - { name: b, match: { prefix: /b }, cluster: b }
clusters:
  - name: a
    circuit_breaker: { consecutive_failures: 3 }
    endpoints: [{address: 127.0.0.1:8081}, {address: 127.0.0.1:8082}]
  - name: b
    endpoints: [{address: 127.0.0.1:8083}]
)";

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

class SnapshotReuseTest : public ::testing::Test {
 protected:
  SnapshotConstSharedPtr build(const std::string& yaml, const Snapshot* previous) {
    config::LoadResult r = config::loadString(yaml, "test.yaml");
    EXPECT_TRUE(r.ok()) << r.formatErrors();
    if (!r.ok()) return nullptr;
    std::string error;
    auto snap = Snapshot::build(r.config, ++version_, "file", stats_, runtime_, error, previous);
    EXPECT_NE(snap, nullptr) << error;
    return snap;
  }
  StatsStore stats_;
  RuntimeRegistry runtime_{stats_, RealTimeSource::instance()};
  uint64_t version_ = 0;
};

TEST_F(SnapshotReuseTest, UnchangedClusterSharesItsEndpointSetAndState) {
  auto first = build(kBase, nullptr);
  ASSERT_NE(first, nullptr);
  // b gains an endpoint; a is untouched.
  auto second = build(replaced(kBase, "{address: 127.0.0.1:8083}",
                               "{address: 127.0.0.1:8083}, {address: 127.0.0.1:8084}"),
                      first.get());
  ASSERT_NE(second, nullptr);
  const ClusterInfo* a1 = first->findCluster("a");
  const ClusterInfo* a2 = second->findCluster("a");
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(a2, nullptr);
  EXPECT_EQ(a1->endpoint_set, a2->endpoint_set) << "a did not change: nothing to rebuild";
  EXPECT_EQ(a1->breakers, a2->breakers);
  EXPECT_EQ(&a2->config->name, &second->config().findCluster("a")->name)
      << "the cluster's config is the new snapshot's own";
  EXPECT_EQ(a2->stats, a1->stats);

  const ClusterInfo* b1 = first->findCluster("b");
  const ClusterInfo* b2 = second->findCluster("b");
  EXPECT_NE(b1->endpoint_set, b2->endpoint_set);
  ASSERT_EQ(b2->endpoints().size(), 2u);
  EXPECT_EQ(b2->endpoints()[0].runtime, b1->endpoints()[0].runtime)
      << "a kept endpoint keeps its runtime state in a rebuilt set";
  EXPECT_NE(b2->endpoints()[1].runtime, nullptr);

  // The routes of the new snapshot point at its own clusters.
  const ListenerInfo* in = second->findListener("in");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->routes[0].clusters[0], a2);
  EXPECT_EQ(in->routes[1].clusters[0], b2);
}

TEST_F(SnapshotReuseTest, AnyChangeToTheClusterRebuildsIt) {
  auto first = build(kBase, nullptr);
  ASSERT_NE(first, nullptr);
  const struct {
    const char* what;
    std::string yaml;
  } cases[] = {
      {"breaker settings", replaced(kBase, "consecutive_failures: 3", "consecutive_failures: 4")},
      {"an endpoint weight",
       replaced(kBase, "{address: 127.0.0.1:8082}", "{address: 127.0.0.1:8082, weight: 2}")},
      {"the lb policy",
       replaced(kBase, "  - name: a\n", "  - name: a\n    lb_policy: least_request\n")},
  };
  for (const auto& c : cases) {
    auto next = build(c.yaml, first.get());
    ASSERT_NE(next, nullptr) << c.what;
    EXPECT_NE(next->findCluster("a")->endpoint_set, first->findCluster("a")->endpoint_set)
        << c.what;
    EXPECT_EQ(next->findCluster("b")->endpoint_set, first->findCluster("b")->endpoint_set)
        << c.what;
    first = next;  // what the server does: each build lends to the next
  }
}

TEST_F(SnapshotReuseTest, ClusterWithDnsHostIsResolvedAgainEveryTime) {
  const std::string yaml = replaced(kBase, "{address: 127.0.0.1:8083}", "{address: localhost:8083}");
  auto first = build(yaml, nullptr);
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->findCluster("b")->resolves_names);
  EXPECT_FALSE(first->findCluster("a")->resolves_names);
  auto second = build(yaml, first.get());
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->findCluster("b")->endpoint_set, first->findCluster("b")->endpoint_set)
      << "a host name is looked up again on every reload";
  EXPECT_EQ(second->findCluster("a")->endpoint_set, first->findCluster("a")->endpoint_set);
}

TEST_F(SnapshotReuseTest, RemovedThenReaddedClusterStartsFresh) {
  auto first = build(kBase, nullptr);
  ASSERT_NE(first, nullptr);
  std::string without_b = replaced(kBase, "      - { name: b, match: { prefix: /b }, cluster: b }\n", "");
  without_b = replaced(without_b, "  - name: b\n    endpoints: [{address: 127.0.0.1:8083}]\n", "");
  auto second = build(without_b, first.get());
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->findCluster("b"), nullptr);
  auto third = build(kBase, second.get());
  ASSERT_NE(third, nullptr);
  EXPECT_NE(third->findCluster("b")->endpoint_set, first->findCluster("b")->endpoint_set);
  EXPECT_NE(third->findCluster("b")->endpoints()[0].runtime,
            first->findCluster("b")->endpoints()[0].runtime)
      << "the runtime state of a removed cluster is gone";
}

}  // namespace
}  // namespace remora
