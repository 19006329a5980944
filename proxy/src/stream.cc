#include "stream.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>
#include <string_view>

#include "access_log.h"
#include "downstream.h"

namespace remora {

using namespace std::string_view_literals;  // the head builders append literals with known sizes

namespace {

// Flow control watermark: stop reading one side when the other side has this much queued.
constexpr size_t kHighWatermark = 256 * 1024;
// At most this many bytes of upstream writes wait for the end of a client read (upstream_cork_).
constexpr size_t kUpstreamCorkBytes = 16 * 1024;
// Response bytes parsed from the upstream read that holds the head, up to this many, are copied
// behind the head and written with it (see writeDownstream).
constexpr size_t kCoalesceBodyBytes = 2048;
// Without a retry policy, request bodies up to this size are still kept so the request can be
// replayed on a fresh connection when a pooled connection turns out to be closed by the upstream.
constexpr uint64_t kStaleReplayLimit = 64 * 1024;

// Write gathering (upstream_cork_, response_head_): appends `bufs` to `gathered` while `used`
// plus their length stays within `limit`, and returns true. Past it, sends what is gathered and
// `bufs` uncopied, in one writev when that is at most four pieces, through `write(bufs, n)`, and
// returns false: the caller stops gathering.
template <class Write>
bool gatherOrWrite(std::string& gathered, size_t& used, size_t limit, const uv_buf_t* bufs,
                   unsigned n, Write&& write) {
  size_t len = 0;
  for (unsigned i = 0; i < n; ++i) len += bufs[i].len;
  if (used + len <= limit) {
    for (unsigned i = 0; i < n; ++i) gathered.append(bufs[i].base, bufs[i].len);
    used += len;
    return true;
  }
  uv_buf_t all[4];
  all[0] = uv_buf_init(gathered.data(), static_cast<unsigned>(gathered.size()));
  if (gathered.empty()) {
    write(bufs, n);
  } else if (n >= std::size(all)) {
    write(all, 1);
    write(bufs, n);
  } else {
    std::copy(bufs, bufs + n, all + 1);
    write(all, n + 1);
  }
  return false;
}
// How many endpoints a pick may try when breakers refuse (another worker took the last probe).
constexpr int kMaxPickRefusals = 3;

std::string rfc3339Now() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// One chunk of a chunked body as three buffers for a vectored write: size line, data, CRLF.
struct ChunkFrame {
  ChunkFrame(const char* data, size_t len) {
    int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    bufs[0] = uv_buf_init(size_line, static_cast<unsigned>(n));
    bufs[1] = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    bufs[2] = uv_buf_init(const_cast<char*>("\r\n"), 2);
  }
  char size_line[24];
  uv_buf_t bufs[3];
};

const char* failureName(UpstreamFailure f) {
  switch (f) {
    case UpstreamFailure::ConnectFailure: return "connect failure";
    case UpstreamFailure::ConnectTimeout: return "connect timeout";
    case UpstreamFailure::PoolOverflow: return "connection pool overflow";
    case UpstreamFailure::Reset: return "reset";
    case UpstreamFailure::ProtocolError: return "protocol error";
  }
  return "failure";
}

}  // namespace

ActiveStream::ActiveStream(DownstreamConnection& conn, SnapshotConstSharedPtr snapshot,
                           const ListenerInfo& listener, RequestHead&& head)
    : conn_(conn),
      snapshot_(std::move(snapshot)),
      listener_(listener),
      head_(std::move(head)),
      start_time_(std::chrono::steady_clock::now()) {}

ActiveStream::~ActiveStream() {
  if (tunnel_) listener_.stats->downstream_upgrades_active.sub(1);
  cleanupUpstream();
  if (attempt_active_) endAttempt(false, false);
  // A stream that ended by closing the connection mid-response (route timeout, upstream reset)
  // did not pass through finish(): give back its place in the in-flight gauge here.
  if (counted_active_) cluster_->stats->upstream_requests_active.sub(1);
  completeFilters();
  Worker& w = conn_.worker();
  w.recycleBuffer(std::move(request_id_));
  w.recycleBuffer(std::move(upstream_head_));
  w.recycleBuffer(std::move(response_head_));
  if (upstream_cork_.capacity() > std::string().capacity()) {  // only requests with a body
    w.recycleBuffer(std::move(upstream_cork_));
  }
  if (body_.capacity() > std::string().capacity()) w.recycleBuffer(std::move(body_));
  w.recycleRequestHead(std::move(head_));
}

const config::RetryPolicy* ActiveStream::retryPolicy() const {
  if (retries_disabled_ || route_ == nullptr || !route_->config->retry) return nullptr;
  return &*route_->config->retry;
}

void ActiveStream::start() {
  if (head_.http_minor >= 1 && head_.headers.get("host") == nullptr) {
    sendLocalReply(400, "HTTP/1.1 request without a Host header", true);
    return;
  }
  route_ = matchRoute(listener_, head_.method, head_.path(), head_.headers, conn_.peerIdentity());
  if (route_ == nullptr) {
    sendLocalReply(404, "no route for " + head_.method + " " + std::string(head_.path()), false);
    return;
  }
  if (head_.upgrade && route_->config->upgrades &&
      !http::upgradeOffersOnly(head_.headers, *route_->config->upgrades)) {
    head_.upgrade = false;  // not on this route: Upgrade is dropped, the request goes on as usual
  }
  uint64_t r = conn_.worker().random();
  cluster_ = route_->pickCluster(static_cast<uint32_t>(r >> 32));
  conn_.armRouteTimer(route_->config->timeout);
  if (const config::RetryPolicy* p = retryPolicy()) {
    replay_limit_ = static_cast<uint64_t>(p->buffer_limit_kb) * 1024;
  }

  // The client's id when it sent one (the first that is not empty), else a new one: the id of
  // the logs, and the one x-request-id the upstream gets (buildUpstreamHead).
  request_id_ = conn_.worker().takeBuffer();
  for (const auto& [name, value] : head_.headers) {
    if (name == "x-request-id" && !value.empty()) {
      request_id_.assign(value);
      break;
    }
  }
  if (request_id_.empty()) conn_.worker().newRequestId(request_id_);
  if (const std::string* expect = head_.headers.get("expect");
      expect != nullptr && http::equalsIgnoreCase(*expect, "100-continue")) {
    // Answer 100-continue here (as Envoy does) rather than forwarding the expectation: the
    // upstream may not implement it, and the proxy streams the body anyway.
    head_.headers.remove("expect");
    if (head_.http_minor >= 1 && head_.hasBody()) {
      static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      uv_buf_t b = uv_buf_init(const_cast<char*>(kContinue), sizeof(kContinue) - 1);
      conn_.write(&b, 1);
    }
  }

  for (const StreamFilterFactory* factory : registeredFilterFactories()) {
    StreamFilterPtr f = factory->create(*route_, *cluster_);
    if (f) {
      if (filter_count_ == kMaxFilters) {
        // A build with more registered filters than ActiveStream holds: a bug, caught by
        // FilterRegistryTest. Refuse the request rather than skip a filter silently.
        spdlog::error("request {}: more than {} filters in the chain; raise "
                      "ActiveStream::kMaxFilters",
                      request_id_, kMaxFilters);
        sendLocalReply(500, "filter chain longer than this build supports", false);
        return;
      }
      f->setCallbacks(*this);
      filters_[filter_count_++] = std::move(f);
    }
  }
  runChain();
}

// --- Filter chain ----------------------------------------------------------------------------

void ActiveStream::runChain() {
  while (!complete_) {
    if (next_filter_ == filter_count_) {
      startRouter();
      return;
    }
    StreamFilter& f = *filters_[next_filter_++];
    in_chain_ = true;
    chain_resumed_ = false;
    FilterStatus status = f.onRequestHeaders();
    in_chain_ = false;
    if (status == FilterStatus::Stop && !chain_resumed_) return;
  }
}

void ActiveStream::continueChain() {
  if (in_chain_) {
    // Resumed from inside onRequestHeaders(): the loop in runChain() carries on.
    chain_resumed_ = true;
    return;
  }
  runChain();
}

std::function<void(std::function<void()>)> ActiveStream::poster() {
  Worker* worker = &conn_.worker();
  return [worker](std::function<void()> fn) { worker->post(std::move(fn)); };
}

FilterTimerPtr ActiveStream::createTimer(std::function<void()> cb) {
  return std::make_unique<Timer>(conn_.worker().loop(), std::move(cb));
}

void ActiveStream::completeFilters() {
  if (filters_completed_) return;
  filters_completed_ = true;
  for (size_t i = 0; i < filter_count_; ++i) filters_[i]->onStreamComplete();
}

// --- Router ----------------------------------------------------------------------------------

void ActiveStream::startRouter() {
  router_started_ = true;
  if (route_->retry_budget) route_->retry_budget->recordRequest();
  request_slot_ = resilience::ResourceGuard::tryAcquire(*cluster_->limits,
                                                        resilience::ResourceKind::Requests);
  if (!request_slot_) {
    sendLocalReply(503, "cluster " + cluster_->name() + " is at limits.max_requests (" +
                            std::to_string(cluster_->config->limits.max_requests) + ")",
                   false);
    return;
  }
  buildUpstreamHead();
  cluster_->stats->upstream_requests_active.add(1);
  counted_active_ = true;
  startAttempt();
}

void ActiveStream::startAttempt() {
  // A retry avoids the endpoint that just failed when another one is available.
  int exclude = attempts_ > 0 ? endpoint_index_ : -1;
  std::vector<int> refused;
  int idx = -1;
  for (int tries = 0; tries <= kMaxPickRefusals; ++tries) {
    idx = conn_.worker().pickEndpoint(*cluster_, exclude, refused);
    if (idx < 0) break;
    const EndpointInfo& e = cluster_->endpoints()[static_cast<size_t>(idx)];
    if (!e.breaker) {
      permit_ = {};
      break;
    }
    permit_ = e.breaker->tryAcquire();
    if (permit_) break;
    refused.push_back(idx);  // lost the last half-open slot to another worker: pick again
    idx = -1;
  }
  if (idx < 0) {
    // Nothing to send to: all endpoints unhealthy, or every breaker open.
    size_t healthy = 0;
    for (const auto& e : cluster_->endpoints()) {
      if (e.runtime->healthy.load(std::memory_order_relaxed)) ++healthy;
    }
    if (healthy == 0) {
      sendFallbackOrError(FallbackReason::NoHealthyEndpoint, 503,
                          "no healthy endpoint in cluster " + cluster_->name());
    } else {
      sendFallbackOrError(FallbackReason::CircuitOpen, 503,
                          "circuit breaker open for every endpoint of cluster " +
                              cluster_->name());
    }
    return;
  }
  endpoint_index_ = idx;
  endpoint_ = &cluster_->endpoints()[static_cast<size_t>(idx)];
  ++attempts_;
  if (attempts_ > 1) cluster_->stats->upstream_retries.inc();
  attempt_active_ = true;
  endpoint_->runtime->active_requests.fetch_add(1, std::memory_order_relaxed);
  if (const config::RetryPolicy* p = retryPolicy(); p != nullptr && p->per_try_timeout) {
    per_try_timeout_.arm(conn_.worker().timeouts(), *p->per_try_timeout);
  }
  connectAttempt(false);
}

void ActiveStream::onPerTryTimeout() {
  if (complete_ || !attempt_active_) return;
  cluster_->stats->upstream_timeouts.inc();
  cleanupUpstream();
  endAttempt(false);
  onTryFailed(resilience::FailureKind::Timeout, 504,
              "upstream " + endpoint_->key + " did not answer within per_try_timeout " +
                  std::to_string(route_->config->retry->per_try_timeout->count()) + "ms");
}

void ActiveStream::connectAttempt(bool force_new_connection) {
  pool_ = &conn_.worker().pool(*endpoint_);
  body_sent_ = 0;
  pending_ = pool_->newStream(*this, *cluster_, force_new_connection);
}

void ActiveStream::endAttempt(bool success, bool has_outcome) {
  if (!attempt_active_) return;
  attempt_active_ = false;
  per_try_timeout_.cancel();
  endpoint_->runtime->active_requests.fetch_sub(1, std::memory_order_relaxed);
  if (endpoint_->breaker && permit_) {
    if (has_outcome) {
      endpoint_->breaker->onResult(permit_, success);
    } else {
      endpoint_->breaker->release(permit_);
    }
  }
  permit_ = {};
  retry_slot_ = {};
}

bool ActiveStream::retryAllowed() {
  const config::RetryPolicy* p = retryPolicy();
  if (p == nullptr || !resilience::hasAttemptsLeft(*p, attempts_)) return false;
  if (!resilience::methodRetriable(*p, head_.method)) return false;
  if (!body_replayable_) return false;  // larger than buffer_limit_kb: streamed, not kept
  if (route_->retry_budget && !route_->retry_budget->tryAcquireRetry()) {
    spdlog::debug("request {}: retry budget of route {} exhausted; not retrying", request_id_,
                  route_->config->name);
    return false;
  }
  retry_slot_ = resilience::ResourceGuard::tryAcquire(*cluster_->limits,
                                                      resilience::ResourceKind::Retries);
  if (!retry_slot_) {
    spdlog::debug("request {}: cluster {} is at limits.max_retries; not retrying", request_id_,
                  cluster_->name());
    return false;
  }
  return true;
}

void ActiveStream::scheduleRetry() {
  const config::RetryPolicy& p = *retryPolicy();
  auto delay = resilience::backoffDelay(p, attempts_, conn_.worker().random());
  if (!backoff_timer_) {
    backoff_timer_ = std::make_unique<Timer>(conn_.worker().loop(), [this] {
      if (complete_) return;
      // The slot taken in retryAllowed() covers this retry; startAttempt() keeps it.
      resilience::ResourceGuard slot = std::move(retry_slot_);
      startAttempt();
      if (attempt_active_) retry_slot_ = std::move(slot);
    });
  }
  backoff_timer_->enable(delay);
}

void ActiveStream::onTryFailed(resilience::FailureKind kind, int status,
                               const std::string& detail) {
  spdlog::debug("request {}: try {} failed: {}", request_id_, attempts_, detail);
  const config::RetryPolicy* p = retryPolicy();
  if (p != nullptr && resilience::shouldRetryFailure(*p, kind) && retryAllowed()) {
    scheduleRetry();
    return;
  }
  sendFallbackOrError(kind == resilience::FailureKind::Timeout ? FallbackReason::Timeout
                                                               : FallbackReason::RetriesExhausted,
                      status, detail);
}

void ActiveStream::buildUpstreamHead() {
  // One pass over the request's headers: the forwarded ones are copied as they are met, and what
  // the proxy adds after them is noted on the way.
  std::string& out = upstream_head_;
  out = conn_.worker().takeBuffer();
  out.append(head_.method).append(" "sv).append(head_.url).append(" HTTP/1.1\r\n"sv);
  bool has_xff = false;
  bool has_proto = false;
  bool has_host = false;
  http::appendForwarded(head_.headers, out, [&](std::string_view name, const std::string&) {
    switch (name.size()) {
      case 4:
        has_host = has_host || name == "host";
        return false;
      case 12:
        return name == "x-request-id";  // replaced by request_id_, below
      case 15:
        if (name != "x-forwarded-for") return false;
        has_xff = true;
        return true;  // joined into ours below
      case 17:
        has_proto = has_proto || name == "x-forwarded-proto";
        return name == "x-remora-priority";  // a proxy-to-proxy hint, not for the application
      case 23:
        // Only the proxy vouches for a client certificate: whatever the client sent is dropped
        // (Envoy's SANITIZE_SET), and the verified certificate of an mTLS connection is
        // described instead.
        return name == "x-forwarded-client-cert";
      default:
        return false;
    }
  });
  out.append("x-forwarded-for: "sv);
  if (has_xff) {
    // The addresses earlier hops added, every x-forwarded-for line in order (one list, RFC 9110
    // 5.3), then the client's.
    for (const auto& [name, value] : head_.headers) {
      if (name == "x-forwarded-for" && !value.empty()) out.append(value).append(", "sv);
    }
  }
  out.append(conn_.peerIp()).append("\r\n"sv);
  if (!has_proto) {
    out.append(conn_.isTls() ? "x-forwarded-proto: https\r\n"sv : "x-forwarded-proto: http\r\n"sv);
  }
  if (const tls::PeerIdentity* peer = conn_.peerIdentity()) {
    out.append("x-forwarded-client-cert: "sv).append(peer->xfccValue()).append("\r\n"sv);
  }
  out.append("x-request-id: "sv).append(request_id_).append("\r\n"sv);
  if (!has_host) out.append("host: "sv).append(cluster_->name()).append("\r\n"sv);
  if (head_.chunked) {
    out.append("transfer-encoding: chunked\r\n"sv);
  } else if (head_.has_content_length) {
    out.append("content-length: "sv).append(std::to_string(head_.content_length)).append("\r\n"sv);
  }
  if (head_.upgrade) {
    // Hop-by-hop, but the one thing an upgrade asks of the next hop: passed on as received.
    out.append("connection: upgrade\r\n"sv);
    for (const auto& [name, value] : head_.headers) {
      if (name == "upgrade") out.append("upgrade: "sv).append(value).append("\r\n"sv);
    }
  }
  out.append("\r\n"sv);
}

void ActiveStream::onPoolReady(UpstreamConnection& conn) {
  pending_.reset();
  upstream_ = &conn;
  upstream_reused_ = conn.reused();
  if (head_.method == "HEAD") conn.expectNoBody();
  if (head_.upgrade) conn.expectUpgrade();
  // The head, the body received so far and, while the client's read is still being parsed, the
  // rest of what that read holds go out together (flushUpstream). A request without a body goes
  // at once.
  upstream_cork_.clear();
  upstream_corked_ = head_.hasBody();
  if (upstream_corked_ && upstream_cork_.capacity() <= std::string().capacity()) {
    upstream_cork_ = conn_.worker().takeBuffer();  // not a new allocation per request
  }
  uv_buf_t b = uv_buf_init(upstream_head_.data(), static_cast<unsigned>(upstream_head_.size()));
  writeUpstream(&b, 1);
  sendBody();
  if (request_complete_) sendBodyEnd();
  if (!conn_.parsingInput()) flushUpstream();
  if (upstream_ != nullptr && upstream_->pendingWriteBytes() <= kHighWatermark) {
    // Reading may have been paused while the body waited for this connection.
    conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, false);
  }
}

