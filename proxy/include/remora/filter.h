#pragma once

// The request filter chain (STYLE.md: one filter, one interface).
//
// After the route is matched, each request runs through the filters its route and cluster enable,
// in registration order, and then through the router (retries, load balancing, circuit breakers,
// timeouts), which is the chain's terminal stage. A filter sees the request headers once and
// answers Continue (next filter) or Stop (the filter will either resume the chain through
// StreamFilterCallbacks::continueChain() or end the request with a local reply or the route's
// fallback). Filters are socket-unaware: they get time, timers and thread hand-off from the
// callbacks, so a unit test drives them with a mock (tests/mocks/mock_filter_callbacks.h).
//
// Adding a filter = one folder filters/<name>/ with a FilterFactory, plus one line in
// filters/registry.cc.

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "remora/time_source.h"

namespace remora {

namespace http {
class HeaderMap;
}
struct ClusterInfo;
struct RouteInfo;
enum class FallbackReason;

enum class FilterStatus { Continue, Stop };

// A one-shot timer on the request's event loop. Destroying it cancels it.
class FilterTimer {
 public:
  virtual ~FilterTimer() = default;
  virtual void enable(std::chrono::milliseconds delay) = 0;
  virtual void disable() = 0;
};
using FilterTimerPtr = std::unique_ptr<FilterTimer>;

class StreamFilterCallbacks {
 public:
  virtual ~StreamFilterCallbacks() = default;
  // Resumes the chain after this filter returned Stop. Must be called on the request's thread.
  virtual void continueChain() = 0;
  // Ends the request: the route's fallback answers if it has one (with x-remora-fallback:
  // <reason>), otherwise a local reply with `status` and `detail` as the body.
  virtual void sendFallbackOrError(FallbackReason reason, int status, std::string_view detail) = 0;
  // A function that runs a task on the request's thread, callable from any thread and also after
  // the request ended (it is bound to the worker, not to the request). Tasks must check that what
  // they refer to still exists; see filters/bulkhead for the pattern.
  virtual std::function<void(std::function<void()>)> poster() = 0;
  virtual FilterTimerPtr createTimer(std::function<void()> cb) = 0;
  virtual TimeSource& timeSource() = 0;
  virtual const http::HeaderMap& requestHeaders() const = 0;
  virtual const RouteInfo& route() const = 0;
  virtual const ClusterInfo& cluster() const = 0;
};

class StreamFilter {
 public:
  virtual ~StreamFilter() = default;
  void setCallbacks(StreamFilterCallbacks& callbacks) { callbacks_ = &callbacks; }
  virtual FilterStatus onRequestHeaders() { return FilterStatus::Continue; }
  // The request ended (answered, failed or abandoned): give back what was taken. Called exactly
  // once, also when the filter never ran or stopped the chain.
  virtual void onStreamComplete() {}

 protected:
  StreamFilterCallbacks* callbacks_ = nullptr;
};
using StreamFilterPtr = std::unique_ptr<StreamFilter>;

// Builds a filter per request where the route/cluster configures it. Factories are stateless and
// listed, in chain order, in filters/registry.cc.
class StreamFilterFactory {
 public:
  virtual ~StreamFilterFactory() = default;
  virtual const char* name() const = 0;
  // nullptr: this filter does not apply to requests on `route` to `cluster`.
  virtual StreamFilterPtr create(const RouteInfo& route, const ClusterInfo& cluster) const = 0;
};

}  // namespace remora
