#include "debouncer.h"

#include <algorithm>

namespace remora::control {

void Debouncer::changed() {
  const MonotonicTime now = time_.now();
  if (!first_) {
    first_ = now;
    leading_ = !last_change_ || now - *last_change_ >= quiet_;
  }
  last_ = now;
  last_change_ = now;
}

std::optional<MonotonicTime> Debouncer::deadline() const {
  if (!first_) return std::nullopt;
  if (leading_) return *first_;
  return std::min(last_ + quiet_, *first_ + max_delay_);
}

bool Debouncer::due() const {
  const std::optional<MonotonicTime> d = deadline();
  return d && time_.now() >= *d;
}

std::optional<MonotonicTime> Debouncer::maxDeadline() const {
  if (!first_) return std::nullopt;
  return *first_ + max_delay_;
}

bool Debouncer::maxDue() const {
  const std::optional<MonotonicTime> d = maxDeadline();
  return d && time_.now() >= *d;
}

void Debouncer::reset() {
  first_.reset();
  leading_ = false;
}

}  // namespace remora::control