void ActiveStream::writeUpstream(const uv_buf_t* bufs, unsigned n) {
  if (upstream_ == nullptr) return;
  if (!upstream_corked_) {
    writeUpstreamNow(bufs, n);
    return;
  }
  size_t used = upstream_cork_.size();
  if (!gatherOrWrite(upstream_cork_, used, kUpstreamCorkBytes, bufs, n,
                     [this](const uv_buf_t* b, unsigned k) { writeUpstreamNow(b, k); })) {
    upstream_corked_ = false;  // too much to copy: from here on straight through
    upstream_cork_.clear();
  }
}

void ActiveStream::flushUpstream() {
  if (!upstream_corked_) return;
  upstream_corked_ = false;
  if (upstream_cork_.empty()) return;
  uv_buf_t b = uv_buf_init(upstream_cork_.data(), static_cast<unsigned>(upstream_cork_.size()));
  writeUpstreamNow(&b, 1);  // the writer copies what the kernel does not take at once
  upstream_cork_.clear();
}

void ActiveStream::writeUpstreamNow(const uv_buf_t* bufs, unsigned n) {
  if (upstream_ == nullptr) return;
  upstream_->write(bufs, n);
  if (upstream_ != nullptr && upstream_->pendingWriteBytes() > kHighWatermark) {
    conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, true);
  }
}

