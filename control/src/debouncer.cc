#include "debouncer.h"

#include <algorithm>

namespace remora::control {

void Debouncer::changed() {
  last_ = time_.now();
  if (!first_) first_ = last_;
}

std::optional<MonotonicTime> Debouncer::deadline() const {
  if (!first_) return std::nullopt;
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

void Debouncer::reset() { first_.reset(); }

}  // namespace remora::control
