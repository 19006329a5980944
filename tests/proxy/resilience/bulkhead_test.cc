#include "resilience/bulkhead.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mocks/fake_time_source.h"

namespace remora::resilience {
namespace {

using std::chrono::milliseconds;
using Result = Bulkhead::Result;
using CancelResult = Bulkhead::CancelResult;

config::Bulkhead bulkheadConfig(uint32_t max_concurrent, uint32_t max_queue,
                                milliseconds queue_timeout = milliseconds(100)) {
  config::Bulkhead c;
  c.max_concurrent_requests = max_concurrent;
  c.max_queue = max_queue;
  c.queue_timeout = queue_timeout;
  return c;
}

TEST(PriorityTest, Parse) {
  EXPECT_EQ(parsePriority("low"), Priority::Low);
  EXPECT_EQ(parsePriority("normal"), Priority::Normal);
  EXPECT_EQ(parsePriority("high"), Priority::High);
  EXPECT_EQ(parsePriority("critical"), Priority::Critical);
  EXPECT_EQ(parsePriority("CRITICAL"), Priority::Critical);
  EXPECT_EQ(parsePriority("High"), Priority::High);
  EXPECT_EQ(parsePriority(" \tlow \t"), Priority::Low);
}

TEST(PriorityTest, UnknownOrAbsentIsNormal) {
  EXPECT_EQ(parsePriority(""), Priority::Normal);
  EXPECT_EQ(parsePriority("urgent"), Priority::Normal);
  EXPECT_EQ(parsePriority("critical!"), Priority::Normal);
  EXPECT_EQ(parsePriority("critica"), Priority::Normal);
  EXPECT_EQ(parsePriority("3"), Priority::Normal);
  EXPECT_EQ(parsePriority("high, low"), Priority::Normal);
}

TEST(PriorityTest, ToStringRoundTrips) {
  for (Priority p : {Priority::Low, Priority::Normal, Priority::High, Priority::Critical}) {
    EXPECT_EQ(parsePriority(toString(p)), p);
  }
}

// Single-threaded tests: every decision callback runs synchronously inside the bulkhead call that
// made it, so the test can check the outcome right after that call.
class BulkheadTest : public testing::Test {
 protected:
  struct Waiter {
    Bulkhead::TicketPtr ticket;
    int calls = 0;
    bool granted = false;
  };

  Result acquire(Bulkhead& b, Priority p, const std::string& name) {
    Waiter& w = waiters_[name];
    return b.acquire(
        p,
        [this, name](bool granted) {
          Waiter& self = waiters_[name];
          ++self.calls;
          self.granted = granted;
          (granted ? granted_ : rejected_).push_back(name);
        },
        &w.ticket);
  }