void ActiveStream::sendBody() {
  if (upstream_ == nullptr) return;
  // What arrived since the last send, as one piece (one chunk when chunked: chunk boundaries
  // carry no meaning, RFC 9112 7.1); a replay sends everything kept as one.
  if (body_sent_ < body_.size()) {
    const char* data = body_.data() + body_sent_;
    const size_t len = body_.size() - body_sent_;
    if (head_.chunked) {
      ChunkFrame frame(data, len);
      writeUpstream(frame.bufs, 3);
    } else {
      uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
      writeUpstream(&b, 1);
    }
  }
  body_sent_ = body_.size();
  if (!body_replayable_) {
    body_.clear();
    body_sent_ = 0;
  }
}

void ActiveStream::sendBodyEnd() {
  if (upstream_ == nullptr) return;
  if (head_.chunked) {
    uv_buf_t b = uv_buf_init(const_cast<char*>("0\r\n\r\n"), 5);
    writeUpstream(&b, 1);
  }
  if (upstream_ != nullptr) upstream_->requestComplete();
}

void ActiveStream::onRequestBody(const char* data, size_t len) {
  if (complete_) return;
  body_received_ += len;
  if (body_.empty() && body_.capacity() <= std::string().capacity()) {
    body_ = conn_.worker().takeBuffer();  // not a new allocation per request
  }
  body_.append(data, len);
  if (body_received_ > std::max(replay_limit_, kStaleReplayLimit)) body_replayable_ = false;
  if (upstream_ != nullptr) {
    sendBody();
  } else if (!body_replayable_) {
    // Not connected yet (or between tries): hold the body, but stop reading the client past the
    // watermark.
    if (body_.size() > kHighWatermark) {
      conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, true);
    }
  }
}

