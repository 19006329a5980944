// BulkheadFilter (filters/bulkhead/): a per-cluster priority bulkhead shared by workers, driven
// through MockStreamFilterCallbacks. Each PostedTasks queue plays one worker's event loop: a grant
// made by a release on one "worker" (possibly a real std::thread) reaches the waiting request only
// when the test runs that worker's queue.

#include "bulkhead/filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "filters/filter_test_base.h"
#include "mocks/mock_filter_callbacks.h"

namespace remora::filters {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;

constexpr const char* kConfig = R"(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: in
    address: 127.0.0.1:15001
    routes:
      - name: to-plain
        match: { prefix: /plain }
        cluster: plain
      - name: to-nowait
        match: { prefix: /nowait }
        cluster: nowait
      - name: to-stress
        match: { prefix: /stress }
        cluster: stress
      - name: to-guarded
        match: { prefix: / }
        cluster: guarded
clusters:
  - name: plain
    endpoints: [{address: 127.0.0.1:8081}]
  - name: guarded
    endpoints: [{address: 127.0.0.1:8082}]
    bulkhead: { max_concurrent_requests: 1, max_queue: 2, queue_timeout: 50ms }
  - name: nowait
    endpoints: [{address: 127.0.0.1:8083}]
    bulkhead: { max_concurrent_requests: 1, max_queue: 2, queue_timeout: 0ms }
  - name: stress
    endpoints: [{address: 127.0.0.1:8084}]
    bulkhead: { max_concurrent_requests: 3, max_queue: 4, queue_timeout: 50ms }
)";

// One request through the bulkhead filter: its callbacks (the stream) and its filter.
struct Request {
  NiceMock<MockStreamFilterCallbacks> callbacks;
  StreamFilterPtr filter;
  FilterStatus status = FilterStatus::Continue;
  bool completed = false;

  // The stream ends: the filter gives back what it holds; the stream then destroys it.
  void complete() {
    ASSERT_FALSE(completed);
    completed = true;
    filter->onStreamComplete();
  }
  bool fireTimer() {
    FakeTimer* t = callbacks.lastTimer();
    return t != nullptr && t->fire();
  }
};
using RequestPtr = std::unique_ptr<Request>;

class BulkheadFilterTest : public FilterTestBase {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(buildSnapshot(kConfig)); }

  // Starts a request to `cluster_name` on the worker whose queue is `worker` (default: worker_).
  // `priority` is the x-remora-priority value; empty: no header.
  RequestPtr start(std::string_view priority = "", std::string_view cluster_name = "guarded",
                   PostedTasksSharedPtr worker = nullptr) {
    auto r = std::make_unique<Request>();
    const ClusterInfo& c = cluster(cluster_name);
    r->callbacks.setRoute(route("to-" + std::string(cluster_name)));
    r->callbacks.setCluster(c);
    r->callbacks.setTimeSource(time_);
    r->callbacks.setPostedTasks(worker != nullptr ? std::move(worker) : worker_);
    if (!priority.empty()) r->callbacks.request_headers_.add("x-remora-priority",
                                                             std::string(priority));
    r->filter = factory_.create(route("to-" + std::string(cluster_name)), c);
    EXPECT_NE(r->filter, nullptr);
    r->filter->setCallbacks(r->callbacks);
    r->status = r->filter->onRequestHeaders();
    return r;
  }

  resilience::Bulkhead& bulkhead(std::string_view name = "guarded") {
    return *cluster(name).bulkhead;
  }
  uint64_t rejected(std::string_view name = "guarded") {
    return stats_.cluster(std::string(name)).bulkhead_rejected.value();
  }

  BulkheadFilterFactory factory_;
  PostedTasksSharedPtr worker_ = std::make_shared<PostedTasks>();
};

TEST_F(BulkheadFilterTest, FactoryReturnsNullWithoutBulkhead) {
  EXPECT_EQ(factory_.create(route("to-plain"), cluster("plain")), nullptr);
  EXPECT_NE(factory_.create(route("to-guarded"), cluster("guarded")), nullptr);
  EXPECT_STREQ(factory_.name(), "bulkhead");
}

TEST_F(BulkheadFilterTest, AdmittedContinuesAndCompletionReleasesTheSlot) {
  RequestPtr r = start();
  EXPECT_EQ(r->status, FilterStatus::Continue);
  EXPECT_EQ(bulkhead().active(), 1u);
  EXPECT_EQ(r->callbacks.timersCreated(), 0u);
  r->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(worker_->size(), 0u);
  EXPECT_EQ(rejected(), 0u);
}

