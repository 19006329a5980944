#pragma once

// ActiveStream: one request on a downstream connection, from its headers to the end of its
// response. After the route is matched, the request runs through the filter chain
// (remora/filter.h), then through the router stage here: it picks an endpoint through the
// cluster's load balancer and circuit breakers, drives each try through the endpoint's pool with
// per-try timeouts, retries with backoff under the retry budget and the cluster's max_retries,
// streams bodies both ways with flow control, and answers with the route's fallback or a local
// reply when the request cannot be proxied (contract section 3).

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/headers.h"
#include "request_head.h"
#include "lb/circuit_breaker.h"
#include "remora/filter.h"
#include "resilience/resource_limits.h"
#include "resilience/retry.h"
#include "snapshot.h"
#include "thread_recycled.h"
#include "timeout_queue.h"
#include "upstream.h"
#include "uv_util.h"
#include "worker.h"

namespace remora {

class DownstreamConnection;

// The registered filter factories, in chain order (filters/registry.cc).
const std::vector<const StreamFilterFactory*>& registeredFilterFactories();

// Streams come and go at the request rate, always on their worker's thread: freed ones are kept
// per thread and reused (ThreadRecycled), so creating one does not call malloc.
class ActiveStream : public UpstreamClient,
                     public StreamFilterCallbacks,
                     public Deletable,
                     public ThreadRecycled<ActiveStream> {
 public:
  // The chain's filters are held inline (no vector to allocate per request); the registry has
  // fewer (a test checks), and start() refuses to run past this.
  static constexpr size_t kMaxFilters = 8;

  ActiveStream(DownstreamConnection& conn, SnapshotConstSharedPtr snapshot,
               const ListenerInfo& listener, RequestHead&& head);
  ~ActiveStream() override;

  void start();
  void onRequestBody(const char* data, size_t len);
  void onRequestComplete();
  // The parse of the client's latest bytes ended: send what was gathered for the upstream.
  void flushUpstream();
  void onRouteTimeout();
  // The downstream connection failed (reset, write error): give up on the request.
  void onDownstreamReset(const std::string& reason);
  // The downstream write queue drained below its low watermark.
  void onDownstreamWritable();
  // An upgraded connection (a 101 was relayed): the client's bytes, and its half-close.
  void onTunnelData(const char* data, size_t len);
  void onTunnelClientEof();
  bool complete() const { return complete_; }
  bool responseStarted() const { return response_started_; }
  // A local reply (no fallback) if nothing was sent yet, e.g. for a body that is not valid
  // chunked encoding.
  void sendLocalReply(int status, std::string_view reason, bool close_connection);

  // StreamFilterCallbacks
  void continueChain() override;
  void sendFallbackOrError(FallbackReason reason, int status, std::string_view detail) override;
  std::function<void(std::function<void()>)> poster() override;
  FilterTimerPtr createTimer(std::function<void()> cb) override;
  TimeSource& timeSource() override { return RealTimeSource::instance(); }
  const http::HeaderMap& requestHeaders() const override { return head_.headers; }
  const RouteInfo& route() const override { return *route_; }
  const ClusterInfo& cluster() const override { return *cluster_; }

  // UpstreamClient
  void onPoolReady(UpstreamConnection& conn) override;
  void onPoolFailure(UpstreamFailure reason, const std::string& detail) override;
  void onResponseHeaders(int status, const http::HeaderBlock& headers, bool chunked,
                         bool has_content_length, uint64_t content_length) override;
  void onResponseBody(const char* data, size_t len) override;
  void onResponseComplete() override;
  void onUpstreamReset(UpstreamFailure reason, const std::string& detail,
                       bool response_started) override;
  void onUpstreamWritable() override;
  void onUpstreamReadComplete() override;
  void onUpgradeData(const char* data, size_t len) override;
  void onUpgradeEnd() override;

 private:
  enum class Framing { None, ContentLength, Chunked, Close };

  void runChain();
  void startRouter();
  void startAttempt();
  void connectAttempt(bool force_new_connection);
  // Ends the current try: reports its outcome to the endpoint's breaker (`success` or, when
  // `has_outcome` is false, just gives back a probe slot) and releases what it held.
  void endAttempt(bool success, bool has_outcome = true);
  // A try failed before any response reached the client: retry if the policy allows, otherwise
  // answer with the fallback or `status`.
  void onTryFailed(resilience::FailureKind kind, int status, const std::string& detail);
  bool retryAllowed();
  void scheduleRetry();
  // The try's per_try_timeout expired (per_try_timeout_'s callback).
  void onPerTryTimeout();
  void buildUpstreamHead();
  // The 101 to the request's upgrade is relayed (onResponseHeaders): the connection becomes a
  // tunnel.
  void startTunnel();
  void sendBody();
  void sendBodyEnd();
  void writeUpstream(const uv_buf_t* bufs, unsigned n);
  void writeUpstreamNow(const uv_buf_t* bufs, unsigned n);
  void cleanupUpstream();
  // Common start of answering locally: drop the upstream side of the request. Returns true when
  // the request is over already (answered, or a response had started and the connection closed).
  bool abandonUpstreamForLocalAnswer();
  // Writes response bytes to the client, after the response head if it is still held back.
  void writeDownstream(const uv_buf_t* bufs, unsigned n);
  // Flow control towards the client: stop reading the upstream while the client lags behind.
  void pauseUpstreamIfClientBehind();
  void flushResponseHead();
  void sendResponse(int status, std::string_view body, const http::HeaderMap* extra_headers,
                    bool close_connection);
  void finish(bool close_connection);
  void completeFilters();
  const config::RetryPolicy* retryPolicy() const;

  DownstreamConnection& conn_;
  SnapshotConstSharedPtr snapshot_;
  const ListenerInfo& listener_;
  RequestHead head_;
  std::chrono::steady_clock::time_point start_time_;
  std::string request_id_;  // buffers from the worker's recycler, given back at the end

  const RouteInfo* route_ = nullptr;
  const ClusterInfo* cluster_ = nullptr;

  // Filter chain.
  std::array<StreamFilterPtr, kMaxFilters> filters_;
  size_t filter_count_ = 0;
  size_t next_filter_ = 0;
  bool in_chain_ = false;
  bool chain_resumed_ = false;
  bool filters_completed_ = false;

  // Router.
  bool router_started_ = false;
  resilience::ResourceGuard request_slot_;  // the cluster's max_requests
  resilience::ResourceGuard retry_slot_;    // the cluster's max_retries, while a retry runs
  const EndpointInfo* endpoint_ = nullptr;
  int endpoint_index_ = -1;
  lb::CircuitBreaker::Permit permit_;
  bool attempt_active_ = false;
  ConnectionPool* pool_ = nullptr;
  UpstreamConnection* upstream_ = nullptr;
  std::shared_ptr<PendingRequest> pending_;
  uint32_t attempts_ = 0;
  bool upstream_reused_ = false;  // the current try's connection came from the idle pool
  bool stale_retry_done_ = false;
  bool counted_active_ = false;
  bool retries_disabled_ = false;  // answering from the fallback cluster: one try only
  TimeoutQueue::Entry per_try_timeout_{
      [](void* self) { static_cast<ActiveStream*>(self)->onPerTryTimeout(); }, this};
  std::unique_ptr<Timer> backoff_timer_;  // jittered delays: a timer of its own, made on a retry
  std::optional<FallbackReason> fallback_reason_;  // set when a fallback cluster answers

  std::string upstream_head_;
  // A request with a body gathers its upstream writes here, up to kUpstreamCorkBytes: the head
  // and what was received so far when it gets a connection, plus, while the client's read is
  // still being parsed, the rest of that read. They go out as one write at the end of the parse
  // (flushUpstream), or at once when no parse is running: a small POST's head and body, and a
  // chunked body's last chunk, leave in one TCP segment instead of two or three.
  std::string upstream_cork_;
  bool upstream_corked_ = false;
  // The request body received and not yet sent, or all of it while it is kept for a replay (a
  // buffer from the worker's recycler: a small POST allocates nothing).
  std::string body_;
  size_t body_sent_ = 0;  // bytes of body_ already written to the current upstream
  uint64_t body_received_ = 0;
  uint64_t replay_limit_ = 64 * 1024;
  bool body_replayable_ = true;   // body_ still holds every chunk received
  bool request_complete_ = false;  // llhttp's on_message_complete came
  // The client has sent the whole request, so the connection can carry the next one. A request
  // without a body (RFC 9112 6.3) has once its head is parsed: llhttp reports its end only after
  // the head's callback, from which local replies (404, 429, 503) are sent.
  bool requestEnded() const { return request_complete_ || !head_.hasBody(); }

  bool response_started_ = false;
  bool tunnel_ = false;  // startTunnel() ran: bytes are relayed as they are, both ways
  bool close_after_response_ = false;  // the response head said "connection: close"
  // The upstream's response head, serialized for the client. It waits for the body bytes (or the
  // end) parsed from the same upstream read, gathered behind it up to kCoalesceBodyBytes, so a
  // small response, chunked or not, leaves in one write instead of two or three: a syscall and a
  // TCP segment less per request.
  std::string response_head_;
  size_t response_gathered_ = 0;  // body bytes appended to response_head_
  bool response_head_pending_ = false;
  bool complete_ = false;
  Framing framing_ = Framing::None;
  int response_status_ = 0;
  uint64_t bytes_sent_ = 0;
  std::string local_reason_;
};

}  // namespace remora
