#include "rate_limit/filter.h"

#include "snapshot.h"

namespace remora::filters {

FilterStatus RateLimitFilter::onRequestHeaders() {
  if (bucket_->tryConsume()) return FilterStatus::Continue;
  stats_.rate_limited.inc();
  const config::Route& route = *callbacks_->route().config;
  const config::RateLimit& rl = *route.rate_limit;
  callbacks_->sendFallbackOrError(
      FallbackReason::RateLimited, 429,
      "route " + route.name + " is over its rate limit (" +
          std::to_string(rl.requests_per_second) + " requests/s, burst " +
          std::to_string(rl.burst) + ")");
  return FilterStatus::Stop;
}

StreamFilterPtr RateLimitFilterFactory::create(const RouteInfo& route, const ClusterInfo&) const {
  if (!route.rate_limit) return nullptr;
  return std::make_unique<RateLimitFilter>(route.rate_limit, *route.stats);
}

}  // namespace remora::filters
