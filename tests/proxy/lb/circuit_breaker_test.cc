#include "lb/circuit_breaker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mocks/fake_time_source.h"

namespace remora::lb {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;

config::CircuitBreaker breakerConfig(uint32_t consecutive = 5) {
  config::CircuitBreaker c;
  c.consecutive_failures = consecutive;
  c.open_duration = 30s;
  c.half_open_max_requests = 1;
  c.success_threshold = 2;
  c.max_ejection_percent = 100;
  return c;
}

config::CircuitBreaker rateConfig(uint32_t threshold_percent, uint32_t min_requests) {
  config::CircuitBreaker c = breakerConfig(/*consecutive=*/0);
  c.failure_rate = config::FailureRate{threshold_percent, 10s, min_requests};
  return c;
}

// One request through the breaker: acquire, then report. Returns false if it was refused.
bool request(CircuitBreaker& breaker, bool success) {
  CircuitBreaker::Permit permit = breaker.tryAcquire();
  if (!permit) return false;
  breaker.onResult(permit, success);
  return true;
}

void fail(CircuitBreaker& breaker, int n) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(request(breaker, false));
}
void succeed(CircuitBreaker& breaker, int n) {
  for (int i = 0; i < n; ++i) ASSERT_TRUE(request(breaker, true));
}

class CircuitBreakerTest : public testing::Test {
 protected:
  FakeTimeSource time_;
};

TEST_F(CircuitBreakerTest, StartsClosedAndAdmits) {
  CircuitBreaker breaker("127.0.0.1:8081", breakerConfig(), time_);
  EXPECT_EQ(breaker.state(), State::Closed);
  EXPECT_TRUE(breaker.isAvailable());
  CircuitBreaker::Permit permit = breaker.tryAcquire();
  EXPECT_TRUE(permit);
  EXPECT_FALSE(permit.isProbe());
  breaker.onResult(permit, true);
  EXPECT_EQ(breaker.key(), "127.0.0.1:8081");
}

TEST_F(CircuitBreakerTest, StateValuesAreTheGaugeValues) {
  EXPECT_EQ(static_cast<int>(State::Closed), 0);
  EXPECT_EQ(static_cast<int>(State::Open), 1);
  EXPECT_EQ(static_cast<int>(State::HalfOpen), 2);
}

TEST_F(CircuitBreakerTest, ConsecutiveFailuresOpen) {
  CircuitBreaker breaker("e", breakerConfig(5), time_);
  fail(breaker, 4);
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
  EXPECT_FALSE(breaker.isAvailable());
  EXPECT_FALSE(breaker.tryAcquire());
}

TEST_F(CircuitBreakerTest, SuccessResetsTheConsecutiveCount) {
  CircuitBreaker breaker("e", breakerConfig(5), time_);
  fail(breaker, 4);
  succeed(breaker, 1);
  fail(breaker, 4);
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, ZeroConsecutiveFailuresDisablesThatTrigger) {
  CircuitBreaker breaker("e", breakerConfig(0), time_);
  fail(breaker, 1000);
  EXPECT_EQ(breaker.state(), State::Closed);
}

