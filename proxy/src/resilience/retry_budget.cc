#include "resilience/retry_budget.h"

#include <algorithm>
#include <cmath>

namespace remora::resilience {
namespace {

constexpr uint64_t kCountMask = 0xffffffffull;
constexpr uint64_t kPpm = 1000000;

uint32_t cellSecond(uint64_t cell) { return static_cast<uint32_t>(cell >> 32); }
uint64_t cellCount(uint64_t cell) { return cell & kCountMask; }
uint64_t pack(uint32_t second, uint64_t count) { return (uint64_t{second} << 32) | count; }

uint64_t toPpm(double ratio) {
  // The parser bounds ratio to 0..1; clamp anyway so a hand-built config cannot overflow.
  const double clamped = std::clamp(std::isnan(ratio) ? 0.0 : ratio, 0.0, 1.0);
  return static_cast<uint64_t>(std::llround(clamped * kPpm));
}

}  // namespace

RetryBudget::RetryBudget(const config::RetryBudget& config, const TimeSource& time_source)
    : time_source_(time_source),
      start_(time_source.now()),
      ratio_ppm_(toPpm(config.ratio)),
      min_retries_per_second_(config.min_retries_per_second) {}

void RetryBudget::reconfigure(const config::RetryBudget& config) {
  ratio_ppm_.store(toPpm(config.ratio), std::memory_order_relaxed);
  min_retries_per_second_.store(config.min_retries_per_second, std::memory_order_relaxed);
}

uint32_t RetryBudget::currentSecond() const {
  const auto elapsed = time_source_.now() - start_;
  // Truncation to 32 bits is intended: seconds are only ever compared by difference, and the
  // window is far shorter than the 136-year wrap.
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count());
}

bool RetryBudget::inWindow(uint64_t cell, uint32_t second) {
  // Unsigned difference: a cell from the future (written by a thread whose clock read was later
  // than ours) wraps to a huge value and is left out, which errs towards refusing.
  return static_cast<uint32_t>(second - cellSecond(cell)) < kWindowSeconds;
}

uint64_t RetryBudget::sum(Cell Bucket::*cell, uint32_t second, bool skip_current) const {
  uint64_t total = 0;
  const size_t current = second % kWindowSeconds;
  for (size_t i = 0; i < kWindowSeconds; ++i) {
    if (skip_current && i == current) continue;
    const uint64_t v = (buckets_[i].*cell).load(std::memory_order_relaxed);
    if (inWindow(v, second)) total += cellCount(v);
  }
  return total;
}

bool RetryBudget::increment(Cell& cell, uint32_t second, uint64_t limit) {
  limit = std::min(limit, kCountMask);  // the count saturates instead of spilling into the second
  uint64_t v = cell.load(std::memory_order_relaxed);
  while (true) {
    // A cell holding a newer second means our clock read is stale; count into that second
    // rather than rolling the cell back (the count would be lost).
    const bool newer = static_cast<int32_t>(cellSecond(v) - second) > 0;
    const uint32_t target = newer ? cellSecond(v) : second;
    const uint64_t count = (newer || cellSecond(v) == second) ? cellCount(v) : 0;
    if (count >= limit) return false;
    if (cell.compare_exchange_weak(v, pack(target, count + 1), std::memory_order_relaxed)) {
      return true;
    }
  }
}

void RetryBudget::recordRequest() {
  const uint32_t second = currentSecond();
  increment(buckets_[second % kWindowSeconds].requests, second, kCountMask);
}

bool RetryBudget::tryAcquireRetry() {
  const uint32_t second = currentSecond();
  Bucket& bucket = buckets_[second % kWindowSeconds];

  // The ratio part: only the current bucket takes new charges, so the retries of the older
  // buckets are (nearly) fixed and the remaining allowance can be enforced by the CAS alone.
  const uint64_t requests = sum(&Bucket::requests, second, /*skip_current=*/false);
  const uint64_t cap = requests * ratio_ppm_.load(std::memory_order_relaxed) / kPpm;
  const uint64_t older = sum(&Bucket::ratio_retries, second, /*skip_current=*/true);
  if (cap > older && increment(bucket.ratio_retries, second, cap - older)) return true;

  // The floor: a fixed number per current second.
  return increment(bucket.floor_retries, second,
                   min_retries_per_second_.load(std::memory_order_relaxed));
}

uint64_t RetryBudget::requestsInWindow() const {
  return sum(&Bucket::requests, currentSecond(), /*skip_current=*/false);
}

uint64_t RetryBudget::retriesInWindow() const {
  const uint32_t second = currentSecond();
  return sum(&Bucket::ratio_retries, second, false) + sum(&Bucket::floor_retries, second, false);
}

}  // namespace remora::resilience