TEST_F(BulkheadFilterTest, CompletionWithoutRunningTakesNothingBack) {
  // An earlier filter stopped the chain: onStreamComplete() still comes, and must not release.
  RequestPtr holder = start();
  StreamFilterPtr never_ran = factory_.create(route("to-guarded"), cluster("guarded"));
  NiceMock<MockStreamFilterCallbacks> callbacks;
  never_ran->setCallbacks(callbacks);
  never_ran->onStreamComplete();
  EXPECT_EQ(bulkhead().active(), 1u);
  holder->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, FullQueuesThenReleaseGrantsThroughThePoster) {
  RequestPtr first = start();
  ASSERT_EQ(first->status, FilterStatus::Continue);

  RequestPtr waiter = start();
  EXPECT_EQ(waiter->status, FilterStatus::Stop);
  EXPECT_EQ(bulkhead().queued(), 1u);
  ASSERT_NE(waiter->callbacks.lastTimer(), nullptr);
  EXPECT_TRUE(waiter->callbacks.lastTimer()->enabled());
  EXPECT_EQ(waiter->callbacks.lastTimer()->delay(), std::chrono::milliseconds(50));

  // The release grants the slot at once, but the waiter resumes only on its own worker.
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  first->complete();
  EXPECT_EQ(bulkhead().active(), 1u);
  EXPECT_EQ(bulkhead().queued(), 0u);
  EXPECT_EQ(worker_->size(), 1u);
  ::testing::Mock::VerifyAndClearExpectations(&waiter->callbacks);

  EXPECT_CALL(waiter->callbacks, continueChain());
  EXPECT_CALL(waiter->callbacks, sendFallbackOrError(_, _, _)).Times(0);
  EXPECT_EQ(worker_->runAll(), 1u);
  EXPECT_EQ(waiter->callbacks.lastTimer(), nullptr) << "the queue timer outlived the grant";

  waiter->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(rejected(), 0u);
}

TEST_F(BulkheadFilterTest, ReleaseOnAnotherThreadPostsTheGrantToTheWaitersWorker) {
  auto other_worker = std::make_shared<PostedTasks>();
  RequestPtr first = start("", "guarded", other_worker);
  ASSERT_EQ(first->status, FilterStatus::Continue);
  RequestPtr waiter = start();
  ASSERT_EQ(waiter->status, FilterStatus::Stop);

  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  std::thread other([&] { first->complete(); });
  other.join();
  EXPECT_EQ(other_worker->size(), 0u);
  EXPECT_EQ(worker_->size(), 1u);
  ::testing::Mock::VerifyAndClearExpectations(&waiter->callbacks);

  EXPECT_CALL(waiter->callbacks, continueChain());
  worker_->runAll();
  waiter->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, QueueTimeoutRejectsWith503AndCounts) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  ASSERT_EQ(waiter->status, FilterStatus::Stop);

  EXPECT_CALL(waiter->callbacks,
              sendFallbackOrError(FallbackReason::BulkheadFull, 503,
                                  HasSubstr("bulkhead of cluster guarded is full (1 in flight, "
                                            "2 queued for up to 50ms)")));
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  time_.advance(std::chrono::milliseconds(50));
  EXPECT_TRUE(waiter->fireTimer());
  EXPECT_EQ(rejected(), 1u);
  EXPECT_EQ(bulkhead().queued(), 0u);

  // The timed-out request holds nothing; the slot stays with `first` until it ends.
  waiter->complete();
  EXPECT_EQ(bulkhead().active(), 1u);
  first->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(worker_->runAll(), 0u) << "a cancelled waiter got a decision";
  EXPECT_EQ(rejected(), 1u);
  EXPECT_THAT(stats_.renderPrometheus(),
              HasSubstr("remora_bulkhead_rejected_total{cluster=\"guarded\"} 1"));
}

