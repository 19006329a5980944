#include "timeout_queue.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stream.h"

namespace remora {
namespace {

using std::chrono::milliseconds;

// A real loop: uv_run returns once the queue has nothing armed (its timer is the only handle),
// so the tests wait on that condition, not on a sleep.
class TimeoutQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    queue_ = std::make_unique<TimeoutQueue>(&loop_);
  }
  void TearDown() override {
    queue_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the timer's close callback
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }

  // An entry that records its name when it fires.
  struct Probe {
    Probe(std::vector<std::string>& log, std::string name)
        : log(log), name(std::move(name)), entry(&Probe::fire, this) {}
    static void fire(void* self) {
      auto* p = static_cast<Probe*>(self);
      p->log.push_back(p->name);
      if (p->on_fire) p->on_fire();
    }
    std::vector<std::string>& log;
    std::string name;
    std::function<void()> on_fire;
    TimeoutQueue::Entry entry;
  };

  uv_loop_t loop_;
  std::unique_ptr<TimeoutQueue> queue_;
  std::vector<std::string> fired_;
};

TEST_F(TimeoutQueueTest, FiresByDeadlineAcrossDurationsAndInArmOrderWithinOne) {
  Probe a(fired_, "a"), b(fired_, "b"), c(fired_, "c"), d(fired_, "d");
  a.entry.arm(*queue_, milliseconds(30));
  b.entry.arm(*queue_, milliseconds(5));
  c.entry.arm(*queue_, milliseconds(5));
  d.entry.arm(*queue_, milliseconds(15));
  EXPECT_EQ(queue_->size(), 4u);
  EXPECT_EQ(queue_->lists(), 3u);
  run();
  EXPECT_EQ(fired_, (std::vector<std::string>{"b", "c", "d", "a"}));
  EXPECT_EQ(queue_->size(), 0u);
  EXPECT_FALSE(a.entry.armed());
}

TEST_F(TimeoutQueueTest, CancelledReArmedAndDestroyedEntriesDoNotFire) {
  Probe a(fired_, "a"), b(fired_, "b"), c(fired_, "c");
  a.entry.arm(*queue_, milliseconds(5));
  b.entry.arm(*queue_, milliseconds(5));
  c.entry.arm(*queue_, milliseconds(5));
  {
    Probe gone(fired_, "gone");
    gone.entry.arm(*queue_, milliseconds(1));
  }  // destroying an armed entry cancels it
  b.entry.cancel();
  a.entry.arm(*queue_, milliseconds(10));  // re-arming moves it behind c
  EXPECT_TRUE(a.entry.armed());
  EXPECT_FALSE(b.entry.armed());
  EXPECT_EQ(queue_->size(), 2u);
  run();
  EXPECT_EQ(fired_, (std::vector<std::string>{"c", "a"}));
}

TEST_F(TimeoutQueueTest, CallbacksMayCancelTheNextEntryOrReArmThemselves) {
  Probe a(fired_, "a"), b(fired_, "b"), c(fired_, "c");
  int rearms = 0;
  a.on_fire = [&] { b.entry.cancel(); };  // b is due at the same time, right behind a
  c.on_fire = [&] {
    if (++rearms < 3) c.entry.arm(*queue_, milliseconds(0));  // fires again, on a later expiry
  };
  a.entry.arm(*queue_, milliseconds(2));
  b.entry.arm(*queue_, milliseconds(2));
  c.entry.arm(*queue_, milliseconds(2));
  run();
  EXPECT_EQ(fired_, (std::vector<std::string>{"a", "c", "c", "c"}));
  EXPECT_EQ(queue_->size(), 0u);
}

TEST_F(TimeoutQueueTest, EmptyListsAreReusedForNewDurations) {
  for (int d = 1; d <= 20; ++d) {
    Probe p(fired_, "p");
    p.entry.arm(*queue_, milliseconds(d));
    run();
  }
  EXPECT_EQ(fired_.size(), 20u);
  EXPECT_EQ(queue_->lists(), 1u);  // one duration at a time: one list, reused
}

TEST_F(TimeoutQueueTest, AfterCloseEntriesMayStillBeArmedAndCancelledButNothingFires) {
  Probe a(fired_, "a");
  a.entry.arm(*queue_, milliseconds(1));
  queue_->close();
  Probe b(fired_, "b");
  b.entry.arm(*queue_, milliseconds(1));
  run();  // the closed timer keeps nothing alive: returns at once
  EXPECT_TRUE(fired_.empty());
  a.entry.cancel();
  b.entry.cancel();
  EXPECT_EQ(queue_->size(), 0u);
}

TEST(FilterRegistryTest, TheChainFitsTheFiltersAStreamHolds) {
  EXPECT_LE(registeredFilterFactories().size(), ActiveStream::kMaxFilters);
}

}  // namespace
}  // namespace remora