  FakeTimeSource time_;
  std::map<std::string, Waiter> waiters_;
  std::vector<std::string> granted_;   // in grant order
  std::vector<std::string> rejected_;  // evicted or expired, in order
};

TEST_F(BulkheadTest, AdmitsUpToTheLimitThenQueues) {
  Bulkhead b(bulkheadConfig(2, 3), time_);
  EXPECT_EQ(acquire(b, Priority::Normal, "a"), Result::Admitted);
  EXPECT_EQ(acquire(b, Priority::Normal, "b"), Result::Admitted);
  EXPECT_EQ(acquire(b, Priority::Normal, "c"), Result::Queued);
  EXPECT_EQ(b.active(), 2u);
  EXPECT_EQ(b.queued(), 1u);
  EXPECT_EQ(b.queued(Priority::Normal), 1u);
  EXPECT_NE(waiters_["c"].ticket, nullptr);
  EXPECT_EQ(waiters_["a"].ticket, nullptr);  // admitted: no ticket
  EXPECT_EQ(waiters_["a"].calls, 0);         // and no callback
}

TEST_F(BulkheadTest, TryAdmitTakesAFreeSlotButNeverOvertakesAWaiter) {
  Bulkhead b(bulkheadConfig(1, 2), time_);
  EXPECT_TRUE(b.tryAdmit());
  EXPECT_EQ(b.active(), 1u);
  EXPECT_FALSE(b.tryAdmit());  // full
  EXPECT_EQ(b.active(), 1u);
  EXPECT_EQ(b.queued(), 0u);   // tryAdmit never queues
  EXPECT_EQ(acquire(b, Priority::Low, "waiter"), Result::Queued);
  b.release();                 // the slot goes to the waiter...
  EXPECT_EQ(granted_, std::vector<std::string>{"waiter"});
  EXPECT_FALSE(b.tryAdmit());  // ...so a newcomer finds it taken
  b.release();
  EXPECT_TRUE(b.tryAdmit());   // free again, nobody waiting
}

TEST_F(BulkheadTest, ReleaseFreesASlot) {
  Bulkhead b(bulkheadConfig(1, 0), time_);
  EXPECT_EQ(acquire(b, Priority::Normal, "a"), Result::Admitted);
  b.release();
  EXPECT_EQ(b.active(), 0u);
  EXPECT_EQ(acquire(b, Priority::Normal, "b"), Result::Admitted);
}

TEST_F(BulkheadTest, ConcurrencyCapHolds) {
  Bulkhead b(bulkheadConfig(5, 100), time_);
  int admitted = 0;
  for (int i = 0; i < 50; ++i) {
    std::string id = "r";  // not "r" + to_string(): GCC 12 warns falsely (-Wrestrict)
    id += std::to_string(i);
    if (acquire(b, Priority::Critical, id) == Result::Admitted) ++admitted;
  }
  EXPECT_EQ(admitted, 5);
  EXPECT_EQ(b.active(), 5u);
  EXPECT_EQ(b.queued(), 45u);
  for (int i = 0; i < 50; ++i) {
    b.release();
    EXPECT_LE(b.active(), 5u);
  }
  EXPECT_EQ(granted_.size(), 45u);
  EXPECT_EQ(b.active(), 0u);
}

TEST_F(BulkheadTest, FifoWithinAPriority) {
  Bulkhead b(bulkheadConfig(1, 10), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  for (const char* name : {"a", "b", "c", "d"}) {
    ASSERT_EQ(acquire(b, Priority::Normal, name), Result::Queued);
  }
  for (int i = 0; i < 4; ++i) b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(b.active(), 1u);  // "d" holds the slot now
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(BulkheadTest, HigherPrioritiesFirst) {
  Bulkhead b(bulkheadConfig(1, 10), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Low, "low1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "normal1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Critical, "critical1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::High, "high1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "normal2"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Critical, "critical2"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Low, "low2"), Result::Queued);
  for (int i = 0; i < 7; ++i) b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"critical1", "critical2", "high1", "normal1",
                                                "normal2", "low1", "low2"}));
}

TEST_F(BulkheadTest, FullQueueRejectsEqualOrLowerPriority) {
  Bulkhead b(bulkheadConfig(1, 2), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "n1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "n2"), Result::Queued);
  EXPECT_EQ(acquire(b, Priority::Normal, "n3"), Result::Rejected);
  EXPECT_EQ(acquire(b, Priority::Low, "l1"), Result::Rejected);
  EXPECT_EQ(waiters_["n3"].calls, 0);  // a rejection is the return value, not a callback
  EXPECT_EQ(waiters_["n3"].ticket, nullptr);
  EXPECT_EQ(b.queued(), 2u);
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(BulkheadTest, ZeroQueueRejectsEvenCritical) {
  Bulkhead b(bulkheadConfig(1, 0), time_);
  ASSERT_EQ(acquire(b, Priority::Low, "holder"), Result::Admitted);
  EXPECT_EQ(acquire(b, Priority::Critical, "c"), Result::Rejected);
}

TEST_F(BulkheadTest, OverflowEvictsTheNewestOfTheLowestPriority) {
  Bulkhead b(bulkheadConfig(1, 3), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Low, "low1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Low, "low2"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "normal1"), Result::Queued);

  EXPECT_EQ(acquire(b, Priority::Critical, "critical1"), Result::Queued);
  EXPECT_EQ(rejected_, (std::vector<std::string>{"low2"}));
  EXPECT_EQ(waiters_["low2"].calls, 1);
  EXPECT_FALSE(waiters_["low2"].granted);

  EXPECT_EQ(acquire(b, Priority::High, "high1"), Result::Queued);
  EXPECT_EQ(rejected_, (std::vector<std::string>{"low2", "low1"}));

  // Now the lowest waiter is Normal: a Normal newcomer does not outrank it.
  EXPECT_EQ(acquire(b, Priority::Normal, "normal2"), Result::Rejected);
  EXPECT_EQ(acquire(b, Priority::High, "high2"), Result::Queued);
  EXPECT_EQ(rejected_, (std::vector<std::string>{"low2", "low1", "normal1"}));
  EXPECT_EQ(b.queued(), 3u);

  for (int i = 0; i < 3; ++i) b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"critical1", "high1", "high2"}));
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_EQ(b.active(), 1u);
}

