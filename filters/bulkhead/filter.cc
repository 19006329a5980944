#include "bulkhead/filter.h"

#include "http/headers.h"
#include "snapshot.h"

namespace remora::filters {

FilterStatus BulkheadFilter::onRequestHeaders() {
  const std::string* p = callbacks_->requestHeaders().get("x-remora-priority");
  resilience::Priority priority =
      p != nullptr ? resilience::parsePriority(*p) : resilience::Priority::Normal;

  if (bulkhead_->tryAdmit()) {
    // Uncontended: no decision callback, no shared state (nothing allocated).
    holding_ = true;
    return FilterStatus::Continue;
  }
  state_ = std::make_shared<State>();
  auto post = callbacks_->poster();
  std::shared_ptr<State> state = state_;
  std::shared_ptr<resilience::Bulkhead> bulkhead = bulkhead_;
  BulkheadFilter* self = this;
  // Runs on whichever thread released the slot (or evicted us): hop to ours.
  auto on_decision = [post, state, bulkhead, self](bool granted) {
    post([state, bulkhead, self, granted] {
      if (state->decided) return;  // a cancel() settled it first
      state->decided = true;
      if (!state->alive) {
        // The request is gone; give a granted slot straight back.
        if (granted) bulkhead->release();
        return;
      }
      self->onDecision(granted);
    });
  };
  switch (bulkhead_->acquire(priority, std::move(on_decision), &ticket_)) {
    case resilience::Bulkhead::Result::Admitted:
      holding_ = true;
      state_->decided = true;
      return FilterStatus::Continue;
    case resilience::Bulkhead::Result::Rejected:
      state_->decided = true;
      reject();
      return FilterStatus::Stop;
    case resilience::Bulkhead::Result::Queued:
      break;
  }
  queued_ = true;
  auto timeout = bulkhead_->queueTimeout();
  if (timeout.count() > 0) {
    timer_ = callbacks_->createTimer([this] { onQueueTimeout(); });
    timer_->enable(timeout);
  }
  return FilterStatus::Stop;
}

void BulkheadFilter::onDecision(bool granted) {
  queued_ = false;
  timer_.reset();
  if (granted) {
    holding_ = true;
    callbacks_->continueChain();
  } else {
    reject();
  }
}

void BulkheadFilter::onQueueTimeout() {
  if (state_->decided) return;
  if (bulkhead_->cancel(ticket_) == resilience::Bulkhead::CancelResult::Cancelled) {
    state_->decided = true;
    queued_ = false;
    reject();
  }
  // Otherwise a decision is already on its way to this thread and settles it.
}

void BulkheadFilter::reject() {
  stats_.bulkhead_rejected.inc();
  const ClusterInfo& cluster = callbacks_->cluster();
  const config::Bulkhead& cfg = *cluster.config->bulkhead;
  callbacks_->sendFallbackOrError(
      FallbackReason::BulkheadFull, 503,
      "bulkhead of cluster " + cluster.name() + " is full (" +
          std::to_string(cfg.max_concurrent_requests) + " in flight, " +
          std::to_string(cfg.max_queue) + " queued for up to " +
          std::to_string(cfg.queue_timeout.count()) + "ms)");
}

void BulkheadFilter::onStreamComplete() {
  if (state_) state_->alive = false;
  timer_.reset();
  if (holding_) {
    holding_ = false;
    bulkhead_->release();
  } else if (queued_ && !state_->decided) {
    if (bulkhead_->cancel(ticket_) == resilience::Bulkhead::CancelResult::Cancelled) {
      state_->decided = true;
    }
    // AlreadyGranted: the posted decision sees alive == false and releases the slot.
  }
  queued_ = false;
}

StreamFilterPtr BulkheadFilterFactory::create(const RouteInfo&, const ClusterInfo& cluster) const {
  if (!cluster.bulkhead) return nullptr;
  return std::make_unique<BulkheadFilter>(cluster.bulkhead, *cluster.stats);
}

}  // namespace remora::filters
