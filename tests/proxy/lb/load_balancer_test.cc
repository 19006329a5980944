#include "lb/load_balancer.h"

#include <gtest/gtest.h>

#include <array>
#include <random>
#include <string>
#include <vector>

namespace remora::lb {
namespace {

using config::LbPolicy;

constexpr std::array<LbPolicy, 4> kAllPolicies = {
    LbPolicy::RoundRobin, LbPolicy::WeightedRoundRobin, LbPolicy::Random, LbPolicy::LeastRequest};

std::vector<LbHost> hostsWithWeights(std::vector<uint32_t> weights) {
  std::vector<LbHost> hosts;
  for (uint32_t w : weights) hosts.push_back(LbHost{w, true, nullptr});
  return hosts;
}

// Picks `n` times with a seeded generator and returns how often each host was chosen.
std::vector<int> countPicks(LoadBalancer& lb, const std::vector<LbHost>& hosts, int n,
                            int exclude = -1, uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::vector<int> counts(hosts.size(), 0);
  for (int i = 0; i < n; ++i) {
    const int picked = lb.pick(hosts, exclude, rng());
    EXPECT_GE(picked, 0);
    EXPECT_LT(picked, static_cast<int>(hosts.size()));
    if (picked >= 0 && picked < static_cast<int>(hosts.size())) ++counts[picked];
  }
  return counts;
}

std::string sequence(LoadBalancer& lb, const std::vector<LbHost>& hosts, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int picked = lb.pick(hosts, -1, 0);
    out += picked < 0 ? '-' : static_cast<char>('a' + picked);
  }
  return out;
}

class AllPoliciesTest : public testing::TestWithParam<LbPolicy> {};

std::string policyName(const testing::TestParamInfo<LbPolicy>& info) {
  switch (info.param) {
    case LbPolicy::RoundRobin:
      return "RoundRobin";
    case LbPolicy::WeightedRoundRobin:
      return "WeightedRoundRobin";
    case LbPolicy::Random:
      return "Random";
    case LbPolicy::LeastRequest:
      return "LeastRequest";
  }
  return "Unknown";
}

INSTANTIATE_TEST_SUITE_P(Policies, AllPoliciesTest, testing::ValuesIn(kAllPolicies), policyName);

TEST_P(AllPoliciesTest, NoHostsGivesMinusOne) {
  auto lb = createLoadBalancer(GetParam(), 0, 0);
  EXPECT_EQ(lb->pick({}, -1, 7), -1);
}

TEST_P(AllPoliciesTest, AllUnavailableGivesMinusOne) {
  auto hosts = hostsWithWeights({1, 2, 3});
  for (auto& h : hosts) h.available = false;
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  for (uint64_t r = 0; r < 50; ++r) EXPECT_EQ(lb->pick(hosts, -1, r), -1);
  EXPECT_EQ(lb->pick(hosts, 1, 3), -1);
}

TEST_P(AllPoliciesTest, AllZeroWeightGivesMinusOne) {
  auto hosts = hostsWithWeights({0, 0});
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  for (uint64_t r = 0; r < 50; ++r) EXPECT_EQ(lb->pick(hosts, -1, r), -1);
}

TEST_P(AllPoliciesTest, UnavailableAndZeroWeightHostsAreNeverPicked) {
  auto hosts = hostsWithWeights({2, 0, 1, 5, 3});
  hosts[3].available = false;
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 3000);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[2], 0);
  EXPECT_GT(counts[4], 0);
}

TEST_P(AllPoliciesTest, ExcludeIsAvoidedWhenAnotherHostIsAvailable) {
  auto hosts = hostsWithWeights({1, 5, 1});
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 2000, /*exclude=*/1);
  EXPECT_EQ(counts[1], 0);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[2], 0);
}

TEST_P(AllPoliciesTest, ExcludeIsPickedWhenItIsTheOnlyAvailableHost) {
  auto hosts = hostsWithWeights({1, 1, 1});
  hosts[0].available = false;
  hosts[2].weight = 0;
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  for (uint64_t r = 0; r < 20; ++r) EXPECT_EQ(lb->pick(hosts, 1, r), 1);
  // An excluded host that is itself unavailable is never the fallback.
  hosts[1].available = false;
  EXPECT_EQ(lb->pick(hosts, 1, 0), -1);
}

