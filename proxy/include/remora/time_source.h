#pragma once

// Time as the data plane sees it. Components that measure windows or durations (circuit breakers,
// retry budgets, token buckets, bulkhead queues) take a TimeSource so unit tests can drive them
// with a fake clock (tests/mocks/fake_time_source.h) instead of sleeping.

#include <chrono>

namespace remora {

using MonotonicTime = std::chrono::steady_clock::time_point;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual MonotonicTime now() const = 0;
};

class RealTimeSource : public TimeSource {
 public:
  MonotonicTime now() const override { return std::chrono::steady_clock::now(); }
  static RealTimeSource& instance() {
    static RealTimeSource source;
    return source;
  }
};

}  // namespace remora