TEST_F(BulkheadTest, CriticalNeverEvictsCritical) {
  Bulkhead b(bulkheadConfig(1, 2), time_);
  ASSERT_EQ(acquire(b, Priority::Low, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Critical, "c1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Critical, "c2"), Result::Queued);
  EXPECT_EQ(acquire(b, Priority::Critical, "c3"), Result::Rejected);
  EXPECT_TRUE(rejected_.empty());
}

TEST_F(BulkheadTest, CancelWhileQueued) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "a"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "b"), Result::Queued);
  EXPECT_EQ(b.cancel(waiters_["a"].ticket), CancelResult::Cancelled);
  EXPECT_EQ(b.queued(), 1u);
  b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"b"}));
  EXPECT_EQ(waiters_["a"].calls, 0);  // a cancelled waiter never hears back
  b.release();
  EXPECT_EQ(b.active(), 0u);
  EXPECT_EQ(waiters_["a"].calls, 0);
}

TEST_F(BulkheadTest, CancelAfterGrantMeansTheCallerHoldsASlot) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "a"), Result::Queued);
  b.release();  // grants "a"
  ASSERT_EQ(waiters_["a"].calls, 1);
  EXPECT_EQ(b.cancel(waiters_["a"].ticket), CancelResult::AlreadyGranted);
  EXPECT_EQ(b.active(), 1u);
  b.release();  // the caller gives the slot back
  EXPECT_EQ(b.active(), 0u);
}

TEST_F(BulkheadTest, CancelAfterEvictionReportsRejection) {
  Bulkhead b(bulkheadConfig(1, 1), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Low, "low"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::High, "high"), Result::Queued);
  // The caller must not think it holds a slot: that would release one it never had.
  EXPECT_EQ(b.cancel(waiters_["low"].ticket), CancelResult::AlreadyRejected);
  EXPECT_EQ(b.active(), 1u);
}

TEST_F(BulkheadTest, TicketMayOutliveTheQueueEntryAndTheCallerMayDropIt) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "a"), Result::Queued);
  waiters_["a"].ticket.reset();  // the caller forgets its handle; the queue keeps the waiter
  b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"a"}));
}

TEST_F(BulkheadTest, GrantRunsOnTheReleasingThreadAfterTheLockIsDropped) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  std::thread::id called_on;
  size_t active_seen = 0;
  Bulkhead::TicketPtr ticket;
  ASSERT_EQ(b.acquire(
                Priority::Normal,
                [&](bool granted) {
                  called_on = std::this_thread::get_id();
                  // Would deadlock if the bulkhead still held its (non-recursive) mutex.
                  active_seen = b.active();
                  if (granted) b.release();
                },
                &ticket),
            Result::Queued);
  std::thread releaser([&] { b.release(); });
  const std::thread::id releaser_id = releaser.get_id();
  releaser.join();
  EXPECT_EQ(called_on, releaser_id);
  EXPECT_EQ(active_seen, 1u);
  EXPECT_EQ(b.active(), 0u);
}

TEST_F(BulkheadTest, CallbacksMayReenterWithAcquire) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Low, "low"), Result::Queued);
  Bulkhead::TicketPtr ticket;
  Result inner = Result::Rejected;
  // Cap 1 with one queued: this waiter is granted, then immediately asks for a second slot.
  ASSERT_EQ(b.acquire(
                Priority::High,
                [&](bool granted) {
                  ASSERT_TRUE(granted);
                  inner = acquire(b, Priority::High, "inner");
                },
                &ticket),
            Result::Queued);
  b.release();
  EXPECT_EQ(inner, Result::Queued);
  EXPECT_EQ(b.queued(), 2u);
}

