#include "downstream.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include "access_log.h"

namespace remora {

namespace {

// Bytes held for a pipelining client while its current request is served; reading stops above it.
constexpr size_t kMaxPipelinedBytes = 64 * 1024;
// How long a connection closed after an error keeps reading (and discarding) so the client sees
// the error response instead of a reset caused by unread data.
constexpr std::chrono::milliseconds kLingerTimeout{2000};
// Marks a callback error as "the head was refused" (a size limit, obs-fold): answered with the
// status the callback chose.
constexpr int kErrHeadRefused = HPE_USER;
// Header lines per request; more is answered 431. Envoy's default (max_headers_count) is 100 too.
constexpr size_t kMaxRequestHeaders = 100;

DownstreamConnection* fromParser(llhttp_t* p) {
  return static_cast<DownstreamConnection*>(p->data);
}

std::string formatPeer(const sockaddr_storage& ss, std::string& ip_out) {
  char ip[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    port = ntohs(a->sin_port);
    ip_out = ip;
    return ip_out + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
    ip_out = ip;
    return "[" + ip_out + "]:" + std::to_string(port);
  }
  ip_out = "unknown";
  return ip_out;
}

}  // namespace

DownstreamConnection::DownstreamConnection(Worker& worker, std::string listener_name)
    : worker_(worker),
      listener_name_(std::move(listener_name)),
      writer_(reinterpret_cast<uv_stream_t*>(&tcp_), *this) {
  llhttp_init(&parser_, HTTP_REQUEST, &kParserSettings);
  parser_.data = this;
}

// One table of callbacks for every connection (llhttp keeps a pointer to it): shared, it stays in
// cache, and each connection is 208 bytes smaller.
const llhttp_settings_t DownstreamConnection::kParserSettings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &DownstreamConnection::onMessageBegin;
  s.on_url = &DownstreamConnection::onUrl;
  s.on_header_field = &DownstreamConnection::onHeaderField;
  s.on_header_value = &DownstreamConnection::onHeaderValue;
  s.on_headers_complete = &DownstreamConnection::onHeadersComplete;
  s.on_body = &DownstreamConnection::onBody;
  s.on_message_complete = &DownstreamConnection::onMessageComplete;
  return s;
}();

DownstreamConnection::~DownstreamConnection() = default;

void DownstreamConnection::accept(uv_stream_t* server) {
  uv_tcp_init(worker_.loop(), &tcp_);
  tcp_.data = this;
  uv_timer_init(worker_.loop(), &timer_);
  timer_.data = this;
  open_handles_ = 2;
  worker_.addConnection(this);
  int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_));
  if (rc != 0) {
    spdlog::warn("accept failed on listener {}: {}", listener_name_, uvError(rc));
    close();
    return;
  }
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer_address_ = formatPeer(ss, peer_ip_);
  }
  const ListenerInfo* l = currentListener();
  if (l == nullptr) {
    close();
    return;
  }
  if (l->config->max_connections != 0 &&
      !l->stats->downstream_connections_active.tryAdd(1, l->config->max_connections)) {
    // Over the listener's cap: close at once (as Envoy does), so the client learns quickly and
    // the connections already open keep their share of the worker.
    l->stats->downstream_connections_rejected.inc();
    spdlog::debug("listener {}: max_connections ({}) reached; closing the connection from {}",
                  listener_name_, l->config->max_connections, peer_address_);
    close();
    return;
  }
  if (l->config->max_connections == 0) l->stats->downstream_connections_active.add(1);
  l->stats->downstream_connections.inc();
  listener_stats_ = l->stats;
  if (l->tls) {
    // The context of the snapshot current at accept time: a rotated certificate applies to new
    // connections, established ones keep theirs.
    tls_ = tls::Session::server(l->tls);
    if (!tls_) {
      spdlog::error("listener {}: cannot create a TLS session (out of memory?); closing {}",
                    listener_name_, peer_address_);
      close();
      return;
    }
    writer_.setTls(tls_.get());
  }
  setTimer(TimerMode::Idle, l->config->idle_timeout);
  updateReading();
}

