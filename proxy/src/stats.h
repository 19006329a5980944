#pragma once

// Process-wide statistics, rendered in Prometheus text format by the admin API (contract
// section 4).
//
// Counters are relaxed atomics shared by all workers: an increment is one uncontended-most-of-the-
// time `lock add`, and scrapes read them without stopping the data plane. Stat objects are created
// on first use by name and never destroyed, so a snapshot can hold raw pointers to them and
// counters stay monotonic across config reloads (a cluster removed and re-added keeps counting).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace remora {

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(int64_t n) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void set(int64_t n) { value_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }
  // Adds `n` unless that would take the value above `max`; exact under concurrency (a cap shared
  // by every worker never overshoots).
  bool tryAdd(int64_t n, int64_t max) {
    int64_t v = value_.load(std::memory_order_relaxed);
    do {
      if (v + n > max) return false;
    } while (!value_.compare_exchange_weak(v, v + n, std::memory_order_relaxed));
    return true;
  }

 private:
  std::atomic<int64_t> value_{0};
};

// One counter per HTTP status code (100..599); codes outside that range count as 0.
class StatusCounters {
 public:
  void inc(int code) { counters_[index(code)].inc(); }
  uint64_t value(int code) const { return counters_[index(code)].value(); }
  template <class F>
  void forEachNonZero(F&& f) const {
    for (int i = 0; i < kSize; ++i) {
      uint64_t v = counters_[i].value();
      if (v != 0) f(i == 0 ? 0 : i + 99, v);
    }
  }

 private:
  static constexpr int kSize = 501;
  static int index(int code) { return (code >= 100 && code <= 599) ? code - 99 : 0; }
  std::array<Counter, kSize> counters_;
};

class Histogram {
 public:
  static constexpr std::array<double, 14> kBoundsSeconds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  void record(std::chrono::microseconds d);
  uint64_t bucket(size_t i) const { return buckets_[i].value(); }  // non-cumulative
  uint64_t count() const { return count_.value(); }
  double sumSeconds() const { return static_cast<double>(sum_us_.value()) / 1e6; }

 private:
  std::array<Counter, kBoundsSeconds.size() + 1> buckets_;
  Counter count_;
  Counter sum_us_;
};

struct ListenerStats {
  StatusCounters downstream_requests;
  Counter downstream_connections;
  Gauge downstream_connections_active;
  Counter tls_handshakes;        // completed TLS handshakes (resumed ones included)
  Counter tls_handshake_errors;  // failed handshakes: bad client certificate, protocol, ...
  Counter downstream_connections_rejected;  // closed at accept: the listener's max_connections
  Counter downstream_upgrades;              // connections upgraded (a 101 relayed: WebSocket...)
  Gauge downstream_upgrades_active;         // of which still open (tunnels)
};

struct ClusterStats {
  StatusCounters upstream_requests;
  Counter upstream_retries;
  Counter upstream_timeouts;
  Counter upstream_connect_failures;
  Counter upstream_resets;
  Counter upstream_connections;
  Gauge upstream_connections_active;
  Gauge upstream_requests_active;
  Counter upstream_tls_handshakes;  // completed upstream TLS handshakes
  Counter upstream_tls_resumed;     // of which resumed a cached session
  Counter circuit_breaker_opened;
  Counter bulkhead_rejected;
  Histogram request_duration;
};

enum class FallbackReason {
  CircuitOpen,
  BulkheadFull,
  RetriesExhausted,
  RateLimited,
  NoHealthyEndpoint,
  Timeout,
  Count
};
const char* toString(FallbackReason r);

struct RouteStats {
  Counter rate_limited;
  std::array<Counter, static_cast<size_t>(FallbackReason::Count)> fallback;
};

class StatsStore {
 public:
  ListenerStats& listener(const std::string& name);
  ClusterStats& cluster(const std::string& name);
  RouteStats& route(const std::string& name);

  Gauge& configVersion() { return config_version_; }
  // source: "file" or "control-plane"; accepted: ACK (applied) or NACK (rejected).
  void recordConfigUpdate(const std::string& source, bool accepted);

  std::string renderPrometheus() const;

 private:
  mutable std::mutex mutex_;  // guards the maps, never the counters
  std::map<std::string, std::unique_ptr<ListenerStats>> listeners_;
  std::map<std::string, std::unique_ptr<ClusterStats>> clusters_;
  std::map<std::string, std::unique_ptr<RouteStats>> routes_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Counter>> config_updates_;
  Gauge config_version_;
};

}  // namespace remora
