#include "resilience/retry.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace remora::resilience {
namespace {

using std::chrono::milliseconds;

config::RetryPolicy policyWith(uint32_t on) {
  config::RetryPolicy p;
  p.attempts = 3;
  p.on = on;
  return p;
}

TEST(RetryTest, DefaultMethodsAreIdempotentOnly) {
  config::RetryPolicy p;
  for (const char* m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) {
    EXPECT_TRUE(methodRetriable(p, m)) << m;
  }
  EXPECT_FALSE(methodRetriable(p, "POST"));
  EXPECT_FALSE(methodRetriable(p, "PATCH"));
  EXPECT_FALSE(methodRetriable(p, "CONNECT"));
}

TEST(RetryTest, MethodsAreCaseSensitive) {
  config::RetryPolicy p;
  EXPECT_FALSE(methodRetriable(p, "get"));
  EXPECT_FALSE(methodRetriable(p, ""));
}

TEST(RetryTest, ConfiguredMethodsReplaceDefaults) {
  config::RetryPolicy p;
  p.methods = {"POST"};
  EXPECT_TRUE(methodRetriable(p, "POST"));
  EXPECT_FALSE(methodRetriable(p, "GET"));
}

TEST(RetryTest, GatewayErrorIs502To504Only) {
  const auto p = policyWith(config::kRetryGatewayError);
  EXPECT_TRUE(shouldRetryStatus(p, 502));
  EXPECT_TRUE(shouldRetryStatus(p, 503));
  EXPECT_TRUE(shouldRetryStatus(p, 504));
  EXPECT_FALSE(shouldRetryStatus(p, 500));
  EXPECT_FALSE(shouldRetryStatus(p, 501));
  EXPECT_FALSE(shouldRetryStatus(p, 505));
  EXPECT_FALSE(shouldRetryStatus(p, 200));
  EXPECT_FALSE(shouldRetryStatus(p, 429));
}

TEST(RetryTest, FiveXxIsWholeRange) {
  const auto p = policyWith(config::kRetry5xx);
  for (uint16_t s = 500; s <= 599; ++s) EXPECT_TRUE(shouldRetryStatus(p, s)) << s;
  EXPECT_FALSE(shouldRetryStatus(p, 499));
  EXPECT_FALSE(shouldRetryStatus(p, 600));
  EXPECT_FALSE(shouldRetryStatus(p, 404));
}

TEST(RetryTest, RetriableStatusCodesNeedTheFlag) {
  auto p = policyWith(config::kRetryRetriableStatusCodes);
  p.retriable_status_codes = {409, 429};
  EXPECT_TRUE(shouldRetryStatus(p, 409));
  EXPECT_TRUE(shouldRetryStatus(p, 429));
  EXPECT_FALSE(shouldRetryStatus(p, 503));  // not listed and gateway-error not enabled
  EXPECT_FALSE(shouldRetryStatus(p, 200));

  p.on = config::kRetryGatewayError;  // codes listed, but the condition is off
  EXPECT_FALSE(shouldRetryStatus(p, 409));
  EXPECT_TRUE(shouldRetryStatus(p, 503));
}

TEST(RetryTest, NothingEnabledRetriesNothing) {
  const auto p = policyWith(0);
  for (uint16_t s : {200, 409, 500, 502, 503, 504}) EXPECT_FALSE(shouldRetryStatus(p, s)) << s;
  EXPECT_FALSE(shouldRetryFailure(p, FailureKind::ConnectFailure));
  EXPECT_FALSE(shouldRetryFailure(p, FailureKind::Reset));
  EXPECT_FALSE(shouldRetryFailure(p, FailureKind::Timeout));
}

TEST(RetryTest, DefaultFailureKinds) {
  config::RetryPolicy p;  // connect-failure, reset, gateway-error
  EXPECT_TRUE(shouldRetryFailure(p, FailureKind::ConnectFailure));
  EXPECT_TRUE(shouldRetryFailure(p, FailureKind::Reset));
  EXPECT_FALSE(shouldRetryFailure(p, FailureKind::Timeout));
  EXPECT_TRUE(shouldRetryStatus(p, 503));
  EXPECT_FALSE(shouldRetryStatus(p, 500));
}

TEST(RetryTest, EachFailureKindHasItsOwnFlag) {
  EXPECT_TRUE(shouldRetryFailure(policyWith(config::kRetryTimeout), FailureKind::Timeout));
  EXPECT_FALSE(shouldRetryFailure(policyWith(config::kRetryTimeout), FailureKind::Reset));
  EXPECT_TRUE(shouldRetryFailure(policyWith(config::kRetryReset), FailureKind::Reset));
  EXPECT_FALSE(shouldRetryFailure(policyWith(config::kRetryReset), FailureKind::ConnectFailure));
  EXPECT_TRUE(
      shouldRetryFailure(policyWith(config::kRetryConnectFailure), FailureKind::ConnectFailure));
  EXPECT_FALSE(shouldRetryFailure(policyWith(config::kRetryConnectFailure), FailureKind::Timeout));
}

TEST(RetryTest, AttemptsCountTheFirstTry) {
  config::RetryPolicy p;
  EXPECT_FALSE(hasAttemptsLeft(p, 1));  // default attempts: 1 = no retry
  p.attempts = 3;
  EXPECT_TRUE(hasAttemptsLeft(p, 1));
  EXPECT_TRUE(hasAttemptsLeft(p, 2));
  EXPECT_FALSE(hasAttemptsLeft(p, 3));
}

config::RetryPolicy backoff(int64_t base_ms, int64_t max_ms) {
  config::RetryPolicy p;
  p.backoff_base = milliseconds(base_ms);
  p.backoff_max = milliseconds(max_ms);
  return p;
}

// The upper bound of the jitter range is reached when random % (cap + 1) == cap.
TEST(RetryTest, BackoffCapDoublesThenSaturates) {
  const auto p = backoff(25, 250);
  const int64_t expected_caps[] = {25, 50, 100, 200, 250, 250, 250};
  for (uint32_t n = 1; n <= 7; ++n) {
    const uint64_t cap = static_cast<uint64_t>(expected_caps[n - 1]);
    EXPECT_EQ(backoffDelay(p, n, cap), milliseconds(cap)) << n;
    EXPECT_EQ(backoffDelay(p, n, cap + 1), milliseconds(0)) << n;  // wraps: range is [0, cap]
    EXPECT_EQ(backoffDelay(p, n, 0), milliseconds(0)) << n;
  }
}

TEST(RetryTest, BackoffFullJitterStaysInRangeAndSpreads) {
  const auto p = backoff(25, 250);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state] {  // splitmix64
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (uint32_t n : {1u, 3u, 10u}) {
    const int64_t cap = n == 1 ? 25 : n == 3 ? 100 : 250;
    int64_t min = cap, max = 0, sum = 0;
    constexpr int kSamples = 20000;
    for (int i = 0; i < kSamples; ++i) {
      const int64_t d = backoffDelay(p, n, next()).count();
      ASSERT_GE(d, 0);
      ASSERT_LE(d, cap);
      min = std::min(min, d);
      max = std::max(max, d);
      sum += d;
    }
    // Full jitter: the whole range is used, and the mean is half the cap.
    EXPECT_EQ(min, 0) << n;
    EXPECT_EQ(max, cap) << n;
    EXPECT_NEAR(static_cast<double>(sum) / kSamples, cap / 2.0, cap * 0.02) << n;
  }
}

TEST(RetryTest, BackoffNeverOverflows) {
  const uint64_t all_ones = std::numeric_limits<uint64_t>::max();
  const auto p = backoff(25, 250);
  for (uint32_t n : {31u, 32u, 63u, 64u, 65u, 1000u, std::numeric_limits<uint32_t>::max()}) {
    EXPECT_EQ(backoffDelay(p, n, 250), milliseconds(250)) << n;
    EXPECT_LE(backoffDelay(p, n, all_ones), milliseconds(250)) << n;
  }
  // Huge durations: base * 2^n would overflow 64 bits long before the cap.
  const int64_t year = config::kMaxDurationMs;
  const auto big = backoff(year / 2, year);
  EXPECT_EQ(backoffDelay(big, 1, year / 2), milliseconds(year / 2));
  EXPECT_EQ(backoffDelay(big, 2, year), milliseconds(year));
  EXPECT_EQ(backoffDelay(big, 40, year), milliseconds(year));
  EXPECT_LE(backoffDelay(big, 64, all_ones), milliseconds(year));
  const auto extreme =
      backoff(std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max());
  EXPECT_GE(backoffDelay(extreme, 100, all_ones), milliseconds(0));
}

TEST(RetryTest, BackoffEdgeCases) {
  EXPECT_EQ(backoffDelay(backoff(25, 250), 0, 25), milliseconds(25));   // 0 is read as 1
  EXPECT_EQ(backoffDelay(backoff(0, 250), 5, 12345), milliseconds(0));  // no base, no wait
  EXPECT_EQ(backoffDelay(backoff(25, 0), 1, 12345), milliseconds(0));   // max 0 wins
  EXPECT_EQ(backoffDelay(backoff(-5, -1), 3, 12345), milliseconds(0));  // hand-built nonsense
}

}  // namespace
}  // namespace remora::resilience