const ListenerInfo* DownstreamConnection::currentListener() {
  const SnapshotConstSharedPtr& current = worker_.snapshot();
  if (current != snapshot_) {
    snapshot_ = current;
    listener_ = snapshot_ ? snapshot_->findListener(listener_name_) : nullptr;
  }
  return listener_;
}

void DownstreamConnection::setTimer(TimerMode mode, std::chrono::milliseconds timeout) {
  // Lazy: a request moves this timer through three or four modes, and each uv_timer_start or
  // stop is a heap operation. The uv timer stays armed while it is due no later than the new
  // deadline; when it fires early, onTimer() arms it again for the rest. So a keep-alive request
  // usually costs one heap operation, not four.
  if (mode == TimerMode::None || timeout.count() <= 0) {
    timer_mode_ = TimerMode::None;  // an armed uv timer fires and finds nothing to do
    return;
  }
  timer_mode_ = mode;
  const uint64_t now = uv_now(worker_.loop());
  timer_deadline_ = now + static_cast<uint64_t>(timeout.count());
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)) != 0 && timer_due_ <= timer_deadline_) {
    return;
  }
  timer_due_ = timer_deadline_;
  uv_timer_start(&timer_, &DownstreamConnection::onTimer, static_cast<uint64_t>(timeout.count()),
                 0);
}

void DownstreamConnection::armRouteTimer(std::chrono::milliseconds timeout) {
  setTimer(timeout.count() > 0 ? TimerMode::Route : TimerMode::None, timeout);
}

void DownstreamConnection::onTimer(uv_timer_t* timer) {
  auto* self = static_cast<DownstreamConnection*>(timer->data);
  TimerMode mode = self->timer_mode_;
  if (mode == TimerMode::None) return;
  const uint64_t now = uv_now(self->worker_.loop());
  if (now < self->timer_deadline_) {
    // Armed for an earlier mode: wait for the rest of the current one.
    self->timer_due_ = self->timer_deadline_;
    uv_timer_start(timer, &DownstreamConnection::onTimer, self->timer_deadline_ - now, 0);
    return;
  }
  self->timer_mode_ = TimerMode::None;
  switch (mode) {
    case TimerMode::Idle:
      spdlog::debug("closing idle connection from {}", self->peer_address_);
      self->close();
      break;
    case TimerMode::RequestHeaders:
      self->localReplyAndClose(408, "request headers not received in time");
      break;
    case TimerMode::Route:
      if (self->stream_) self->stream_->onRouteTimeout();
      break;
    case TimerMode::Linger:
      self->close();
      break;
    case TimerMode::None:
      break;
  }
}

void DownstreamConnection::onAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  *buf = static_cast<DownstreamConnection*>(handle->data)->worker_.readBuffer();
}

void DownstreamConnection::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<DownstreamConnection*>(s->data);
  if (nread == 0) return;
  if (self->lingering_) {
    if (nread < 0) self->close();  // EOF or error: the client has read our answer
    return;
  }
  self->last_client_io_ms_ = uv_now(self->worker_.loop());
  if (nread < 0) {
    if (nread == UV_EOF) {
      self->onPeerEof();
      return;
    }
    if (self->stream_ && !self->stream_->complete()) {
      self->stream_->onDownstreamReset("client connection error: " +
                                       uvError(static_cast<int>(nread)));
    }
    self->close();
    return;
  }
  if (self->tls_) {
    self->onTlsInput(buf->base, static_cast<size_t>(nread));
    return;
  }
  self->processInput(buf->base, static_cast<size_t>(nread));
}

void DownstreamConnection::onPeerEof() {
  peer_closed_ = true;
  if (tunnel_ && stream_ && !stream_->complete()) {
    // The client is done sending; the upstream may still answer: pass the half-close on.
    stream_->onTunnelClientEof();
    updateReading();
    return;
  }
  finishAfterPeerClosed();
}

void DownstreamConnection::finishAfterPeerClosed() {
  // A half-close after whole requests is legal: each is answered in order, the ones pipelined
  // behind the first included (onStreamComplete and processPipelined come back here), then the
  // connection closes. A request left unfinished means the client gave up on it.
  if (parser_paused_) {
    updateReading();
    return;
  }
  if (stream_ && !stream_->complete()) {
    stream_->onDownstreamReset("client closed the connection before the request ended");
    close();
    return;
  }
  startLingeringClose();  // the answers already written still go out first
}