TEST_F(CircuitBreakerTest, FailureRateWaitsForMinRequests) {
  CircuitBreaker breaker("e", rateConfig(50, 20), time_);
  fail(breaker, 19);  // 100% failures, but only 19 requests
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, FailureRateOpensAtThreshold) {
  CircuitBreaker breaker("e", rateConfig(50, 20), time_);
  succeed(breaker, 11);
  fail(breaker, 9);  // 9 of 20 = 45%
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);  // 10 of 21 = 47%
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);  // 11 of 22 = 50%
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, FailureRateCountsRequestsSpreadOverTheWindow) {
  CircuitBreaker breaker("e", rateConfig(50, 20), time_);
  for (int i = 0; i < 19; ++i) {
    fail(breaker, 1);
    time_.advance(500ms);  // 19 failures over 9.5s: all still inside the 10s window
  }
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, FailureRateForgetsBucketsOlderThanTheWindow) {
  CircuitBreaker breaker("e", rateConfig(50, 20), time_);
  fail(breaker, 15);
  time_.advance(10s);  // the window (10 buckets of 1s) no longer covers those 15
  fail(breaker, 15);
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 4);
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);  // 20 failures within the window
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, FailureRateOldSuccessesExpireToo) {
  CircuitBreaker breaker("e", rateConfig(50, 10), time_);
  succeed(breaker, 100);
  time_.advance(9s);
  fail(breaker, 20);  // 20 of 120 while the successes are in the window
  EXPECT_EQ(breaker.state(), State::Closed);
  time_.advance(1s);  // the successes' bucket leaves the window: 20 of 20
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, ConsecutiveAndRateTogether) {
  config::CircuitBreaker c = rateConfig(90, 100);
  c.consecutive_failures = 3;
  CircuitBreaker breaker("e", c, time_);
  fail(breaker, 3);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, OpenRejectsUntilOpenDurationThenHalfOpens) {
  CircuitBreaker breaker("e", breakerConfig(1), time_);
  fail(breaker, 1);
  ASSERT_EQ(breaker.state(), State::Open);
  time_.advance(30s - 1ms);
  EXPECT_FALSE(breaker.isAvailable());
  EXPECT_FALSE(breaker.tryAcquire());
  EXPECT_EQ(breaker.state(), State::Open);
  time_.advance(1ms);
  EXPECT_TRUE(breaker.isAvailable());
  EXPECT_EQ(breaker.state(), State::Open);  // the next request notices
  CircuitBreaker::Permit probe = breaker.tryAcquire();
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe.isProbe());
  EXPECT_EQ(breaker.state(), State::HalfOpen);
}

TEST_F(CircuitBreakerTest, HalfOpenAdmitsExactlyMaxConcurrentProbes) {
  config::CircuitBreaker c = breakerConfig(1);
  c.half_open_max_requests = 3;
  c.success_threshold = 10;
  CircuitBreaker breaker("e", c, time_);
  fail(breaker, 1);
  time_.advance(30s);
  std::vector<CircuitBreaker::Permit> probes;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(breaker.isAvailable());
    probes.push_back(breaker.tryAcquire());
    ASSERT_TRUE(probes.back());
    EXPECT_TRUE(probes.back().isProbe());
  }
  EXPECT_FALSE(breaker.isAvailable());
  EXPECT_FALSE(breaker.tryAcquire());
  breaker.onResult(probes[0], true);  // a slot comes back with the result
  EXPECT_TRUE(breaker.isAvailable());
  probes[0] = breaker.tryAcquire();
  EXPECT_TRUE(probes[0]);
  EXPECT_FALSE(breaker.tryAcquire());
  breaker.release(probes[1]);  // and with a request that ended without a result
  EXPECT_TRUE(breaker.tryAcquire());
  EXPECT_FALSE(breaker.tryAcquire());
  EXPECT_EQ(breaker.state(), State::HalfOpen);
}

TEST_F(CircuitBreakerTest, SuccessThresholdProbeSuccessesClose) {
  CircuitBreaker breaker("e", breakerConfig(5), time_);
  fail(breaker, 5);
  time_.advance(30s);
  ASSERT_TRUE(request(breaker, true));
  EXPECT_EQ(breaker.state(), State::HalfOpen);
  ASSERT_TRUE(request(breaker, true));
  EXPECT_EQ(breaker.state(), State::Closed);
  // The counters start over: 4 failures are not enough.
  fail(breaker, 4);
  EXPECT_EQ(breaker.state(), State::Closed);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Open);
}

