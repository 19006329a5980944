#include "lb/load_balancer.h"

#include <vector>

namespace remora::lb {
namespace {

bool eligible(const LbHost& host) { return host.available && host.weight > 0; }

// The fallback every policy shares: when nothing but the excluded endpoint is available, a retry
// to the same endpoint is better than no try at all.
int excludedOrNone(std::span<const LbHost> hosts, int exclude) {
  if (exclude >= 0 && static_cast<size_t>(exclude) < hosts.size() && eligible(hosts[exclude])) {
    return exclude;
  }
  return -1;
}

// Sum of the weights of the endpoints a pick may choose (available, weight > 0, not excluded).
uint64_t candidateWeight(std::span<const LbHost> hosts, int exclude, size_t& count) {
  uint64_t total = 0;
  count = 0;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!eligible(hosts[i]) || static_cast<int>(i) == exclude) continue;
    total += hosts[i].weight;
    ++count;
  }
  return total;
}

// Index of the candidate whose cumulative weight range holds `point` (< the candidates' total).
// `skip` is one more index to leave out (least_request's first choice).
int weightedAt(std::span<const LbHost> hosts, int exclude, int skip, uint64_t point) {
  int last = -1;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const int index = static_cast<int>(i);
    if (!eligible(hosts[i]) || index == exclude || index == skip) continue;
    if (point < hosts[i].weight) return index;
    point -= hosts[i].weight;
    last = index;
  }
  return last;  // unreachable while point < total; keeps the result valid regardless
}

// splitmix64's finalizer: a second, independent-looking value from the caller's one random value.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint32_t activeRequests(const LbHost& host) {
  return host.active_requests == nullptr ? 0
                                         : host.active_requests->load(std::memory_order_relaxed);
}

// Plain round robin: weights only decide eligibility (0 = never).
class RoundRobinLoadBalancer : public LoadBalancer {
 public:
  RoundRobinLoadBalancer(size_t host_count, size_t worker_index)
      : next_(host_count == 0 ? 0 : worker_index % host_count) {}

  int pick(std::span<const LbHost> hosts, int exclude, uint64_t) override {
    const size_t n = hosts.size();
    if (n == 0) return -1;
    const size_t start = next_ % n;
    for (size_t step = 0; step < n; ++step) {
      size_t i = start + step;
      if (i >= n) i -= n;
      if (!eligible(hosts[i]) || static_cast<int>(i) == exclude) continue;
      next_ = i + 1;
      return static_cast<int>(i);
    }
    const int fallback = excludedOrNone(hosts, exclude);
    if (fallback >= 0) next_ = static_cast<size_t>(fallback) + 1;
    return fallback;
  }

 private:
  size_t next_;  // where the next scan starts; may equal the host count (wraps on use)
};

// nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every candidate gains its
// weight, the one with the highest current weight wins and pays back the candidates' total. Over
// one cycle each endpoint is chosen exactly weight times, interleaved rather than in bursts
// (5:1:1 gives a a b a c a a). Endpoints that are not candidates in a pick keep their current
// weight untouched, so the others' sequence shifts no more than their absence forces, and the sum
// of all current weights stays 0, which bounds every value by the total weight.
class SmoothWeightedRoundRobinLoadBalancer : public LoadBalancer {
 public:
  SmoothWeightedRoundRobinLoadBalancer(size_t host_count, size_t worker_index)
      : current_(host_count, 0), warmup_picks_(worker_index) {}

  int pick(std::span<const LbHost> hosts, int exclude, uint64_t) override {
    if (current_.size() != hosts.size()) current_.assign(hosts.size(), 0);
    // Workers start at different points of the cycle (worker k as if it had already made k
    // picks), so they do not all hit the heaviest endpoint at once. Done on the first pick
    // because weights are only known then; it costs O(hosts * worker_index) once per rebuild.
    for (; warmup_picks_ > 0; --warmup_picks_) pickOnce(hosts, -1);
    return pickOnce(hosts, exclude);
  }

 private:
  int pickOnce(std::span<const LbHost> hosts, int exclude) {
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (!eligible(hosts[i]) || static_cast<int>(i) == exclude) continue;
      current_[i] += hosts[i].weight;
      total += hosts[i].weight;
      // Strictly greater: ties go to the first endpoint, as in nginx.
      if (best < 0 || current_[i] > current_[best]) best = static_cast<int>(i);
    }
    if (best < 0) return excludedOrNone(hosts, exclude);
    current_[best] -= total;
    return best;
  }

  std::vector<int64_t> current_;  // int64: a total of uint32 weights does not fit 32 bits
  size_t warmup_picks_;
};

// Weighted random: each candidate with probability weight / total.
class RandomLoadBalancer : public LoadBalancer {
 public:
  int pick(std::span<const LbHost> hosts, int exclude, uint64_t random) override {
    size_t count = 0;
    const uint64_t total = candidateWeight(hosts, exclude, count);
    if (total == 0) return excludedOrNone(hosts, exclude);
    return weightedAt(hosts, exclude, -1, random % total);
  }
};

// Power of two choices, weighted. Two distinct candidates are drawn with probability
// proportional to weight and the one with fewer requests in flight per unit of weight wins (ties
// go to the first draw). With no load every comparison ties, so the traffic split equals the
// weights exactly; under load, active/weight steers towards each endpoint carrying in-flight
// requests in proportion to its weight. With equal weights this is plain P2C. Envoy uses P2C
// only for equal weights and an EDF schedule otherwise; one rule for both keeps a pick O(hosts)
// with no schedule to rebuild.
class LeastRequestLoadBalancer : public LoadBalancer {
 public:
  int pick(std::span<const LbHost> hosts, int exclude, uint64_t random) override {
    size_t count = 0;
    const uint64_t total = candidateWeight(hosts, exclude, count);
    if (total == 0) return excludedOrNone(hosts, exclude);
    const int first = weightedAt(hosts, exclude, -1, random % total);
    if (count == 1) return first;
    const uint64_t rest = total - hosts[first].weight;
    const int second = weightedAt(hosts, exclude, first, mix(random) % rest);
    // active_second / weight_second < active_first / weight_first, without division; a product
    // of two uint32 values always fits in uint64.
    const uint64_t lhs = uint64_t{activeRequests(hosts[second])} * hosts[first].weight;
    const uint64_t rhs = uint64_t{activeRequests(hosts[first])} * hosts[second].weight;
    return lhs < rhs ? second : first;
  }
};

}  // namespace

LoadBalancerPtr createLoadBalancer(config::LbPolicy policy, size_t host_count,
                                   size_t worker_index) {
  switch (policy) {
    case config::LbPolicy::RoundRobin:
      return std::make_unique<RoundRobinLoadBalancer>(host_count, worker_index);
    case config::LbPolicy::WeightedRoundRobin:
      return std::make_unique<SmoothWeightedRoundRobinLoadBalancer>(host_count, worker_index);
    case config::LbPolicy::Random:
      return std::make_unique<RandomLoadBalancer>();
    case config::LbPolicy::LeastRequest:
      return std::make_unique<LeastRequestLoadBalancer>();
  }
  return std::make_unique<RoundRobinLoadBalancer>(host_count, worker_index);
}

}  // namespace remora::lb
