#pragma once

// Active HTTP health checks for one cluster, run on the main thread's loop: every `interval`, a
// GET of `path` to each endpoint on a fresh connection; 2xx within `timeout` is a pass. After
// `unhealthy_threshold` consecutive failures an endpoint leaves rotation, after `healthy_threshold`
// consecutive passes it comes back. Endpoints start healthy (as in Envoy's default of not waiting
// for a first check): a proxy that restarts must not refuse traffic until checks complete.
//
// The result is published through a callback (the proxy flips an atomic on the endpoint's shared
// runtime state, which every worker reads when it picks an endpoint).

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "remora/config/config.h"
#include "snapshot.h"

namespace remora {

class HealthChecker {
 public:
  // Called on the main thread when an endpoint changes state.
  using Callback = std::function<void(const std::string& endpoint_key, bool healthy)>;

  HealthChecker(uv_loop_t* loop, std::string cluster, Callback callback);
  ~HealthChecker();

  void setCallback(Callback callback) { callback_ = std::move(callback); }
  // Starts checking `endpoints` with `config`. Endpoints already checked keep their state and
  // schedule; removed ones stop.
  void update(const config::HealthCheck& config, const std::vector<EndpointInfo>& endpoints);
  // Stops every check (the object may be destroyed right after).
  void stop();

 private:
  struct Target;
  struct Probe;
  void schedule(Target& t, uint64_t delay_ms);
  void startProbe(Target& t);
  void finishProbe(Target& t, bool ok, const std::string& why);

  uv_loop_t* loop_;
  std::string cluster_;
  Callback callback_;
  config::HealthCheck config_;
  std::map<std::string, std::unique_ptr<Target>> targets_;
};

}  // namespace remora
