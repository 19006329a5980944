#include "resilience/retry_budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "mocks/fake_time_source.h"

namespace remora::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

config::RetryBudget budgetConfig(double ratio, uint32_t floor) {
  config::RetryBudget c;
  c.ratio = ratio;
  c.min_retries_per_second = floor;
  return c;
}

int drain(RetryBudget& budget, int max_tries = 100000) {
  int allowed = 0;
  for (int i = 0; i < max_tries && budget.tryAcquireRetry(); ++i) ++allowed;
  return allowed;
}

class RetryBudgetTest : public testing::Test {
 protected:
  FakeTimeSource time_;
};

TEST_F(RetryBudgetTest, RatioOfRequests) {
  RetryBudget budget(budgetConfig(0.2, 0), time_);
  for (int i = 0; i < 100; ++i) budget.recordRequest();
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(budget.tryAcquireRetry()) << i;
  EXPECT_FALSE(budget.tryAcquireRetry());
  EXPECT_FALSE(budget.tryAcquireRetry());
  EXPECT_EQ(budget.requestsInWindow(), 100u);
  EXPECT_EQ(budget.retriesInWindow(), 20u);  // refusals are not counted
}

TEST_F(RetryBudgetTest, RatioIsExactDecimalAndRoundsDown) {
  RetryBudget budget(budgetConfig(0.29, 0), time_);
  for (int i = 0; i < 100; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 29);  // not 28, as 0.29 * 100 in binary floating point would give

  RetryBudget small(budgetConfig(0.2, 0), time_);
  for (int i = 0; i < 4; ++i) small.recordRequest();
  EXPECT_EQ(drain(small), 0);  // 0.8 of a retry is no retry
  small.recordRequest();
  EXPECT_EQ(drain(small), 1);
}

TEST_F(RetryBudgetTest, NoRequestsNoFloorNoRetries) {
  RetryBudget budget(budgetConfig(1.0, 0), time_);
  EXPECT_FALSE(budget.tryAcquireRetry());
}

TEST_F(RetryBudgetTest, FloorAllowsNPerSecondWithoutRequests) {
  RetryBudget budget(budgetConfig(0.2, 5), time_);
  for (int second = 0; second < 30; ++second) {
    EXPECT_EQ(drain(budget), 5) << second;
    time_.advance(seconds(1));
  }
}

TEST_F(RetryBudgetTest, FloorIsPerCurrentSecondAndIsNotBanked) {
  RetryBudget budget(budgetConfig(0.2, 5), time_);
  time_.advance(seconds(20));   // a long quiet period
  EXPECT_EQ(drain(budget), 5);  // not 5 * 10
  time_.advance(milliseconds(999));
  EXPECT_EQ(drain(budget), 0);  // same second (the budget's clock started at construction)
  time_.advance(milliseconds(1));
  EXPECT_EQ(drain(budget), 5);
}

TEST_F(RetryBudgetTest, RatioAndFloorAdd) {
  RetryBudget budget(budgetConfig(0.2, 3), time_);
  for (int i = 0; i < 50; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 10 + 3);
  time_.advance(seconds(1));
  // The ratio is spent for the window, the floor is fresh.
  EXPECT_EQ(drain(budget), 3);
  for (int i = 0; i < 10; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 2);  // 60 requests -> 12 by ratio, 10 already used
}

TEST_F(RetryBudgetTest, OldBucketsExpire) {
  RetryBudget budget(budgetConfig(0.2, 0), time_);
  for (int i = 0; i < 100; ++i) budget.recordRequest();  // second 0
  EXPECT_EQ(drain(budget), 20);

  time_.advance(seconds(5));
  EXPECT_EQ(drain(budget), 0);                          // still within the window: spent
  for (int i = 0; i < 50; ++i) budget.recordRequest();  // second 5
  EXPECT_EQ(drain(budget), 10);

  time_.advance(seconds(4));  // second 9: second 0 is still in the 10 s window
  EXPECT_EQ(budget.requestsInWindow(), 150u);
  EXPECT_EQ(budget.retriesInWindow(), 30u);
  EXPECT_EQ(drain(budget), 0);

  time_.advance(seconds(1));  // second 10: second 0 leaves the window with its 20 retries
  EXPECT_EQ(budget.requestsInWindow(), 50u);
  EXPECT_EQ(budget.retriesInWindow(), 10u);
  EXPECT_EQ(drain(budget), 0);  // 50 requests -> 10, and 10 were used in second 5

  time_.advance(seconds(5));  // second 15: everything expired
  EXPECT_EQ(budget.requestsInWindow(), 0u);
  EXPECT_EQ(budget.retriesInWindow(), 0u);
  EXPECT_EQ(drain(budget), 0);
  for (int i = 0; i < 10; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 2);
}

