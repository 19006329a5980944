#include "upstream.h"

#include <spdlog/spdlog.h>

#include "worker.h"

namespace remora {

namespace {

// Upper bound on an upstream response's header block; beyond it the upstream is misbehaving.
constexpr size_t kMaxResponseHeaderBytes = 96 * 1024;
// Flow control: a request body writer stops reading the downstream above this many queued bytes.
constexpr size_t kWriteLowWatermark = 64 * 1024;

UpstreamConnection* fromParser(llhttp_t* p) { return static_cast<UpstreamConnection*>(p->data); }

// The status codes HTTP defines (RFC 9110 15); anything else from an upstream is a protocol error.
bool statusInRange(int status) { return status >= 100 && status <= 599; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// UpstreamConnection

UpstreamConnection::UpstreamConnection(ConnectionPool& pool, Worker& worker)
    : pool_(pool), worker_(worker), writer_(reinterpret_cast<uv_stream_t*>(&tcp_), *this) {
  llhttp_init(&parser_, HTTP_RESPONSE, &kParserSettings);
  parser_.data = this;
}

// Shared by every connection, as DownstreamConnection's.
const llhttp_settings_t UpstreamConnection::kParserSettings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &UpstreamConnection::onMessageBegin;
  s.on_header_field = &UpstreamConnection::onHeaderField;
  s.on_header_field_complete = &UpstreamConnection::onHeaderFieldComplete;
  s.on_header_value = &UpstreamConnection::onHeaderValue;
  s.on_header_value_complete = &UpstreamConnection::onHeaderValueComplete;
  s.on_headers_complete = &UpstreamConnection::onHeadersComplete;
  s.on_body = &UpstreamConnection::onBody;
  s.on_message_complete = &UpstreamConnection::onMessageComplete;
  return s;
}();

UpstreamConnection::~UpstreamConnection() = default;

const std::string& UpstreamConnection::endpointKey() const { return pool_.key(); }

void UpstreamConnection::connect(const EndpointInfo& endpoint, std::chrono::milliseconds timeout) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  uv_timer_init(worker_.loop(), &timer_);
  timer_.data = this;
  open_handles_ = 2;
  uv_tcp_nodelay(&tcp_, 1);
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&endpoint.addr),
                          &UpstreamConnection::onConnect);
  if (rc != 0) {
    // The callback will not run: report the failure after the current event so the pool's caller
    // does not see a re-entrant callback from inside newStream().
    worker_.defer([this, rc] {
      if (state_ == State::Connecting) {
        state_ = State::Closing;
        pool_.onConnectFailed(this, UpstreamFailure::ConnectFailure, uvError(rc));
        close();
      }
    });
    return;
  }
  if (timeout.count() > 0) {
    uv_timer_start(&timer_, &UpstreamConnection::onConnectTimeout,
                   static_cast<uint64_t>(timeout.count()), 0);
  }
}

void UpstreamConnection::onConnect(uv_connect_t* req, int status) {
  auto* self = static_cast<UpstreamConnection*>(req->data);
  if (status == UV_ECANCELED || self->state_ != State::Connecting) return;
  if (status < 0) {
    uv_timer_stop(&self->timer_);
    self->state_ = State::Closing;
    self->pool_.onConnectFailed(self, UpstreamFailure::ConnectFailure, uvError(status));
    self->close();
    return;
  }
  self->reading_ = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), &UpstreamConnection::onAlloc,
                &UpstreamConnection::onRead);
  const EndpointInfo& ep = self->pool_.endpoint();
  if (ep.tls) {
    // The connection is ready once the handshake is done; connect_timeout covers both.
    self->tls_ = tls::Session::client(ep.tls, ep.key, ep.config.address.host);
    if (self->tls_) {
      self->writer_.setTls(self->tls_.get());
      if (self->tls_->handshake() >= 0 && self->writer_.flushTls() == 0) return;
    }
    self->failTls(self->tls_ ? self->tls_->error() : "cannot create a session");
    return;
  }
  uv_timer_stop(&self->timer_);
  self->onConnected();
}

