#include "stream.h"

#include <spdlog/spdlog.h>

#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "access_log.h"
#include "downstream.h"

namespace remora {

namespace {

// Flow control watermarks: stop reading one side when the other side has this much queued.
constexpr size_t kHighWatermark = 256 * 1024;
// Request bodies up to this size are kept so the request can be replayed on a fresh connection
// when a pooled connection turns out to be closed by the upstream.
constexpr uint64_t kReplayBufferLimit = 64 * 1024;

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

ActiveStream::~ActiveStream() { cleanupUpstream(); }

void ActiveStream::start() {
  if (head_.http_minor >= 1 && head_.headers.get("host") == nullptr) {
    sendLocalReply(400, "HTTP/1.1 request without a Host header", true);
    return;
  }
  route_ = matchRoute(listener_, head_.method, head_.path(), head_.headers);
  if (route_ == nullptr) {
    sendLocalReply(404, "no route for " + head_.method + " " + std::string(head_.path()), false);
    return;
  }
  uint64_t r = conn_.worker().random();
  cluster_ = route_->pickCluster(static_cast<uint32_t>(r >> 32));
  conn_.armRouteTimer(route_->config->timeout);

  if (const std::string* id = head_.headers.get("x-request-id"); id != nullptr && !id->empty()) {
    request_id_ = *id;
  } else {
    request_id_ = conn_.worker().newRequestId();
  }
  if (const std::string* expect = head_.headers.get("expect");
      expect != nullptr && http::equalsIgnoreCase(*expect, "100-continue")) {
    // Answer 100-continue here (as Envoy does) rather than forwarding the expectation: the
    // upstream may not implement it, and the proxy will buffer or stream the body anyway.
    head_.headers.remove("expect");
    if (head_.http_minor >= 1 && head_.hasBody()) {
      static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      uv_buf_t b = uv_buf_init(const_cast<char*>(kContinue), sizeof(kContinue) - 1);
      conn_.write(&b, 1);
    }
  }
  buildUpstreamHead();
  cluster_->stats->upstream_requests_active.add(1);
  counted_active_ = true;
  startAttempt(false);
}

const EndpointInfo* ActiveStream::pickEndpoint() {
  const auto& eps = cluster_->endpoints;
  if (eps.empty()) return nullptr;
  uint64_t n = conn_.worker().nextRoundRobin(*cluster_);
  return &eps[n % eps.size()];
}

void ActiveStream::buildUpstreamHead() {
  http::HeaderMap& h = head_.headers;
  http::removeHopByHopHeaders(h);
  std::string xff;
  if (const std::string* prev = h.get("x-forwarded-for"); prev != nullptr && !prev->empty()) {
    xff = *prev + ", " + conn_.peerIp();
  } else {
    xff = conn_.peerIp();
  }
  h.set("x-forwarded-for", std::move(xff));
  if (h.get("x-forwarded-proto") == nullptr) h.add("x-forwarded-proto", "http");
  if (h.get("x-request-id") == nullptr) h.add("x-request-id", request_id_);
  if (h.get("host") == nullptr) h.add("host", cluster_->name());

  std::string& out = upstream_head_;
  out.reserve(256 + h.size() * 48);
  out.append(head_.method).append(" ").append(head_.url).append(" HTTP/1.1\r\n");
  http::serializeHeaders(h, out);
  if (head_.chunked) {
    out.append("transfer-encoding: chunked\r\n");
  } else if (head_.has_content_length) {
    out.append("content-length: ").append(std::to_string(head_.content_length)).append("\r\n");
  }
  out.append("\r\n");
}

void ActiveStream::startAttempt(bool force_new_connection) {
  if (!force_new_connection) {
    endpoint_ = pickEndpoint();
    if (endpoint_ == nullptr) {
      sendLocalReply(503, "no healthy endpoint in cluster " + cluster_->name(), false);
      return;
    }
    ++attempts_;
  }
  pool_ = &conn_.worker().pool(*endpoint_);
  body_sent_ = 0;
  pending_ = pool_->newStream(*this, *cluster_, force_new_connection);
}

void ActiveStream::onPoolReady(UpstreamConnection& conn) {
  pending_.reset();
  upstream_ = &conn;
  upstream_reused_ = conn.reused();
  if (head_.method == "HEAD") conn.expectNoBody();
  uv_buf_t b = uv_buf_init(upstream_head_.data(), static_cast<unsigned>(upstream_head_.size()));
  writeUpstream(&b, 1);
  sendBody();
  if (request_complete_) sendBodyEnd();
  if (upstream_ != nullptr && upstream_->pendingWriteBytes() <= kHighWatermark) {
    // Reading may have been paused while the body waited for this connection.
    conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, false);
  }
}

void ActiveStream::writeUpstream(const uv_buf_t* bufs, unsigned n) {
  if (upstream_ == nullptr) return;
  upstream_->write(bufs, n);
  if (upstream_ != nullptr && upstream_->pendingWriteBytes() > kHighWatermark) {
    conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, true);
  }
}

