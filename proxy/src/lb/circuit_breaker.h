#pragma once

// Per-endpoint circuit breakers (contract section 2, `circuit_breaker`).
//
//   Closed --(consecutive_failures in a row, or failure_rate over the window)--> Open
//   Open --(open_duration elapsed, noticed by the next tryAcquire)--> HalfOpen
//   HalfOpen --(success_threshold probe successes)--> Closed (counters and window reset)
//   HalfOpen --(any probe failure)--> Open (for another open_duration)
//
// Requests to one endpoint come from every worker, so a breaker is shared by all worker threads
// and is thread-safe. The cluster's CircuitBreakerSet owns the breakers, keyed by endpoint address,
// so a config reload that keeps an endpoint keeps its breaker's state, and it enforces
// max_ejection_percent across the cluster. All time comes from a TimeSource.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::lb {

namespace detail {
struct BreakerGroup;  // the cluster-wide part: ejection budget and transition callback
}  // namespace detail

// Hot-path cost. tryAcquire() on a closed breaker is one atomic load. onResult() of a success is
// one atomic load (plus, with failure_rate configured, one compare-and-swap on the current time
// bucket) and writes nothing else while no failure is pending. No mutex is taken on these paths:
// the breaker is shared by every worker, so a mutex per request would be contended exactly on the
// busiest endpoints, while loads of a line nobody writes stay in every core's cache. The mutex
// serialises the rare paths only: transitions, and half-open probe accounting.
class CircuitBreaker {
 public:
  // The values are those of the remora_circuit_breaker_state gauge.
  enum class State : uint8_t { Closed = 0, Open = 1, HalfOpen = 2 };

  // Admission handed out by tryAcquire(). Every admitted permit must be given back exactly once:
  // onResult() when the request has an outcome, release() when it ends without one. A permit
  // remembers the state period that admitted it, so the outcome of a request that outlived that
  // period (a slow request admitted while closed, ending after the breaker opened) is ignored
  // rather than mistaken for a probe result or counted towards the next closed period.
  class Permit {
   public:
    Permit() = default;  // refused
    explicit operator bool() const { return admitted_; }
    bool isProbe() const { return probe_; }

   private:
    friend class CircuitBreaker;
    Permit(uint32_t stamp, bool probe) : stamp_(stamp), admitted_(true), probe_(probe) {}
    uint32_t stamp_ = 0;
    bool admitted_ = false;
    bool probe_ = false;
  };

  // A breaker without a group has no ejection cap and reports no transitions; CircuitBreakerSet
  // creates grouped ones. `time` must outlive the breaker.
  CircuitBreaker(std::string endpoint_key, const config::CircuitBreaker& config,
                 const TimeSource& time, std::shared_ptr<detail::BreakerGroup> group = nullptr);
  ~CircuitBreaker();
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // May a request go to this endpoint now? Moves Open to HalfOpen once open_duration has passed.
  // In HalfOpen an admitted permit holds one of half_open_max_requests probe slots. May refuse
  // even right after isAvailable() said yes (another worker took the last probe slot).
  Permit tryAcquire();

  // Cheap peek for the load balancer; takes nothing and changes nothing. True when closed, open
  // past its open_duration, or half-open with a free probe slot.
  bool isAvailable() const;

  // The outcome of a request admitted by `permit`. A failure is what the contract says: connect
  // failure, reset, timeout or 5xx. Ignores refused and stale permits.
  void onResult(const Permit& permit, bool success);

  // The request admitted by `permit` ended without an outcome (the client went away, or the
  // request was never sent). Frees its probe slot, if it held one; counts nothing.
  void release(const Permit& permit);

  State state() const { return stateOf(stamp_.load(std::memory_order_acquire)); }
  const std::string& key() const { return key_; }

 private:
  friend class CircuitBreakerSet;

  // Why a closed breaker wants to open; formatted only if it really opens.
  struct TripReason {
    bool rate = false;  // false: consecutive failures
    uint32_t failures = 0;
    uint32_t requests = 0;  // rate only
  };
  struct WindowTotals {
    uint32_t requests = 0;
    uint32_t failures = 0;
  };

  // stamp_ = generation << 2 | state. Every transition bumps the generation, so one load tells
  // both the state and whether a permit still belongs to the current period.
  static State stateOf(uint32_t stamp) { return static_cast<State>(stamp & 3u); }
  static uint32_t nextStamp(uint32_t stamp, State to) {
    return ((stamp >> 2) + 1) << 2 | static_cast<uint32_t>(to);
  }

  int64_t nowNs() const;
  Permit tryAcquireSlow();
  void onProbeResult(const Permit& permit, bool success);
  void recordInWindow(int64_t now_ns, bool success);
  WindowTotals windowTotals(int64_t now_ns) const;
  void clearWindow();
  void tripOpen(uint32_t expected_stamp, const TripReason& reason);
  // Transitions; mutex_ held.
  void transitionLocked(State to, std::string_view reason);
  void configureLocked(const config::CircuitBreaker& config);
  // Leaves the group (endpoint removed from the cluster), giving back its ejection slot.
  void detach();

