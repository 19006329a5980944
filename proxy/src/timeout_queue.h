#pragma once

// Timeouts armed at the request rate with a few fixed durations (a route's per-try timeout), at
// no uv timer, heap object or timer-heap operation each.
//
// Timeouts of the same duration expire in the order they were armed, so each distinct duration
// keeps a FIFO list and only its head can be due; one uv timer per queue is armed for the earliest
// head. Arming and cancelling are O(1) list operations (HAProxy's wait queues rest on the same
// observation); expiry looks at one head per duration. A list left empty is reused for the next
// new duration, so the lists are as many as the durations in use at once. Durations that differ
// every time (jittered backoff) belong on a plain Timer instead.
//
// Entries are embedded in their owner; destroying an entry cancels it. Everything runs on the
// loop's thread.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace remora {

class Timer;

class TimeoutQueue {
 public:
  class Entry {
   public:
    using Callback = void (*)(void* context);
    // `callback(context)` runs when the timeout expires; it may arm, cancel or destroy any entry,
    // this one included.
    Entry(Callback callback, void* context) : callback_(callback), context_(context) {}
    ~Entry() { cancel(); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

    // (Re)arms the entry to expire `timeout` from now (the loop's cached time, as uv timers use).
    void arm(TimeoutQueue& queue, std::chrono::milliseconds timeout);
    void cancel();
    bool armed() const { return queue_ != nullptr; }

   private:
    friend class TimeoutQueue;
    Callback callback_;
    void* context_;
    TimeoutQueue* queue_ = nullptr;  // set while armed
    size_t list_ = 0;                // index into queue_->lists_
    Entry* prev_ = nullptr;
    Entry* next_ = nullptr;
    uint64_t deadline_ = 0;  // uv_now() when it expires
    uint64_t sequence_ = 0;  // the queue's arm count when it was armed
  };

  explicit TimeoutQueue(uv_loop_t* loop);
  // Entries still armed must not outlive the queue.
  ~TimeoutQueue();
  TimeoutQueue(const TimeoutQueue&) = delete;
  TimeoutQueue& operator=(const TimeoutQueue&) = delete;

  // Closes the uv timer (the loop frees it): nothing expires any more, while entries may still be
  // armed, cancelled and destroyed. For a loop that is shutting down.
  void close();

  // Armed entries.
  size_t size() const { return size_; }
  // Lists held: at most the number of distinct durations armed at the same time.
  size_t lists() const { return lists_.size(); }

 private:
  struct List {
    uint64_t duration = 0;
    Entry* head = nullptr;
    Entry* tail = nullptr;
  };

  void insert(Entry& e, uint64_t duration);
  void unlink(Entry& e);
  void rearm();
  void expire();

  uv_loop_t* loop_;
  std::unique_ptr<Timer> timer_;  // null once closed
  uint64_t timer_due_ = 0;        // when the armed timer fires; meaningful while it is enabled
  std::vector<List> lists_;
  size_t size_ = 0;
  uint64_t arm_count_ = 0;
};

}  // namespace remora
