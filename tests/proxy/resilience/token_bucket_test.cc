#include "resilience/token_bucket.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "mocks/fake_time_source.h"

namespace remora::resilience {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

config::RateLimit rate(uint32_t rps, uint32_t burst) {
  config::RateLimit r;
  r.requests_per_second = rps;
  r.burst = burst;
  return r;
}

int drain(TokenBucket& bucket, int max_tries = 1000000) {
  int taken = 0;
  for (int i = 0; i < max_tries && bucket.tryConsume(); ++i) ++taken;
  return taken;
}

class TokenBucketTest : public testing::Test {
 protected:
  FakeTimeSource time_;
};

TEST_F(TokenBucketTest, StartsFullThenRefuses) {
  TokenBucket bucket(rate(10, 5), time_);
  EXPECT_EQ(bucket.available(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(bucket.tryConsume()) << i;
  EXPECT_FALSE(bucket.tryConsume());
  EXPECT_FALSE(bucket.tryConsume());
  EXPECT_EQ(bucket.available(), 0u);
}

TEST_F(TokenBucketTest, BurstDefaultsToRate) {
  TokenBucket bucket(rate(20, 0), time_);
  EXPECT_EQ(drain(bucket), 20);
}

TEST_F(TokenBucketTest, RefillsOneTokenPerInterval) {
  TokenBucket bucket(rate(10, 5), time_);  // one token per 100 ms
  EXPECT_EQ(drain(bucket), 5);
  time_.advance(milliseconds(99));
  EXPECT_FALSE(bucket.tryConsume());
  time_.advance(milliseconds(1));
  EXPECT_TRUE(bucket.tryConsume());
  EXPECT_FALSE(bucket.tryConsume());
  time_.advance(milliseconds(250));
  EXPECT_EQ(bucket.available(), 2u);
  EXPECT_EQ(drain(bucket), 2);
  // The half token left over from the 250 ms is kept, not rounded away.
  time_.advance(milliseconds(50));
  EXPECT_TRUE(bucket.tryConsume());
}

TEST_F(TokenBucketTest, RefillRateIsExactOverTime) {
  TokenBucket bucket(rate(100, 100), time_);
  EXPECT_EQ(drain(bucket), 100);
  // Ten seconds in 7 ms steps (not a multiple of the 10 ms interval): exactly 1000 more tokens.
  int taken = 0;
  for (int step = 0; step < 10000 / 7; ++step) {
    time_.advance(milliseconds(7));
    taken += drain(bucket);
  }
  time_.advance(milliseconds(10000 - (10000 / 7) * 7));
  taken += drain(bucket);
  EXPECT_EQ(taken, 1000);
}

TEST_F(TokenBucketTest, RateThatDoesNotDivideASecond) {
  TokenBucket bucket(rate(7, 7), time_);
  EXPECT_EQ(drain(bucket), 7);
  int taken = 0;
  for (int second = 0; second < 1000; ++second) {
    time_.advance(seconds(1));
    const int now = drain(bucket);
    EXPECT_EQ(now, 7) << second;
    taken += now;
  }
  EXPECT_EQ(taken, 7000);
}

TEST_F(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  TokenBucket bucket(rate(1000, 50), time_);
  time_.advance(std::chrono::hours(24));
  EXPECT_EQ(bucket.available(), 50u);
  EXPECT_EQ(drain(bucket), 50);
}

TEST_F(TokenBucketTest, HighRates) {
  TokenBucket bucket(rate(1000000, 10), time_);  // one token per microsecond
  EXPECT_EQ(drain(bucket), 10);
  time_.advance(nanoseconds(999));
  EXPECT_FALSE(bucket.tryConsume());
  time_.advance(nanoseconds(1));
  EXPECT_TRUE(bucket.tryConsume());

  TokenBucket extreme(rate(4000000000u, 4000000000u), time_);  // capped at 1/ns
  EXPECT_EQ(extreme.available(), 4000000000u);
  EXPECT_TRUE(extreme.tryConsume());
}

TEST_F(TokenBucketTest, ZeroRateAdmitsNothing) {
  TokenBucket bucket(rate(0, 0), time_);
  EXPECT_FALSE(bucket.tryConsume());
  time_.advance(seconds(10));
  EXPECT_FALSE(bucket.tryConsume());
  EXPECT_EQ(bucket.available(), 0u);
}

TEST_F(TokenBucketTest, ReconfigureKeepsSpentTokensSpent) {
  TokenBucket bucket(rate(10, 10), time_);
  EXPECT_EQ(drain(bucket), 10);
  // A reload with the same limits must not hand out a fresh burst.
  bucket.reconfigure(rate(10, 10));
  EXPECT_FALSE(bucket.tryConsume());
  // A larger burst adds room; the rate change applies at once.
  bucket.reconfigure(rate(100, 20));
  // TAT stands 10 old intervals (1 s) ahead; the new tolerance is 20 * 10 ms = 200 ms.
  EXPECT_EQ(bucket.available(), 0u);
  time_.advance(milliseconds(810));
  EXPECT_EQ(bucket.available(), 1u);
  time_.advance(milliseconds(190));
  EXPECT_EQ(drain(bucket), 20);
  time_.advance(milliseconds(10));
  EXPECT_EQ(drain(bucket), 1);
}

TEST_F(TokenBucketTest, ConcurrentConsumersNeverExceedTheBurst) {
  TokenBucket bucket(rate(10, 1000), time_);
  constexpr int kThreads = 4;
  std::atomic<int> taken{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < 5000; ++i) {
        if (bucket.tryConsume()) taken.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load(), 1000);
}

TEST_F(TokenBucketTest, ConcurrentConsumersWhileTimePassesStayWithinTheRate) {
  TokenBucket bucket(rate(1000, 100), time_);
  constexpr int kThreads = 4;
  constexpr int kIterations = 4000;
  constexpr int kAdvanceEvery = 10;  // each thread moves the clock 1 ms every 10 attempts
  std::atomic<int> taken{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kIterations; ++i) {
        if (i % kAdvanceEvery == 0) time_.advance(milliseconds(1));
        if (bucket.tryConsume()) taken.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  // At most the burst plus one token per elapsed millisecond, whatever the interleaving; the
  // tokens the threads did not take are still there (up to the burst).
  constexpr int kElapsedMs = kThreads * kIterations / kAdvanceEvery;
  const int total = taken.load() + drain(bucket);
  EXPECT_LE(total, 100 + kElapsedMs);
  EXPECT_GE(total, 100);
}

}  // namespace
}  // namespace remora::resilience
