// The registry's TTL state machine, driven by a fake clock.

#include "registry.h"

#include <gtest/gtest.h>

#include "fake_time_source.h"
#include "json_text.h"

namespace remora::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

InstanceSpec spec(const std::string& address, uint32_t weight = 1,
                  config::Duration ttl = config::Duration(10000)) {
  InstanceSpec s;
  s.address = *config::parseAddress(address);
  s.weight = weight;
  s.ttl = ttl;
  return s;
}

class RegistryTest : public ::testing::Test {
 protected:
  FakeTimeSource time_;
  Registry registry_{time_};

  InstanceStatus status(const std::string& svc, const std::string& id) {
    const Instance* i = registry_.findInstance(svc, id);
    EXPECT_NE(i, nullptr) << svc << "/" << id;
    return i == nullptr ? InstanceStatus::Unknown : i->status();
  }
};

TEST_F(RegistryTest, RegisterMakesAnUpEndpoint) {
  auto r = registry_.upsert("orders", "a", spec("10.0.0.1:80", 3));
  EXPECT_TRUE(r.created);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Up);
  auto eps = registry_.endpoints("orders");
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].address.str(), "10.0.0.1:80");
  EXPECT_EQ(eps[0].weight, 3u);
}

TEST_F(RegistryTest, SameRegistrationTwiceIsARenewalNotAChange) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  auto r = registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  EXPECT_FALSE(r.created);
  EXPECT_FALSE(r.changed);
  r = registry_.upsert("orders", "a", spec("10.0.0.1:80", 2));
  EXPECT_TRUE(r.changed);
}

TEST_F(RegistryTest, TtlLapseMakesUnknownThenRemovedAfterThreeTtls) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80", 1, config::Duration(10000)));
  ASSERT_TRUE(registry_.nextDeadline().has_value());
  EXPECT_EQ(*registry_.nextDeadline(), time_.now() + seconds(10));

  time_.advance(milliseconds(9999));
  EXPECT_TRUE(registry_.expire().empty());
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Up);

  time_.advance(milliseconds(1));
  auto t = registry_.expire();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_FALSE(t[0].removed);
  EXPECT_EQ(t[0].from, InstanceStatus::Up);
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Unknown);
  EXPECT_TRUE(registry_.endpoints("orders").empty()) << "UNKNOWN is not an endpoint";
  EXPECT_EQ(*registry_.nextDeadline(), time_.now() + seconds(20));

  time_.advance(seconds(19));
  EXPECT_TRUE(registry_.expire().empty());
  time_.advance(seconds(1));
  t = registry_.expire();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_TRUE(t[0].removed);
  EXPECT_EQ(t[0].from, InstanceStatus::Unknown);
  EXPECT_EQ(registry_.findService("orders"), nullptr) << "an empty service disappears";
  EXPECT_FALSE(registry_.nextDeadline().has_value());
}

TEST_F(RegistryTest, HeartbeatRenewsAndRevivesUnknown) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  time_.advance(seconds(8));
  EXPECT_EQ(registry_.heartbeat("orders", "a", std::nullopt), Registry::HeartbeatResult::Renewed);
  time_.advance(seconds(8));
  EXPECT_TRUE(registry_.expire().empty()) << "the heartbeat restarted the TTL";
  time_.advance(seconds(3));
  ASSERT_EQ(registry_.expire().size(), 1u);
  EXPECT_EQ(registry_.heartbeat("orders", "a", std::nullopt),
            Registry::HeartbeatResult::StatusChanged);
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Up);
}

TEST_F(RegistryTest, DownIsReportedKeptAcrossRenewalsAndNotAnEndpoint) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  EXPECT_EQ(registry_.heartbeat("orders", "a", InstanceStatus::Down),
            Registry::HeartbeatResult::StatusChanged);
  EXPECT_TRUE(registry_.endpoints("orders").empty());
  EXPECT_EQ(registry_.heartbeat("orders", "a", std::nullopt), Registry::HeartbeatResult::Renewed);
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Down);
  // Lapsed, then renewed without a status: back to what it last reported.
  time_.advance(seconds(11));
  registry_.expire();
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Unknown);
  registry_.heartbeat("orders", "a", std::nullopt);
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Down);
  // Re-registering is UP again.
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  EXPECT_EQ(status("orders", "a"), InstanceStatus::Up);
}

