#include "timeout_queue.h"

#include <limits>

#include "uv_util.h"

namespace remora {

void TimeoutQueue::Entry::arm(TimeoutQueue& queue, std::chrono::milliseconds timeout) {
  cancel();
  const uint64_t duration = timeout.count() < 0 ? 0 : static_cast<uint64_t>(timeout.count());
  deadline_ = uv_now(queue.loop_) + duration;
  queue.insert(*this, duration);
}

void TimeoutQueue::Entry::cancel() {
  if (queue_ != nullptr) queue_->unlink(*this);
}

TimeoutQueue::TimeoutQueue(uv_loop_t* loop)
    : loop_(loop), timer_(std::make_unique<Timer>(loop, [this] { expire(); })) {}

TimeoutQueue::~TimeoutQueue() = default;

void TimeoutQueue::close() { timer_.reset(); }

void TimeoutQueue::insert(Entry& e, uint64_t duration) {
  size_t index = lists_.size();
  size_t empty = lists_.size();
  for (size_t i = 0; i < lists_.size(); ++i) {
    if (lists_[i].duration == duration) {
      index = i;
      break;
    }
    if (lists_[i].head == nullptr && empty == lists_.size()) empty = i;
  }
  if (index == lists_.size()) {
    if (empty == lists_.size()) lists_.emplace_back();
    index = empty;
    lists_[index].duration = duration;
  }
  List& list = lists_[index];
  e.queue_ = this;
  e.list_ = index;
  e.sequence_ = arm_count_++;
  e.prev_ = list.tail;
  e.next_ = nullptr;
  if (list.tail != nullptr) {
    list.tail->next_ = &e;
  } else {
    list.head = &e;
  }
  list.tail = &e;
  ++size_;
  // The new entry expires last in its list; it moves the timer only when it is due before it.
  if (timer_ != nullptr && (!timer_->enabled() || e.deadline_ < timer_due_)) rearm();
}

void TimeoutQueue::unlink(Entry& e) {
  List& list = lists_[e.list_];
  if (e.prev_ != nullptr) {
    e.prev_->next_ = e.next_;
  } else {
    list.head = e.next_;
  }
  if (e.next_ != nullptr) {
    e.next_->prev_ = e.prev_;
  } else {
    list.tail = e.prev_;
  }
  e.queue_ = nullptr;
  e.prev_ = e.next_ = nullptr;
  --size_;
  // The uv timer stays as it is: firing early finds nothing due and re-arms for what is left
  // (cheaper than recomputing on every cancel, which is what a request that completes does).
}

void TimeoutQueue::rearm() {
  if (timer_ == nullptr) return;
  uint64_t earliest = std::numeric_limits<uint64_t>::max();
  for (const List& list : lists_) {
    if (list.head != nullptr && list.head->deadline_ < earliest) earliest = list.head->deadline_;
  }
  if (earliest == std::numeric_limits<uint64_t>::max()) {
    timer_->disable();
    return;
  }
  const uint64_t now = uv_now(loop_);
  timer_due_ = earliest;
  timer_->enable(std::chrono::milliseconds(earliest > now ? earliest - now : 0));
}

void TimeoutQueue::expire() {
  const uint64_t now = uv_now(loop_);
  // Entries armed by the callbacks below wait for the next expiry, even with a zero timeout, as a
  // uv timer started from a timer callback does: no callback can keep this loop going.
  const uint64_t armed_before = arm_count_;
  for (size_t i = 0; i < lists_.size(); ++i) {
    // Re-read the head after every callback: it may have cancelled or re-armed any entry.
    while (lists_[i].head != nullptr && lists_[i].head->deadline_ <= now &&
           lists_[i].head->sequence_ < armed_before) {
      Entry& e = *lists_[i].head;
      unlink(e);
      e.callback_(e.context_);
    }
  }
  rearm();
}

}  // namespace remora
