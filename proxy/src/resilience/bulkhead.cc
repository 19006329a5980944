#include "resilience/bulkhead.h"

#include <cassert>
#include <utility>
#include <vector>

namespace remora::resilience {
namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Priority parsePriority(std::string_view value) {
  value = trim(value);
  for (Priority p : {Priority::Low, Priority::Normal, Priority::High, Priority::Critical}) {
    if (equalsIgnoreCase(value, toString(p))) return p;
  }
  return Priority::Normal;
}

std::string_view toString(Priority priority) {
  switch (priority) {
    case Priority::Low:
      return "low";
    case Priority::Normal:
      return "normal";
    case Priority::High:
      return "high";
    case Priority::Critical:
      return "critical";
  }
  return "normal";
}

// A queued request. Only the bulkhead touches it, and only under its mutex; the caller merely
// holds a reference so cancel() can read the outcome after the waiter has left the queue.
class Bulkhead::Ticket {
 public:
  enum class State : uint8_t { Queued, Granted, Rejected, Cancelled };

  Priority priority = Priority::Normal;
  State state = State::Queued;
  MonotonicTime enqueued;
  DecisionCallback on_decision;
  // Intrusive links of the priority level's FIFO: no list node to allocate, O(1) removal.
  Ticket* prev = nullptr;
  Ticket* next = nullptr;
  // The queue's own reference, held while queued so a caller that drops its handle does not
  // free a waiter the queue still links to. Moved out (never destroyed) under the lock.
  TicketPtr self;
};

// Decisions made under the lock and delivered after it: callbacks may re-enter the bulkhead, and
// destroying a callback (its captures) or the last ticket reference must not run under the lock.
class Bulkhead::Decisions {
 public:
  void add(DecisionCallback&& callback, bool granted, TicketPtr&& ticket) {
    items_.push_back(Item{std::move(callback), granted, std::move(ticket)});
  }
  // Call after unlocking.
  void run() {
    for (Item& item : items_) {
      if (item.callback) item.callback(item.granted);
    }
    items_.clear();
  }