void DownstreamConnection::onTlsInput(const char* data, size_t len) {
  tls_->receive(data, len);
  // The ciphertext is in the session now, so the worker's read buffer can take the plaintext.
  uv_buf_t plain = worker_.readBuffer();
  while (!closing_) {
    ssize_t n = tls_->read(plain.base, plain.len);
    if (n > 0) {
      if (peer_identity_ == nullptr) onTlsEstablished();
      processInput(plain.base, static_cast<size_t>(n));
      continue;
    }
    if (n == tls::Session::kWantMore) break;
    if (n == tls::Session::kClosed) {
      onPeerEof();
      return;
    }
    // Fatal: a failed handshake (no or untrusted client certificate, no shared cipher) or a
    // corrupt record. Send the alert OpenSSL queued, then close.
    if (peer_identity_ == nullptr && listener_stats_ != nullptr) {
      listener_stats_->tls_handshake_errors.inc();
    }
    spdlog::debug("listener {}: TLS with {} failed: {}", listener_name_, peer_address_,
                  tls_->error());
    if (stream_ && !stream_->complete()) stream_->onDownstreamReset(tls_->error());
    writer_.flushTls();
    closing_ = true;
    startLingeringClose();
    return;
  }
  if (peer_identity_ == nullptr && tls_->handshakeDone()) onTlsEstablished();
  if (int rc = writer_.flushTls(); rc != 0) onWriteError(rc);
}

void DownstreamConnection::onTlsEstablished() {
  peer_identity_ = &tls_->peer();
  if (listener_stats_ != nullptr) listener_stats_->tls_handshakes.inc();
}

void DownstreamConnection::processInput(const char* data, size_t len) {
  if (closing_) return;
  if (tunnel_) {
    if (stream_ && !stream_->complete()) stream_->onTunnelData(data, len);
    return;
  }
  if (parser_paused_) {
    // A request is in flight: hold what the client pipelines behind it.
    pipelined_.append(data, len);
    updateReading();
    return;
  }
  // For obs-fold detection (onHeaderValue): the last byte before this buffer that is not SP/HT.
  non_ws_before_input_ = non_ws_tail_;
  for (size_t i = len; i-- > 0;) {
    if (data[i] != ' ' && data[i] != '\t') {
      non_ws_tail_ = data[i];
      break;
    }
  }
  input_begin_ = data;
  input_len_ = len;
  parsing_input_ = true;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  parsing_input_ = false;
  if (stream_) stream_->flushUpstream();
  if (closing_) return;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos != nullptr && pos < data + len) pipelined_.append(pos, static_cast<size_t>(data + len - pos));
    parser_paused_ = true;
    if (err == HPE_PAUSED_UPGRADE) {
      // Upgrade is stripped on the way up (hop-by-hop); the connection keeps speaking HTTP/1.1.
      llhttp_resume_after_upgrade(&parser_);
      llhttp_pause(&parser_);
    }
    updateReading();
    if (!stream_) {
      // The request was answered before it even completed; parse the next one after this event
      // (not recursively: a client may pipeline thousands of tiny requests).
      worker_.defer([this] { processPipelined(); });
    }
    return;
  }
  if (err != HPE_OK) onParseError(err);
}

void DownstreamConnection::startTunnel() {
  tunnel_ = true;
  setTimer(TimerMode::None, {});  // the route timeout ends with the 101; idle_timeout goes on
  noteTunnelActivity();
  std::string early;
  early.swap(pipelined_);  // sent behind the request, before the 101 came
  if (!early.empty()) stream_->onTunnelData(early.data(), early.size());
  // A client that half-closed after its request (legal) is done sending: the upstream hears so.
  if (peer_closed_ && stream_ && !stream_->complete()) stream_->onTunnelClientEof();
  updateReading();
}