TEST_F(RegistryTest, HeartbeatReportsTheStatusBefore) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  InstanceStatus before = InstanceStatus::Unknown;
  EXPECT_EQ(registry_.heartbeat("orders", "a", InstanceStatus::Down, &before),
            Registry::HeartbeatResult::StatusChanged);
  EXPECT_EQ(before, InstanceStatus::Up);
  time_.advance(seconds(11));
  registry_.expire();
  EXPECT_EQ(registry_.heartbeat("orders", "a", std::nullopt, &before),
            Registry::HeartbeatResult::StatusChanged);
  EXPECT_EQ(before, InstanceStatus::Unknown) << "lapsed";
  before = InstanceStatus::Up;
  EXPECT_EQ(registry_.heartbeat("orders", "x", std::nullopt, &before),
            Registry::HeartbeatResult::NotFound);
  EXPECT_EQ(before, InstanceStatus::Up) << "untouched when there is no such instance";
}

TEST(FormatWallTimeTest, MillisecondsUtcFixedWidth) {
  using std::chrono::system_clock;
  EXPECT_EQ(formatWallTime(system_clock::time_point(milliseconds(5))), "1970-01-01T00:00:00.005Z");
  // 2024-05-01T12:03:04.120Z (a leap year, after February).
  EXPECT_EQ(formatWallTime(system_clock::time_point(milliseconds(int64_t{1714564984120}))),
            "2024-05-01T12:03:04.120Z");
  EXPECT_EQ(formatWallTime(system_clock::time_point(milliseconds(int64_t{4102444799999}))),
            "2099-12-31T23:59:59.999Z");
}

TEST(JsonTextTest, StringsRoundTripThroughAJsonParser) {
  const std::string cases[] = {
      "",          "plain",         "a\"b",      "back\\slash",
      "\"\\\"",    "tab\tnl\ncr\r", "\x01\x1f!", "caf\xc3\xa9 \xe2\x82\xac",
      "trailing\\"};
  for (const std::string& s : cases) {
    std::string out = "x";
    appendJsonString(out, s);
    EXPECT_EQ(out.front(), 'x');
    EXPECT_EQ(nlohmann::json::parse(out.substr(1)).get<std::string>(), s) << out;
  }
  std::string out;
  appendJsonString(out, "\x01");
  EXPECT_EQ(out, "\"\\u0001\"");
}

TEST_F(RegistryTest, InstanceJsonTextIsTheTreeWithSortedKeys) {
  InstanceSpec s = spec("10.0.0.1:80", 7, config::Duration(1500));
  s.metadata = {{"zone", "a\"b"}, {"n", 1}};
  registry_.upsert("orders", "a:1", s);
  registry_.upsert("orders", "plain", spec("[::1]:80"));
  time_.advance(milliseconds(250));
  for (const char* id : {"a:1", "plain"}) {
    const Instance* inst = registry_.findInstance("orders", id);
    ASSERT_NE(inst, nullptr);
    std::string text;
    registry_.appendInstanceJson(text, *inst);
    const nlohmann::json tree = nlohmann::json::parse(text);
    // nlohmann writes object keys in name order: the text must be exactly its own dump.
    EXPECT_EQ(text, tree.dump()) << id;
    EXPECT_EQ(tree, registry_.instanceJson(*inst));
  }
  std::string text;
  registry_.appendInstanceJson(text, *registry_.findInstance("orders", "a:1"));
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["id"], "a:1");
  EXPECT_EQ(j["address"], "10.0.0.1:80");
  EXPECT_EQ(j["weight"], 7);
  EXPECT_EQ(j["ttl"], "1500ms");
  EXPECT_EQ(j["status"], "UP");
  EXPECT_EQ(j["metadata"]["zone"], "a\"b");
  EXPECT_EQ(j["since_heartbeat"], "250ms");
  EXPECT_EQ(j["registered_at"].get<std::string>().size(), 24u);
  EXPECT_EQ(j["last_heartbeat"], j["registered_at"]);
  EXPECT_EQ(j.size(), 9u);
}