 private:
  struct Item {
    DecisionCallback callback;
    bool granted;
    TicketPtr ticket;
  };
  // Empty (and unallocated) on the common path, where nobody is waiting.
  std::vector<Item> items_;
};

Bulkhead::Bulkhead(const config::Bulkhead& config, const TimeSource& time_source)
    : time_source_(time_source),
      max_concurrent_(config.max_concurrent_requests),
      max_queue_(config.max_queue),
      queue_timeout_(config.queue_timeout) {}

Bulkhead::~Bulkhead() {
  for (Level& level : levels_) {
    while (level.head != nullptr) {
      Ticket* waiter = level.head;
      unlink(waiter);
      waiter->state = Ticket::State::Rejected;
      TicketPtr self = std::move(waiter->self);  // breaks the self-reference; may free the waiter
    }
  }
}

void Bulkhead::pushBack(Ticket* waiter) {
  Level& level = levels_[static_cast<size_t>(waiter->priority)];
  waiter->prev = level.tail;
  waiter->next = nullptr;
  if (level.tail != nullptr) {
    level.tail->next = waiter;
  } else {
    level.head = waiter;
  }
  level.tail = waiter;
  ++level.size;
  ++queued_;
}

void Bulkhead::unlink(Ticket* waiter) {
  Level& level = levels_[static_cast<size_t>(waiter->priority)];
  if (waiter->prev != nullptr) {
    waiter->prev->next = waiter->next;
  } else {
    level.head = waiter->next;
  }
  if (waiter->next != nullptr) {
    waiter->next->prev = waiter->prev;
  } else {
    level.tail = waiter->prev;
  }
  waiter->prev = waiter->next = nullptr;
  --level.size;
  --queued_;
}

void Bulkhead::decide(Ticket* waiter, bool granted, Decisions& out) {
  waiter->state = granted ? Ticket::State::Granted : Ticket::State::Rejected;
  out.add(std::move(waiter->on_decision), granted, std::move(waiter->self));
}

bool Bulkhead::expired(const Ticket& waiter, MonotonicTime now) const {
  // 0 means no queue timeout, as for the route timeout.
  return queue_timeout_.count() > 0 && now - waiter.enqueued >= queue_timeout_;
}

void Bulkhead::grantWaiters(Decisions& out) {
  if (queued_ == 0 || active_ >= max_concurrent_) return;
  const MonotonicTime now = time_source_.now();
  while (queued_ > 0 && active_ < max_concurrent_) {
    // The best waiter: the oldest of the highest non-empty priority.
    Ticket* best = nullptr;
    for (size_t i = kPriorityCount; i-- > 0;) {
      if (levels_[i].head != nullptr) {
        best = levels_[i].head;
        break;
      }
    }
    unlink(best);
    // A waiter past its deadline is about to be (or is being) cancelled by its own timer; a slot
    // granted to it would only bounce back, so it goes to the next waiter instead.
    if (expired(*best, now)) {
      decide(best, false, out);
      continue;
    }
    ++active_;
    decide(best, true, out);
  }
}

void Bulkhead::expireWaiters(MonotonicTime now, Decisions& out) {
  if (queue_timeout_.count() <= 0) return;
  for (Level& level : levels_) {
    // FIFO within a level, so the expired waiters are a prefix.
    while (level.head != nullptr && expired(*level.head, now)) {
      Ticket* waiter = level.head;
      unlink(waiter);
      decide(waiter, false, out);
    }
  }
}

bool Bulkhead::evictLowest(size_t below_level, Decisions& out) {
  for (size_t i = 0; i < below_level && i < kPriorityCount; ++i) {
    // The newest of the level goes: the oldest has waited longest and is next in line, so
    // dropping the tail keeps the level FIFO for those that stay.
    if (Ticket* victim = levels_[i].tail; victim != nullptr) {
      unlink(victim);
      decide(victim, false, out);
      return true;
    }
  }
  return false;
}

Bulkhead::Result Bulkhead::acquire(Priority priority, DecisionCallback on_decision,
                                   TicketPtr* ticket) {
  assert(ticket != nullptr);
  if (static_cast<size_t>(priority) >= kPriorityCount) priority = Priority::Normal;
  Decisions decisions;
  Result result = Result::Rejected;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Waiters exist only while every slot is taken (release() and reconfigure() hand free slots
    // to them first), so this is a no-op in practice; it keeps a newcomer from ever overtaking a
    // waiter if that invariant is broken by a future change.
    grantWaiters(decisions);
    if (active_ < max_concurrent_) {
      ++active_;
      result = Result::Admitted;
    } else {
      const MonotonicTime now = time_source_.now();
      if (queued_ >= max_queue_) expireWaiters(now, decisions);
      const bool room =
          queued_ < max_queue_ || evictLowest(static_cast<size_t>(priority), decisions);
      if (room) {
        auto waiter = std::make_shared<Ticket>();
        waiter->priority = priority;
        waiter->enqueued = now;
        waiter->on_decision = std::move(on_decision);
        waiter->self = waiter;
        pushBack(waiter.get());
        *ticket = std::move(waiter);
        result = Result::Queued;
      }
    }
  }
  decisions.run();
  return result;
}

bool Bulkhead::tryAdmit() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (queued_ != 0 || active_ >= max_concurrent_) return false;
  ++active_;
  return true;
}

Bulkhead::CancelResult Bulkhead::cancel(const TicketPtr& ticket) {
  assert(ticket != nullptr);
  if (ticket == nullptr) return CancelResult::Cancelled;
  // Destroyed after the lock is released (declared before the guard).
  TicketPtr self;
  DecisionCallback dropped;
  std::lock_guard<std::mutex> lock(mutex_);
  switch (ticket->state) {
    case Ticket::State::Queued:
      unlink(ticket.get());
      ticket->state = Ticket::State::Cancelled;
      self = std::move(ticket->self);
      dropped = std::move(ticket->on_decision);
      return CancelResult::Cancelled;
    case Ticket::State::Granted:
      return CancelResult::AlreadyGranted;
    case Ticket::State::Rejected:
      return CancelResult::AlreadyRejected;
    case Ticket::State::Cancelled:
      return CancelResult::Cancelled;
  }
  return CancelResult::Cancelled;
}

void Bulkhead::release() {
  Decisions decisions;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    assert(active_ > 0 && "Bulkhead::release without a slot");
    if (active_ > 0) --active_;
    grantWaiters(decisions);
  }
  decisions.run();
}

void Bulkhead::reconfigure(const config::Bulkhead& config) {
  Decisions decisions;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    max_concurrent_ = config.max_concurrent_requests;
    max_queue_ = config.max_queue;
    queue_timeout_ = config.queue_timeout;
    grantWaiters(decisions);
    while (queued_ > max_queue_) evictLowest(kPriorityCount, decisions);
  }
  decisions.run();
}

size_t Bulkhead::active() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return active_;
}

size_t Bulkhead::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_;
}

size_t Bulkhead::queued(Priority priority) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t i = static_cast<size_t>(priority);
  return i < kPriorityCount ? levels_[i].size : 0;
}

config::Duration Bulkhead::queueTimeout() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_timeout_;
}

}  // namespace remora::resilience
