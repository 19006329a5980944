#pragma once

// Local rate limit of a route (`rate_limit: { requests_per_second, burst }`): a token bucket that
// holds `burst` tokens, starts full and refills at `requests_per_second`. One per route, shared
// by all worker threads, so the limit is per proxy process, as the operator wrote it, whatever
// the worker count.
//
// Implementation: GCRA (the generic cell rate algorithm, as in ATM networks and Redis-cell),
// which is a token bucket expressed as one number: the "theoretical arrival time" (TAT) at which
// the bucket would be full again. A request at time `now` is admitted if
//   max(TAT, now) + interval - now <= burst * interval,   and then TAT := max(TAT, now) + interval,
// where interval = 1 s / requests_per_second. That makes the whole state one 64-bit atomic, so
// tryConsume() is a load and one CAS (lock-free, no refill timer, no floating point), and it stays
// exact: admitting on the CAS of the value it checked means concurrent callers can never take more
// than the bucket holds. A mutex would be as correct but would serialise every request of the
// route across workers; a packed (tokens, last-refill) pair would need fractional tokens.
//
// Precision: time is in nanoseconds and the interval is rounded down to a whole nanosecond, so the
// rate is never below the configured one and exceeds it by less than rate / 10^9 relative (for
// 7/s: 7 tokens per 999,999,994 ns; rates that divide 10^9, such as 1000/s, are exact). Rates
// above 10^9/s are capped at one token per nanosecond.

#include <atomic>
#include <cstdint>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::resilience {

class TokenBucket {
 public:
  // `burst == 0` means burst = requests_per_second (the config default); requests_per_second == 0
  // admits nothing (a zero rate; the parser never produces it). `time_source` must outlive this.
  TokenBucket(const config::RateLimit& config, const TimeSource& time_source);
  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Takes one token if there is one. Lock-free.
  bool tryConsume();

  // New rate and burst apply from the next call; the tokens already spent stay spent, so a
  // reload does not hand out a fresh burst.
  void reconfigure(const config::RateLimit& config);

  // Whole tokens available now (for admin output and tests).
  uint64_t available() const;

 private:
  struct Params {
    int64_t interval_ns;   // time to refill one token
    int64_t tolerance_ns;  // burst * interval: how far TAT may run ahead of now
  };

  static uint64_t pack(const config::RateLimit& config);
  static Params unpack(uint64_t packed);
  int64_t nowNs() const;

  const TimeSource& time_source_;
  const MonotonicTime start_;
  // requests_per_second << 32 | burst, one atomic so a reconfigure can never be seen half-done.
  std::atomic<uint64_t> config_;
  // Theoretical arrival time in ns since start_; 0 = full bucket at construction.
  std::atomic<int64_t> tat_ns_{0};
};

}  // namespace remora::resilience