void DownstreamConnection::processPipelined() {
  if (closing_ || stream_ || !parser_paused_) return;
  parser_paused_ = false;
  llhttp_resume(&parser_);
  if (!pipelined_.empty()) {
    // Parse from a copy: processing may append to pipelined_ again.
    std::string input;
    input.swap(pipelined_);
    processInput(input.data(), input.size());
  }
  if (closing_) return;
  if (peer_closed_) {
    finishAfterPeerClosed();
    return;
  }
  updateReading();
}

void DownstreamConnection::onParseError(llhttp_errno_t err) {
  if (err == kErrHeadRefused && refused_status_ != 0) {
    localReplyAndClose(refused_status_, refused_reason_);
    return;
  }
  if (err == HPE_INVALID_METHOD && !stream_) {
    // llhttp knows a fixed list of methods; a well-formed one outside it is not malformed.
    const char* pos = llhttp_get_error_pos(&parser_);
    std::string_view input(input_begin_, input_len_);
    if (pos != nullptr && pos >= input_begin_ && http::isUnknownMethod(input, pos - input_begin_)) {
      localReplyAndClose(501, "request method not implemented by this proxy (it relays the "
                              "methods of RFC 9110, WebDAV and PATCH)");
      return;
    }
  }
  const char* reason = llhttp_get_error_reason(&parser_);
  std::string why = std::string("malformed HTTP request: ") + (reason ? reason : llhttp_errno_name(err));
  spdlog::debug("{} from {}", why, peer_address_);
  if (stream_ && !stream_->complete()) {
    // The headers were fine but the body is not (bad chunk size...).
    stream_->sendLocalReply(400, why, true);
    close_after_flush_ = true;
    closing_ = true;
    if (stream_) stream_->onDownstreamReset(why);
    startLingeringClose();
    return;
  }
  localReplyAndClose(400, why);
}

void DownstreamConnection::localReplyAndClose(int status, std::string_view reason) {
  if (closing_) return;
  if (stream_ && !stream_->complete()) {
    stream_->sendLocalReply(status, reason, true);
    return;
  }
  closing_ = true;
  const ListenerInfo* l = currentListener();
  std::string body(reason);
  body.push_back('\n');
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    std::string(http::reasonPhrase(status)) +
                    "\r\ncontent-type: text/plain\r\ncontent-length: " +
                    std::to_string(body.size()) +
                    "\r\nx-remora-attempts: 0\r\nconnection: close\r\n\r\n" + body;
  writer_.write(out);
  if (l != nullptr) l->stats->downstream_requests.inc(status);
  if (AccessLogger* log = worker_.accessLog()) {
    AccessLogEntry e;
    e.listener = listener_name_;
    e.method = head_.method;
    e.path = head_.url;
    e.status = status;
    e.downstream_address = peer_address_;
    e.error = std::string(reason);
    log->log(e);
  }
  startLingeringClose();
}

void DownstreamConnection::startLingeringClose() {
  closing_ = true;
  close_after_flush_ = true;
  if (writer_.pendingBytes() == 0) closeAfterFlush();
}

void DownstreamConnection::closeAfterFlush() {
  if (lingering_ || uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) return;
  lingering_ = true;
  if (peer_closed_) {
    close();
    return;
  }
  // close_notify first on TLS, so the client can tell our close from a truncation attack.
  if (tls_ && tls_->handshakeDone()) {
    tls_->shutdown();
    writer_.flushTls();
  }
  // Send FIN, keep reading (and discarding) until the client closes or the linger time passes.
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_),
                  &DownstreamConnection::onShutdown) != 0) {
    close();
    return;
  }
  setTimer(TimerMode::Linger, kLingerTimeout);
  read_paused_ = 0;
  updateReading();
}

void DownstreamConnection::onShutdown(uv_shutdown_t* req, int status) {
  auto* self = static_cast<DownstreamConnection*>(req->data);
  if (status < 0 && status != UV_ECANCELED) self->close();
}

void DownstreamConnection::readDisable(uint32_t reason, bool disable) {
  if (disable) {
    read_paused_ |= reason;
  } else {
    read_paused_ &= ~reason;
  }
  updateReading();
}