TEST_F(BulkheadFilterTest, FullQueueRejectsImmediately) {
  RequestPtr first = start();
  RequestPtr q1 = start();
  RequestPtr q2 = start();
  ASSERT_EQ(bulkhead().queued(), 2u);

  auto late = std::make_unique<Request>();
  // Expectations must be set before onRequestHeaders(), so build this one by hand.
  late->callbacks.setRoute(route("to-guarded"));
  late->callbacks.setCluster(cluster("guarded"));
  late->callbacks.setPostedTasks(worker_);
  EXPECT_CALL(late->callbacks, sendFallbackOrError(FallbackReason::BulkheadFull, 503, _));
  EXPECT_CALL(late->callbacks, continueChain()).Times(0);
  EXPECT_CALL(late->callbacks, createTimer(_)).Times(0);
  late->filter = factory_.create(route("to-guarded"), cluster("guarded"));
  late->filter->setCallbacks(late->callbacks);
  EXPECT_EQ(late->filter->onRequestHeaders(), FilterStatus::Stop);
  EXPECT_EQ(rejected(), 1u);
  EXPECT_EQ(bulkhead().queued(), 2u);
  late->complete();

  for (Request* r : {first.get(), q1.get(), q2.get()}) {
    r->complete();
    worker_->runAll();
  }
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(bulkhead().queued(), 0u);
}

TEST_F(BulkheadFilterTest, CriticalQueuedAfterLowIsGrantedFirst) {
  RequestPtr first = start();
  RequestPtr low = start("low");
  RequestPtr critical = start("critical");
  ASSERT_EQ(low->status, FilterStatus::Stop);
  ASSERT_EQ(critical->status, FilterStatus::Stop);
  EXPECT_EQ(bulkhead().queued(resilience::Priority::Low), 1u);
  EXPECT_EQ(bulkhead().queued(resilience::Priority::Critical), 1u);

  EXPECT_CALL(critical->callbacks, continueChain());
  EXPECT_CALL(low->callbacks, continueChain()).Times(0);
  first->complete();
  worker_->runAll();
  ::testing::Mock::VerifyAndClearExpectations(&low->callbacks);
  ::testing::Mock::VerifyAndClearExpectations(&critical->callbacks);

  EXPECT_CALL(low->callbacks, continueChain());
  critical->complete();
  worker_->runAll();
  low->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, PriorityHeaderIsCaseInsensitiveAndUnknownIsNormal) {
  RequestPtr first = start();
  RequestPtr bogus = start("urgent!!");  // unknown: Normal
  RequestPtr high = start(" HIGH\t");
  EXPECT_EQ(bulkhead().queued(resilience::Priority::Normal), 1u);
  EXPECT_EQ(bulkhead().queued(resilience::Priority::High), 1u);

  EXPECT_CALL(high->callbacks, continueChain());
  EXPECT_CALL(bogus->callbacks, continueChain()).Times(0);
  first->complete();
  worker_->runAll();
  ::testing::Mock::VerifyAndClearExpectations(&bogus->callbacks);
  bogus->complete();
  high->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(bulkhead().queued(), 0u);
}

TEST_F(BulkheadFilterTest, HigherPriorityEvictsTheLowestWaiterOfAFullQueue) {
  RequestPtr first = start();
  RequestPtr low1 = start("low");
  RequestPtr low2 = start("low");
  RequestPtr critical = start("critical");
  EXPECT_EQ(critical->status, FilterStatus::Stop);
  EXPECT_EQ(bulkhead().queued(), 2u);

  // The newest low waiter is evicted; it learns so on its worker.
  EXPECT_CALL(low2->callbacks, sendFallbackOrError(FallbackReason::BulkheadFull, 503, _));
  EXPECT_CALL(low1->callbacks, sendFallbackOrError(_, _, _)).Times(0);
  EXPECT_EQ(worker_->runAll(), 1u);
  EXPECT_EQ(rejected(), 1u);
  EXPECT_EQ(low2->callbacks.lastTimer(), nullptr);

  for (Request* r : {low2.get(), first.get(), critical.get(), low1.get()}) {
    r->complete();
    worker_->runAll();
  }
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(bulkhead().queued(), 0u);
}

TEST_F(BulkheadFilterTest, NoTimerWithoutQueueTimeout) {
  RequestPtr first = start("", "nowait");
  RequestPtr waiter = start("", "nowait");
  EXPECT_EQ(waiter->status, FilterStatus::Stop);
  EXPECT_EQ(waiter->callbacks.timersCreated(), 0u);
  EXPECT_CALL(waiter->callbacks, continueChain());
  first->complete();
  worker_->runAll();
  waiter->complete();
  EXPECT_EQ(bulkhead("nowait").active(), 0u);
}

