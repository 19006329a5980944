#pragma once

// Endpoint selection for one cluster (contract section 2, `lb_policy`).
//
// A load balancer is owned by one worker for one cluster and is rebuilt whenever the config
// snapshot changes, so its own state needs no locks. It knows nothing about sockets, health checks
// or breakers: the caller describes each endpoint at pick time (LbHost) and the balancer only
// chooses among those marked available. Every pick is O(hosts) at most and never allocates; the
// caller supplies the randomness, which keeps the policies deterministic under test.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "remora/config/config.h"

namespace remora::lb {

// One endpoint as the load balancer sees it when picking.
struct LbHost {
  uint32_t weight = 1;    // 0 = never picked
  bool available = true;  // false (breaker open, unhealthy, ...) = never picked
  // Requests in flight to this endpoint, summed over all workers (least_request only). Null reads
  // as 0.
  const std::atomic<uint32_t>* active_requests = nullptr;
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;

  // Returns the index in `hosts` of the chosen endpoint, or -1 when no endpoint is available (an
  // available endpoint has available == true and weight > 0). `exclude` is an index to avoid
  // unless it is the only available endpoint (a retry should reach a different endpoint, but
  // reaching the same one beats failing); -1 for none. `random` is a uniformly distributed 64-bit
  // value; only random and least_request use it. `hosts` must keep the size given at creation and
  // the same order (a different size resets the balancer's state, and that one pick allocates).
  virtual int pick(std::span<const LbHost> hosts, int exclude, uint64_t random) = 0;
};

using LoadBalancerPtr = std::unique_ptr<LoadBalancer>;

// `worker_index` spreads the workers' round-robin cycles so that N workers starting together do
// not all send their first request to the same endpoint.
LoadBalancerPtr createLoadBalancer(config::LbPolicy policy, size_t host_count, size_t worker_index);

}  // namespace remora::lb