void DownstreamConnection::updateReading() {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) return;
  bool want = !peer_closed_;
  if (!lingering_) {
    if (closing_ || (read_paused_ & kReadPausedUpstreamFull) != 0) want = false;
    // While a request is in flight keep reading (to notice a client that goes away), but only up
    // to a bound of pipelined bytes.
    if (parser_paused_ && !tunnel_ && pipelined_.size() >= kMaxPipelinedBytes) want = false;
  }
  auto* s = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want && !reading_) {
    if (uv_read_start(s, &DownstreamConnection::onAlloc, &DownstreamConnection::onRead) == 0) {
      reading_ = true;
    }
  } else if (!want && reading_) {
    uv_read_stop(s);
    reading_ = false;
  }
}

void DownstreamConnection::onWriteProgress() {
  last_client_io_ms_ = uv_now(worker_.loop());
  if (close_after_flush_ && writer_.pendingBytes() == 0) {
    closeAfterFlush();
    return;
  }
  if (stream_ && !stream_->complete()) stream_->onDownstreamWritable();
}

void DownstreamConnection::onWriteError(int err) {
  if (stream_ && !stream_->complete()) {
    stream_->onDownstreamReset("write to client failed: " + uvError(err));
  }
  close();
}

void DownstreamConnection::onStreamComplete(bool close_connection) {
  worker_.deferredDelete(std::move(stream_));
  // stream_idle_timer_ stays armed: firing without a stream in flight does nothing, and the next
  // request finds it armed (armStreamIdleTimer), which saves two timer heap operations each.
  // A client that half-closed behind pipelined requests still gets their answers: the rest of
  // the input being parsed (a local reply completes its stream from inside the parser), or bytes
  // held while the stream ran.
  const bool nothing_left =
      peer_closed_ && !parsing_input_ && (!parser_paused_ || pipelined_.empty());
  const ListenerInfo* l = currentListener();
  if (close_connection || draining_ || nothing_left || !keep_alive_ || l == nullptr) {
    // (No listener: it was removed by a reload.)
    startLingeringClose();
    return;
  }
  setTimer(TimerMode::Idle, l->config->idle_timeout);
  if (parser_paused_) {
    // Parse what the client pipelined after the event that completed this stream returns.
    worker_.defer([this] { processPipelined(); });
  } else {
    updateReading();
  }
}

void DownstreamConnection::drain() {
  draining_ = true;
  if (!stream_ && !in_message_) {
    close();
  }
}

void DownstreamConnection::close() {
  closing_ = true;
  auto* h = reinterpret_cast<uv_handle_t*>(&tcp_);
  if (uv_is_closing(h)) return;
  if (stream_ && !stream_->complete()) stream_->onDownstreamReset("connection closed");
  if (stream_) worker_.deferredDelete(std::move(stream_));
  stream_idle_timer_.reset();
  if (listener_stats_ != nullptr) listener_stats_->downstream_connections_active.sub(1);
  listener_stats_ = nullptr;
  listener_ = nullptr;
  snapshot_.reset();
  uv_close(h, &DownstreamConnection::onClose);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &DownstreamConnection::onClose);
}

void DownstreamConnection::onClose(uv_handle_t* handle) {
  auto* self = static_cast<DownstreamConnection*>(handle->data);
  if (--self->open_handles_ > 0) return;
  self->worker_.removeConnection(self);
  delete self;
}

void DownstreamConnection::armStreamIdleTimer() {
  const ListenerInfo* l = currentListener();
  if (l == nullptr || l->config->idle_timeout.count() <= 0) return;
  if (!stream_idle_timer_) {
    stream_idle_timer_ = std::make_unique<Timer>(worker_.loop(), [this] { onStreamIdleTimeout(); });
  }
  last_client_io_ms_ = uv_now(worker_.loop());
  // Already armed (by an earlier request): onStreamIdleTimeout() measures the silence from
  // last_client_io_ms_ and waits for the rest when it fires early.
  if (!stream_idle_timer_->enabled()) stream_idle_timer_->enable(l->config->idle_timeout);
}