void ActiveStream::onRequestComplete() {
  request_complete_ = true;
  if (complete_) return;
  if (upstream_ != nullptr) sendBodyEnd();
}

void ActiveStream::onUpstreamWritable() {
  conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, false);
}

void ActiveStream::onPoolFailure(UpstreamFailure reason, const std::string& detail) {
  pending_.reset();
  if (complete_) return;
  if (reason == UpstreamFailure::PoolOverflow) {
    endAttempt(false, false);  // not the endpoint's fault
    sendLocalReply(503, "too many requests waiting for a connection to cluster " +
                            cluster_->name(), false);
    return;
  }
  endAttempt(false);
  onTryFailed(resilience::FailureKind::ConnectFailure, 502,
              std::string("upstream ") + failureName(reason) + ": " + endpoint_->key + " (" +
                  detail + ")");
}

void ActiveStream::onUpstreamReset(UpstreamFailure reason, const std::string& detail,
                                   bool upstream_response_started) {
  upstream_ = nullptr;
  if (complete_) return;
  cluster_->stats->upstream_resets.inc();
  conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, false);
  if (!upstream_response_started && upstream_reused_ && !stale_retry_done_ && body_replayable_ &&
      reason == UpstreamFailure::Reset) {
    // The upstream closed a pooled connection just as we sent on it: the request never reached
    // the application, so one replay on a fresh connection is always safe. It is not a new try.
    stale_retry_done_ = true;
    spdlog::debug("request {}: pooled connection to {} was closed by the upstream; replaying on "
                  "a new connection",
                  request_id_, endpoint_->key);
    connectAttempt(true);
    return;
  }
  endAttempt(false);
  if (response_started_) {
    spdlog::debug("request {}: upstream {} failed mid-response ({}); closing the client "
                  "connection",
                  request_id_, endpoint_->key, detail);
    flushResponseHead();
    complete_ = true;
    conn_.close();
    return;
  }
  onTryFailed(resilience::FailureKind::Reset, 502,
              std::string("upstream ") + failureName(reason) + " before the response: " +
                  endpoint_->key + " (" + detail + ")");
}

