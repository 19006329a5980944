#pragma once

// Bulkhead: admission control per cluster (`bulkhead:` in a cluster, contract section 2). At most
// max_concurrent_requests requests of the cluster are in flight; beyond that up to max_queue
// requests wait, ordered by priority (request header `x-remora-priority`), each for at most
// queue_timeout. When the queue is full, an arriving request of higher priority than the
// lowest-priority waiter evicts that waiter; otherwise the newcomer is rejected. Under overload,
// critical requests keep getting through while low ones are shed first.
//
// One bulkhead per cluster, shared by all worker threads: the limit protects the upstream, which
// sees the sum over workers. Waiters live on different workers, so a grant cannot be delivered
// by a direct call into the waiting stream: the bulkhead calls the waiter's callback on whatever
// thread freed the slot, and the proxy's callback posts the decision to the waiter's own event
// loop. The bulkhead never touches sockets, loops or timers; the caller runs the queue timer.
//
// Every decision (admit, queue, grant, evict, expire, cancel) is made under one mutex, so a slot
// goes to exactly one party: a ticket is either cancelled by its owner or decided by the bulkhead,
// never both, and cancel() reports which. Callbacks are collected under the lock and invoked after
// it is released, so they may call back into the bulkhead (or post, or take other locks) freely.
// A mutex rather than a lock-free fast path because admission must be atomic with the queue
// state: a lock-free "slot free?" check racing a release could admit a newcomer ahead of a
// critical waiter. The critical section is a few comparisons and pointer moves; the common path
// (a free slot, nobody waiting) neither allocates nor reads the clock.
//
// The caller's timer is what ends a wait, but the bulkhead also rejects waiters older than
// queue_timeout when it meets them (on a grant, or when the queue is full): a free slot then goes
// to a waiter that can still use it rather than to one whose timer is due, and a queue full of
// stale waiters does not turn fresh requests away.
//
// Caller protocol (the proxy's stream), for a Queued result:
//   * arm a timer for queueTimeout() (unless it is 0) and keep the ticket;
//   * when the posted decision arrives and the stream is still waiting: granted -> proceed holding
//     a slot (release() when done); not granted -> answer with the `bulkhead-full` fallback;
//   * when the timer fires, or the stream dies while waiting, call cancel(ticket) once:
//       Cancelled       -> no slot, and on_decision will never be called;
//       AlreadyGranted  -> the caller holds a slot: use it, or release() it;
//       AlreadyRejected -> no slot (evicted or expired);
//     in the last two cases on_decision has been or is being called: ignore it when it arrives.
//   The callback may run before acquire() has even returned, on another thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::resilience {

enum class Priority : uint8_t { Low = 0, Normal = 1, High = 2, Critical = 3 };
inline constexpr size_t kPriorityCount = 4;

// Parses an `x-remora-priority` value: low|normal|high|critical, case-insensitive, surrounding
// spaces and tabs ignored. Anything else (absent, empty, unknown) is Normal, so a client cannot
// fail a request by sending a typo, and cannot get more than Normal without naming a level.
Priority parsePriority(std::string_view value);
std::string_view toString(Priority priority);

class Bulkhead {  // thread-safe
 public:
  enum class Result { Admitted, Queued, Rejected };
  enum class CancelResult { Cancelled, AlreadyGranted, AlreadyRejected };
  using DecisionCallback = std::function<void(bool granted)>;
  // A queued request's handle. Opaque; shared between the caller and the queue so the outcome of a
  // ticket can be read by cancel() however late, without the bulkhead keeping a history.
  class Ticket;
  using TicketPtr = std::shared_ptr<Ticket>;

  // `time_source` must outlive the bulkhead.
  Bulkhead(const config::Bulkhead& config, const TimeSource& time_source);
  // Waiters still queued are dropped without a callback (their owners are going away with it,
  // e.g. at shutdown); tickets the callers still hold remain valid memory.
  ~Bulkhead();
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // Admitted: the caller holds a slot now; on_decision is dropped uncalled.
  // Queued: *ticket is set; on_decision(true) is called later when a slot is granted (the caller
  //   then holds it), or on_decision(false) if the waiter is evicted by a higher priority or
  //   outlives queue_timeout; see the caller protocol above for cancel().
  // Rejected: no slot, no callback, *ticket untouched.
  // `ticket` must not be null. Keep the callback's captures small (a pointer and an id fit
  // std::function's inline buffer) so the common Admitted path does not allocate for nothing.
  Result acquire(Priority priority, DecisionCallback on_decision, TicketPtr* ticket);
  // The fast path of acquire(): takes a free slot when nobody waits, else returns false (then
  // call acquire() to queue). Lets a caller skip building its decision callback, and whatever
  // that callback owns, in the common uncontended case.
  bool tryAdmit();

  // Withdraws a queued request (queue timeout, or the downstream went away). Call at most once
  // per ticket. The bulkhead must be the one that issued the ticket.
  CancelResult cancel(const TicketPtr& ticket);

  // Gives back a slot (from Admitted, a grant, or AlreadyGranted); the best waiter, if any, gets
  // it: highest priority first, FIFO within a priority.
  void release();

  // Applies new limits live: a larger max_concurrent_requests grants waiters at once; a smaller
  // one revokes nothing (new admissions wait until active() drains below it); a smaller max_queue
  // evicts the lowest-priority waiters beyond it; queue_timeout applies to current waiters too.
  void reconfigure(const config::Bulkhead& config);

  size_t active() const;
  size_t queued() const;
  size_t queued(Priority priority) const;
  config::Duration queueTimeout() const;

 private:
  struct Level {
    Ticket* head = nullptr;  // oldest
    Ticket* tail = nullptr;  // newest
    size_t size = 0;
  };
  class Decisions;

  void pushBack(Ticket* waiter);
  void unlink(Ticket* waiter);
  // Decides `waiter` (already unlinked) and queues its callback for after the unlock.
  void decide(Ticket* waiter, bool granted, Decisions& out);
  // Grants free slots to the best waiters, rejecting expired ones on the way.
  void grantWaiters(Decisions& out);
  // Rejects waiters that outlived queue_timeout (only the heads can be the oldest of a level).
  void expireWaiters(MonotonicTime now, Decisions& out);
  // Rejects the newest waiter of the lowest non-empty priority level below `below_level`.
  // Returns false if there is none.
  bool evictLowest(size_t below_level, Decisions& out);
  bool expired(const Ticket& waiter, MonotonicTime now) const;

  const TimeSource& time_source_;
  mutable std::mutex mutex_;
  // Everything below is guarded by mutex_.
  uint32_t max_concurrent_;
  uint32_t max_queue_;
  config::Duration queue_timeout_;
  size_t active_ = 0;
  size_t queued_ = 0;
  std::array<Level, kPriorityCount> levels_;
};

}  // namespace remora::resilience
