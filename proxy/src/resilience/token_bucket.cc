#include "resilience/token_bucket.h"

#include <algorithm>

namespace remora::resilience {
namespace {

constexpr int64_t kNsPerSecond = 1000000000;

}  // namespace

TokenBucket::TokenBucket(const config::RateLimit& config, const TimeSource& time_source)
    : time_source_(time_source), start_(time_source.now()), config_(pack(config)) {}

uint64_t TokenBucket::pack(const config::RateLimit& config) {
  const uint32_t burst = config.burst == 0 ? config.requests_per_second : config.burst;
  return (uint64_t{config.requests_per_second} << 32) | burst;
}

TokenBucket::Params TokenBucket::unpack(uint64_t packed) {
  const uint32_t rps = static_cast<uint32_t>(packed >> 32);
  const uint32_t burst = static_cast<uint32_t>(packed);
  if (rps == 0 || burst == 0) return {0, 0};
  const int64_t interval = std::max<int64_t>(kNsPerSecond / rps, 1);
  // burst < 2^32 and interval <= 10^9, so the product stays below 2^62.
  return {interval, interval * burst};
}

int64_t TokenBucket::nowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time_source_.now() - start_).count();
}

bool TokenBucket::tryConsume() {
  const Params p = unpack(config_.load(std::memory_order_relaxed));
  if (p.interval_ns == 0) return false;
  const int64_t now = nowNs();
  int64_t tat = tat_ns_.load(std::memory_order_relaxed);
  while (true) {
    const int64_t next = std::max(tat, now) + p.interval_ns;
    if (next - now > p.tolerance_ns) return false;
    if (tat_ns_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
}

void TokenBucket::reconfigure(const config::RateLimit& config) {
  config_.store(pack(config), std::memory_order_relaxed);
}

uint64_t TokenBucket::available() const {
  const Params p = unpack(config_.load(std::memory_order_relaxed));
  if (p.interval_ns == 0) return 0;
  const int64_t ahead = std::max<int64_t>(tat_ns_.load(std::memory_order_relaxed) - nowNs(), 0);
  if (ahead >= p.tolerance_ns) return 0;
  return static_cast<uint64_t>((p.tolerance_ns - ahead) / p.interval_ns);
}

}  // namespace remora::resilience