void DownstreamConnection::onStreamIdleTimeout() {
  const ListenerInfo* l = currentListener();
  if (!stream_ || stream_->complete() || l == nullptr) return;
  const auto idle = static_cast<uint64_t>(l->config->idle_timeout.count());
  const uint64_t since = uv_now(worker_.loop()) - last_client_io_ms_;
  if (since < idle) {
    // Bytes moved meanwhile: look again when the quiet period could have lasted idle_timeout.
    stream_idle_timer_->enable(std::chrono::milliseconds(idle - since));
    return;
  }
  if (tunnel_) {
    spdlog::debug("upgraded connection from {} carried nothing either way for idle_timeout "
                  "({}ms); closing it",
                  peer_address_, idle);
    close();
    return;
  }
  // Only the client's own silence counts: while the proxy waits for the upstream (which the
  // route timeout bounds) or has paused reading for flow control, the client is not at fault.
  const bool not_reading = writer_.pendingBytes() > 0;
  const bool not_sending =
      in_message_ && !parser_paused_ && (read_paused_ & kReadPausedUpstreamFull) == 0;
  if (!not_reading && !not_sending) {
    stream_idle_timer_->enable(l->config->idle_timeout);
    return;
  }
  if (not_sending && !stream_->responseStarted()) {
    spdlog::debug("request body from {} stalled for idle_timeout ({}ms); answering 408",
                  peer_address_, idle);
    stream_->sendLocalReply(408, "request body not received within the listener's idle_timeout",
                            true);
    return;
  }
  spdlog::debug("client {} stopped {} for idle_timeout ({}ms); closing the connection",
                peer_address_, not_reading ? "reading the response" : "sending the request", idle);
  close();
}

// --- llhttp callbacks ------------------------------------------------------------------------

int DownstreamConnection::onMessageBegin(llhttp_t* p) {
  auto* self = fromParser(p);
  self->head_.reset();
  http::clearKeepingUpTo(self->field_, 1024);
  http::clearKeepingUpTo(self->value_, 4 * 1024);
  self->in_value_ = false;
  self->header_bytes_ = 0;
  self->refused_status_ = 0;
  self->in_message_ = true;
  const ListenerInfo* l = self->currentListener();
  if (l != nullptr) {
    self->max_header_bytes_ = static_cast<size_t>(l->config->max_request_headers_kb) * 1024;
    self->setTimer(TimerMode::RequestHeaders, l->config->request_headers_timeout);
  }
  return 0;
}

int DownstreamConnection::onUrl(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  self->header_bytes_ += len;
  if (self->header_bytes_ > self->max_header_bytes_) {
    return self->refuseHead(414, "request target longer than the listener's "
                                    "max_request_headers_kb");
  }
  self->head_.url.append(at, len);
  return 0;
}

int DownstreamConnection::refuseHead(int status, const char* reason) {
  refused_status_ = status;
  refused_reason_ = reason;
  return kErrHeadRefused;
}

void DownstreamConnection::commitHeader() {
  http::toLowerInPlace(field_);
  head_.headers.add(field_, value_);
  field_.clear();
  value_.clear();
  in_value_ = false;
}

int DownstreamConnection::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  self->header_bytes_ += len + 4;  // ": " and CRLF count against the limit too
  if (self->header_bytes_ > self->max_header_bytes_) {
    return self->refuseHead(431, "request headers exceed the listener's max_request_headers_kb");
  }
  if (self->in_value_) {
    self->commitHeader();
    // This field starts one more header line.
    if (self->head_.headers.size() >= kMaxRequestHeaders) {
      return self->refuseHead(431, "request has more than 100 header lines");
    }
  }
  self->field_.append(at, len);
  return 0;
}

int DownstreamConnection::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  self->header_bytes_ += len;
  if (self->header_bytes_ > self->max_header_bytes_) {
    return self->refuseHead(431, "request headers exceed the listener's max_request_headers_kb");
  }
  // llhttp accepts obs-fold (a line starting with SP/HT continues the value) and drops its CRLF,
  // so a piece of value preceded, across whitespace, by a line feed is a folded line. RFC 9112
  // 5.2 allows rejecting it or unfolding it; servers disagree on what a folded line means (a
  // continuation, or a header of its own), so it is refused. An empty value ("name:\r\n") comes
  // as one empty piece that llhttp places at the start of the next line: it folds nothing.
  if (len > 0) {
    const char* q = at;
    while (q > self->input_begin_ && (q[-1] == ' ' || q[-1] == '\t')) --q;
    if ((q > self->input_begin_ ? q[-1] : self->non_ws_before_input_) == '\n') {
      return self->refuseHead(400,
                              "malformed HTTP request: obs-fold line folding in a header value");
    }
  }
  self->in_value_ = true;
  self->value_.append(at, len);
  return 0;
}

