#pragma once

// Retry budget: retries may be at most `ratio` of recent requests, plus a floor of
// `min_retries_per_second`, so a failing upstream never sees a retry storm (attempts: 3 alone
// would triple the load exactly when the upstream is least able to take it).
//
// Ownership: one budget per route (per route `retry.budget`), shared by all worker threads. The
// contract puts `budget` under the route's retry policy, and two routes sending to the same
// cluster may set different ratios, which a per-cluster budget could not honour. Cluster-wide
// protection is the cluster's `limits.max_retries` (resource_limits.h), which caps concurrent
// retries towards the cluster whatever route they came from. Sharing across workers matters
// because SO_REUSEPORT spreads requests unevenly: a per-worker budget would let each worker spend
// its own ratio and would give each worker its own floor, multiplying the floor by the worker
// count.
//
// Accounting, over a sliding window of the last kWindowSeconds whole seconds (1 s buckets):
//   * recordRequest() once per downstream request that may be retried (not per try: counting
//     retries as requests would let retries inflate their own allowance);
//   * a retry is allowed if the retries charged to the ratio in the window stay within
//     floor(ratio * requests in the window); otherwise it may be charged to the floor, which
//     allows min_retries_per_second retries in the *current* second.
// The floor is per current second rather than averaged over the window on purpose: an averaged
// floor would let a quiet period bank min_retries_per_second * 10 retries and spend them in the
// first second of an outage, exactly the burst the budget exists to prevent. So in any window,
// retries <= ratio * requests + min_retries_per_second * 10, and never more than the floor per
// second beyond the ratio.
//
// Cost: each counter is one 64-bit atomic holding (second, count), so recordRequest() is one CAS
// on the hot path and buckets rotate without a lock (the first writer in a new second resets the
// count in the same CAS). tryAcquireRetry() sums the window (about 20 relaxed loads) and reserves
// with one CAS whose limit is checked in the CAS itself, so concurrent callers never overshoot.
// The only imprecision: a thread that read the clock just before a second boundary can charge its
// retry to the second that just ended while another thread has already summed it; that is at most
// one retry per racing thread, once per second, and harmless for storm protection.

#include <array>
#include <atomic>
#include <cstdint>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::resilience {

class RetryBudget {
 public:
  static constexpr uint32_t kWindowSeconds = 10;

  // `time_source` must outlive the budget.
  RetryBudget(const config::RetryBudget& config, const TimeSource& time_source);
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Counts one downstream request towards the ratio. Lock-free, called on every request.
  void recordRequest();

  // Returns true and counts the retry if the budget allows one more retry now; false (and counts
  // nothing) otherwise. The caller then answers with the last try's result or the fallback.
  bool tryAcquireRetry();

  // Applies new ratio / floor without losing the window (config reloads keep the history).
  void reconfigure(const config::RetryBudget& config);

  // For admin output and tests: totals over the current window.
  uint64_t requestsInWindow() const;
  uint64_t retriesInWindow() const;  // ratio and floor charges together

 private:
  // A counter cell packs (second since start_ modulo 2^32) << 32 | count, so reading the second
  // and the count, and resetting the count when the second moves on, is one atomic operation.
  using Cell = std::atomic<uint64_t>;
  struct Bucket {
    Cell requests{0};
    Cell ratio_retries{0};  // retries charged to the ratio
    Cell floor_retries{0};  // retries charged to the per-second floor
  };

  uint32_t currentSecond() const;
  static bool inWindow(uint64_t cell, uint32_t second);
  // Sum of the cells of the window ending at `second`, skipping the bucket of `second` itself if
  // `skip_current` is set.
  uint64_t sum(Cell Bucket::*cell, uint32_t second, bool skip_current) const;
  // Adds one to the count of `cell` for `second` if the count (0 if the cell holds an older
  // second) is below `limit`. Returns whether it did.
  static bool increment(Cell& cell, uint32_t second, uint64_t limit);

  const TimeSource& time_source_;
  const MonotonicTime start_;
  // The ratio in parts per million: integer arithmetic is exact (0.2 * 100 is 20, not
  // 20.000000000000004 or 19.999...) and cheaper than floating point on every check.
  std::atomic<uint64_t> ratio_ppm_;
  std::atomic<uint32_t> min_retries_per_second_;
  std::array<Bucket, kWindowSeconds> buckets_;
};

}  // namespace remora::resilience
