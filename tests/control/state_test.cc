// ControlState: versions and history, snapshot building (policy + registry), policy parsing,
// and the state's JSON round trip.

#include "state.h"

#include <gtest/gtest.h>

#include "fake_time_source.h"
#include "remora/config/json.h"

namespace remora::control {
namespace {

InstanceSpec spec(const std::string& address, uint32_t weight = 1) {
  InstanceSpec s;
  s.address = *config::parseAddress(address);
  s.weight = weight;
  return s;
}

config::Cluster policy(const std::string& text, const std::string& name) {
  std::vector<std::string> errors;
  std::optional<config::Cluster> c = parsePolicy(text, name, "test", errors);
  EXPECT_TRUE(c.has_value()) << (errors.empty() ? "" : errors.front());
  return c.value_or(config::Cluster{});
}

class StateTest : public ::testing::Test {
 protected:
  FakeTimeSource time_;
  ControlState state_{time_, 1000};
};

TEST_F(StateTest, CommitBumpsTheVersionAndRecordsHistory) {
  EXPECT_EQ(state_.version(), 0u);
  EXPECT_EQ(state_.commit("alice", "one"), 1u);
  EXPECT_EQ(state_.commit("bob", "two"), 2u);
  ASSERT_EQ(state_.history().size(), 2u);
  EXPECT_EQ(state_.history()[1].version, 2u);
  EXPECT_EQ(state_.history()[1].actor, "bob");
  EXPECT_EQ(state_.history()[1].change, "two");
  EXPECT_FALSE(state_.history()[1].time.empty());
}

TEST_F(StateTest, HistoryIsBounded) {
  ControlState small(time_, 3);
  for (int i = 0; i < 10; ++i) small.commit("a", "change " + std::to_string(i));
  ASSERT_EQ(small.history().size(), 3u);
  EXPECT_EQ(small.history().front().version, 8u);
  EXPECT_EQ(small.version(), 10u);
}

TEST_F(StateTest, ServiceWithoutPolicyGetsDefaultsAndWeightedRoundRobin) {
  state_.registry().upsert("orders", "b", spec("10.0.0.2:80", 3));
  state_.registry().upsert("orders", "a", spec("10.0.0.1:80", 1));
  auto clusters = state_.clusters();
  ASSERT_EQ(clusters.size(), 1u);
  EXPECT_EQ(clusters[0].name, "orders");
  EXPECT_EQ(clusters[0].lb_policy, config::LbPolicy::WeightedRoundRobin);
  ASSERT_EQ(clusters[0].endpoints.size(), 2u);
  EXPECT_EQ(clusters[0].endpoints[0].address.str(), "10.0.0.1:80") << "in instance id order";
  EXPECT_EQ(clusters[0].endpoints[1].weight, 3u);
}

TEST_F(StateTest, PolicyPlusRegistryPlusStaticEndpoints) {
  state_.setPolicy(policy(R"({"lb_policy": "least_request", "connect_timeout": "2s",
      "endpoints": [{"address": "10.9.9.9:80", "weight": 7}]})",
                          "orders"));
  state_.setPolicy(policy(R"({"lb_policy": "random"})", "payments"));
  state_.registry().upsert("orders", "a", spec("10.0.0.1:80", 2));
  state_.registry().upsert("orders", "dup", spec("10.9.9.9:80", 1));  // static address wins
  state_.registry().upsert("orders", "down", spec("10.0.0.3:80"));
  state_.registry().heartbeat("orders", "down", InstanceStatus::Down);

  auto clusters = state_.clusters();
  ASSERT_EQ(clusters.size(), 2u);
  const config::Cluster& orders = clusters[0];
  EXPECT_EQ(orders.name, "orders");
  EXPECT_EQ(orders.lb_policy, config::LbPolicy::LeastRequest);
  EXPECT_EQ(orders.connect_timeout, config::Duration(2000));
  ASSERT_EQ(orders.endpoints.size(), 2u);
  EXPECT_EQ(orders.endpoints[0].address.str(), "10.9.9.9:80");
  EXPECT_EQ(orders.endpoints[0].weight, 7u);
  EXPECT_EQ(orders.endpoints[1].address.str(), "10.0.0.1:80");
  EXPECT_EQ(clusters[1].name, "payments");
  EXPECT_TRUE(clusters[1].endpoints.empty()) << "a policy alone is a cluster without endpoints";

  // The JSON is the proxy's schema, and the proxy's parser takes it back.
  nlohmann::json j = state_.clustersJson();
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j[0]["name"], "orders");
  EXPECT_EQ(j[0]["lb_policy"], "least_request");
  EXPECT_EQ(j[0]["endpoints"][1]["address"], "10.0.0.1:80");
  for (const auto& c : j) {
    std::vector<std::string> errors;
    EXPECT_TRUE(parsePolicy(c.dump(), "", "pushed", errors).has_value())
        << (errors.empty() ? "" : errors.front());
  }
}

TEST_F(StateTest, SetPolicyReportsWhetherItChanged) {
  EXPECT_TRUE(state_.setPolicy(policy(R"({"lb_policy": "random"})", "a")));
  EXPECT_FALSE(state_.setPolicy(policy(R"({"lb_policy": "random"})", "a")));
  EXPECT_TRUE(state_.setPolicy(policy(R"({"lb_policy": "round_robin"})", "a")));
  EXPECT_TRUE(state_.removePolicy("a"));
  EXPECT_FALSE(state_.removePolicy("a"));
}