TEST_F(CircuitBreakerTest, ClosingResetsTheFailureRateWindow) {
  config::CircuitBreaker c = rateConfig(50, 20);
  c.consecutive_failures = 0;
  CircuitBreaker breaker("e", c, time_);
  fail(breaker, 20);
  ASSERT_EQ(breaker.state(), State::Open);
  time_.advance(30s);
  succeed(breaker, 2);
  ASSERT_EQ(breaker.state(), State::Closed);
  fail(breaker, 19);
  EXPECT_EQ(breaker.state(), State::Closed);
}

TEST_F(CircuitBreakerTest, OneProbeFailureReopensForAnotherOpenDuration) {
  config::CircuitBreaker c = breakerConfig(1);
  c.half_open_max_requests = 2;
  CircuitBreaker breaker("e", c, time_);
  fail(breaker, 1);
  time_.advance(30s);
  CircuitBreaker::Permit first = breaker.tryAcquire();
  CircuitBreaker::Permit second = breaker.tryAcquire();
  ASSERT_TRUE(first && second);
  breaker.onResult(first, true);
  breaker.onResult(second, false);
  EXPECT_EQ(breaker.state(), State::Open);
  EXPECT_FALSE(breaker.tryAcquire());
  time_.advance(30s - 1ms);
  EXPECT_FALSE(breaker.tryAcquire());
  time_.advance(1ms);
  EXPECT_TRUE(breaker.tryAcquire());
  EXPECT_EQ(breaker.state(), State::HalfOpen);
}

TEST_F(CircuitBreakerTest, StaleOutcomesAreIgnored) {
  config::CircuitBreaker c = breakerConfig(2);
  c.half_open_max_requests = 1;
  c.success_threshold = 1;
  CircuitBreaker breaker("e", c, time_);
  // A slow request admitted while closed...
  CircuitBreaker::Permit slow = breaker.tryAcquire();
  fail(breaker, 2);
  ASSERT_EQ(breaker.state(), State::Open);
  time_.advance(30s);
  CircuitBreaker::Permit probe = breaker.tryAcquire();
  ASSERT_TRUE(probe.isProbe());
  // ...ends during half-open: it is not a probe result and frees no probe slot.
  breaker.onResult(slow, true);
  EXPECT_EQ(breaker.state(), State::HalfOpen);
  EXPECT_FALSE(breaker.tryAcquire());
  breaker.onResult(slow, false);
  EXPECT_EQ(breaker.state(), State::HalfOpen);
  breaker.onResult(probe, true);
  EXPECT_EQ(breaker.state(), State::Closed);
  // An outcome from the earlier closed period does not count in the new one.
  breaker.onResult(slow, false);
  fail(breaker, 1);
  EXPECT_EQ(breaker.state(), State::Closed);
  // Refused permits are ignored as well.
  breaker.onResult(CircuitBreaker::Permit(), false);
  breaker.release(CircuitBreaker::Permit());
  EXPECT_EQ(breaker.state(), State::Closed);
}

TEST_F(CircuitBreakerTest, ZeroProbeSettingsAreTreatedAsOne) {
  config::CircuitBreaker c = breakerConfig(1);
  c.half_open_max_requests = 0;
  c.success_threshold = 0;
  CircuitBreaker breaker("e", c, time_);
  fail(breaker, 1);
  time_.advance(30s);
  ASSERT_TRUE(request(breaker, true));
  EXPECT_EQ(breaker.state(), State::Closed);
}

// CircuitBreakerSet

std::vector<std::string> keys(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("10.0.0." + std::to_string(i + 1) + ":80");
  return out;
}

