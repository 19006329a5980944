#include "resilience/resource_limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <utility>
#include <vector>

namespace remora::resilience {
namespace {

config::Limits limits(uint32_t connections, uint32_t pending, uint32_t requests, uint32_t retries) {
  config::Limits l;
  l.max_connections = connections;
  l.max_pending_requests = pending;
  l.max_requests = requests;
  l.max_retries = retries;
  return l;
}

TEST(ResourceLimitsTest, DefaultsFromConfig) {
  ResourceLimits r{config::Limits{}};
  EXPECT_EQ(r.max(ResourceKind::Connections), 1024u);
  EXPECT_EQ(r.max(ResourceKind::PendingRequests), 1024u);
  EXPECT_EQ(r.max(ResourceKind::Requests), 1024u);
  EXPECT_EQ(r.max(ResourceKind::Retries), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(r.tryAcquire(ResourceKind::Retries));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Retries));
}

TEST(ResourceLimitsTest, AcquireUpToTheLimitThenRefuse) {
  ResourceLimits r(limits(2, 3, 4, 1));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Connections));
  EXPECT_TRUE(r.canAcquire(ResourceKind::Connections));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Connections));
  EXPECT_FALSE(r.canAcquire(ResourceKind::Connections));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Connections));
  EXPECT_EQ(r.active(ResourceKind::Connections), 2u);  // refusals do not count
  r.release(ResourceKind::Connections);
  EXPECT_EQ(r.active(ResourceKind::Connections), 1u);
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Connections));
}

TEST(ResourceLimitsTest, KindsAreIndependent) {
  ResourceLimits r(limits(1, 1, 1, 1));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Connections));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::PendingRequests));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Requests));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Retries));
  for (auto kind : {ResourceKind::Connections, ResourceKind::PendingRequests,
                    ResourceKind::Requests, ResourceKind::Retries}) {
    EXPECT_FALSE(r.tryAcquire(kind)) << toString(kind);
    EXPECT_EQ(r.active(kind), 1u) << toString(kind);
  }
  r.release(ResourceKind::Requests);
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Requests));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Retries));
}

TEST(ResourceLimitsTest, ZeroLimitRefusesEverything) {
  ResourceLimits r(limits(0, 0, 0, 0));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Retries));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Connections));
}

TEST(ResourceLimitsTest, LoweringALimitRevokesNothing) {
  ResourceLimits r(limits(4, 4, 4, 4));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(r.tryAcquire(ResourceKind::Requests));
  r.reconfigure(limits(4, 4, 2, 4));
  EXPECT_EQ(r.active(ResourceKind::Requests), 4u);
  EXPECT_EQ(r.max(ResourceKind::Requests), 2u);
  r.release(ResourceKind::Requests);
  r.release(ResourceKind::Requests);
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Requests));  // 2 in flight, limit 2
  r.release(ResourceKind::Requests);
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Requests));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Requests));
}

TEST(ResourceLimitsTest, RaisingALimitAppliesAtOnce) {
  ResourceLimits r(limits(1, 1, 1, 1));
  ASSERT_TRUE(r.tryAcquire(ResourceKind::Retries));
  ASSERT_FALSE(r.tryAcquire(ResourceKind::Retries));
  r.reconfigure(limits(1, 1, 1, 3));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Retries));
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Retries));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Retries));
}

TEST(ResourceLimitsTest, ReleaseWithoutAcquireIsABug) {
  ResourceLimits r(limits(1, 1, 1, 1));
  // Asserts in debug builds; in release builds the count must not wrap below zero.
  EXPECT_DEBUG_DEATH(r.release(ResourceKind::Connections), "without a matching tryAcquire");
  EXPECT_EQ(r.active(ResourceKind::Connections), 0u);
  EXPECT_TRUE(r.tryAcquire(ResourceKind::Connections));
  EXPECT_FALSE(r.tryAcquire(ResourceKind::Connections));
}

TEST(ResourceLimitsTest, ToString) {
  EXPECT_EQ(toString(ResourceKind::Connections), "connections");
  EXPECT_EQ(toString(ResourceKind::PendingRequests), "pending_requests");
  EXPECT_EQ(toString(ResourceKind::Requests), "requests");
  EXPECT_EQ(toString(ResourceKind::Retries), "retries");
}