TEST(ParsePolicyTest, ReportsPositionsAndNameConflicts) {
  std::vector<std::string> errors;
  EXPECT_FALSE(parsePolicy("{\"lb_policy\": \"fastest\"}", "a", "<request body>", errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind("<request body>:1:", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("fastest"), std::string::npos);

  errors.clear();
  EXPECT_FALSE(parsePolicy("{\"name\": \"b\"}", "a", "body", errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("URL"), std::string::npos) << errors[0];

  errors.clear();
  EXPECT_FALSE(parsePolicy("[1, 2]", "a", "body", errors));
  errors.clear();
  EXPECT_FALSE(parsePolicy("{\"lb_policy\": ", "a", "body", errors));
  ASSERT_FALSE(errors.empty());

  errors.clear();
  EXPECT_FALSE(parsePolicy("{\"bulkhead\": {\"max_queue\": -1}, \"colour\": 1}", "a", "b", errors));
  EXPECT_EQ(errors.size(), 2u) << "every error at once";
}

TEST_F(StateTest, StateJsonRoundTrip) {
  state_.setPolicy(policy(R"({"circuit_breaker": {"consecutive_failures": 3}})", "orders"));
  state_.commit("alice", "policy set orders");
  InstanceSpec s = spec("10.0.0.1:80", 2);
  s.metadata = {{"version", "v2"}};
  state_.registry().upsert("orders", "a", s);
  state_.commit("alice", "register orders/a");
  state_.registry().upsert("users", "u1", spec("10.0.1.1:80"));
  state_.commit("bob", "register users/u1");

  const std::string text = state_.toStateJson().dump();
  ControlState loaded(time_, 1000);
  std::string error;
  ASSERT_TRUE(loaded.loadStateJson(nlohmann::json::parse(text), error)) << error;
  EXPECT_EQ(loaded.version(), 3u);
  EXPECT_EQ(loaded.history().size(), 3u);
  EXPECT_EQ(loaded.history().back().actor, "bob");
  EXPECT_EQ(loaded.clustersJson(), state_.clustersJson());
  EXPECT_EQ(loaded.toStateJson(), state_.toStateJson());
  // Versions continue from the loaded one.
  EXPECT_EQ(loaded.commit("carol", "next"), 4u);
}

TEST_F(StateTest, LoadRefusesOtherFormatsAndLeavesStateAlone) {
  state_.commit("a", "x");
  std::string error;
  EXPECT_FALSE(state_.loadStateJson({{"format", 99}}, error));
  EXPECT_FALSE(error.empty());
  EXPECT_FALSE(state_.loadStateJson(nlohmann::json::array(), error));
  EXPECT_FALSE(state_.loadStateJson({{"format", kStateFormat},
                                     {"version", 5},
                                     {"policies", {{{"name", "x"}, {"lb_policy", 3}}}},
                                     {"history", nlohmann::json::array()},
                                     {"services", nlohmann::json::object()}},
                                    error));
  EXPECT_EQ(state_.version(), 1u);
}

// The cached snapshot text must always be what a fresh serialization gives, whatever changed.
TEST_F(StateTest, ClustersTextFollowsEveryKindOfChange) {
  auto same = [&](const char* after) {
    EXPECT_EQ(state_.clustersText(), state_.clustersJson().dump()) << "after " << after;
  };
  same("nothing");
  state_.registry().upsert("orders", "a", spec("10.0.0.1:80"));
  state_.registry().upsert("web", "w", spec("10.0.1.1:80"));
  same("two registrations");
  state_.registry().upsert("orders", "b", spec("10.0.0.2:80", 2));
  same("a registration in one service");
  state_.registry().upsert("orders", "b", spec("10.0.0.2:80", 5));
  same("a weight change");
  state_.registry().heartbeat("orders", "a", InstanceStatus::Down);
  same("a status change");
  state_.registry().heartbeat("orders", "a", std::nullopt);
  same("a plain renewal");
  state_.setPolicy(policy(R"({"lb_policy": "random"})", "orders"));
  same("a policy");
  state_.setPolicy(policy(R"({"lb_policy": "round_robin"})", "orders"));
  same("a policy change");
  state_.setPolicy(policy(R"({"endpoints": [{"address": "10.9.9.9:80"}]})", "static-only"));
  same("a policy-only cluster");
  state_.removePolicy("orders");
  same("a policy removed");
  time_.advance(std::chrono::seconds(31));
  state_.registry().heartbeat("web", "w", std::nullopt);
  state_.registry().expire();
  same("an expiry to UNKNOWN");
  state_.registry().remove("web", "w");
  same("the last instance of a service removed");
  state_.registry().remove("orders", "a");
  state_.registry().remove("orders", "b");
  same("a service gone");
  // A copy (the persister's) starts without the cache and gives the same text.
  state_.registry().upsert("orders", "c", spec("10.0.0.3:80"));
  const ControlState copy = state_;
  EXPECT_EQ(copy.clustersText(), state_.clustersText());
  nlohmann::json saved = state_.toStateJson();
  std::string error;
  ASSERT_TRUE(state_.loadStateJson(saved, error)) << error;
  same("a reload");
}

TEST(NameTest, ValidNames) {
  EXPECT_TRUE(isValidName("orders-v1.internal_2"));
  EXPECT_FALSE(isValidName(""));
  EXPECT_FALSE(isValidName("a/b"));
  EXPECT_FALSE(isValidName("a b"));
  EXPECT_FALSE(isValidName(std::string(200, 'a')));
  EXPECT_FALSE(isValidName("."));
  EXPECT_FALSE(isValidName(".."));
  EXPECT_TRUE(isValidName("..."));  // not a dot segment
  EXPECT_TRUE(isValidName(".hidden"));
}

}  // namespace
}  // namespace remora::control