TEST_F(BulkheadFilterTest, RequestEndingWhileQueuedLeavesTheQueue) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  EXPECT_CALL(waiter->callbacks, sendFallbackOrError(_, _, _)).Times(0);
  waiter->complete();
  EXPECT_EQ(bulkhead().queued(), 0u);
  EXPECT_EQ(waiter->callbacks.lastTimer(), nullptr);
  waiter.reset();

  first->complete();
  EXPECT_EQ(worker_->runAll(), 0u);
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, GrantArrivingAfterTheRequestEndedIsGivenBack) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  first->complete();  // grants the slot to `waiter`; the decision is posted
  ASSERT_EQ(worker_->size(), 1u);
  EXPECT_EQ(bulkhead().active(), 1u);

  // The request ends before its worker runs the grant (cancel() says AlreadyGranted) and the
  // stream destroys the filter: the posted grant must neither touch it nor keep the slot.
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  EXPECT_CALL(waiter->callbacks, sendFallbackOrError(_, _, _)).Times(0);
  waiter->complete();
  waiter.reset();
  EXPECT_EQ(bulkhead().active(), 1u);
  EXPECT_EQ(worker_->runAll(), 1u);
  EXPECT_EQ(bulkhead().active(), 0u);
  EXPECT_EQ(bulkhead().queued(), 0u);
}

TEST_F(BulkheadFilterTest, GrantAfterCompletionWithFilterStillAlive) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  first->complete();
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  waiter->complete();
  worker_->runAll();
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, TimeoutRacingAPostedGrantKeepsTheGrant) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  first->complete();  // grant posted, not yet run
  ASSERT_EQ(worker_->size(), 1u);

  // The timer fires first: cancel() says AlreadyGranted, so the grant settles it.
  EXPECT_CALL(waiter->callbacks, sendFallbackOrError(_, _, _)).Times(0);
  EXPECT_CALL(waiter->callbacks, continueChain());
  EXPECT_TRUE(waiter->fireTimer());
  worker_->runAll();
  EXPECT_EQ(rejected(), 0u);
  EXPECT_EQ(bulkhead().active(), 1u);
  waiter->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
}

TEST_F(BulkheadFilterTest, WaiterExpiredByTheBulkheadIsRejectedOnce) {
  RequestPtr first = start();
  RequestPtr waiter = start();
  time_.advance(std::chrono::milliseconds(50));
  // The release meets an expired waiter: it is rejected (posted) and the slot stays free.
  first->complete();
  EXPECT_EQ(bulkhead().active(), 0u);

  EXPECT_CALL(waiter->callbacks, sendFallbackOrError(FallbackReason::BulkheadFull, 503, _));
  EXPECT_CALL(waiter->callbacks, continueChain()).Times(0);
  EXPECT_TRUE(waiter->fireTimer());  // cancel(): AlreadyRejected, the posted decision answers
  EXPECT_EQ(rejected(), 0u);
  worker_->runAll();
  EXPECT_EQ(rejected(), 1u);
  waiter->complete();
  EXPECT_EQ(bulkhead().active(), 0u);
}