TEST_F(RegistryTest, UnknownInstancesAndServices) {
  EXPECT_EQ(registry_.heartbeat("orders", "x", std::nullopt), Registry::HeartbeatResult::NotFound);
  EXPECT_FALSE(registry_.remove("orders", "x"));
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  EXPECT_FALSE(registry_.remove("orders", "x"));
  EXPECT_TRUE(registry_.remove("orders", "a"));
  EXPECT_EQ(registry_.findService("orders"), nullptr);
}

TEST_F(RegistryTest, EndpointsSkipWeightZeroAndDuplicateAddresses) {
  registry_.upsert("orders", "b", spec("10.0.0.1:80", 5));
  registry_.upsert("orders", "a", spec("10.0.0.1:80", 2));  // same address, smaller id wins
  registry_.upsert("orders", "c", spec("10.0.0.3:80", 0));  // drained
  registry_.upsert("orders", "d", spec("10.0.0.4:80", 1));
  auto eps = registry_.endpoints("orders");
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[0].address.str(), "10.0.0.1:80");
  EXPECT_EQ(eps[0].weight, 2u);
  EXPECT_EQ(eps[1].address.str(), "10.0.0.4:80");
}

TEST_F(RegistryTest, ExpireReportsTransitionsInDeadlineOrder) {
  registry_.upsert("svc", "slow", spec("10.0.0.1:80", 1, config::Duration(5000)));
  registry_.upsert("svc", "fast", spec("10.0.0.2:80", 1, config::Duration(1000)));
  time_.advance(seconds(4));  // fast: UNKNOWN at 1s, removed at 3s; slow still UP
  auto t = registry_.expire();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].id, "fast");
  EXPECT_TRUE(t[0].removed) << "a clock jump past 3 TTLs removes at once";
  time_.advance(seconds(1));
  t = registry_.expire();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].id, "slow");
  EXPECT_FALSE(t[0].removed);
}

TEST_F(RegistryTest, StateRoundTripRestartsClocksAndKeepsStatus) {
  InstanceSpec s = spec("10.0.0.1:80", 4, config::Duration(10000));
  s.metadata = {{"zone", "a"}};
  registry_.upsert("orders", "up", s);
  registry_.upsert("orders", "lapsed", spec("10.0.0.2:80"));
  registry_.upsert("orders", "down", spec("10.0.0.3:80"));
  registry_.heartbeat("orders", "down", InstanceStatus::Down);
  time_.advance(seconds(9));
  registry_.heartbeat("orders", "up", std::nullopt);
  registry_.heartbeat("orders", "down", std::nullopt);
  time_.advance(seconds(2));
  registry_.expire();  // "lapsed" -> UNKNOWN
  const nlohmann::json saved = registry_.toStateJson();

  FakeTimeSource later;
  later.advance(std::chrono::hours(5));
  Registry loaded(later);
  std::string error;
  ASSERT_TRUE(loaded.loadStateJson(saved, error)) << error;
  EXPECT_EQ(loaded.toStateJson(), saved);
  EXPECT_EQ(loaded.findInstance("orders", "up")->status(), InstanceStatus::Up);
  EXPECT_EQ(loaded.findInstance("orders", "down")->status(), InstanceStatus::Down);
  EXPECT_EQ(loaded.findInstance("orders", "lapsed")->status(), InstanceStatus::Unknown);
  EXPECT_EQ(loaded.findInstance("orders", "up")->spec.metadata["zone"], "a");
  // Clocks restart at load: UP instances get a full TTL, the UNKNOWN one the rest of its grace.
  later.advance(seconds(19));
  auto t = loaded.expire();
  ASSERT_EQ(t.size(), 2u);  // up and down lapse at +10s; "lapsed" is removed at +20s
  later.advance(seconds(1));
  t = loaded.expire();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].id, "lapsed");
  EXPECT_TRUE(t[0].removed);
}

TEST_F(RegistryTest, LoadRejectsGarbageAndKeepsContent) {
  registry_.upsert("orders", "a", spec("10.0.0.1:80"));
  std::string error;
  EXPECT_FALSE(registry_.loadStateJson(
      {{"orders", {{"instances", {{"x", {{"address", "nope"}}}}}}}}, error));
  EXPECT_FALSE(error.empty());
  EXPECT_NE(registry_.findInstance("orders", "a"), nullptr);
}

}  // namespace
}  // namespace remora::control
