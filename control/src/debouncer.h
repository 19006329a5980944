#pragma once

// Coalesces bursts of changes into few pushes, without delaying a lone change.
//
// Leading edge: a change that comes after `quiet` without any change (or the very first one) is
// due at once. Trailing edge: the changes that follow it within `quiet` form a burst, which fires
// once `quiet` has passed without a change, but never later than `max_delay` after the first
// change of the burst. So a lone change goes out immediately, and 1,000 registrations in a second
// make about three pushes (the first change, then one per max_delay) instead of 1,000.
//
// Pure logic over a TimeSource; the owner arms a timer for deadline() and calls reset() when it
// pushed.

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
  // When the pending changes should go out; nullopt when nothing is pending. For a leading
  // change, the moment it was made (it is due at once).
  std::optional<MonotonicTime> deadline() const;
  bool due() const;
  // Whether the pending changes started after a quiet period: they go out as soon as they can,
  // even if more changes have come since (those then form the next burst).
  bool leading() const { return first_.has_value() && leading_; }
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
  std::optional<MonotonicTime> first_;        // first change of the pending burst
  MonotonicTime last_;                        // latest change of the pending burst
  std::optional<MonotonicTime> last_change_;  // latest change ever (pushed or not)
  bool leading_ = false;
};

}  // namespace remora::control