TEST(CircuitBreakerSetTest, MaxEjectedRounding) {
  EXPECT_EQ(CircuitBreakerSet::maxEjected(4, 50), 2u);
  EXPECT_EQ(CircuitBreakerSet::maxEjected(3, 50), 1u);  // floor
  EXPECT_EQ(CircuitBreakerSet::maxEjected(5, 10), 1u);  // floor is 0, but one is always allowed
  EXPECT_EQ(CircuitBreakerSet::maxEjected(1, 50), 1u);  // a lone endpoint keeps its breaker
  EXPECT_EQ(CircuitBreakerSet::maxEjected(10, 0), 0u);  // 0% = never open
  EXPECT_EQ(CircuitBreakerSet::maxEjected(10, 100), 10u);
  EXPECT_EQ(CircuitBreakerSet::maxEjected(10, 150), 10u);
  EXPECT_EQ(CircuitBreakerSet::maxEjected(0, 50), 0u);
  EXPECT_EQ(CircuitBreakerSet::maxEjected(7, 30), 2u);
}

TEST(CircuitBreakerSetTest, MaxEjectionPercentCapsOpenEndpoints) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(1);
  c.max_ejection_percent = 50;
  CircuitBreakerSet set("orders", c, keys(4), time);
  EXPECT_EQ(set.maxOpen(), 2u);
  std::vector<CircuitBreakerSharedPtr> b;
  for (const std::string& k : keys(4)) b.push_back(set.get(k));
  fail(*b[0], 1);
  fail(*b[1], 1);
  fail(*b[2], 3);  // the cap is full: it stays closed and keeps serving
  EXPECT_EQ(b[0]->state(), State::Open);
  EXPECT_EQ(b[1]->state(), State::Open);
  EXPECT_EQ(b[2]->state(), State::Closed);
  EXPECT_EQ(set.openCount(), 2u);
  // Half-open still counts as ejected.
  time.advance(30s);
  CircuitBreaker::Permit probe = b[0]->tryAcquire();
  ASSERT_TRUE(probe);
  fail(*b[2], 1);
  EXPECT_EQ(b[2]->state(), State::Closed);
  EXPECT_EQ(set.openCount(), 2u);
  // Once b[0] closes, b[2] may open on its next failure.
  b[0]->onResult(probe, true);
  ASSERT_TRUE(request(*b[0], true));
  EXPECT_EQ(b[0]->state(), State::Closed);
  EXPECT_EQ(set.openCount(), 1u);
  fail(*b[2], 1);
  EXPECT_EQ(b[2]->state(), State::Open);
  EXPECT_EQ(set.openCount(), 2u);
}

TEST(CircuitBreakerSetTest, ReopeningFromHalfOpenNeedsNoNewSlot) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(1);
  c.max_ejection_percent = 50;
  CircuitBreakerSet set("orders", c, keys(2), time);
  auto a = set.get(keys(2)[0]);
  fail(*a, 1);
  time.advance(30s);
  ASSERT_TRUE(request(*a, false));  // the probe fails
  EXPECT_EQ(a->state(), State::Open);
  EXPECT_EQ(set.openCount(), 1u);
}

TEST(CircuitBreakerSetTest, ZeroPercentNeverOpens) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(1);
  c.max_ejection_percent = 0;
  CircuitBreakerSet set("orders", c, keys(3), time);
  auto a = set.get(keys(3)[0]);
  fail(*a, 100);
  EXPECT_EQ(a->state(), State::Closed);
  EXPECT_EQ(set.openCount(), 0u);
}

TEST(CircuitBreakerSetTest, SingleEndpointClusterCanOpen) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(2);
  c.max_ejection_percent = 50;
  CircuitBreakerSet set("solo", c, {"127.0.0.1:8081"}, time);
  auto a = set.get("127.0.0.1:8081");
  fail(*a, 2);
  EXPECT_EQ(a->state(), State::Open);
}

TEST(CircuitBreakerSetTest, GetCreatesOnceAndKeeps) {
  FakeTimeSource time;
  CircuitBreakerSet set("orders", breakerConfig(), keys(2), time);
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.get(keys(2)[0]), set.get(keys(2)[0]));
  auto extra = set.get("10.9.9.9:80");
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.get("10.9.9.9:80"), extra);
  EXPECT_EQ(set.clusterName(), "orders");
}

