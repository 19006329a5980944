// Debounce: leading edge (a change after a quiet period is due at once), quiet period, max delay,
// reset.

#include "debouncer.h"

#include <gtest/gtest.h>

#include "fake_time_source.h"

namespace remora::control {
namespace {

using std::chrono::milliseconds;

// Makes one change and pushes it, so that the next change comes right after a push (within the
// quiet period, unless the test waits).
void changeAndPush(Debouncer& d) {
  d.changed();
  ASSERT_TRUE(d.due());
  d.reset();
}

TEST(DebouncerTest, NothingPendingNoDeadline) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  EXPECT_FALSE(d.deadline().has_value());
  EXPECT_FALSE(d.due());
  EXPECT_FALSE(d.leading());
  EXPECT_FALSE(d.pending());
}

TEST(DebouncerTest, TheFirstChangeIsDueAtOnce) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  d.changed();
  EXPECT_TRUE(d.leading());
  EXPECT_EQ(*d.deadline(), time.now());
  EXPECT_TRUE(d.due());
  d.reset();
  EXPECT_FALSE(d.pending());
  EXPECT_FALSE(d.leading());
}

TEST(DebouncerTest, AChangeAfterAQuietPeriodIsDueAtOnce) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  changeAndPush(d);
  time.advance(milliseconds(50));
  d.changed();
  EXPECT_TRUE(d.leading()) << "50 ms without a change is a quiet period";
  EXPECT_TRUE(d.due());
}

TEST(DebouncerTest, AChangeWithinTheQuietPeriodWaitsForQuiet) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  changeAndPush(d);
  time.advance(milliseconds(10));
  d.changed();
  EXPECT_FALSE(d.leading());
  EXPECT_EQ(*d.deadline(), time.now() + milliseconds(50));
  time.advance(milliseconds(49));
  EXPECT_FALSE(d.due());
  time.advance(milliseconds(1));
  EXPECT_TRUE(d.due());
  d.reset();
  EXPECT_FALSE(d.pending());
}

TEST(DebouncerTest, ChangesBeforeALeadingPushStayLeading) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  // The first change waits for its fsync; more arrive meanwhile. The owner pushes what is durable
  // as soon as it can: nothing waits for the quiet period.
  d.changed();
  time.advance(milliseconds(5));
  d.changed();
  time.advance(milliseconds(5));
  d.changed();
  EXPECT_TRUE(d.leading());
  EXPECT_TRUE(d.due());
}

TEST(DebouncerTest, EachChangeExtendsTheQuietPeriod) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  changeAndPush(d);
  d.changed();
  time.advance(milliseconds(40));
  d.changed();
  time.advance(milliseconds(40));
  EXPECT_FALSE(d.due());
  time.advance(milliseconds(10));
  EXPECT_TRUE(d.due());
}

TEST(DebouncerTest, QuietCountsFromTheLastChangeNotTheLastPush) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  changeAndPush(d);
  time.advance(milliseconds(30));
  d.changed();  // within 50 ms of the last change: a burst
  time.advance(milliseconds(50));
  ASSERT_TRUE(d.due());
  d.reset();
  // 50 ms after that change (and just after its push): quiet, so leading again.
  d.changed();
  EXPECT_TRUE(d.leading());
}

TEST(DebouncerTest, AContinuousBurstPushesAtOnceThenEveryMaxDelay) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  // 1,000 changes, one per millisecond, for a whole second: never 50 ms of quiet.
  int fired = 0;
  for (int i = 0; i < 1000; ++i) {
    d.changed();
    if (d.due()) {
      ++fired;
      d.reset();
    }
    time.advance(milliseconds(1));
    if (d.due()) {
      ++fired;
      d.reset();
    }
  }
  EXPECT_EQ(fired, 2) << "the first change at once, then the max delay at 501 ms";
  // The tail of the burst goes at the next max delay: 3 pushes for 1,000 changes.
  ASSERT_TRUE(d.pending());
  EXPECT_FALSE(d.leading());
  EXPECT_FALSE(d.due());
  time.advance(milliseconds(1));
  EXPECT_TRUE(d.due());
  d.reset();
  EXPECT_FALSE(d.pending());
}

TEST(DebouncerTest, MaxDelayCapsABurstThatNeverQuietens) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(50), config::Duration(500));
  changeAndPush(d);
  const MonotonicTime start = time.now();
  d.changed();
  EXPECT_EQ(*d.maxDeadline(), start + milliseconds(500));
  for (int i = 0; i < 20; ++i) {
    time.advance(milliseconds(25));
    d.changed();
  }
  EXPECT_TRUE(d.maxDue());
  EXPECT_TRUE(d.due());
}

TEST(DebouncerTest, ZeroQuietFiresAtOnce) {
  FakeTimeSource time;
  Debouncer d(time, config::Duration(0), config::Duration(0));
  d.changed();
  EXPECT_TRUE(d.due());
  d.reset();
  d.changed();
  EXPECT_TRUE(d.due());
}

}  // namespace
}  // namespace remora::control
