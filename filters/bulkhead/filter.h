#pragma once

// Bulkhead (cluster `bulkhead`): at most max_concurrent_requests in flight per cluster, then a
// bounded queue ordered by x-remora-priority (critical > high > normal > low, FIFO within a level)
// where a request waits at most queue_timeout. Beyond that: 503 (or the route's fallback) with
// x-remora-fallback: bulkhead-full.
//
// The bulkhead is shared by all workers, so a slot freed on one worker may be granted to a request
// waiting on another: the grant arrives through the worker's poster, and a small shared State
// decides, on the request's own thread, whether the grant or a cancel (queue timeout, request gone)
// came first.

#include <memory>

#include "remora/filter.h"
#include "resilience/bulkhead.h"
#include "stats.h"
#include "thread_recycled.h"

namespace remora::filters {

// One per request of a cluster with a bulkhead: recycled per thread like the stream.
class BulkheadFilter : public StreamFilter, public ThreadRecycled<BulkheadFilter> {
 public:
  BulkheadFilter(std::shared_ptr<resilience::Bulkhead> bulkhead, ClusterStats& stats)
      : bulkhead_(std::move(bulkhead)), stats_(stats) {}
  FilterStatus onRequestHeaders() override;
  void onStreamComplete() override;

 private:
  // Lives as long as any posted decision that may refer to this filter. Touched only on the
  // request's thread.
  struct State {
    bool alive = true;     // the filter exists
    bool decided = false;  // grant/reject/cancel settled: later decisions are ignored
  };
  void onDecision(bool granted);
  void onQueueTimeout();
  void reject();

  std::shared_ptr<resilience::Bulkhead> bulkhead_;
  ClusterStats& stats_;
  std::shared_ptr<State> state_;  // created when the request cannot be admitted at once
  resilience::Bulkhead::TicketPtr ticket_;
  FilterTimerPtr timer_;
  bool holding_ = false;
  bool queued_ = false;
};

class BulkheadFilterFactory : public StreamFilterFactory {
 public:
  const char* name() const override { return "bulkhead"; }
  StreamFilterPtr create(const RouteInfo& route, const ClusterInfo& cluster) const override;
};

}  // namespace remora::filters