void ActiveStream::onResponseHeaders(int status, const http::HeaderBlock& headers, bool chunked,
                                     bool has_content_length, uint64_t content_length) {
  if (complete_) return;
  cluster_->stats->upstream_requests.inc(status);
  const config::RetryPolicy* p = retryPolicy();
  if (status >= 500 || (p != nullptr && resilience::shouldRetryStatus(*p, status))) {
    bool retriable = p != nullptr && resilience::shouldRetryStatus(*p, status);
    if (retriable && retryAllowed()) {
      // Discard this response: the connection is closed, never reused mid-response.
      cleanupUpstream();
      endAttempt(false);
      spdlog::debug("request {}: {} from {}; retrying", request_id_, status, endpoint_->key);
      scheduleRetry();
      return;
    }
    if (status >= 500 && route_->config->fallback && !fallback_reason_) {
      cleanupUpstream();
      endAttempt(false);
      sendFallbackOrError(FallbackReason::RetriesExhausted, status,
                          "upstream " + endpoint_->key + " answered " + std::to_string(status));
      return;
    }
  }
  endAttempt(status < 500);
  response_started_ = true;
  response_status_ = status;
  // UpstreamConnection passes a 101 on only to a request that asked to upgrade: the connection
  // becomes a tunnel once this head is relayed (startTunnel).
  const bool tunnel = status == 101;
  std::string cl_value;
  if (has_content_length) cl_value = std::to_string(content_length);

  bool no_body = tunnel || head_.method == "HEAD" || status == 204 || status == 304;
  bool client_11 = head_.http_minor >= 1;
  if (no_body) {
    framing_ = Framing::None;
  } else if (has_content_length) {
    framing_ = Framing::ContentLength;
  } else if (client_11) {
    framing_ = Framing::Chunked;
  } else {
    framing_ = Framing::Close;
  }
  (void)chunked;  // re-framed per hop: chunked upstream bodies are decoded by the parser
  // A request whose body is still arriving ends the connection once the response is out (its
  // end cannot be told from the next request's start): say so, or a client that reads this
  // response first would put the connection back in its pool and lose its next request on it.
  close_after_response_ =
      tunnel || framing_ == Framing::Close || !head_.keep_alive || !requestEnded();

  std::string& out = response_head_;
  out = conn_.worker().takeBuffer();
  out.reserve(256 + headers.bytes() +
              (has_content_length && content_length <= kCoalesceBodyBytes ? content_length : 0));
  out.append("HTTP/1.1 "sv).append(std::to_string(status)).append(" "sv);
  out.append(http::reasonPhrase(status)).append("\r\n"sv);
  // Hop-by-hop headers are this hop's; ours replaces an inner proxy's x-remora-attempts (a Remora
  // sidecar upstream): one, this hop's.
  headers.appendForwarded(out, "x-remora-attempts");
  if (has_content_length && (framing_ == Framing::ContentLength || no_body) && status != 204 &&
      !tunnel) {
    out.append("content-length: "sv).append(cl_value).append("\r\n"sv);
  } else if (framing_ == Framing::Chunked) {
    out.append("transfer-encoding: chunked\r\n"sv);
  }
  if (tunnel) {
    // Hop-by-hop, but what the switch is: passed on as the upstream said it.
    out.append("connection: upgrade\r\n"sv);
    for (size_t i = 0; i < headers.size(); ++i) {
      if (headers.name(i) == "upgrade") {
        out.append("upgrade: "sv).append(headers.value(i)).append("\r\n"sv);
      }
    }
  } else if (close_after_response_) {
    out.append("connection: close\r\n"sv);
  } else if (!client_11) {
    out.append("connection: keep-alive\r\n"sv);
  }
  if (fallback_reason_) {
    out.append("x-remora-fallback: "sv).append(toString(*fallback_reason_)).append("\r\n"sv);
  }
  out.append("x-remora-attempts: "sv).append(std::to_string(attempts_)).append("\r\n\r\n"sv);
  response_head_pending_ = true;  // sent by writeDownstream, onUpstreamReadComplete or the end
  response_gathered_ = 0;
  if (tunnel) startTunnel();
}

