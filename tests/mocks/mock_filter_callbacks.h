#pragma once

// gmock StreamFilterCallbacks for filter unit tests (STYLE.md: a mock per interface). A filter under
// test runs without a loop or sockets: what it posts to "its worker" lands in a PostedTasks queue
// the test drains explicitly, its timers are FakeTimers the test fires, and its clock is a
// FakeTimeSource.

#include <gmock/gmock.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "http/headers.h"
#include "mocks/fake_time_source.h"
#include "remora/filter.h"
#include "snapshot.h"

namespace remora {

// The task queue of a simulated worker thread. post() may be called from any thread; tasks run
// only when the test calls runAll() (on the thread it chooses to play the worker), so a test
// decides exactly when "the worker gets to" a posted task.
class PostedTasks {
 public:
  using Task = std::function<void()>;
  using Poster = std::function<void(Task)>;

  void post(Task task) {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(std::move(task));
  }

  // Runs every queued task, including those posted by the tasks themselves, on the calling thread.
  // Tasks run outside the lock, so they (or other threads) may post meanwhile. Returns how many
  // ran.
  size_t runAll() {
    size_t ran = 0;
    while (true) {
      Task task;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (tasks_.empty()) return ran;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
      ++ran;
    }
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tasks_.size();
  }

  // A poster bound to this queue; it keeps the queue alive, so (like a worker's poster) it stays
  // callable after the request that obtained it is gone.
  static Poster posterFor(const std::shared_ptr<PostedTasks>& queue) {
    return [queue](Task task) { queue->post(std::move(task)); };
  }

 private:
  mutable std::mutex mutex_;
  std::deque<Task> tasks_;
};
using PostedTasksSharedPtr = std::shared_ptr<PostedTasks>;

// A one-shot FilterTimer that fires only when the test says so.
class FakeTimer : public FilterTimer {
 public:
  FakeTimer(std::function<void()> cb, std::shared_ptr<bool> alive)
      : cb_(std::move(cb)), alive_(std::move(alive)) {}
  ~FakeTimer() override { *alive_ = false; }

  void enable(std::chrono::milliseconds delay) override {
    enabled_ = true;
    delay_ = delay;
  }
  void disable() override { enabled_ = false; }

  bool enabled() const { return enabled_; }
  std::chrono::milliseconds delay() const { return delay_; }

  // What the loop does when the delay has elapsed: a no-op unless enabled; otherwise disables the
  // timer (one-shot) and runs the callback. The callback may destroy this timer (as a filter that
  // ends its request from a timeout does), so nothing here touches `this` after it. Returns whether
  // the callback ran.
  bool fire() {
    if (!enabled_) return false;
    enabled_ = false;
    std::function<void()> cb = cb_;  // outlives the timer if the callback destroys it
    cb();
    return true;
  }

 private:
  std::function<void()> cb_;
  std::shared_ptr<bool> alive_;
  bool enabled_ = false;
  std::chrono::milliseconds delay_{0};
};

class MockStreamFilterCallbacks : public StreamFilterCallbacks {
 public:
  MockStreamFilterCallbacks() {
    ON_CALL(*this, poster()).WillByDefault([this] { return PostedTasks::posterFor(posted_); });
    ON_CALL(*this, createTimer(::testing::_)).WillByDefault([this](std::function<void()> cb) {
      return makeTimer(std::move(cb));
    });
    ON_CALL(*this, timeSource()).WillByDefault([this]() -> TimeSource& { return *time_source_; });
    ON_CALL(*this, requestHeaders()).WillByDefault([this]() -> const http::HeaderMap& {
      return request_headers_;
    });
    ON_CALL(*this, route()).WillByDefault([this]() -> const RouteInfo& {
      EXPECT_NE(route_, nullptr) << "MockStreamFilterCallbacks: setRoute() was not called";
      return *route_;
    });
    ON_CALL(*this, cluster()).WillByDefault([this]() -> const ClusterInfo& {
      EXPECT_NE(cluster_, nullptr) << "MockStreamFilterCallbacks: setCluster() was not called";
      return *cluster_;
    });
  }

  MOCK_METHOD(void, continueChain, (), (override));
  MOCK_METHOD(void, sendFallbackOrError, (FallbackReason reason, int status, std::string_view detail),
              (override));
  MOCK_METHOD(PostedTasks::Poster, poster, (), (override));
  MOCK_METHOD(FilterTimerPtr, createTimer, (std::function<void()> cb), (override));
  MOCK_METHOD(TimeSource&, timeSource, (), (override));
  MOCK_METHOD(const http::HeaderMap&, requestHeaders, (), (const, override));
  MOCK_METHOD(const RouteInfo&, route, (), (const, override));
  MOCK_METHOD(const ClusterInfo&, cluster, (), (const, override));

  void setRoute(const RouteInfo& route) { route_ = &route; }
  void setCluster(const ClusterInfo& cluster) { cluster_ = &cluster; }
  // Several mocks can share one queue to play requests on the same worker.
  void setPostedTasks(PostedTasksSharedPtr posted) { posted_ = std::move(posted); }
  // The clock the filter sees; share it with the RuntimeRegistry that built the resilience state.
  void setTimeSource(TimeSource& time_source) { time_source_ = &time_source; }

  PostedTasks& postedTasks() { return *posted_; }
  const PostedTasksSharedPtr& postedTasksPtr() const { return posted_; }
  size_t runPostedTasks() { return posted_->runAll(); }

  size_t timersCreated() const { return timers_.size(); }
  // The i-th timer created through createTimer(), or nullptr once its owner destroyed it.
  FakeTimer* timer(size_t i) const { return *timers_.at(i).alive ? timers_[i].timer : nullptr; }
  FakeTimer* lastTimer() const { return timers_.empty() ? nullptr : timer(timers_.size() - 1); }

  http::HeaderMap request_headers_;
  FakeTimeSource fake_time_source_;

 private:
  struct TimerRecord {
    FakeTimer* timer;
    std::shared_ptr<bool> alive;
  };

  FilterTimerPtr makeTimer(std::function<void()> cb) {
    auto alive = std::make_shared<bool>(true);
    auto timer = std::make_unique<FakeTimer>(std::move(cb), alive);
    timers_.push_back(TimerRecord{timer.get(), std::move(alive)});
    return timer;
  }

  PostedTasksSharedPtr posted_ = std::make_shared<PostedTasks>();
  TimeSource* time_source_ = &fake_time_source_;
  const RouteInfo* route_ = nullptr;
  const ClusterInfo* cluster_ = nullptr;
  std::vector<TimerRecord> timers_;
};

}  // namespace remora