void ActiveStream::sendBody() {
  if (upstream_ == nullptr) return;
  for (size_t i = body_sent_; i < body_.size() && upstream_ != nullptr; ++i) {
    const std::string& chunk = body_[i];
    if (head_.chunked) {
      char size_line[24];
      int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk.size());
      uv_buf_t bufs[3] = {uv_buf_init(size_line, static_cast<unsigned>(n)),
                          uv_buf_init(const_cast<char*>(chunk.data()),
                                      static_cast<unsigned>(chunk.size())),
                          uv_buf_init(const_cast<char*>("\r\n"), 2)};
      writeUpstream(bufs, 3);
    } else {
      uv_buf_t b = uv_buf_init(const_cast<char*>(chunk.data()), static_cast<unsigned>(chunk.size()));
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
  body_.emplace_back(data, len);
  if (body_received_ > kReplayBufferLimit) body_replayable_ = false;
  if (upstream_ != nullptr) {
    sendBody();
  } else if (!body_replayable_) {
    // Still connecting: hold the body, but stop reading the client past the watermark.
    size_t held = 0;
    for (const auto& c : body_) held += c.size();
    if (held > kHighWatermark) conn_.readDisable(DownstreamConnection::kReadPausedUpstreamFull, true);
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
  spdlog::debug("request {}: upstream {} in cluster {}: {} ({})", request_id_, endpoint_->key,
                cluster_->name(), failureName(reason), detail);
  if (reason == UpstreamFailure::PoolOverflow) {
    sendLocalReply(503, "too many requests waiting for a connection to cluster " +
                            cluster_->name(), false);
    return;
  }
  sendLocalReply(502, std::string("upstream ") + failureName(reason) + ": " + endpoint_->key +
                          " (" + detail + ")",
                 false);
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
    // the application, so one replay on a fresh connection is always safe.
    stale_retry_done_ = true;
    spdlog::debug("request {}: pooled connection to {} was closed by the upstream; retrying on "
                  "a new connection",
                  request_id_, endpoint_->key);
    startAttempt(true);
    return;
  }
  if (response_started_) {
    spdlog::debug("request {}: upstream {} failed mid-response ({}); closing the client "
                  "connection",
                  request_id_, endpoint_->key, detail);
    complete_ = true;
    conn_.close();
    return;
  }
  sendLocalReply(502, std::string("upstream ") + failureName(reason) + " before response: " +
                          endpoint_->key + " (" + detail + ")",
                 false);
}

void ActiveStream::recordUpstreamStatus(int status) {
  cluster_->stats->upstream_requests.inc(status);
}

void ActiveStream::onResponseHeaders(int status, http::HeaderMap&& headers, bool chunked,
                                     bool has_content_length, uint64_t content_length) {
  if (complete_) return;
  recordUpstreamStatus(status);
  response_started_ = true;
  response_status_ = status;
  std::string cl_value;
  if (has_content_length) cl_value = std::to_string(content_length);
  http::removeHopByHopHeaders(headers);

  bool no_body = head_.method == "HEAD" || status == 204 || status == 304;
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
  bool close_after = framing_ == Framing::Close || !head_.keep_alive;

  std::string out;
  out.reserve(256 + headers.size() * 48);
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(http::reasonPhrase(status)).append("\r\n");
  http::serializeHeaders(headers, out);
  if (has_content_length && (framing_ == Framing::ContentLength || no_body) && status != 204) {
    out.append("content-length: ").append(cl_value).append("\r\n");
  } else if (framing_ == Framing::Chunked) {
    out.append("transfer-encoding: chunked\r\n");
  }
  if (close_after) {
    out.append("connection: close\r\n");
  } else if (!client_11) {
    out.append("connection: keep-alive\r\n");
  }
  out.append("x-remora-attempts: ").append(std::to_string(attempts_)).append("\r\n\r\n");
  uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  conn_.write(&b, 1);
}

void ActiveStream::onResponseBody(const char* data, size_t len) {
  if (complete_ || framing_ == Framing::None) return;
  bytes_sent_ += len;
  if (framing_ == Framing::Chunked) {
    char size_line[24];
    int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    uv_buf_t bufs[3] = {uv_buf_init(size_line, static_cast<unsigned>(n)),
                        uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len)),
                        uv_buf_init(const_cast<char*>("\r\n"), 2)};
    conn_.write(bufs, 3);
  } else {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    conn_.write(&b, 1);
  }
  if (upstream_ != nullptr && conn_.pendingWriteBytes() > kHighWatermark) {
    upstream_->readDisable(true);
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
    conn_.write(&b, 1);
  }
  finish(framing_ == Framing::Close);
}