void UpstreamConnection::failTls(const std::string& detail) {
  uv_timer_stop(&timer_);
  state_ = State::Closing;
  spdlog::debug("upstream {}: TLS failed: {}", pool_.key(), detail);
  pool_.onConnectFailed(this, UpstreamFailure::ConnectFailure, "TLS to " + pool_.key() + ": " + detail);
  close();
}

void UpstreamConnection::onConnected() {
  state_ = State::Idle;
  pool_.onConnected(this);
}

void UpstreamConnection::onTlsData(const char* data, size_t len) {
  tls_->receive(data, len);
  if (state_ == State::Connecting) {
    int rc = tls_->handshake();
    writer_.flushTls();
    if (rc == 0) return;
    if (rc < 0) {
      failTls(tls_->error());
      return;
    }
    uv_timer_stop(&timer_);
    if (ClusterStats* st = pool_.stats()) {
      st->upstream_tls_handshakes.inc();
      if (tls_->resumed()) st->upstream_tls_resumed.inc();
    }
    onConnected();
  }
  // The worker's read buffer is free again: the ciphertext is in the session.
  uv_buf_t plain = worker_.readBuffer();
  while (state_ != State::Closing) {
    ssize_t n = tls_->read(plain.base, plain.len);
    if (n > 0) {
      onData(plain.base, static_cast<size_t>(n));
      continue;
    }
    if (n == tls::Session::kWantMore) break;
    if (n == tls::Session::kClosed) {
      onEof();
      return;
    }
    if (state_ == State::Busy) {
      fail(UpstreamFailure::Reset, tls_->error());
    } else {
      close();
    }
    return;
  }
  // Session tickets and alerts need no answer, but a key update does.
  if (state_ != State::Closing) writer_.flushTls();
}

void UpstreamConnection::onConnectTimeout(uv_timer_t* timer) {
  auto* self = static_cast<UpstreamConnection*>(timer->data);
  if (self->state_ != State::Connecting) return;
  self->state_ = State::Closing;
  self->pool_.onConnectFailed(self, UpstreamFailure::ConnectTimeout, "connect timeout");
  self->close();
}

void UpstreamConnection::attach(UpstreamClient* client) {
  state_ = State::Busy;
  client_ = client;
  response_started_ = false;
  response_complete_ = false;
  request_complete_ = false;
  expect_no_body_ = false;
  expect_upgrade_ = false;
  resetParserState();
}

void UpstreamConnection::resetParserState() {
  // A pooled connection keeps this memory between responses, bounded to what a typical one needs.
  headers_.clearKeepingUpTo(16 * 1024);
  interim_ = false;
}

bool UpstreamConnection::write(const uv_buf_t* bufs, unsigned nbufs) {
  if (state_ != State::Busy) return false;
  int rc = writer_.write(bufs, nbufs);
  if (rc != 0) {
    // Report asynchronously: the caller is in the middle of writing and must not be re-entered.
    worker_.defer([this, rc] {
      if (state_ == State::Busy) fail(UpstreamFailure::Reset, "write failed: " + uvError(rc));
    });
    return false;
  }
  return true;
}

void UpstreamConnection::onWriteProgress() {
  if (state_ == State::Busy && client_ != nullptr && writer_.pendingBytes() < kWriteLowWatermark) {
    client_->onUpstreamWritable();
  }
}

void UpstreamConnection::onWriteError(int err) {
  if (state_ == State::Busy) fail(UpstreamFailure::Reset, "write failed: " + uvError(err));
}

void UpstreamConnection::readDisable(bool disable) {
  read_disabled_ = disable;
  if (state_ == State::Closing || state_ == State::Connecting) return;
  auto* s = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (disable && reading_) {
    uv_read_stop(s);
    reading_ = false;
  } else if (!disable && !reading_) {
    uv_read_start(s, &UpstreamConnection::onAlloc, &UpstreamConnection::onRead);
    reading_ = true;
  }
}

void UpstreamConnection::shutdownWrite() {
  if (state_ != State::Busy || !upgraded_ || write_shut_) return;
  write_shut_ = true;
  if (tls_) {
    tls_->shutdown();
    writer_.flushTls();
  }
  shutdown_req_.data = this;
  // Queued behind the writes still pending, so the upstream gets every byte before the FIN.
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_),
                  &UpstreamConnection::onShutdown) != 0) {
    fail(UpstreamFailure::Reset, "cannot shut down the tunnel's write side");
  }
}

