// Debounce: quiet period, max delay, reset.

#include "debouncer.h"

#include <gtest/gtest.h>

#include "fake_time_source.h"

namespace remora::control {
namespace {

using std::chrono::milliseconds;

TEST(DebouncerTest, NothingPendingNoDeadline) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  EXPECT_FALSE(d.deadline().has_value());
  EXPECT_FALSE(d.due());
}

TEST(DebouncerTest, FiresAfterTheQuietPeriod) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  d.changed();
  EXPECT_EQ(*d.deadline(), time.now() + milliseconds(50));
  time.advance(milliseconds(49));
  EXPECT_FALSE(d.due());
  time.advance(milliseconds(1));
  EXPECT_TRUE(d.due());
  d.reset();
  EXPECT_FALSE(d.pending());
}

TEST(DebouncerTest, EachChangeExtendsTheQuietPeriod) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  d.changed();
  time.advance(milliseconds(40));
  d.changed();
  time.advance(milliseconds(40));
  EXPECT_FALSE(d.due());
  time.advance(milliseconds(10));
  EXPECT_TRUE(d.due());
}

TEST(DebouncerTest, AContinuousBurstStillFiresEveryMaxDelay) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  // 1,000 changes, one per millisecond, for a whole second: never 50 ms of quiet.
  int fired = 0;
  for (int i = 0; i < 1000; ++i) {
    d.changed();
    time.advance(milliseconds(1));
    if (d.due()) {
      ++fired;
      d.reset();
    }
  }
  EXPECT_EQ(fired, 2) << "the max delay forces a push at 500 ms and at 1000 ms";
  EXPECT_FALSE(d.pending());
}

TEST(DebouncerTest, ZeroQuietFiresAtOnce) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(0), config::Duration(0));
  d.changed();
  EXPECT_TRUE(d.due());
}

}  // namespace
}  // namespace remora::control