// Many requests on two worker threads, each thread with its own queue of posted tasks, ending at
// random moments (while queued, right after a grant was posted to them, from inside their own
// timeout or grant as the real stream does...), so releases on one thread race cancels on the
// other. Whatever the interleaving, no slot leaks, no waiter is stranded and no request gets two
// outcomes.
TEST_F(BulkheadFilterTest, CancelVersusGrantRaceLeaksNothing) {
  constexpr int kThreads = 2;
  constexpr int kStepsPerThread = 20000;
  constexpr size_t kMaxLive = 8;
  std::vector<PostedTasksSharedPtr> workers;
  for (int i = 0; i < kThreads; ++i) workers.push_back(std::make_shared<PostedTasks>());
  const ClusterInfo& c = cluster("stress");
  const RouteInfo& rt = route("to-stress");
  std::atomic<int> double_outcomes{0};
  std::atomic<int> outcome_after_continue{0};
  std::atomic<int> outcome_after_complete{0};
  // Coverage of the racy paths, so the test fails rather than passes vacuously if they stop
  // being reached.
  std::atomic<int> cross_thread_posts{0};
  std::atomic<int> late_decisions{0};  // ran after the request ended
  std::atomic<int> grants{0};
  std::atomic<int> rejects{0};

  struct Live {
    NiceMock<MockStreamFilterCallbacks> callbacks;
    StreamFilterPtr filter;
    int outcomes = 0;
    bool continued = false;
    // The stream ends the request from inside sendFallbackOrError()/continueChain() (a local
    // reply, or a router that fails at once), as ActiveStream::finish() does.
    bool end_synchronously = false;
    std::shared_ptr<bool> ended = std::make_shared<bool>(false);
    void end() {
      if (*ended) return;
      *ended = true;
      filter->onStreamComplete();
    }
  };

  auto run = [&](int id) {
    std::mt19937 rng(1234 + id);
    PostedTasks& own = *workers[id];
    const std::thread::id owner = std::this_thread::get_id();
    std::vector<std::unique_ptr<Live>> live;
    static constexpr const char* kPriorities[] = {"low", "normal", "high", "critical"};
    auto finish = [&](size_t i) {
      live[i]->end();
      live[i] = std::move(live.back());
      live.pop_back();
    };
    for (int step = 0; step < kStepsPerThread; ++step) {
      switch (rng() % 7) {
        case 0:
        case 1: {
          if (live.size() >= kMaxLive) break;
          auto l = std::make_unique<Live>();
          Live* raw = l.get();
          l->end_synchronously = rng() % 3 == 0;
          l->callbacks.setRoute(rt);
          l->callbacks.setCluster(c);
          l->callbacks.setTimeSource(time_);
          l->callbacks.request_headers_.add("x-remora-priority", kPriorities[rng() % 4]);
          // This request's worker is workers[id]; tag what is posted to it.
          std::shared_ptr<bool> ended = l->ended;
          PostedTasksSharedPtr queue = workers[id];
          ON_CALL(l->callbacks, poster()).WillByDefault([=, &cross_thread_posts, &late_decisions] {
            return PostedTasks::Poster([=, &cross_thread_posts, &late_decisions](
                                           std::function<void()> task) {
              if (std::this_thread::get_id() != owner) ++cross_thread_posts;
              queue->post([ended, task = std::move(task), &late_decisions] {
                if (*ended) ++late_decisions;
                task();
              });
            });
          });
          auto outcome = [raw, &double_outcomes, &outcome_after_continue,
                          &outcome_after_complete] {
            if (raw->continued) ++outcome_after_continue;
            if (*raw->ended) ++outcome_after_complete;
            if (++raw->outcomes > 1) ++double_outcomes;
          };
          ON_CALL(l->callbacks, continueChain()).WillByDefault([raw, outcome, &grants] {
            outcome();
            ++grants;
            if (raw->end_synchronously) raw->end();
          });
          ON_CALL(l->callbacks, sendFallbackOrError(_, _, _))
              .WillByDefault([raw, outcome, &rejects](FallbackReason, int, std::string_view) {
                outcome();
                ++rejects;
                if (raw->end_synchronously) raw->end();
              });
          l->filter = factory_.create(rt, c);
          l->filter->setCallbacks(l->callbacks);
          l->continued = l->filter->onRequestHeaders() == FilterStatus::Continue;
          live.push_back(std::move(l));
          break;
        }
        case 2:
          if (!live.empty()) finish(rng() % live.size());
          break;
        case 3:
          if (!live.empty()) {
            FakeTimer* t = live[rng() % live.size()]->callbacks.lastTimer();
            if (t != nullptr) t->fire();
          }
          break;
        case 4:
          own.runAll();
          break;
        case 5:
          // Ends a request that has an outcome (the stream would end a rejected one soon).
          for (size_t i = 0; i < live.size(); ++i) {
            if (live[i]->outcomes > 0 || live[i]->continued || *live[i]->ended) {
              finish(i);
              break;
            }
          }
          break;
        case 6:
          // Lets the bulkhead itself expire old waiters now and then (the clock is shared).
          if (rng() % 8 == 0) time_.advance(std::chrono::milliseconds(10));
          break;
      }
    }
    while (!live.empty()) finish(live.size() - 1);
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(run, i);
  for (auto& t : threads) t.join();
  // Decisions posted after a thread finished: every request is gone, so they only give back.
  for (auto& w : workers) w->runAll();

  EXPECT_EQ(double_outcomes.load(), 0);
  EXPECT_EQ(outcome_after_continue.load(), 0);
  EXPECT_EQ(outcome_after_complete.load(), 0);
  EXPECT_EQ(bulkhead("stress").active(), 0u);
  EXPECT_EQ(bulkhead("stress").queued(), 0u);
  EXPECT_GT(cross_thread_posts.load(), 0);
  EXPECT_GT(late_decisions.load(), 0);
  EXPECT_GT(grants.load(), 0);
  EXPECT_GT(rejects.load(), 0);
  RecordProperty("cross_thread_posts", cross_thread_posts.load());
  RecordProperty("late_decisions", late_decisions.load());
  RecordProperty("grants", grants.load());
  RecordProperty("rejects", rejects.load());
}

}  // namespace
}  // namespace remora::filters