void UpstreamConnection::onShutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<UpstreamConnection*>(req->data);
  if (status < 0 && status != UV_ECANCELED && self->state_ == State::Busy) {
    self->fail(UpstreamFailure::Reset, "shutting down the tunnel failed: " + uvError(status));
  }
}

void UpstreamConnection::abort() {
  client_ = nullptr;
  if (state_ == State::Connecting) {
    // Keep connecting: the connection can serve the next request. Only detach.
    return;
  }
  close();
}

void UpstreamConnection::onAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  *buf = static_cast<UpstreamConnection*>(handle->data)->worker_.readBuffer();
}

void UpstreamConnection::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<UpstreamConnection*>(stream->data);
  if (nread == 0) return;
  if (nread < 0 && self->state_ == State::Connecting) {
    // Only a TLS connection reads before it is ready: the server gave up on the handshake.
    self->failTls(nread == UV_EOF ? std::string("the server closed the connection during the handshake")
                                  : uvError(static_cast<int>(nread)));
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF) {
      self->onEof();
    } else if (self->state_ == State::Busy) {
      self->fail(UpstreamFailure::Reset, "read failed: " + uvError(static_cast<int>(nread)));
    } else {
      self->close();
    }
    return;
  }
  if (self->tls_) {
    self->onTlsData(buf->base, static_cast<size_t>(nread));
    return;
  }
  self->onData(buf->base, static_cast<size_t>(nread));
}

void UpstreamConnection::onData(const char* data, size_t len) {
  if (state_ != State::Busy) {
    // An idle connection must stay silent; anything it sends (an error page, a close) makes it
    // unusable.
    close();
    return;
  }
  if (upgraded_) {
    relayUpgraded(data, len);
    return;
  }
  if (response_complete_) {
    // Bytes after the end of the response, before we finished with it: unsolicited.
    fail(UpstreamFailure::ProtocolError, "upstream sent data after the response");
    return;
  }
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (state_ != State::Busy) return;  // a callback closed us
  if (upgraded_ && err == HPE_PAUSED) {
    // The 101's head ended the HTTP part; what follows in this read is the new protocol's.
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos == nullptr) pos = data + len;
    relayUpgraded(pos, static_cast<size_t>(data + len - pos));
    return;
  }
  if (err == HPE_PAUSED && response_complete_) {
    const char* pos = llhttp_get_error_pos(&parser_);
    bool trailing = pos != nullptr && pos < data + len;
    llhttp_resume(&parser_);
    if (trailing) {
      // Whatever those bytes are (a second answer, a miscounted body), they must not be read as
      // the answer to the next request sent on this connection.
      spdlog::debug("upstream {} sent {} bytes after a complete response; its connection is "
                    "closed, not reused",
                    pool_.key(), data + len - pos);
    }
    finishResponse(!trailing);
    return;
  }
  if (err != HPE_OK) {
    std::string reason = llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : "";
    // llhttp names every callback's refusal alike; say which status onHeadersComplete refused.
    if (err == HPE_CB_HEADERS_COMPLETE && !statusInRange(parser_.status_code)) {
      reason = "status code " + std::to_string(parser_.status_code) + " outside 100-599";
    } else if (err == HPE_CB_HEADERS_COMPLETE && parser_.status_code == 101) {
      reason = expect_upgrade_ ? "101 Switching Protocols without an Upgrade header (or "
                                 "without connection: upgrade)"
                               : "101 Switching Protocols to a request that did not ask to "
                                 "upgrade";
    } else if (err == HPE_CB_HEADER_FIELD_COMPLETE) {
      reason = "a header name that is empty or has a space in it (not a token)";
    }
    fail(UpstreamFailure::ProtocolError, "invalid HTTP response from upstream: " + reason);
    return;
  }
  if (client_ != nullptr) client_->onUpstreamReadComplete();
}

void UpstreamConnection::relayUpgraded(const char* data, size_t len) {
  if (len > 0 && client_ != nullptr) client_->onUpgradeData(data, len);
  if (client_ != nullptr) client_->onUpstreamReadComplete();
}