TEST_F(BulkheadTest, ExpiredWaitersDoNotGetSlots) {
  Bulkhead b(bulkheadConfig(1, 5, milliseconds(100)), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Critical, "old"), Result::Queued);
  time_.advance(milliseconds(50));
  ASSERT_EQ(acquire(b, Priority::Low, "young"), Result::Queued);
  time_.advance(milliseconds(50));  // "old" has waited its 100 ms; its timer is due
  b.release();
  EXPECT_EQ(rejected_, (std::vector<std::string>{"old"}));
  EXPECT_EQ(granted_, (std::vector<std::string>{"young"}));
  EXPECT_EQ(b.cancel(waiters_["old"].ticket), CancelResult::AlreadyRejected);
  EXPECT_EQ(b.active(), 1u);
}

TEST_F(BulkheadTest, ExpiredWaitersMakeRoomInAFullQueue) {
  Bulkhead b(bulkheadConfig(1, 2, milliseconds(100)), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Critical, "c1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Critical, "c2"), Result::Queued);
  EXPECT_EQ(acquire(b, Priority::Low, "early"), Result::Rejected);
  time_.advance(milliseconds(100));
  // Their owners' timers have not run yet, but they can no longer be served.
  EXPECT_EQ(acquire(b, Priority::Low, "late"), Result::Queued);
  EXPECT_EQ(rejected_, (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ(b.queued(), 1u);
}

TEST_F(BulkheadTest, ZeroQueueTimeoutNeverExpires) {
  Bulkhead b(bulkheadConfig(1, 5, milliseconds(0)), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "a"), Result::Queued);
  time_.advance(std::chrono::hours(1));
  b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"a"}));
  EXPECT_EQ(b.queueTimeout(), milliseconds(0));
}

TEST_F(BulkheadTest, ReconfigureRaisingConcurrencyGrantsWaiters) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Low, "low"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "normal"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::High, "high"), Result::Queued);
  b.reconfigure(bulkheadConfig(3, 5));
  EXPECT_EQ(granted_, (std::vector<std::string>{"high", "normal"}));
  EXPECT_EQ(b.active(), 3u);
  EXPECT_EQ(b.queued(), 1u);
}

TEST_F(BulkheadTest, ReconfigureLoweringConcurrencyDrainsFirst) {
  Bulkhead b(bulkheadConfig(3, 5), time_);
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_EQ(acquire(b, Priority::Normal, name), Result::Admitted);
  }
  b.reconfigure(bulkheadConfig(1, 5));
  EXPECT_EQ(b.active(), 3u);  // nothing revoked
  ASSERT_EQ(acquire(b, Priority::Critical, "w"), Result::Queued);
  b.release();
  b.release();
  EXPECT_TRUE(granted_.empty());  // still one in flight, and the limit is 1
  b.release();
  EXPECT_EQ(granted_, (std::vector<std::string>{"w"}));
  EXPECT_EQ(b.active(), 1u);
}

TEST_F(BulkheadTest, ReconfigureShrinkingTheQueueEvictsTheLowest) {
  Bulkhead b(bulkheadConfig(1, 5), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::High, "high"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Low, "low1"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "normal"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Low, "low2"), Result::Queued);
  b.reconfigure(bulkheadConfig(1, 1));
  EXPECT_EQ(rejected_, (std::vector<std::string>{"low2", "low1", "normal"}));
  EXPECT_EQ(b.queued(), 1u);
  b.reconfigure(bulkheadConfig(1, 0));
  EXPECT_EQ(rejected_.back(), "high");
  EXPECT_EQ(b.queued(), 0u);
}

