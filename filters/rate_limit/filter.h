#pragma once

// Local rate limit (route `rate_limit`): a token bucket per route shared by all workers. A request
// over the rate is answered 429 (or by the route's fallback) with x-remora-fallback: rate-limited.

#include <memory>

#include "remora/filter.h"
#include "resilience/token_bucket.h"
#include "stats.h"
#include "thread_recycled.h"

namespace remora::filters {

// One per request of a route with a rate limit: recycled per thread like the stream.
class RateLimitFilter : public StreamFilter, public ThreadRecycled<RateLimitFilter> {
 public:
  RateLimitFilter(std::shared_ptr<resilience::TokenBucket> bucket, RouteStats& stats)
      : bucket_(std::move(bucket)), stats_(stats) {}
  FilterStatus onRequestHeaders() override;

 private:
  std::shared_ptr<resilience::TokenBucket> bucket_;
  RouteStats& stats_;
};

class RateLimitFilterFactory : public StreamFilterFactory {
 public:
  const char* name() const override { return "rate_limit"; }
  StreamFilterPtr create(const RouteInfo& route, const ClusterInfo& cluster) const override;
};

}  // namespace remora::filters