void UpstreamConnection::onEof() {
  if (state_ != State::Busy) {
    close();
    return;
  }
  if (upgraded_) {
    UpstreamClient* client = client_;
    client_ = nullptr;
    close();
    if (client != nullptr) client->onUpgradeEnd();
    return;
  }
  if (response_started_) {
    // A response without Content-Length or chunking ends at EOF.
    llhttp_errno_t err = llhttp_finish(&parser_);
    // on_message_complete pauses the parser, so a completed message reports HPE_PAUSED.
    if ((err == HPE_OK || err == HPE_PAUSED) && response_complete_) {
      finishResponse();
      return;
    }
  }
  fail(UpstreamFailure::Reset, "upstream closed the connection");
}

void UpstreamConnection::finishResponse(bool may_reuse) {
  // A close-delimited response ended with EOF: should_keep_alive is false then. A declined
  // upgrade leaves the connection HTTP/1.1 (RFC 9110 7.8), but servers that half-switched (or
  // whose parser still waits for the new protocol) are not worth the risk: it is not reused.
  bool reusable =
      may_reuse && request_complete_ && !expect_upgrade_ && llhttp_should_keep_alive(&parser_);
  UpstreamClient* client = client_;
  client_ = nullptr;
  ++requests_served_;
  pool_.release(this, reusable);
  if (client != nullptr) client->onResponseComplete();
}

void UpstreamConnection::fail(UpstreamFailure reason, const std::string& detail) {
  UpstreamClient* client = client_;
  bool started = response_started_;
  client_ = nullptr;
  close();
  if (client != nullptr) client->onUpstreamReset(reason, detail, started);
}

void UpstreamConnection::close() {
  if (state_ == State::Closing && open_handles_ == 0) return;
  bool was_closing = (state_ == State::Closing);
  state_ = State::Closing;
  client_ = nullptr;
  if (was_closing && uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) return;
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UpstreamConnection::onClose);
  }
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &UpstreamConnection::onClose);
  }
}

void UpstreamConnection::onClose(uv_handle_t* handle) {
  auto* self = static_cast<UpstreamConnection*>(handle->data);
  if (--self->open_handles_ > 0) return;
  self->pool_.onConnectionClosed(self);  // deletes self
}

int UpstreamConnection::onMessageBegin(llhttp_t* p) {
  auto* self = fromParser(p);
  self->resetParserState();
  return 0;
}

int UpstreamConnection::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  self->headers_.appendName(at, len);
  return self->headers_.bytes() > kMaxResponseHeaderBytes ? -1 : 0;
}

int UpstreamConnection::onHeaderFieldComplete(llhttp_t* p) {
  return fromParser(p)->headers_.nameComplete() ? 0 : -1;  // onData() says why
}

int UpstreamConnection::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  self->headers_.appendValue(at, len);
  return self->headers_.bytes() > kMaxResponseHeaderBytes ? -1 : 0;
}

int UpstreamConnection::onHeaderValueComplete(llhttp_t* p) {
  fromParser(p)->headers_.valueComplete();
  return 0;
}

int UpstreamConnection::onHeadersComplete(llhttp_t* p) {
  auto* self = fromParser(p);
  int status = p->status_code;
  if (!statusInRange(status)) {
    // llhttp takes any three digits (and less from a broken status line); a client may not know
    // what to do with them, and a status this proxy cannot classify is a broken upstream (Envoy
    // answers 502 too). onData() reports it.
    return -1;
  }
  if (status >= 100 && status < 200 && status != 101) {
    // Interim response (100 Continue, 103 Early Hints): the proxy answers 100-continue itself,
    // so these are consumed here and the final response is awaited.
    self->interim_ = true;
    return 1;
  }
  if (status == 101) {
    // Only an answer to a request that asked to upgrade, and only with the Upgrade header that
    // says to what (RFC 9110 15.2.2) and connection: upgrade (llhttp's `upgrade` needs both):
    // anything else cannot be relayed.
    if (!self->expect_upgrade_ || p->upgrade == 0) return -1;
    self->upgraded_ = true;
  }
  self->response_started_ = true;
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool has_cl = (p->flags & F_CONTENT_LENGTH) != 0;
  uint64_t cl = p->content_length;
  if (self->client_ != nullptr) {
    self->client_->onResponseHeaders(status, self->headers_, chunked, has_cl, cl);
  }
  if (self->state_ != State::Busy) return HPE_PAUSED;
  // 1 tells llhttp there is no body whatever the framing headers say: the answer to a HEAD, and
  // 204/304, which never have one (RFC 9110 6.4.1) even when a 304 carries the Content-Length of
  // the representation, as it may. Waiting for that body would hang until the route timeout.
  return self->expect_no_body_ || status == 204 || status == 304 ? 1 : 0;
}