TEST_P(AllPoliciesTest, OutOfRangeExcludeIsIgnored) {
  auto hosts = hostsWithWeights({1, 1});
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 200, /*exclude=*/7);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
}

TEST_P(AllPoliciesTest, SingleAvailableHostIsAlwaysPicked) {
  auto hosts = hostsWithWeights({3, 3, 3});
  hosts[0].available = false;
  hosts[2].available = false;
  auto lb = createLoadBalancer(GetParam(), hosts.size(), 0);
  for (uint64_t r = 0; r < 20; ++r) EXPECT_EQ(lb->pick(hosts, -1, r * 977), 1);
}

TEST_P(AllPoliciesTest, HostCountChangeIsSurvived) {
  // The caller promises a stable host count; breaking the promise must not break the balancer.
  auto lb = createLoadBalancer(GetParam(), 2, 3);
  auto two = hostsWithWeights({1, 1});
  auto five = hostsWithWeights({1, 1, 1, 1, 1});
  for (uint64_t r = 0; r < 20; ++r) {
    int a = lb->pick(two, -1, r);
    EXPECT_TRUE(a >= 0 && a < 2);
    int b = lb->pick(five, -1, r);
    EXPECT_TRUE(b >= 0 && b < 5);
  }
}

// round_robin

TEST(RoundRobinTest, CyclesInOrderIgnoringWeights) {
  auto hosts = hostsWithWeights({5, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::RoundRobin, hosts.size(), 0);
  EXPECT_EQ(sequence(*lb, hosts, 7), "abcabca");
}

TEST(RoundRobinTest, SkipsUnavailableAndZeroWeightHosts) {
  auto hosts = hostsWithWeights({1, 1, 0, 1});
  hosts[1].available = false;
  auto lb = createLoadBalancer(LbPolicy::RoundRobin, hosts.size(), 0);
  EXPECT_EQ(sequence(*lb, hosts, 6), "adadad");
  hosts[1].available = true;  // back: joins the cycle where it stands
  EXPECT_EQ(sequence(*lb, hosts, 6), "abdabd");
}

TEST(RoundRobinTest, WorkersStartAtDifferentOffsets) {
  auto hosts = hostsWithWeights({1, 1, 1});
  EXPECT_EQ(sequence(*createLoadBalancer(LbPolicy::RoundRobin, 3, 0), hosts, 4), "abca");
  EXPECT_EQ(sequence(*createLoadBalancer(LbPolicy::RoundRobin, 3, 1), hosts, 4), "bcab");
  EXPECT_EQ(sequence(*createLoadBalancer(LbPolicy::RoundRobin, 3, 2), hosts, 4), "cabc");
  EXPECT_EQ(sequence(*createLoadBalancer(LbPolicy::RoundRobin, 3, 4), hosts, 4), "bcab");
}

TEST(RoundRobinTest, ExcludedHostIsSkippedOnce) {
  auto hosts = hostsWithWeights({1, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::RoundRobin, hosts.size(), 0);
  EXPECT_EQ(lb->pick(hosts, -1, 0), 0);
  EXPECT_EQ(lb->pick(hosts, 1, 0), 2);  // a retry after host b failed
  EXPECT_EQ(lb->pick(hosts, -1, 0), 0);
}

TEST(RoundRobinTest, EvenSplit) {
  auto hosts = hostsWithWeights({1, 7, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::RoundRobin, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000);
  for (int c : counts) EXPECT_EQ(c, 2500);
}

// weighted_round_robin

TEST(WeightedRoundRobinTest, SmoothSequenceFiveOneOne) {
  auto hosts = hostsWithWeights({5, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  // nginx's documented example: interleaved, not aaaaabc.
  EXPECT_EQ(sequence(*lb, hosts, 14), "aabacaaaabacaa");
}

TEST(WeightedRoundRobinTest, ExactSplitOneThree) {
  auto hosts = hostsWithWeights({1, 3});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  EXPECT_EQ(sequence(*lb, hosts, 4), "babb");
  std::vector<int> counts = countPicks(*lb, hosts, 10000 - 4);
  EXPECT_EQ(counts[0] + 1, 2500);
  EXPECT_EQ(counts[1] + 3, 7500);
}

TEST(WeightedRoundRobinTest, UnavailableHostIsSkippedAndOthersKeepTheirRatio) {
  auto hosts = hostsWithWeights({5, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  hosts[2].available = false;
  std::vector<int> counts = countPicks(*lb, hosts, 600);
  EXPECT_EQ(counts[0], 500);
  EXPECT_EQ(counts[1], 100);
  EXPECT_EQ(counts[2], 0);
  // When c returns, the split goes back to 5:1:1 (up to the one cycle its absence shifted).
  hosts[2].available = true;
  counts = countPicks(*lb, hosts, 7000);
  EXPECT_NEAR(counts[0], 5000, 5);
  EXPECT_NEAR(counts[1], 1000, 5);
  EXPECT_NEAR(counts[2], 1000, 5);
}

TEST(WeightedRoundRobinTest, ZeroWeightIsNeverPicked) {
  auto hosts = hostsWithWeights({2, 0, 1});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  EXPECT_EQ(sequence(*lb, hosts, 6), "acaaca");
}

TEST(WeightedRoundRobinTest, ExcludeDoesNotShiftTheOthers) {
  // The excluded host sits one pick out (its current weight untouched), and the cycle goes on
  // with b first: nobody is chosen twice while another waits.
  auto hosts = hostsWithWeights({1, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  EXPECT_EQ(lb->pick(hosts, -1, 0), 0);
  EXPECT_EQ(lb->pick(hosts, 1, 0), 2);
  EXPECT_EQ(sequence(*lb, hosts, 6), "bcabca");
}

TEST(WeightedRoundRobinTest, WorkersStartAtDifferentPointsOfTheCycle) {
  auto hosts = hostsWithWeights({5, 1, 1});
  const std::string cycle = "aabacaa";
  for (size_t worker = 0; worker < 9; ++worker) {
    auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), worker);
    const size_t offset = worker % cycle.size();
    const std::string expected = (cycle + cycle).substr(offset, cycle.size());
    EXPECT_EQ(sequence(*lb, hosts, 7), expected) << "worker " << worker;
  }
}

TEST(WeightedRoundRobinTest, HugeWeightsDoNotOverflow) {
  auto hosts = hostsWithWeights({UINT32_MAX, UINT32_MAX, 1});
  auto lb = createLoadBalancer(LbPolicy::WeightedRoundRobin, hosts.size(), 0);
  EXPECT_EQ(sequence(*lb, hosts, 4), "abab");
}

// random

TEST(RandomTest, WeightedSplitWithinTwoPoints) {
  auto hosts = hostsWithWeights({1, 3});
  auto lb = createLoadBalancer(LbPolicy::Random, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000);
  EXPECT_NEAR(counts[0] / 100.0, 25.0, 2.0);
  EXPECT_NEAR(counts[1] / 100.0, 75.0, 2.0);
}

TEST(RandomTest, ThreeWaySplitWithinTwoPoints) {
  auto hosts = hostsWithWeights({5, 1, 4});
  auto lb = createLoadBalancer(LbPolicy::Random, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000, -1, 7);
  EXPECT_NEAR(counts[0] / 100.0, 50.0, 2.0);
  EXPECT_NEAR(counts[1] / 100.0, 10.0, 2.0);
  EXPECT_NEAR(counts[2] / 100.0, 40.0, 2.0);
}

TEST(RandomTest, UsesTheCallersRandomness) {
  auto hosts = hostsWithWeights({1, 3});
  auto lb = createLoadBalancer(LbPolicy::Random, hosts.size(), 0);
  // Cumulative ranges: [0,1) -> a, [1,4) -> b.
  EXPECT_EQ(lb->pick(hosts, -1, 0), 0);
  EXPECT_EQ(lb->pick(hosts, -1, 1), 1);
  EXPECT_EQ(lb->pick(hosts, -1, 3), 1);
  EXPECT_EQ(lb->pick(hosts, -1, 4), 0);
}

TEST(RandomTest, ExcludedWeightIsRedistributed) {
  auto hosts = hostsWithWeights({1, 3, 2});
  auto lb = createLoadBalancer(LbPolicy::Random, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000, /*exclude=*/1);
  EXPECT_EQ(counts[1], 0);
  EXPECT_NEAR(counts[0] / 100.0, 33.3, 2.0);
  EXPECT_NEAR(counts[2] / 100.0, 66.7, 2.0);
}

// least_request

TEST(LeastRequestTest, WeightedSplitWithinTwoPointsWhenIdle) {
  std::array<std::atomic<uint32_t>, 2> active{};
  auto hosts = hostsWithWeights({1, 3});
  hosts[0].active_requests = &active[0];
  hosts[1].active_requests = &active[1];
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000);
  EXPECT_NEAR(counts[0] / 100.0, 25.0, 2.0);
  EXPECT_NEAR(counts[1] / 100.0, 75.0, 2.0);
}

TEST(LeastRequestTest, NullActiveCountsReadAsIdle) {
  auto hosts = hostsWithWeights({2, 1, 1});
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 10000, -1, 3);
  EXPECT_NEAR(counts[0] / 100.0, 50.0, 2.0);
  EXPECT_NEAR(counts[1] / 100.0, 25.0, 2.0);
  EXPECT_NEAR(counts[2] / 100.0, 25.0, 2.0);
}

TEST(LeastRequestTest, PrefersTheLessLoadedHost) {
  std::array<std::atomic<uint32_t>, 2> active{};
  active[0] = 10;
  active[1] = 2;
  auto hosts = hostsWithWeights({1, 1});
  hosts[0].active_requests = &active[0];
  hosts[1].active_requests = &active[1];
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  // With two hosts both are always compared (the two choices are distinct).
  std::vector<int> counts = countPicks(*lb, hosts, 1000);
  EXPECT_EQ(counts[1], 1000);
}

TEST(LeastRequestTest, TwoChoicesAmongMany) {
  std::array<std::atomic<uint32_t>, 4> active{};
  active[0] = 9;
  active[1] = 0;
  active[2] = 9;
  active[3] = 9;
  auto hosts = hostsWithWeights({1, 1, 1, 1});
  for (size_t i = 0; i < hosts.size(); ++i) hosts[i].active_requests = &active[i];
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  // The idle host wins whenever it is one of the two distinct choices: 1 - (3/4 * 2/3) = 50%;
  // the other 50% split evenly among the loaded three (ties go to the first draw).
  std::vector<int> counts = countPicks(*lb, hosts, 10000);
  EXPECT_NEAR(counts[1] / 100.0, 50.0, 2.0);
  EXPECT_NEAR(counts[0] / 100.0, 16.7, 2.0);
}

TEST(LeastRequestTest, ComparesLoadPerUnitOfWeight) {
  std::array<std::atomic<uint32_t>, 2> active{};
  active[0] = 2;  // 2 per unit of weight
  active[1] = 4;  // 1 per unit of weight: less loaded, although more requests
  auto hosts = hostsWithWeights({1, 4});
  hosts[0].active_requests = &active[0];
  hosts[1].active_requests = &active[1];
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 1000);
  EXPECT_EQ(counts[1], 1000);
  // Huge counts and weights compare without overflow.
  active[0] = UINT32_MAX;
  active[1] = UINT32_MAX - 1;
  hosts[0].weight = UINT32_MAX;
  hosts[1].weight = UINT32_MAX;
  counts = countPicks(*lb, hosts, 100);
  EXPECT_EQ(counts[1], 100);
}

TEST(LeastRequestTest, ExcludedHostIsNotOneOfTheChoices) {
  std::array<std::atomic<uint32_t>, 3> active{};
  active[0] = 5;
  active[1] = 0;  // the least loaded, but excluded
  active[2] = 5;
  auto hosts = hostsWithWeights({1, 1, 1});
  for (size_t i = 0; i < hosts.size(); ++i) hosts[i].active_requests = &active[i];
  auto lb = createLoadBalancer(LbPolicy::LeastRequest, hosts.size(), 0);
  std::vector<int> counts = countPicks(*lb, hosts, 2000, /*exclude=*/1);
  EXPECT_EQ(counts[1], 0);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[2], 0);
}

}  // namespace
}  // namespace remora::lb
