#pragma once

// Envoy-style per-cluster thresholds (`limits:` in a cluster, contract section 2): at most
// max_connections upstream connections, max_pending_requests requests waiting for a connection,
// max_requests requests in flight and max_retries retries in flight, each summed over all worker
// threads of the process. Going over a threshold is refused immediately (no queueing: that is the
// bulkhead's job), which keeps one slow cluster from taking every connection and file descriptor
// of the sidecar.
//
// Each counter is an atomic; tryAcquire() is a load plus one CAS that re-checks the limit, so
// concurrent callers never overshoot, and nothing allocates. Each kind sits on its own cache line
// because workers hit them independently (a connection count bumping while requests are counted
// would otherwise bounce one line between cores).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "remora/config/config.h"

namespace remora::resilience {

enum class ResourceKind : uint8_t { Connections, PendingRequests, Requests, Retries };
inline constexpr size_t kResourceKindCount = 4;
std::string_view toString(ResourceKind kind);  // "connections", "pending_requests", ...

class ResourceLimits {  // thread-safe
 public:
  explicit ResourceLimits(const config::Limits& limits);
  ResourceLimits(const ResourceLimits&) = delete;
  ResourceLimits& operator=(const ResourceLimits&) = delete;

  // Takes one unit of `kind` if that stays within its limit.
  bool tryAcquire(ResourceKind kind);
  // Gives back a unit taken by tryAcquire(). Releasing more than was acquired is a bug: it asserts
  // in debug builds and is ignored (the count stays at 0) in release builds.
  void release(ResourceKind kind);

  // New limits apply to the next tryAcquire(). Lowering a limit below the current count revokes
  // nothing: holders keep their units and new ones are refused until the count drains below it.
  void reconfigure(const config::Limits& limits);

  uint64_t active(ResourceKind kind) const;
  uint32_t max(ResourceKind kind) const;
  // True if tryAcquire() would succeed now (advisory: another thread may take the last unit).
  bool canAcquire(ResourceKind kind) const { return active(kind) < max(kind); }

 private:
  struct alignas(64) Counter {
    std::atomic<uint64_t> active{0};
    std::atomic<uint32_t> max{0};
  };
  Counter& counter(ResourceKind kind) { return counters_[static_cast<size_t>(kind)]; }
  const Counter& counter(ResourceKind kind) const { return counters_[static_cast<size_t>(kind)]; }

  std::array<Counter, kResourceKindCount> counters_;
};

// Holds one unit of a ResourceLimits counter and gives it back on destruction. Move-only. Empty
// (false) when the acquisition was refused. The ResourceLimits must outlive the guard; the proxy
// keeps a cluster's limits alive with the snapshot that in-flight requests hold.
class ResourceGuard {
 public:
  ResourceGuard() = default;
  // Acquires; the result is empty if the limit was reached.
  static ResourceGuard tryAcquire(ResourceLimits& limits, ResourceKind kind);

  ~ResourceGuard() { release(); }
  ResourceGuard(ResourceGuard&& other) noexcept : limits_(other.limits_), kind_(other.kind_) {
    other.limits_ = nullptr;
  }
  ResourceGuard& operator=(ResourceGuard&& other) noexcept;
  ResourceGuard(const ResourceGuard&) = delete;
  ResourceGuard& operator=(const ResourceGuard&) = delete;

  explicit operator bool() const { return limits_ != nullptr; }
  ResourceKind kind() const { return kind_; }
  // Gives the unit back now (e.g. a pending request got its connection); idempotent.
  void release();

 private:
  ResourceGuard(ResourceLimits* limits, ResourceKind kind) : limits_(limits), kind_(kind) {}

  ResourceLimits* limits_ = nullptr;
  ResourceKind kind_ = ResourceKind::Requests;
};

}  // namespace remora::resilience