  const std::string key_;
  const TimeSource& time_;

  // Lock-free fast path.
  std::atomic<uint32_t> stamp_{static_cast<uint32_t>(State::Closed)};
  std::atomic<uint32_t> consecutive_failures_{0};
  // Failure-rate window: kBuckets time buckets, each one 64-bit word packing the bucket's epoch
  // (low 24 bits of now / bucket width), requests (20 bits) and failures (20 bits), so a bucket is
  // recycled and counted with one compare-and-swap and no lock.
  static constexpr size_t kBuckets = 10;
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<int64_t> open_until_ns_{0};
  std::atomic<uint32_t> probes_in_flight_{0};

  // Settings, written under mutex_ by configure and read without it: each is a plain relaxed
  // load, and a request that sees half of a reconfiguration is harmless.
  std::atomic<uint32_t> consecutive_limit_{0};
  std::atomic<bool> rate_enabled_{false};
  std::atomic<uint32_t> rate_threshold_percent_{0};
  std::atomic<uint32_t> rate_min_requests_{0};
  std::atomic<int64_t> bucket_ns_{1};
  std::atomic<int64_t> open_duration_ns_{0};
  std::atomic<uint32_t> half_open_max_{1};
  std::atomic<uint32_t> success_threshold_{1};

  // Slow path.
  mutable std::mutex mutex_;
  uint32_t probe_successes_ = 0;                 // mutex_
  bool ejected_ = false;                         // mutex_: holds a slot of the group's budget
  std::shared_ptr<detail::BreakerGroup> group_;  // mutex_
};

using CircuitBreakerSharedPtr = std::shared_ptr<CircuitBreaker>;

// One state change, reported to the cluster's callback.
struct BreakerTransition {
  std::string_view cluster;
  std::string_view endpoint;  // the endpoint key, "host:port"
  CircuitBreaker::State from;
  CircuitBreaker::State to;
  // Why, for the log line: "5 consecutive failures", "failure rate 60% (12 of 20 requests in
  // 10s)", "probe failed", "open_duration 30s elapsed", "2 probe successes".
  std::string_view reason;
};

// Called on the thread that caused the transition, with that breaker's lock held (so the
// transitions of one breaker are reported in order). It must not call tryAcquire, onResult or
// release on the same breaker, nor get, reconfigure or size on the set (lock order: set, then
// breaker); state(), isAvailable(), openCount() and maxOpen() are fine. Typical use: count
// remora_circuit_breaker_opened_total when `to` is Open, and log
// "endpoint {endpoint} of cluster {cluster} opened: {reason}".
using BreakerTransitionCallback = std::function<void(const BreakerTransition&)>;

// The breakers of one cluster. Thread-safe; get() and reconfigure() take a mutex and are meant for
// building per-worker state on a config change, not for the request path (keep the pointer).
//
// max_ejection_percent caps how many of the cluster's endpoints may be ejected (Open or HalfOpen)
// at once: floor(endpoints * percent / 100), but at least 1 when percent > 0, so a breaker still
// works in a cluster of one or two endpoints; 0 means breakers never open. A breaker that reaches
// its threshold while the cap is full stays closed and tries again on its next failure. Envoy
// checks "ejected share < max" before each ejection, which can overshoot by one host (3 hosts at
// 50% eject 2); the floor keeps the contract's "never more than this share" except for that one
// guaranteed ejection.
class CircuitBreakerSet {
 public:
  CircuitBreakerSet(std::string cluster_name, const config::CircuitBreaker& config,
                    const std::vector<std::string>& endpoint_keys, const TimeSource& time,
                    BreakerTransitionCallback on_transition = nullptr);
  ~CircuitBreakerSet();

  // The endpoint's breaker; creates it (closed) if the key is new.
  CircuitBreakerSharedPtr get(const std::string& endpoint_key);

  // A new config for the cluster: breakers of endpoints still listed keep their state and take the
  // new settings; the others are dropped (a worker still holding one can finish its requests, but
  // it no longer counts against the cap or reports transitions). Endpoints already ejected stay
  // ejected even if the new cap is lower; the cap only stops new openings.
  void reconfigure(const config::CircuitBreaker& config,
                   const std::vector<std::string>& endpoint_keys);

  size_t openCount() const;  // endpoints ejected now: Open or HalfOpen
  size_t maxOpen() const;    // the current cap
  size_t size() const;       // endpoints with a breaker
  const std::string& clusterName() const;

  // The cap for `endpoints` endpoints at `percent` (see the class comment).
  static uint32_t maxEjected(size_t endpoints, uint32_t percent);

 private:
  void updateCapLocked();

  const TimeSource& time_;
  std::shared_ptr<detail::BreakerGroup> group_;
  mutable std::mutex mutex_;
  config::CircuitBreaker config_;                            // mutex_
  std::map<std::string, CircuitBreakerSharedPtr> breakers_;  // mutex_
};

using CircuitBreakerSetSharedPtr = std::shared_ptr<CircuitBreakerSet>;

}  // namespace remora::lb