TEST(ResourceGuardTest, ReleasesOnDestruction) {
  ResourceLimits r(limits(1, 1, 1, 1));
  {
    ResourceGuard g = ResourceGuard::tryAcquire(r, ResourceKind::Requests);
    ASSERT_TRUE(g);
    EXPECT_EQ(g.kind(), ResourceKind::Requests);
    EXPECT_EQ(r.active(ResourceKind::Requests), 1u);
    ResourceGuard refused = ResourceGuard::tryAcquire(r, ResourceKind::Requests);
    EXPECT_FALSE(refused);
  }
  EXPECT_EQ(r.active(ResourceKind::Requests), 0u);
}

TEST(ResourceGuardTest, DefaultIsEmpty) {
  ResourceGuard g;
  EXPECT_FALSE(g);
  g.release();  // harmless
}

TEST(ResourceGuardTest, MoveTransfersOwnership) {
  ResourceLimits r(limits(2, 2, 2, 2));
  ResourceGuard a = ResourceGuard::tryAcquire(r, ResourceKind::Connections);
  ResourceGuard b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_TRUE(b);
  EXPECT_EQ(r.active(ResourceKind::Connections), 1u);

  // Move-assignment gives back what the target held.
  ResourceGuard c = ResourceGuard::tryAcquire(r, ResourceKind::Connections);
  EXPECT_EQ(r.active(ResourceKind::Connections), 2u);
  c = std::move(b);
  EXPECT_EQ(r.active(ResourceKind::Connections), 1u);
  EXPECT_TRUE(c);

  ResourceGuard& alias = c;
  c = std::move(alias);  // self-move keeps the unit
  EXPECT_EQ(r.active(ResourceKind::Connections), 1u);

  std::vector<ResourceGuard> held;
  held.push_back(std::move(c));
  held.push_back(ResourceGuard::tryAcquire(r, ResourceKind::Connections));
  held.reserve(100);  // reallocation moves the guards; the count must not change
  EXPECT_EQ(r.active(ResourceKind::Connections), 2u);
  held.clear();
  EXPECT_EQ(r.active(ResourceKind::Connections), 0u);
}

TEST(ResourceGuardTest, EarlyReleaseIsIdempotent) {
  ResourceLimits r(limits(1, 1, 1, 1));
  ResourceGuard g = ResourceGuard::tryAcquire(r, ResourceKind::PendingRequests);
  g.release();
  EXPECT_FALSE(g);
  EXPECT_EQ(r.active(ResourceKind::PendingRequests), 0u);
  g.release();
  EXPECT_EQ(r.active(ResourceKind::PendingRequests), 0u);
}

TEST(ResourceLimitsTest, ConcurrentUseNeverExceedsTheLimit) {
  constexpr uint32_t kMax = 8;
  ResourceLimits r(limits(kMax, kMax, kMax, kMax));
  constexpr int kThreads = 4;
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  std::atomic<int> granted{0};
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      std::vector<ResourceGuard> mine;
      for (int i = 0; i < 20000; ++i) {
        // Hold up to three units per thread so the limit (8 < 4 * 3) is actually contended.
        if (mine.size() == 3 || (i % 2 == 1 && !mine.empty())) {
          holders.fetch_sub(1);
          mine.pop_back();
          continue;
        }
        ResourceGuard g = ResourceGuard::tryAcquire(r, ResourceKind::Requests);
        if (!g) continue;
        granted.fetch_add(1);
        const int now = holders.fetch_add(1) + 1;
        int seen = max_holders.load();
        while (now > seen && !max_holders.compare_exchange_weak(seen, now)) {
        }
        mine.push_back(std::move(g));
      }
      holders.fetch_sub(static_cast<int>(mine.size()));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(max_holders.load(), static_cast<int>(kMax));
  EXPECT_GT(granted.load(), 0);
  EXPECT_EQ(r.active(ResourceKind::Requests), 0u);
}

}  // namespace
}  // namespace remora::resilience