int UpstreamConnection::onBody(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  if (self->client_ != nullptr) self->client_->onResponseBody(at, len);
  return self->state_ == State::Busy ? 0 : HPE_PAUSED;
}

int UpstreamConnection::onMessageComplete(llhttp_t* p) {
  auto* self = fromParser(p);
  if (self->upgraded_) return HPE_PAUSED;  // the tunnel starts; the response never completes
  if (self->interim_) {
    self->interim_ = false;
    return 0;
  }
  self->response_complete_ = true;
  return HPE_PAUSED;
}

// ---------------------------------------------------------------------------------------------
// ConnectionPool

ConnectionPool::ConnectionPool(Worker& worker, const EndpointInfo& endpoint)
    : worker_(worker), endpoint_(endpoint) {}

ConnectionPool::~ConnectionPool() {
  // Only destroyed empty (drained) or at worker shutdown after the loop closed every handle.
}

std::shared_ptr<PendingRequest> ConnectionPool::newStream(UpstreamClient& client,
                                                          const ClusterInfo& cluster,
                                                          bool force_new_connection) {
  stats_ = cluster.stats;
  connect_timeout_ = cluster.config->connect_timeout;
  max_connections_ = std::max<uint32_t>(1, cluster.config->limits.max_connections);
  max_pending_ = cluster.config->limits.max_pending_requests;

  if (!force_new_connection && !idle_.empty()) {
    UpstreamConnection* conn = idle_.back();
    idle_.pop_back();
    conn->attach(&client);
    client.onPoolReady(*conn);
    return nullptr;
  }
  size_t live_pending = pending_.size();
  if (live_pending >= max_pending_) {
    client.onPoolFailure(UpstreamFailure::PoolOverflow,
                         "too many requests waiting for a connection to " + endpoint_.key);
    return nullptr;
  }
  auto pending = std::make_shared<PendingRequest>(&client, force_new_connection);
  pending_.push_back(pending);
  if (connecting_ < pending_.size() && connections_.size() < max_connections_) {
    createConnection();
  }
  return pending;
}

UpstreamConnection* ConnectionPool::createConnection() {
  auto* conn = new UpstreamConnection(*this, worker_);
  connections_.push_back(conn);
  conn->self_ = std::prev(connections_.end());
  ++connecting_;
  if (stats_ != nullptr) {
    stats_->upstream_connections.inc();
    stats_->upstream_connections_active.add(1);
    conn->counted_in_ = stats_;
  }
  conn->connect(endpoint_, connect_timeout_);
  return conn;
}

void ConnectionPool::onConnected(UpstreamConnection* conn) {
  --connecting_;
  idle_.push_back(conn);
  servePending();
}

void ConnectionPool::onConnectFailed(UpstreamConnection* conn, UpstreamFailure reason,
                                     const std::string& detail) {
  --connecting_;
  if (stats_ != nullptr) stats_->upstream_connect_failures.inc();
  // The oldest waiting request fails: the connection was opened on its behalf. So does every
  // waiting request that no other connect in flight is for: at max_connections each would
  // otherwise wait out a connect timeout of its own, one after another, to the endpoint that has
  // just failed one (Envoy purges its pending streams on a connect failure too). Their retry
  // policy, not this queue, decides where they go next.
  while (!pending_.empty() && pending_.front()->cancelled) pending_.pop_front();
  if (pending_.empty()) return;
  std::vector<std::shared_ptr<PendingRequest>> failed;
  failed.push_back(std::move(pending_.front()));
  pending_.pop_front();
  size_t live = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if ((*it)->cancelled) {
      it = pending_.erase(it);
    } else if (live < connecting_) {
      ++live;  // the oldest keep the connects in flight
      ++it;
    } else {
      failed.push_back(std::move(*it));
      it = pending_.erase(it);
    }
  }
  // Out of the queue before any callback: a retry that comes back to this pool from inside one
  // is a new request, not one of these.
  for (size_t i = 0; i < failed.size(); ++i) {
    if (failed[i]->cancelled) continue;
    failed[i]->cancelled = true;
    failed[i]->client->onPoolFailure(
        reason, i == 0 ? detail
                       : detail + "; this request was waiting for a connection to the endpoint");
  }
}