void ActiveStream::startTunnel() {
  tunnel_ = true;  // the destructor gives back its place in the gauge
  listener_.stats->downstream_upgrades.inc();
  listener_.stats->downstream_upgrades_active.add(1);
  spdlog::debug("request {}: upstream {} switched protocols; relaying bytes between it and {} "
                "until either side closes",
                request_id_, endpoint_->key, conn_.peerAddress());
  conn_.startTunnel();
}

void ActiveStream::onTunnelData(const char* data, size_t len) {
  if (complete_ || upstream_ == nullptr) return;
  body_received_ += len;
  uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  writeUpstreamNow(&b, 1);
}

void ActiveStream::onTunnelClientEof() {
  if (upstream_ != nullptr) upstream_->shutdownWrite();
}

void ActiveStream::onUpgradeData(const char* data, size_t len) {
  if (complete_) return;
  bytes_sent_ += len;
  conn_.noteTunnelActivity();
  uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  writeDownstream(&b, 1);
  pauseUpstreamIfClientBehind();
}

void ActiveStream::onUpgradeEnd() {
  upstream_ = nullptr;
  if (complete_) return;
  flushResponseHead();
  finish(true);  // what was relayed reaches the client before the FIN
}

void ActiveStream::writeDownstream(const uv_buf_t* bufs, unsigned n) {
  if (!response_head_pending_) {
    conn_.write(bufs, n);
    return;
  }
  // Body bytes (chunk framing and the last chunk included) parsed from the same upstream read
  // as the head are copied behind it, up to kCoalesceBodyBytes, and leave with it in one write()
  // when that read or the response ends: copying a few hundred bytes costs less than a writev()
  // of pieces, or a second write for a chunked response's last chunk.
  if (!gatherOrWrite(response_head_, response_gathered_, kCoalesceBodyBytes, bufs, n,
                     [this](const uv_buf_t* b, unsigned k) { conn_.write(b, k); })) {
    response_head_pending_ = false;
  }
}