TEST(CircuitBreakerSetTest, ReconfigureKeepsStateOfKeptEndpoints) {
  FakeTimeSource time;
  CircuitBreakerSet set("orders", breakerConfig(5), {"a:1", "b:1", "c:1"}, time);
  auto a = set.get("a:1");
  auto b = set.get("b:1");
  fail(*a, 5);
  fail(*b, 3);
  ASSERT_EQ(a->state(), State::Open);

  set.reconfigure(breakerConfig(4), {"a:1", "b:1", "d:1"});
  EXPECT_EQ(set.size(), 3u);
  EXPECT_EQ(set.get("a:1"), a);  // same breaker, same state
  EXPECT_EQ(a->state(), State::Open);
  EXPECT_EQ(set.get("b:1"), b);
  EXPECT_EQ(set.openCount(), 1u);
  fail(*b, 1);  // 3 kept + 1 = the new threshold of 4
  EXPECT_EQ(b->state(), State::Open);
  EXPECT_EQ(set.get("d:1")->state(), State::Closed);
  // The open state keeps its deadline and goes on as before.
  time.advance(30s);
  succeed(*a, 2);
  EXPECT_EQ(a->state(), State::Closed);
}

TEST(CircuitBreakerSetTest, RemovedEndpointGivesBackItsSlotAndIsForgotten) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(1);
  c.max_ejection_percent = 50;
  CircuitBreakerSet set("orders", c, {"a:1", "b:1"}, time);
  auto a = set.get("a:1");
  auto b = set.get("b:1");
  fail(*a, 1);
  fail(*b, 1);
  ASSERT_EQ(b->state(), State::Closed);  // cap of 1 taken by a
  set.reconfigure(c, {"b:1", "c:1"});
  EXPECT_EQ(set.openCount(), 0u);
  fail(*b, 1);
  EXPECT_EQ(b->state(), State::Open);
  EXPECT_EQ(set.openCount(), 1u);
  // A worker still holding the removed breaker can use it; it no longer counts.
  time.advance(30s);
  succeed(*a, 2);
  EXPECT_EQ(set.openCount(), 1u);
  // Re-adding the address later starts from a fresh breaker.
  set.reconfigure(c, {"a:1", "b:1", "c:1"});
  EXPECT_NE(set.get("a:1"), a);
  EXPECT_EQ(set.get("a:1")->state(), State::Closed);
}

TEST(CircuitBreakerSetTest, ReconfigureChangingTheWindowStartsItOver) {
  FakeTimeSource time;
  config::CircuitBreaker c = rateConfig(50, 20);
  CircuitBreakerSet set("orders", c, {"a:1"}, time);
  auto a = set.get("a:1");
  fail(*a, 19);
  c.failure_rate->window = 20s;
  set.reconfigure(c, {"a:1"});
  fail(*a, 1);
  EXPECT_EQ(a->state(), State::Closed);
  // Same window: counts are kept.
  set.reconfigure(c, {"a:1"});
  fail(*a, 19);
  EXPECT_EQ(a->state(), State::Open);
}

TEST(CircuitBreakerSetTest, TransitionsAreReportedWithReasons) {
  FakeTimeSource time;
  std::vector<std::string> log;
  config::CircuitBreaker c = breakerConfig(5);
  CircuitBreakerSet set("orders", c, {"127.0.0.1:8081"}, time, [&log](const BreakerTransition& t) {
    log.push_back("endpoint " + std::string(t.endpoint) + " of cluster " + std::string(t.cluster) +
                  " " + std::to_string(static_cast<int>(t.from)) + "->" +
                  std::to_string(static_cast<int>(t.to)) + ": " + std::string(t.reason));
  });
  auto a = set.get("127.0.0.1:8081");
  fail(*a, 5);
  time.advance(30s);
  ASSERT_TRUE(request(*a, false));
  time.advance(30s);
  succeed(*a, 2);
  std::vector<std::string> expected = {
      "endpoint 127.0.0.1:8081 of cluster orders 0->1: 5 consecutive failures",
      "endpoint 127.0.0.1:8081 of cluster orders 1->2: open_duration 30s elapsed",
      "endpoint 127.0.0.1:8081 of cluster orders 2->1: probe failed",
      "endpoint 127.0.0.1:8081 of cluster orders 1->2: open_duration 30s elapsed",
      "endpoint 127.0.0.1:8081 of cluster orders 2->0: 2 probe successes",
  };
  EXPECT_EQ(log, expected);
}

