#include "resilience/retry.h"

#include <algorithm>

namespace remora::resilience {

bool methodRetriable(const config::RetryPolicy& policy, std::string_view method) {
  return std::find(policy.methods.begin(), policy.methods.end(), method) != policy.methods.end();
}

bool shouldRetryStatus(const config::RetryPolicy& policy, uint16_t status) {
  if ((policy.on & config::kRetry5xx) != 0 && status >= 500 && status <= 599) return true;
  if ((policy.on & config::kRetryGatewayError) != 0 &&
      (status == 502 || status == 503 || status == 504)) {
    return true;
  }
  if ((policy.on & config::kRetryRetriableStatusCodes) != 0) {
    const auto& codes = policy.retriable_status_codes;
    return std::find(codes.begin(), codes.end(), status) != codes.end();
  }
  return false;
}

bool shouldRetryFailure(const config::RetryPolicy& policy, FailureKind kind) {
  switch (kind) {
    case FailureKind::ConnectFailure:
      return (policy.on & config::kRetryConnectFailure) != 0;
    case FailureKind::Reset:
      return (policy.on & config::kRetryReset) != 0;
    case FailureKind::Timeout:
      return (policy.on & config::kRetryTimeout) != 0;
  }
  return false;
}

std::chrono::milliseconds backoffDelay(const config::RetryPolicy& policy, uint32_t retry_number,
                                       uint64_t random) {
  // Durations are validated non-negative, but a hand-built policy might not be; clamp rather than
  // let a negative count wrap to a huge unsigned one.
  const uint64_t base = static_cast<uint64_t>(std::max<int64_t>(policy.backoff_base.count(), 0));
  const uint64_t max = static_cast<uint64_t>(std::max<int64_t>(policy.backoff_max.count(), 0));
  const uint32_t shift = retry_number == 0 ? 0 : retry_number - 1;

  // base * 2^shift saturates at max: compare before shifting so neither the shift (>= 64 is
  // undefined) nor the product can overflow.
  uint64_t cap = max;
  if (shift < 64 && base <= (max >> shift)) cap = base << shift;

  // Uniform in [0, cap], inclusive; cap <= INT64_MAX, so cap + 1 cannot wrap. The modulo bias is
  // below 2^-28 for any duration the parser accepts (a year in milliseconds is < 2^35), far under
  // anything observable.
  return std::chrono::milliseconds(static_cast<int64_t>(random % (cap + 1)));
}

}  // namespace remora::resilience
