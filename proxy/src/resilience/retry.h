#pragma once

// Retry decisions of a route's `retry:` policy (contract section 2), as pure functions.
//
// The stream asks, after each failed try, three independent questions: may this method be retried
// at all (methodRetriable), does this outcome count as retriable (shouldRetryStatus /
// shouldRetryFailure), and how long to wait first (backoffDelay). Attempts left, the retry budget
// (retry_budget.h) and the cluster's max_retries (resource_limits.h) are checked by the caller;
// this file knows nothing about sockets or time.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "remora/config/config.h"

namespace remora::resilience {

// Failures that happen before a response status is known.
enum class FailureKind {
  ConnectFailure,  // `connect-failure`: nothing reached the upstream
  Reset,           // `reset`: the connection closed or errored before a full response head
  Timeout,         // `timeout`: the per-try timeout fired
};

// True if `method` is listed in the policy's `methods`. Methods are case-sensitive (RFC 9110
// section 9.1); the parser stores them upper-case, so "get" never matches.
bool methodRetriable(const config::RetryPolicy& policy, std::string_view method);

// True if a response with `status` is retriable: any 500..599 with `5xx`, 502/503/504 with
// `gateway-error`, and the listed codes with `retriable-status-codes`.
bool shouldRetryStatus(const config::RetryPolicy& policy, uint16_t status);

// True if the failure kind is enabled in the policy's `on`.
bool shouldRetryFailure(const config::RetryPolicy& policy, FailureKind kind);

// True if another try is allowed after `tries_made` tries (`attempts` counts the first try).
inline bool hasAttemptsLeft(const config::RetryPolicy& policy, uint32_t tries_made) {
  return tries_made < policy.attempts;
}

// Delay before retry number `retry_number` (1 = the first retry, i.e. the second try), with AWS
// "full jitter": uniform in [0, min(backoff_max, backoff_base * 2^(retry_number - 1))] in whole
// milliseconds. `random` is any uniformly distributed 64-bit value (the caller owns the generator,
// so this stays deterministic under test). Never overflows, whatever retry_number is; 0 is treated
// as 1.
std::chrono::milliseconds backoffDelay(const config::RetryPolicy& policy, uint32_t retry_number,
                                       uint64_t random);

}  // namespace remora::resilience