TEST(CircuitBreakerSetTest, FailureRateReason) {
  FakeTimeSource time;
  std::string reason;
  CircuitBreakerSet set("orders", rateConfig(50, 20), {"a:1"}, time,
                        [&reason](const BreakerTransition& t) { reason = t.reason; });
  auto a = set.get("a:1");
  succeed(*a, 8);
  fail(*a, 12);
  EXPECT_EQ(reason, "failure rate 60% (12 of 20 requests in 10s)");
}

TEST(CircuitBreakerSetTest, DestroyedSetStopsReporting) {
  FakeTimeSource time;
  int calls = 0;
  CircuitBreakerSharedPtr a;
  {
    CircuitBreakerSet set("orders", breakerConfig(1), {"a:1"}, time,
                          [&calls](const BreakerTransition&) { ++calls; });
    a = set.get("a:1");
  }
  fail(*a, 1);
  EXPECT_EQ(a->state(), State::Open);
  EXPECT_EQ(calls, 0);
}

// Four workers hammer a cluster of four endpoints while the clock moves; the ejection cap and
// the set's count of ejected breakers must hold throughout (run under ASan/UBSan and TSan too).
TEST(CircuitBreakerSetTest, ConcurrentUseKeepsInvariants) {
  FakeTimeSource time;
  config::CircuitBreaker c = breakerConfig(3);
  c.failure_rate = config::FailureRate{50, 1s, 10};
  c.open_duration = 50ms;
  c.half_open_max_requests = 2;
  c.success_threshold = 2;
  c.max_ejection_percent = 50;
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  CircuitBreakerSet set("orders", c, keys(4), time, [&](const BreakerTransition& t) {
    if (t.to == State::Open && t.from == State::Closed) opened.fetch_add(1);
    if (t.to == State::Closed) closed.fetch_add(1);
  });
  std::vector<CircuitBreakerSharedPtr> breakers;
  for (const std::string& k : keys(4)) breakers.push_back(set.get(k));

  std::atomic<bool> cap_violated{false};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<CircuitBreaker::Permit> held;
      for (int i = 0; i < 20000; ++i) {
        CircuitBreaker& b = *breakers[rng() % breakers.size()];
        const bool success = rng() % 100 < 60;
        if (t == 0 && i % 50 == 0) time.advance(5ms);
        CircuitBreaker::Permit permit = b.tryAcquire();
        if (!permit) {
          refused.fetch_add(1, std::memory_order_relaxed);
        } else if (rng() % 10 == 0) {
          b.release(permit);
        } else {
          b.onResult(permit, success);
        }
        if (set.openCount() > set.maxOpen()) cap_violated = true;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_FALSE(cap_violated.load());
  EXPECT_GT(opened.load(), 0);
  EXPECT_GT(refused.load(), 0);

  size_t ejected = 0;
  for (const auto& b : breakers) ejected += b->state() != State::Closed ? 1 : 0;
  EXPECT_EQ(set.openCount(), ejected);
  EXPECT_LE(ejected, 2u);

  // Let every breaker recover: after open_duration, successful probes close them all.
  time.advance(1s);
  for (const auto& b : breakers) {
    for (int i = 0; i < 4 && b->state() != State::Closed; ++i) ASSERT_TRUE(request(*b, true));
    EXPECT_EQ(b->state(), State::Closed);
  }
  EXPECT_EQ(set.openCount(), 0u);
}

}  // namespace
}  // namespace remora::lb