void ActiveStream::flushResponseHead() {
  if (!response_head_pending_) return;
  response_head_pending_ = false;
  uv_buf_t b = uv_buf_init(response_head_.data(), static_cast<unsigned>(response_head_.size()));
  conn_.write(&b, 1);
}

void ActiveStream::onUpstreamReadComplete() { flushResponseHead(); }

void ActiveStream::onResponseBody(const char* data, size_t len) {
  if (complete_ || framing_ == Framing::None) return;
  bytes_sent_ += len;
  if (framing_ == Framing::Chunked) {
    ChunkFrame frame(data, len);
    writeDownstream(frame.bufs, 3);
  } else {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    writeDownstream(&b, 1);
  }
  pauseUpstreamIfClientBehind();
}

void ActiveStream::pauseUpstreamIfClientBehind() {
  if (upstream_ != nullptr && conn_.pendingWriteBytes() > kHighWatermark) {
    upstream_->readDisable(true);  // onDownstreamWritable resumes it
  }
}

void ActiveStream::onDownstreamWritable() {
  if (upstream_ != nullptr) upstream_->readDisable(false);
}

void ActiveStream::onResponseComplete() {
  upstream_ = nullptr;
  if (complete_) return;
  if (framing_ == Framing::Chunked) {
    uv_buf_t b = uv_buf_init(const_cast<char*>("0\r\n\r\n"), 5);
    writeDownstream(&b, 1);
  }
  flushResponseHead();
  finish(framing_ == Framing::Close);
}

void ActiveStream::onRouteTimeout() {
  if (complete_) return;
  if (cluster_ != nullptr) cluster_->stats->upstream_timeouts.inc();
  cleanupUpstream();
  endAttempt(false);
  if (response_started_) {
    spdlog::debug("request {}: route timeout mid-response; closing the client connection",
                  request_id_);
    complete_ = true;
    conn_.close();
    return;
  }
  sendFallbackOrError(FallbackReason::Timeout, 504,
                      "upstream request timeout after " +
                          std::to_string(route_->config->timeout.count()) + "ms (route " +
                          route_->config->name + ")");
}

void ActiveStream::onDownstreamReset(const std::string& reason) {
  if (complete_) return;
  spdlog::debug("request {}: {}", request_id_, reason);
  complete_ = true;
  cleanupUpstream();
  endAttempt(false, false);
  if (counted_active_) {
    cluster_->stats->upstream_requests_active.sub(1);
    counted_active_ = false;
  }
  request_slot_ = {};
  completeFilters();
}

void ActiveStream::cleanupUpstream() {
  upstream_corked_ = false;
  upstream_cork_.clear();
  if (upstream_ != nullptr) {
    // Never reuse a connection whose response we did not read to the end.
    upstream_->abort();
    upstream_ = nullptr;
  }
  if (pending_) {
    pending_->cancelled = true;
    pending_.reset();
  }
  if (backoff_timer_) backoff_timer_->disable();
}