TEST_F(BulkheadTest, ReconfigureQueueTimeoutAppliesToCurrentWaiters) {
  Bulkhead b(bulkheadConfig(1, 5, milliseconds(1000)), time_);
  ASSERT_EQ(acquire(b, Priority::Normal, "holder"), Result::Admitted);
  ASSERT_EQ(acquire(b, Priority::Normal, "a"), Result::Queued);
  ASSERT_EQ(acquire(b, Priority::Normal, "b"), Result::Queued);
  time_.advance(milliseconds(200));
  b.reconfigure(bulkheadConfig(1, 5, milliseconds(150)));
  EXPECT_EQ(b.queueTimeout(), milliseconds(150));
  b.release();
  EXPECT_EQ(rejected_, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(granted_.empty());
  EXPECT_EQ(b.active(), 0u);
}

// Many threads race cancel() against release() for the same waiters. Whatever the interleaving,
// each queued request must end in exactly one of: cancelled with no callback ever, or granted
// once (seen through the callback or through AlreadyGranted); and the slot count must balance.
TEST(BulkheadRaceTest, CancelVersusGrant) {
  constexpr size_t kSlots = 3;
  constexpr int kThreads = 8;
  constexpr int kRequestsPerThread = 2000;
  Bulkhead b(bulkheadConfig(kSlots, 100000, milliseconds(0)), RealTimeSource::instance());

  struct Record {
    std::atomic<int> calls{0};
    std::atomic<bool> granted{false};
    CancelResult cancel_result = CancelResult::Cancelled;
    bool cancelled_called = false;
  };
  std::vector<std::vector<std::shared_ptr<Record>>> records(kThreads);
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  auto hold = [&] {
    const int now = holders.fetch_add(1) + 1;
    int seen = max_holders.load();
    while (now > seen && !max_holders.compare_exchange_weak(seen, now)) {
    }
  };
  auto unhold = [&] {
    holders.fetch_sub(1);
    b.release();
  };

  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t) * 7919 + 1);
      start.arrive_and_wait();
      for (int i = 0; i < kRequestsPerThread; ++i) {
        auto record = std::make_shared<Record>();
        records[t].push_back(record);
        Bulkhead::TicketPtr ticket;
        const auto p = static_cast<Priority>(rng() % kPriorityCount);
        const Result r = b.acquire(
            p,
            [record](bool granted) {
              record->granted = granted;
              record->calls.fetch_add(1);
            },
            &ticket);
        if (r == Result::Admitted) {
          hold();
          std::this_thread::yield();
          unhold();
          continue;
        }
        ASSERT_EQ(r, Result::Queued);
        // Wait a random while for a grant, then give up, exactly like a queue timeout.
        const int spins = static_cast<int>(rng() % 64);
        bool got = false;
        for (int s = 0; s < spins && !got; ++s) {
          got = record->calls.load() > 0;
          if (!got) std::this_thread::yield();
        }
        if (got) {
          ASSERT_TRUE(record->granted.load());  // no eviction (huge queue), no expiry
          hold();
          unhold();
          continue;
        }
        record->cancelled_called = true;
        record->cancel_result = b.cancel(ticket);
        ASSERT_NE(record->cancel_result, CancelResult::AlreadyRejected);
        if (record->cancel_result == CancelResult::AlreadyGranted) {
          hold();
          unhold();
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(b.active(), 0u);
  EXPECT_EQ(b.queued(), 0u);
  EXPECT_LE(max_holders.load(), static_cast<int>(kSlots));
  int cancelled = 0, granted_late = 0;
  for (const auto& per_thread : records) {
    for (const auto& r : per_thread) {
      if (r->cancelled_called && r->cancel_result == CancelResult::Cancelled) {
        EXPECT_EQ(r->calls.load(), 0);
        ++cancelled;
      } else if (r->cancelled_called) {
        // AlreadyGranted: the callback was delivered too, exactly once, with true.
        EXPECT_EQ(r->calls.load(), 1);
        EXPECT_TRUE(r->granted.load());
        ++granted_late;
      } else {
        EXPECT_LE(r->calls.load(), 1);
      }
    }
  }
  // Not asserted (timing-dependent), but the race is only meaningful if both outcomes happen.
  RecordProperty("cancelled", cancelled);
  RecordProperty("granted_after_timeout", granted_late);
}

// Overload with mixed priorities: 4 worker threads, 100 requests, 10 slots, a queue of 25.
// Decisions are delivered like the proxy does it: the callback posts to the owner's inbox (its
// "event loop"), and the owner consumes its inbox, runs the request briefly, then releases.
TEST(BulkheadStressTest, CriticalRequestsAreAlwaysAdmitted) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  constexpr uint32_t kSlots = 10;
  Bulkhead b(bulkheadConfig(kSlots, 25, milliseconds(0)), RealTimeSource::instance());

  struct Inbox {
    std::mutex mutex;
    std::vector<std::pair<int, bool>> decisions;  // (request index, granted)
  };
  std::array<Inbox, kThreads> inboxes;
  std::array<std::array<std::atomic<int>, kPriorityCount>, kThreads> admitted{};
  std::array<std::array<std::atomic<int>, kPriorityCount>, kThreads> shed{};
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::barrier submitted(kThreads);

  auto priorityOf = [](int t, int i) {
    return static_cast<Priority>((t * kPerThread + i) % kPriorityCount);
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Inbox& inbox = inboxes[t];
      std::vector<int> running;  // requests holding a slot
      int decided = 0;
      auto start = [&](int i) {
        const int now = in_flight.fetch_add(1) + 1;
        int seen = max_in_flight.load();
        while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
        }
        admitted[t][static_cast<size_t>(priorityOf(t, i))].fetch_add(1);
        running.push_back(i);
      };
      // Submit everything first (all four threads at once), so the bulkhead really overflows.
      for (int i = 0; i < kPerThread; ++i) {
        Bulkhead::TicketPtr ticket;
        const Result r = b.acquire(
            priorityOf(t, i),
            [&inbox, i](bool granted) {
              std::lock_guard<std::mutex> lock(inbox.mutex);
              inbox.decisions.emplace_back(i, granted);
            },
            &ticket);
        if (r == Result::Admitted) {
          start(i);
          ++decided;
        } else if (r == Result::Rejected) {
          shed[t][static_cast<size_t>(priorityOf(t, i))].fetch_add(1);
          ++decided;
        }
      }
      submitted.arrive_and_wait();
      // The event loop: finish what runs, then take the posted decisions.
      while (decided < kPerThread || !running.empty()) {
        for (size_t k = 0; k < running.size(); ++k) {
          in_flight.fetch_sub(1);
          b.release();
        }
        running.clear();
        std::vector<std::pair<int, bool>> posted;
        {
          std::lock_guard<std::mutex> lock(inbox.mutex);
          posted.swap(inbox.decisions);
        }
        for (auto [i, granted] : posted) {
          ++decided;
          if (granted) {
            start(i);
          } else {
            shed[t][static_cast<size_t>(priorityOf(t, i))].fetch_add(1);
          }
        }
        if (posted.empty()) std::this_thread::yield();
      }
    });
  }
  for (auto& t : threads) t.join();

  std::array<int, kPriorityCount> admitted_total{}, shed_total{};
  for (int t = 0; t < kThreads; ++t) {
    for (size_t p = 0; p < kPriorityCount; ++p) {
      admitted_total[p] += admitted[t][p].load();
      shed_total[p] += shed[t][p].load();
    }
  }
  for (size_t p = 0; p < kPriorityCount; ++p) {
    EXPECT_EQ(admitted_total[p] + shed_total[p], 25) << toString(static_cast<Priority>(p));
  }
  EXPECT_EQ(admitted_total[static_cast<size_t>(Priority::Critical)], 25);
  EXPECT_EQ(shed_total[static_cast<size_t>(Priority::Critical)], 0);
  // Nothing is released before every request has arrived, so exactly 10 are admitted at once,
  // 25 wait and 65 are shed (rejected or evicted), none of them critical. At most 10 of the 25
  // low ones got in without waiting; every other low one lost its place to a higher priority.
  EXPECT_EQ(shed_total[0] + shed_total[1] + shed_total[2] + shed_total[3], 65);
  EXPECT_GE(shed_total[static_cast<size_t>(Priority::Low)], 15);
  EXPECT_LE(max_in_flight.load(), static_cast<int>(kSlots));
  EXPECT_EQ(b.active(), 0u);
  EXPECT_EQ(b.queued(), 0u);
}

}  // namespace
}  // namespace remora::resilience
