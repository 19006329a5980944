#pragma once

// Coalesces bursts of changes into few pushes: fire once `quiet` has passed without a change, but
// never later than `max_delay` after the first change of the burst. 1,000 registrations in a
// second thus make about two pushes (one per max_delay) instead of 1,000. Pure logic over a
// TimeSource; the owner arms a timer for deadline().

#include <optional>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::control {

class Debouncer {
 public:
  Debouncer(const TimeSource& time, config::Duration quiet, config::Duration max_delay)
      : time_(time), quiet_(quiet), max_delay_(max_delay) {}

  // Records a change now.
  void changed();
  // When the pending changes should go out; nullopt when nothing is pending.
  std::optional<MonotonicTime> deadline() const;
  bool due() const;
  // When the burst has lasted `max_delay`: the latest moment to fire whatever is ready.
  std::optional<MonotonicTime> maxDeadline() const;
  bool maxDue() const;
  bool pending() const { return first_.has_value(); }
  // The owner pushed: the burst is over.
  void reset();

 private:
  const TimeSource& time_;
  config::Duration quiet_;
  config::Duration max_delay_;
  std::optional<MonotonicTime> first_;
  MonotonicTime last_;
};

}  // namespace remora::control