UpstreamConnection* ConnectionPool::takeIdle(bool needs_new_connection) {
  if (idle_.empty()) return nullptr;
  if (needs_new_connection) {
    for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
      if (!(*it)->reused()) {
        UpstreamConnection* conn = *it;
        idle_.erase(std::next(it).base());
        return conn;
      }
    }
    // No new connection is coming (at max_connections, every slot busy or pooled): a pooled one
    // rather than waiting for the route timeout.
    if (connecting_ > 0 || connections_.size() < max_connections_) return nullptr;
  }
  UpstreamConnection* conn = idle_.back();
  idle_.pop_back();
  return conn;
}

void ConnectionPool::servePending() {
  // Oldest first; a request that needs a new connection lets younger ones take pooled ones.
  // onPoolReady may queue requests again (a replay), so the scan restarts after each one served.
  while (!idle_.empty() && !pending_.empty()) {
    std::shared_ptr<PendingRequest> served;
    UpstreamConnection* conn = nullptr;
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if ((*it)->cancelled) continue;
      conn = takeIdle((*it)->needs_new_connection);
      if (conn != nullptr) {
        served = std::move(*it);
        pending_.erase(it);
        break;
      }
    }
    if (conn == nullptr) break;
    conn->attach(served->client);
    served->client->onPoolReady(*conn);
  }
  // Drop cancelled requests at the head so they do not count against max_pending.
  while (!pending_.empty() && pending_.front()->cancelled) pending_.pop_front();
}

void ConnectionPool::release(UpstreamConnection* conn, bool reusable) {
  // No separate idle cap: max_connections bounds the pool, and closing idle connections below it
  // only makes the next burst reconnect (at 256 concurrent clients a cap of 128 churned half of
  // the upstream connections).
  bool keep = reusable && !draining_;
  if (keep) {
    conn->state_ = UpstreamConnection::State::Idle;
    // An idle connection always reads, so that an upstream close is noticed at once.
    conn->readDisable(false);
    idle_.push_back(conn);
    servePending();
    return;
  }
  conn->close();
  // The closed connection frees a slot (it leaves connections_ only in its close callback).
  if (!pending_.empty() && connecting_ < pending_.size() &&
      connections_.size() - 1 < max_connections_ && !draining_) {
    createConnection();
  }
}

void ConnectionPool::onConnectionClosed(UpstreamConnection* conn) {
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (*it == conn) {
      idle_.erase(it);
      break;
    }
  }
  connections_.erase(conn->self_);
  if (conn->counted_in_ != nullptr) conn->counted_in_->upstream_connections_active.sub(1);
  delete conn;
  if (draining_) {
    if (connections_.empty()) worker_.onPoolEmpty(this);
    return;
  }
  // A slot is free: a request waiting for one (the pool was at max_connections) gets a new
  // connection now, not when some busy connection happens to finish (or at its route timeout,
  // when every connection closed instead).
  while (!pending_.empty() && pending_.front()->cancelled) pending_.pop_front();
  if (!pending_.empty() && connecting_ < pending_.size() &&
      connections_.size() < max_connections_) {
    createConnection();
  }
}

void ConnectionPool::drain() {
  draining_ = true;
  std::deque<UpstreamConnection*> idle;
  idle.swap(idle_);
  for (auto* c : idle) c->close();
  for (auto& p : pending_) {
    if (!p->cancelled) {
      p->cancelled = true;
      p->client->onPoolFailure(UpstreamFailure::ConnectFailure, "endpoint removed from config");
    }
  }
  pending_.clear();
  if (connections_.empty()) worker_.onPoolEmpty(this);
}

}  // namespace remora