TEST_F(RetryBudgetTest, BucketsAreReusedAfterAWrapOfTheRing) {
  RetryBudget budget(budgetConfig(0.5, 0), time_);
  for (int i = 0; i < 10; ++i) budget.recordRequest();
  // Exactly one ring later the same bucket is reused: its old counts must not leak in.
  time_.advance(seconds(RetryBudget::kWindowSeconds));
  budget.recordRequest();
  budget.recordRequest();
  EXPECT_EQ(budget.requestsInWindow(), 2u);
  EXPECT_EQ(drain(budget), 1);
}

TEST_F(RetryBudgetTest, SlidingWindowTracksASteadyLoad) {
  // 100 requests per second with 20% failing: the budget allows every retry, forever.
  RetryBudget budget(budgetConfig(0.2, 0), time_);
  int refused = 0;
  for (int second = 0; second < 60; ++second) {
    for (int i = 0; i < 100; ++i) {
      budget.recordRequest();
      if (i % 5 == 4 && !budget.tryAcquireRetry()) ++refused;
    }
    time_.advance(seconds(1));
  }
  EXPECT_EQ(refused, 0);
  // Now everything fails: only 20% of the requests may be retried.
  int allowed = 0;
  for (int second = 0; second < 60; ++second) {
    for (int i = 0; i < 100; ++i) {
      budget.recordRequest();
      if (budget.tryAcquireRetry()) ++allowed;
    }
    time_.advance(seconds(1));
  }
  EXPECT_LE(allowed, 60 * 20 + 20);
  EXPECT_GE(allowed, 60 * 20 - 20);
}

TEST_F(RetryBudgetTest, ReconfigureKeepsHistory) {
  RetryBudget budget(budgetConfig(0.1, 0), time_);
  for (int i = 0; i < 100; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 10);
  budget.reconfigure(budgetConfig(0.3, 0));
  EXPECT_EQ(drain(budget), 20);  // 30 allowed in the window, 10 already used
  budget.reconfigure(budgetConfig(0.0, 2));
  EXPECT_EQ(drain(budget), 2);
}

TEST_F(RetryBudgetTest, OutOfRangeRatioIsClamped) {
  RetryBudget budget(budgetConfig(7.0, 0), time_);
  for (int i = 0; i < 10; ++i) budget.recordRequest();
  EXPECT_EQ(drain(budget), 10);
  RetryBudget negative(budgetConfig(-1.0, 0), time_);
  negative.recordRequest();
  EXPECT_EQ(drain(negative), 0);
}

TEST_F(RetryBudgetTest, ConcurrentRetriesNeverExceedTheCap) {
  RetryBudget budget(budgetConfig(0.2, 10), time_);
  for (int i = 0; i < 1000; ++i) budget.recordRequest();
  constexpr int kThreads = 4;
  std::atomic<int> allowed{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 2000; ++i) {
        if (budget.tryAcquireRetry()) allowed.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 200 + 10);
  EXPECT_EQ(budget.retriesInWindow(), 210u);
}

TEST_F(RetryBudgetTest, ConcurrentRequestsAndRetriesStayWithinTheCap) {
  RetryBudget budget(budgetConfig(0.25, 0), time_);
  constexpr int kThreads = 4;
  constexpr int kRequests = 5000;
  std::atomic<int> allowed{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kRequests; ++i) {
        budget.recordRequest();
        // Every request fails and asks for a retry.
        if (budget.tryAcquireRetry()) allowed.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(budget.requestsInWindow(), uint64_t{kThreads} * kRequests);
  EXPECT_LE(allowed.load(), kThreads * kRequests / 4);
  // With every request recorded before its own retry, nearly all of the allowance is used.
  EXPECT_GE(allowed.load(), kThreads * kRequests / 4 - kThreads);
}

TEST_F(RetryBudgetTest, ConcurrentRecordingLosesNoCountAcrossBucketRotation) {
  RetryBudget budget(budgetConfig(0.2, 0), time_);
  constexpr int kThreads = 4;
  constexpr int kRequests = 20000;
  std::barrier start(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kRequests; ++i) budget.recordRequest();
    });
  }
  // Rotate into fresh buckets while the workers record; 8 s keeps every bucket in the window.
  std::thread clock([&] {
    start.arrive_and_wait();
    for (int i = 0; i < 8; ++i) {
      time_.advance(seconds(1));
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  clock.join();
  EXPECT_EQ(budget.requestsInWindow(), uint64_t{kThreads} * kRequests);
}

}  // namespace
}  // namespace remora::resilience
