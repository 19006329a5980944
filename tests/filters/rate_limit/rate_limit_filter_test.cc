// RateLimitFilter (filters/rate_limit/): a per-route token bucket on a fake clock, driven through
// MockStreamFilterCallbacks.

#include "rate_limit/filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "filters/filter_test_base.h"
#include "mocks/mock_filter_callbacks.h"

namespace remora::filters {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;

constexpr const char* kConfig = R"(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: in
    address: 127.0.0.1:15001
    routes:
      - name: limited
        match: { prefix: /limited }
        cluster: a
        rate_limit: { requests_per_second: 10, burst: 3 }
      - name: default-burst
        match: { prefix: /default-burst }
        cluster: a
        rate_limit: { requests_per_second: 2 }
      - name: open
        match: { prefix: / }
        cluster: a
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:8081}]
)";

class RateLimitFilterTest : public FilterTestBase {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(buildSnapshot(kConfig)); }

  // One request on `route_name`: a fresh filter, as the stream builds one per request.
  FilterStatus request(std::string_view route_name) {
    const RouteInfo& r = route(route_name);
    callbacks_.setRoute(r);
    callbacks_.setCluster(cluster("a"));
    StreamFilterPtr filter = factory_.create(r, cluster("a"));
    EXPECT_NE(filter, nullptr);
    if (filter == nullptr) return FilterStatus::Continue;
    filter->setCallbacks(callbacks_);
    FilterStatus status = filter->onRequestHeaders();
    filter->onStreamComplete();
    return status;
  }

  uint64_t rateLimited(std::string_view route_name) {
    return stats_.route(std::string(route_name)).rate_limited.value();
  }

  RateLimitFilterFactory factory_;
  NiceMock<MockStreamFilterCallbacks> callbacks_;
};

TEST_F(RateLimitFilterTest, FactoryReturnsNullWithoutRateLimit) {
  EXPECT_EQ(factory_.create(route("open"), cluster("a")), nullptr);
  EXPECT_NE(factory_.create(route("limited"), cluster("a")), nullptr);
  EXPECT_STREQ(factory_.name(), "rate_limit");
}

TEST_F(RateLimitFilterTest, WithinBurstContinues) {
  EXPECT_CALL(callbacks_, sendFallbackOrError(_, _, _)).Times(0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(request("limited"), FilterStatus::Continue) << "request " << i;
  }
  EXPECT_EQ(rateLimited("limited"), 0u);
}

TEST_F(RateLimitFilterTest, OverBurstStopsWith429AndCounts) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(request("limited"), FilterStatus::Continue);

  EXPECT_CALL(callbacks_, sendFallbackOrError(FallbackReason::RateLimited, 429,
                                              HasSubstr("route limited is over its rate limit")));
  EXPECT_CALL(callbacks_, continueChain()).Times(0);
  EXPECT_EQ(request("limited"), FilterStatus::Stop);
  EXPECT_EQ(rateLimited("limited"), 1u);
  EXPECT_THAT(stats_.renderPrometheus(),
              HasSubstr("remora_rate_limited_total{route=\"limited\"} 1"));
}

TEST_F(RateLimitFilterTest, EveryRequestOverTheLimitIsCounted) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(request("limited"), FilterStatus::Continue);
  EXPECT_CALL(callbacks_, sendFallbackOrError(FallbackReason::RateLimited, 429, _)).Times(5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(request("limited"), FilterStatus::Stop);
  EXPECT_EQ(rateLimited("limited"), 5u);
}

TEST_F(RateLimitFilterTest, RefillsAsTheClockAdvances) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(request("limited"), FilterStatus::Continue);
  EXPECT_CALL(callbacks_, sendFallbackOrError(FallbackReason::RateLimited, 429, _)).Times(4);
  ASSERT_EQ(request("limited"), FilterStatus::Stop);

  // 10/s: one token per 100ms, not before.
  time_.advance(std::chrono::milliseconds(99));
  EXPECT_EQ(request("limited"), FilterStatus::Stop);
  time_.advance(std::chrono::milliseconds(1));
  EXPECT_EQ(request("limited"), FilterStatus::Continue);
  EXPECT_EQ(request("limited"), FilterStatus::Stop);

  // A long pause refills up to the burst, never beyond it.
  time_.advance(std::chrono::seconds(10));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(request("limited"), FilterStatus::Continue);
  EXPECT_EQ(rateLimited("limited"), 3u);
  EXPECT_EQ(request("limited"), FilterStatus::Stop);
  EXPECT_EQ(rateLimited("limited"), 4u);
}

TEST_F(RateLimitFilterTest, CompletionWithoutRunningTakesNoToken) {
  StreamFilterPtr never_ran = factory_.create(route("limited"), cluster("a"));
  never_ran->setCallbacks(callbacks_);
  never_ran->onStreamComplete();
  EXPECT_CALL(callbacks_, sendFallbackOrError(_, _, _)).Times(0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(request("limited"), FilterStatus::Continue);
}

TEST_F(RateLimitFilterTest, BurstDefaultsToTheRate) {
  EXPECT_EQ(request("default-burst"), FilterStatus::Continue);
  EXPECT_EQ(request("default-burst"), FilterStatus::Continue);
  EXPECT_CALL(callbacks_, sendFallbackOrError(FallbackReason::RateLimited, 429,
                                              HasSubstr("(2 requests/s, burst 2)")));
  EXPECT_EQ(request("default-burst"), FilterStatus::Stop);
  EXPECT_EQ(rateLimited("default-burst"), 1u);
}

TEST_F(RateLimitFilterTest, BucketIsPerRoute) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(request("limited"), FilterStatus::Continue);
  EXPECT_CALL(callbacks_, sendFallbackOrError(_, _, _)).Times(0);
  EXPECT_EQ(request("default-burst"), FilterStatus::Continue);
  EXPECT_EQ(rateLimited("default-burst"), 0u);
  EXPECT_EQ(rateLimited("limited"), 0u);
}

TEST_F(RateLimitFilterTest, BucketSurvivesAReload) {
  // A reload keeps the route's bucket (RuntimeRegistry reconfigures it in place), so rebuilding
  // the snapshot does not hand out a fresh burst.
  for (int i = 0; i < 3; ++i) ASSERT_EQ(request("limited"), FilterStatus::Continue);
  ASSERT_NO_FATAL_FAILURE(buildSnapshot(kConfig));
  EXPECT_CALL(callbacks_, sendFallbackOrError(FallbackReason::RateLimited, 429, _));
  EXPECT_EQ(request("limited"), FilterStatus::Stop);
}

}  // namespace
}  // namespace remora::filters