int DownstreamConnection::onHeadersComplete(llhttp_t* p) {
  auto* self = fromParser(p);
  if (self->in_value_ || !self->field_.empty()) self->commitHeader();
  RequestHead& h = self->head_;
  h.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  h.http_major = p->http_major;
  h.http_minor = p->http_minor;
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  h.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  h.content_length = p->content_length;
  self->setTimer(TimerMode::None, {});

  const ListenerInfo* l = self->currentListener();
  if (l == nullptr) {
    self->localReplyAndClose(503, "listener removed by a configuration reload");
    return HPE_PAUSED;
  }
  if (h.http_major != 1) {
    self->localReplyAndClose(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return HPE_PAUSED;
  }
  if (p->method == HTTP_CONNECT) {
    self->localReplyAndClose(501, "CONNECT is not supported");
    return HPE_PAUSED;
  }
  std::string_view why;
  if (!h.url.empty() && h.url.front() != '/') {
    why = http::absoluteFormToOriginForm(h.method, h.url, h.headers);
  }
  if (why.empty()) why = http::requestHeadError(h.method, h.url, h.http_minor, h.headers);
  if (!why.empty()) {
    self->localReplyAndClose(400, std::string("malformed HTTP request: ") + std::string(why));
    return HPE_PAUSED;
  }
  if ((p->flags & F_TRANSFER_ENCODING) != 0) {
    // llhttp accepts codings before the final "chunked"; the proxy only understands chunked alone
    // (RFC 9112 6.1: 501 for a transfer coding the server does not understand).
    const std::string* te = h.headers.get("transfer-encoding");
    if (te == nullptr || h.headers.count("transfer-encoding") != 1 ||
        !http::equalsIgnoreCase(*te, "chunked")) {
      self->localReplyAndClose(501, "unsupported transfer-encoding (only chunked is supported)");
      return HPE_PAUSED;
    }
  }
  if (h.headers.count("content-length") > 1) {
    // llhttp rejects differing duplicates; identical ones are still ambiguous framing to some
    // upstreams, so refuse them too (request smuggling guard).
    self->localReplyAndClose(400, "duplicate content-length header");
    return HPE_PAUSED;
  }
  // An upgrade (RFC 9110 7.8) is relayed only from HTTP/1.1 (a server must ignore 1.0's), without
  // a request body, and not to h2c (the upstream side speaks HTTP/1.1): otherwise Upgrade is
  // dropped as the hop-by-hop header it is, and the request is an ordinary one.
  h.upgrade = p->upgrade != 0 && h.http_minor >= 1 && !h.hasBody() &&
              http::isRelayableUpgrade(h.headers);
  self->keep_alive_ = h.keep_alive;
  // The stream takes the head; the parser continues with a recycled one (memory kept).
  RequestHead next = self->worker_.takeRequestHead();
  std::swap(next, h);
  self->stream_ = std::make_unique<ActiveStream>(*self, self->snapshot_, *l, std::move(next));
  self->stream_->start();
  if (self->stream_ && !self->stream_->complete()) self->armStreamIdleTimer();
  return self->closing_ ? HPE_PAUSED : 0;
}

int DownstreamConnection::onBody(llhttp_t* p, const char* at, size_t len) {
  auto* self = fromParser(p);
  if (self->stream_ && !self->stream_->complete()) self->stream_->onRequestBody(at, len);
  return self->closing_ ? HPE_PAUSED : 0;
}

int DownstreamConnection::onMessageComplete(llhttp_t* p) {
  auto* self = fromParser(p);
  self->in_message_ = false;
  if (self->stream_ && !self->stream_->complete()) self->stream_->onRequestComplete();
  // Stop here: the next pipelined request is parsed once this one's response is done.
  return HPE_PAUSED;
}

}  // namespace remora
