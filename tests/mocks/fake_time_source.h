#pragma once

#include <atomic>

#include "remora/time_source.h"

namespace remora {

// A clock that moves only when the test says so. Thread-safe.
class FakeTimeSource : public TimeSource {
 public:
  MonotonicTime now() const override {
    return MonotonicTime(std::chrono::nanoseconds(ns_.load()));
  }
  void advance(std::chrono::nanoseconds d) { ns_.fetch_add(d.count()); }

 private:
  std::atomic<int64_t> ns_{int64_t{1000} * 1000 * 1000 * 1000};  // start far from zero
};

}  // namespace remora