void ActiveStream::sendFallbackOrError(FallbackReason reason, int status,
                                       std::string_view detail) {
  if (abandonUpstreamForLocalAnswer()) return;
  route_->stats->fallback[static_cast<size_t>(reason)].inc();
  const std::optional<config::Fallback>& fb = route_->config->fallback;
  if (fb && route_->fallback_cluster != nullptr && !fallback_reason_) {
    // Answer from the fallback cluster: one try, no retries, the reason on the response.
    spdlog::debug("request {}: {} ({}); answering from fallback cluster {}", request_id_,
                  toString(reason), detail, route_->fallback_cluster->name());
    fallback_reason_ = reason;
    retries_disabled_ = true;
    if (counted_active_) cluster_->stats->upstream_requests_active.sub(1);
    cluster_ = route_->fallback_cluster;
    cluster_->stats->upstream_requests_active.add(1);
    counted_active_ = true;
    request_slot_ = {};
    body_replayable_ = body_replayable_ && body_received_ <= kStaleReplayLimit;
    // After a route timeout the route's timer has fired: without a new one a fallback cluster
    // that hangs too would hold the request forever. The fallback try gets one route timeout.
    if (reason == FallbackReason::Timeout) conn_.armRouteTimer(route_->config->timeout);
    if (!body_replayable_) {
      sendLocalReply(status, std::string(detail) + "; the fallback cluster cannot be used "
                                                   "because the request body was streamed",
                     false);
      return;
    }
    startAttempt();
    return;
  }
  local_reason_ = std::string(toString(reason)) + ": " + std::string(detail);
  http::HeaderMap extra;
  extra.add("x-remora-fallback", toString(reason));
  if (fb && fb->cluster.empty()) {
    for (const auto& [name, value] : fb->headers) extra.add(name, value);
    sendResponse(fb->status, fb->body, &extra, false);
    return;
  }
  std::string body(detail);
  body.push_back('\n');
  extra.add("content-type", "text/plain");
  sendResponse(status, body, &extra, false);
}

bool ActiveStream::abandonUpstreamForLocalAnswer() {
  if (complete_) return true;
  cleanupUpstream();
  endAttempt(false, false);
  if (response_started_) {
    // Part of a response already went out: closing is the only honest end.
    flushResponseHead();
    complete_ = true;
    conn_.close();
    return true;
  }
  return false;
}

void ActiveStream::sendLocalReply(int status, std::string_view reason, bool close_connection) {
  if (abandonUpstreamForLocalAnswer()) return;
  local_reason_ = std::string(reason);
  std::string body(reason);
  body.push_back('\n');
  http::HeaderMap extra;
  extra.add("content-type", "text/plain");
  sendResponse(status, body, &extra, close_connection);
}

void ActiveStream::sendResponse(int status, std::string_view body,
                                const http::HeaderMap* extra_headers, bool close_connection) {
  response_status_ = status;
  response_started_ = true;
  bool close_after = close_connection || !requestEnded() || !head_.keep_alive;
  std::string out;
  out.reserve(192 + body.size());
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(http::reasonPhrase(status)).append("\r\n");
  if (extra_headers != nullptr) http::serializeHeaders(*extra_headers, out);
  out.append("content-length: ").append(std::to_string(body.size())).append("\r\n");
  out.append("x-remora-attempts: ").append(std::to_string(attempts_)).append("\r\n");
  if (close_after) {
    out.append("connection: close\r\n");
  } else if (head_.http_minor == 0) {
    out.append("connection: keep-alive\r\n");  // HTTP/1.0 closes unless told otherwise
  }
  out.append("\r\n");
  if (head_.method != "HEAD") out.append(body);
  bytes_sent_ += body.size();
  uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  conn_.write(&b, 1);
  finish(close_after);
}

void ActiveStream::finish(bool close_connection) {
  complete_ = true;
  auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start_time_);
  listener_.stats->downstream_requests.inc(response_status_);
  if (cluster_ != nullptr && counted_active_) {
    cluster_->stats->upstream_requests_active.sub(1);
    counted_active_ = false;
    cluster_->stats->request_duration.record(elapsed);
  }
  request_slot_ = {};
  completeFilters();
  if (AccessLogger* log = conn_.worker().accessLog()) {
    AccessLogEntry e;
    e.start_time = rfc3339Now();
    e.listener = listener_.name();
    e.method = head_.method;
    e.path = head_.url;
    e.protocol = head_.http_minor >= 1 ? "HTTP/1.1" : "HTTP/1.0";
    e.status = response_status_;
    if (route_ != nullptr) e.route = route_->config->name;
    if (cluster_ != nullptr) e.cluster = cluster_->name();
    if (endpoint_ != nullptr) e.upstream = endpoint_->key;
    e.attempts = attempts_;
    e.bytes_received = body_received_;
    e.bytes_sent = bytes_sent_;
    e.duration_ms = static_cast<double>(elapsed.count()) / 1000.0;
    e.request_id = request_id_;
    e.downstream_address = conn_.peerAddress();
    if (fallback_reason_) e.fallback_reason = toString(*fallback_reason_);
    e.error = local_reason_;
    log->log(e);
  }
  conn_.onStreamComplete(close_connection || !requestEnded() || close_after_response_);
}

}  // namespace remora