void ActiveStream::onRouteTimeout() {
  if (complete_) return;
  cluster_->stats->upstream_timeouts.inc();
  cleanupUpstream();
  if (response_started_) {
    spdlog::debug("request {}: route timeout mid-response; closing the client connection",
                  request_id_);
    complete_ = true;
    conn_.close();
    return;
  }
  sendLocalReply(504, "upstream request timeout after " +
                          std::to_string(route_->config->timeout.count()) + "ms (route " +
                          route_->config->name + ")",
                 false);
}

void ActiveStream::onDownstreamReset(const std::string& reason) {
  if (complete_) return;
  spdlog::debug("request {}: {}", request_id_, reason);
  complete_ = true;
  cleanupUpstream();
  if (counted_active_) {
    cluster_->stats->upstream_requests_active.sub(1);
    counted_active_ = false;
  }
}

void ActiveStream::cleanupUpstream() {
  if (upstream_ != nullptr) {
    // Never reuse a connection whose response we did not read to the end.
    upstream_->abort();
    upstream_ = nullptr;
  }
  if (pending_) {
    pending_->cancelled = true;
    pending_.reset();
  }
}

void ActiveStream::sendLocalReply(int status, std::string_view reason, bool close_connection) {
  if (complete_) return;
  cleanupUpstream();
  if (response_started_) {
    complete_ = true;
    conn_.close();
    return;
  }
  local_reason_ = std::string(reason);
  response_status_ = status;
  response_started_ = true;
  std::string body(reason);
  body.push_back('\n');
  bool close_after = close_connection || !request_complete_ || !head_.keep_alive;
  std::string out;
  out.reserve(160 + body.size());
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(http::reasonPhrase(status));
  out.append("\r\ncontent-type: text/plain\r\ncontent-length: ");
  out.append(std::to_string(body.size()));
  out.append("\r\nx-remora-attempts: ").append(std::to_string(attempts_)).append("\r\n");
  if (close_after) out.append("connection: close\r\n");
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
    e.error = local_reason_;
    log->log(e);
  }
  conn_.onStreamComplete(close_connection || !request_complete_);
}

}  // namespace remora
