#include "lb/circuit_breaker.h"

#include <algorithm>
#include <chrono>

namespace remora::lb {

namespace detail {

struct BreakerGroup {
  std::string cluster;
  BreakerTransitionCallback on_transition;  // set once, before any breaker exists
  std::atomic<uint32_t> max_ejected{0};
  std::atomic<uint32_t> ejected{0};

  // Takes one slot of the ejection budget if one is free. A compare-and-swap rather than a lock:
  // breakers of one cluster trip from different workers at the same time when an upstream dies,
  // and the cap must hold exactly even then.
  bool tryEject() {
    uint32_t current = ejected.load(std::memory_order_relaxed);
    do {
      if (current >= max_ejected.load(std::memory_order_relaxed)) return false;
    } while (!ejected.compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
    return true;
  }
  void giveBack() { ejected.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace detail

namespace {

using State = CircuitBreaker::State;

// Layout of a window bucket: epoch (24 bits) | requests (20 bits) | failures (20 bits). With 24
// bits of epoch, a bucket untouched for 2^24 bucket widths (19 days with a 1s window) could be
// mistaken for a current one once; a bucket reaching 2^20 - 1 requests halves both counts, which
// keeps its failure ratio.
constexpr uint64_t kCountBits = 20;
constexpr uint64_t kCountMax = (uint64_t{1} << kCountBits) - 1;
constexpr uint64_t kEpochMask = (uint64_t{1} << 24) - 1;

uint64_t pack(uint64_t epoch, uint64_t requests, uint64_t failures) {
  return (epoch & kEpochMask) << (2 * kCountBits) | requests << kCountBits | failures;
}
uint64_t epochOf(uint64_t word) { return word >> (2 * kCountBits); }
uint64_t requestsOf(uint64_t word) { return (word >> kCountBits) & kCountMax; }
uint64_t failuresOf(uint64_t word) { return word & kCountMax; }

int64_t toNs(config::Duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}
std::string formatNs(int64_t ns) {
  return config::formatDuration(
      std::chrono::duration_cast<config::Duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace

CircuitBreaker::CircuitBreaker(std::string endpoint_key, const config::CircuitBreaker& config,
                               const TimeSource& time, std::shared_ptr<detail::BreakerGroup> group)
    : key_(std::move(endpoint_key)), time_(time), group_(std::move(group)) {
  std::lock_guard<std::mutex> lock(mutex_);
  configureLocked(config);
}

CircuitBreaker::~CircuitBreaker() {
  // A breaker dropped while ejected (its set gone, or its endpoint removed before detach) must not
  // keep a slot of a budget that may still be shared by other breakers.
  if (ejected_ && group_ != nullptr) group_->giveBack();
}

int64_t CircuitBreaker::nowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time_.now().time_since_epoch())
      .count();
}

CircuitBreaker::Permit CircuitBreaker::tryAcquire() {
  const uint32_t stamp = stamp_.load(std::memory_order_acquire);
  if (stateOf(stamp) == State::Closed) return Permit(stamp, false);
  return tryAcquireSlow();
}

CircuitBreaker::Permit CircuitBreaker::tryAcquireSlow() {
  const int64_t now = nowNs();
  // Refuse without the lock in the common cases: while open every request of every worker comes
  // here, and only the first one past open_duration needs to transition.
  {
    const uint32_t stamp = stamp_.load(std::memory_order_acquire);
    if (stateOf(stamp) == State::Open && now < open_until_ns_.load(std::memory_order_relaxed)) {
      return {};
    }
    if (stateOf(stamp) == State::HalfOpen && probes_in_flight_.load(std::memory_order_relaxed) >=
                                                 half_open_max_.load(std::memory_order_relaxed)) {
      return {};
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  uint32_t stamp = stamp_.load(std::memory_order_relaxed);
  switch (stateOf(stamp)) {
    case State::Closed:
      return Permit(stamp, false);
    case State::Open:
      if (now < open_until_ns_.load(std::memory_order_relaxed)) return {};
      transitionLocked(State::HalfOpen,
                       "open_duration " +
                           formatNs(open_duration_ns_.load(std::memory_order_relaxed)) +
                           " elapsed");
      stamp = stamp_.load(std::memory_order_relaxed);
      break;
    case State::HalfOpen:
      break;
  }
  const uint32_t probes = probes_in_flight_.load(std::memory_order_relaxed);
  if (probes >= half_open_max_.load(std::memory_order_relaxed)) return {};
  probes_in_flight_.store(probes + 1, std::memory_order_relaxed);
  return Permit(stamp, true);
}

bool CircuitBreaker::isAvailable() const {
  switch (stateOf(stamp_.load(std::memory_order_acquire))) {
    case State::Closed:
      return true;
    case State::Open:
      return nowNs() >= open_until_ns_.load(std::memory_order_relaxed);
    case State::HalfOpen:
      return probes_in_flight_.load(std::memory_order_relaxed) <
             half_open_max_.load(std::memory_order_relaxed);
  }
  return false;
}

void CircuitBreaker::onResult(const Permit& permit, bool success) {
  if (!permit) return;
  if (permit.probe_) {
    onProbeResult(permit, success);
    return;
  }
  // Outcomes of an earlier closed period (the breaker opened since) are stale.
  if (stamp_.load(std::memory_order_acquire) != permit.stamp_) return;

  const bool rate_enabled = rate_enabled_.load(std::memory_order_relaxed);
  const int64_t now = rate_enabled ? nowNs() : 0;
  if (rate_enabled) recordInWindow(now, success);

  if (success) {
    // Load before store: while nothing fails the line stays shared in every core's cache.
    if (consecutive_failures_.load(std::memory_order_relaxed) != 0) {
      consecutive_failures_.store(0, std::memory_order_relaxed);
    }
    // A success never opens a breaker: it can only lower the failure rate. (It can lift the
    // window past min_requests, but then the next failure decides.) So successes never sum the
    // window.
    return;
  }

  const uint32_t failures = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  const uint32_t limit = consecutive_limit_.load(std::memory_order_relaxed);
  if (limit != 0 && failures >= limit) {
    tripOpen(permit.stamp_, TripReason{false, failures, 0});
    return;
  }
  if (rate_enabled) {
    const WindowTotals totals = windowTotals(now);
    const uint64_t threshold = rate_threshold_percent_.load(std::memory_order_relaxed);
    if (totals.requests > 0 &&
        totals.requests >= rate_min_requests_.load(std::memory_order_relaxed) &&
        uint64_t{totals.failures} * 100 >= threshold * totals.requests) {
      tripOpen(permit.stamp_, TripReason{true, totals.failures, totals.requests});
    }
  }
}

void CircuitBreaker::onProbeResult(const Permit& permit, bool success) {
  std::lock_guard<std::mutex> lock(mutex_);
  // A probe of a half-open period that already ended (another probe failed or enough succeeded)
  // no longer matters, and its slot went away with that period.
  if (stamp_.load(std::memory_order_relaxed) != permit.stamp_) return;
  const uint32_t probes = probes_in_flight_.load(std::memory_order_relaxed);
  if (probes > 0) probes_in_flight_.store(probes - 1, std::memory_order_relaxed);
  if (!success) {
    transitionLocked(State::Open, "probe failed");
    return;
  }
  ++probe_successes_;
  if (probe_successes_ >= success_threshold_.load(std::memory_order_relaxed)) {
    transitionLocked(State::Closed, std::to_string(probe_successes_) + " probe successes");
  }
}

void CircuitBreaker::release(const Permit& permit) {
  if (!permit || !permit.probe_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (stamp_.load(std::memory_order_relaxed) != permit.stamp_) return;
  const uint32_t probes = probes_in_flight_.load(std::memory_order_relaxed);
  if (probes > 0) probes_in_flight_.store(probes - 1, std::memory_order_relaxed);
}

void CircuitBreaker::recordInWindow(int64_t now_ns, bool success) {
  const int64_t width = bucket_ns_.load(std::memory_order_relaxed);
  const uint64_t index = static_cast<uint64_t>(std::max<int64_t>(now_ns, 0) / width);
  const uint64_t epoch = index & kEpochMask;
  std::atomic<uint64_t>& bucket = buckets_[index % kBuckets];
  uint64_t old = bucket.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    uint64_t requests = 0;
    uint64_t failures = 0;
    if (epochOf(old) == epoch) {  // else the bucket holds an older period: start it afresh
      requests = requestsOf(old);
      failures = failuresOf(old);
      if (requests == kCountMax) {
        requests >>= 1;
        failures >>= 1;
      }
    }
    next = pack(epoch, requests + 1, failures + (success ? 0 : 1));
  } while (!bucket.compare_exchange_weak(old, next, std::memory_order_relaxed));
}

CircuitBreaker::WindowTotals CircuitBreaker::windowTotals(int64_t now_ns) const {
  const int64_t width = bucket_ns_.load(std::memory_order_relaxed);
  const uint64_t epoch = static_cast<uint64_t>(std::max<int64_t>(now_ns, 0) / width) & kEpochMask;
  WindowTotals totals;
  for (const std::atomic<uint64_t>& bucket : buckets_) {
    const uint64_t word = bucket.load(std::memory_order_relaxed);
    // Age in buckets, modulo the epoch width; a bucket "from the future" (a thread that read the
    // clock later won the race) comes out huge and is left out until its time.
    const uint64_t age = (epoch - epochOf(word)) & kEpochMask;
    if (age >= kBuckets) continue;
    totals.requests += static_cast<uint32_t>(requestsOf(word));
    totals.failures += static_cast<uint32_t>(failuresOf(word));
  }
  return totals;
}

void CircuitBreaker::clearWindow() {
  for (std::atomic<uint64_t>& bucket : buckets_) bucket.store(0, std::memory_order_relaxed);
}

void CircuitBreaker::tripOpen(uint32_t expected_stamp, const TripReason& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stamp_.load(std::memory_order_relaxed) != expected_stamp) return;  // someone else moved it
  if (group_ != nullptr) {
    if (!group_->tryEject()) return;  // cap reached: stay closed, try again on the next failure
    ejected_ = true;
  }
  std::string text;
  if (reason.rate) {
    text = "failure rate " + std::to_string(uint64_t{reason.failures} * 100 / reason.requests) +
           "% (" + std::to_string(reason.failures) + " of " + std::to_string(reason.requests) +
           " requests in " +
           formatNs(bucket_ns_.load(std::memory_order_relaxed) * int64_t{kBuckets}) + ")";
  } else {
    text = std::to_string(reason.failures) + " consecutive failures";
  }
  transitionLocked(State::Open, text);
}

void CircuitBreaker::transitionLocked(State to, std::string_view reason) {
  const uint32_t old = stamp_.load(std::memory_order_relaxed);
  switch (to) {
    case State::Open:
      open_until_ns_.store(nowNs() + open_duration_ns_.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
      break;
    case State::HalfOpen:
      break;
    case State::Closed:
      // Cleared before the new stamp is published, so requests of the new closed period (which
      // load the stamp with acquire) start from clean counters.
      consecutive_failures_.store(0, std::memory_order_relaxed);
      clearWindow();
      if (ejected_) {
        if (group_ != nullptr) group_->giveBack();
        ejected_ = false;
      }
      break;
  }
  probes_in_flight_.store(0, std::memory_order_relaxed);
  probe_successes_ = 0;
  stamp_.store(nextStamp(old, to), std::memory_order_release);
  if (group_ != nullptr && group_->on_transition) {
    group_->on_transition(BreakerTransition{group_->cluster, key_, stateOf(old), to, reason});
  }
}

void CircuitBreaker::configureLocked(const config::CircuitBreaker& config) {
  consecutive_limit_.store(config.consecutive_failures, std::memory_order_relaxed);
  const bool was_enabled = rate_enabled_.load(std::memory_order_relaxed);
  const int64_t old_width = bucket_ns_.load(std::memory_order_relaxed);
  if (config.failure_rate.has_value()) {
    const config::FailureRate& rate = *config.failure_rate;
    const int64_t width = std::max<int64_t>(1, toNs(rate.window) / int64_t{kBuckets});
    rate_threshold_percent_.store(rate.threshold_percent, std::memory_order_relaxed);
    rate_min_requests_.store(rate.min_requests, std::memory_order_relaxed);
    bucket_ns_.store(width, std::memory_order_relaxed);
    // Buckets of another width hold other time spans; keeping them would misread the window.
    if (!was_enabled || width != old_width) clearWindow();
    rate_enabled_.store(true, std::memory_order_relaxed);
  } else {
    rate_enabled_.store(false, std::memory_order_relaxed);
  }
  open_duration_ns_.store(toNs(config.open_duration), std::memory_order_relaxed);
  // 0 would leave a half-open breaker stuck forever (no probe, or no success ever enough).
  half_open_max_.store(std::max<uint32_t>(1, config.half_open_max_requests),
                       std::memory_order_relaxed);
  success_threshold_.store(std::max<uint32_t>(1, config.success_threshold),
                           std::memory_order_relaxed);
}

void CircuitBreaker::detach() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (ejected_ && group_ != nullptr) group_->giveBack();
  ejected_ = false;
  group_.reset();
}

CircuitBreakerSet::CircuitBreakerSet(std::string cluster_name, const config::CircuitBreaker& config,
                                     const std::vector<std::string>& endpoint_keys,
                                     const TimeSource& time,
                                     BreakerTransitionCallback on_transition)
    : time_(time), group_(std::make_shared<detail::BreakerGroup>()), config_(config) {
  group_->cluster = std::move(cluster_name);
  group_->on_transition = std::move(on_transition);
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& key : endpoint_keys) {
    if (breakers_.count(key) == 0) {
      breakers_.emplace(key, std::make_shared<CircuitBreaker>(key, config_, time_, group_));
    }
  }
  updateCapLocked();
}

CircuitBreakerSet::~CircuitBreakerSet() {
  // Workers may still hold breakers of a removed cluster for a while; they must stop reporting
  // transitions to a cluster that no longer exists.
  for (auto& [key, breaker] : breakers_) breaker->detach();
}

CircuitBreakerSharedPtr CircuitBreakerSet::get(const std::string& endpoint_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = breakers_.find(endpoint_key);
  if (it != breakers_.end()) return it->second;
  auto breaker = std::make_shared<CircuitBreaker>(endpoint_key, config_, time_, group_);
  breakers_.emplace(endpoint_key, breaker);
  updateCapLocked();
  return breaker;
}

void CircuitBreakerSet::reconfigure(const config::CircuitBreaker& config,
                                    const std::vector<std::string>& endpoint_keys) {
  std::lock_guard<std::mutex> lock(mutex_);
  config_ = config;
  std::map<std::string, CircuitBreakerSharedPtr> kept;
  for (const std::string& key : endpoint_keys) {
    if (kept.count(key) != 0) continue;
    auto it = breakers_.find(key);
    if (it != breakers_.end()) {
      {
        std::lock_guard<std::mutex> breaker_lock(it->second->mutex_);
        it->second->configureLocked(config_);
      }
      kept.emplace(key, std::move(it->second));
      breakers_.erase(it);
    } else {
      kept.emplace(key, std::make_shared<CircuitBreaker>(key, config_, time_, group_));
    }
  }
  for (auto& [key, breaker] : breakers_) breaker->detach();  // the removed endpoints
  breakers_ = std::move(kept);
  updateCapLocked();
}

size_t CircuitBreakerSet::openCount() const {
  return group_->ejected.load(std::memory_order_relaxed);
}

size_t CircuitBreakerSet::maxOpen() const {
  return group_->max_ejected.load(std::memory_order_relaxed);
}

size_t CircuitBreakerSet::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return breakers_.size();
}

const std::string& CircuitBreakerSet::clusterName() const { return group_->cluster; }

uint32_t CircuitBreakerSet::maxEjected(size_t endpoints, uint32_t percent) {
  percent = std::min<uint32_t>(percent, 100);
  if (percent == 0 || endpoints == 0) return 0;
  return static_cast<uint32_t>(std::max<uint64_t>(1, uint64_t{endpoints} * percent / 100));
}

void CircuitBreakerSet::updateCapLocked() {
  group_->max_ejected.store(maxEjected(breakers_.size(), config_.max_ejection_percent),
                            std::memory_order_relaxed);
}

}  // namespace remora::lb
