#include "http/simple_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>

#include "snapshot.h"

namespace remora::http {

namespace {

// Bytes of pipelined requests kept while a deferred response is pending; beyond that the
// connection stops reading until the response is out (TCP then pushes back on the client).
constexpr size_t kMaxStashBytes = 64 * 1024;

}  // namespace

class SimpleHttpServer::ConnectionResponder : public Responder {
 public:
  explicit ConnectionResponder(Connection* conn) : conn_(conn) {}
  void respond(SimpleResponse response) override;
  ResponseStreamSharedPtr startStream(int status, std::string content_type,
                                      HeaderMap headers) override;
  bool pending() const override;

  Connection* conn_;  // nullptr once answered or once the connection is gone
};

class SimpleHttpServer::ConnectionStream : public ResponseStream {
 public:
  explicit ConnectionStream(Connection* conn) : conn_(conn) {}
  bool writeParts(std::vector<std::shared_ptr<const std::string>> parts) override;
  void finish() override;
  void abort() override;
  bool isOpen() const override;
  size_t bufferedBytes() const override;
  void setCloseCallback(std::function<void()> callback) override {
    close_callback_ = std::move(callback);
  }
  void setDrainCallback(std::function<void()> callback) override {
    drain_callback_ = std::move(callback);
  }
  void setDeadPeerTimeout(std::chrono::milliseconds timeout) override;
  std::string peer() const override;

  Connection* conn_;  // nullptr once the connection is gone
  std::function<void()> close_callback_;
  std::function<void()> drain_callback_;
};

class SimpleHttpServer::Connection {
 public:
  explicit Connection(SimpleHttpServer& server) : server_(server) {
    llhttp_settings_init(&settings_);
    settings_.on_message_begin = [](llhttp_t* p) {
      auto* c = static_cast<Connection*>(p->data);
      c->req_ = SimpleRequest();
      c->field_.clear();
      c->value_.clear();
      c->in_value_ = false;
      return 0;
    };
    settings_.on_url = [](llhttp_t* p, const char* at, size_t len) {
      auto* c = static_cast<Connection*>(p->data);
      c->req_.url.append(at, len);
      return c->req_.url.size() > 8192 ? -1 : 0;
    };
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      auto* c = static_cast<Connection*>(p->data);
      if (c->in_value_) c->commitHeader();
      c->field_.append(at, len);
      return c->field_.size() > 8192 ? -1 : 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      auto* c = static_cast<Connection*>(p->data);
      c->in_value_ = true;
      c->value_.append(at, len);
      return c->value_.size() > 65536 ? -1 : 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = static_cast<Connection*>(p->data);
      if (c->in_value_ || !c->field_.empty()) c->commitHeader();
      c->req_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      return 0;
    };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t len) {
      auto* c = static_cast<Connection*>(p->data);
      c->req_.body.append(at, len);
      if (c->req_.body.size() <= c->server_.max_body_bytes_) return 0;
      c->body_too_large_ = true;
      return -1;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      auto* c = static_cast<Connection*>(p->data);
      c->dispatch();
      // Stop parsing while the answer is outstanding (responses must go out in request order),
      // while a stream runs (nothing may follow it) and once the connection is to be closed.
      if (c->busy() || c->closing_) {
        c->paused_ = true;
        return static_cast<int>(HPE_PAUSED);
      }
      return 0;
    };
    llhttp_init(&parser_, HTTP_REQUEST, &settings_);
    parser_.data = this;
  }

  int accept(uv_stream_t* listener) {
    uv_tcp_init(server_.loop_, &tcp_);
    tcp_.data = this;
    server_.connections_.insert(this);
    int rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&tcp_));
    if (rc != 0) {
      close();
      return rc;
    }
    if (server_.tls_) {
      tls_ = tls::Session::server(server_.tls_);
      if (!tls_) {
        close();
        return UV_ENOMEM;
      }
    }
    startReading();
    return 0;
  }

  void close() {
    if (closing_handle_) return;
    closing_handle_ = true;
    closing_ = true;
    server_.connections_.erase(this);
    if (resume_queued_) {
      server_.resume_queue_.erase(this);
      resume_queued_ = false;
    }
    // The stream's and responder's owners learn about the close from the close callback, which
    // libuv runs on a later loop iteration: never from inside one of their own calls.
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      c->detach();
      delete c;
    });
  }

  // --- used by ConnectionResponder / ConnectionStream ---

  void sendResponse(const SimpleResponse& resp) {
    responder_.reset();
    std::string out;
    out.reserve(256 + resp.body.size());
    appendStatusLine(out, resp.status, resp.content_type);
    out.append("content-length: ").append(std::to_string(resp.body.size())).append("\r\n");
    serializeHeaders(resp.headers, out);
    if (!keep_alive_) out.append("connection: close\r\n");
    out.append("\r\n");
    if (req_.method != "HEAD") out.append(resp.body);
    if (!keep_alive_) closing_ = true;
    writeOwned(std::move(out), !keep_alive_);
    if (!closing_) resumeParsing();
  }

  ResponseStreamSharedPtr beginStream(int status, const std::string& content_type,
                                      const HeaderMap& headers) {
    responder_.reset();
    auto stream = std::make_shared<ConnectionStream>(this);
    std::string out;
    appendStatusLine(out, status, content_type);
    const bool head = req_.method == "HEAD";
    if (!head) out.append("transfer-encoding: chunked\r\n");
    serializeHeaders(headers, out);
    out.append("\r\n");
    writeOwned(std::move(out), head);
    if (head) {
      // A response to HEAD has no body: the stream is over before it began.
      closing_ = true;
      stream->conn_ = nullptr;
      return stream;
    }
    stream_ = stream;
    stash_.clear();
    return stream;
  }

  void writeChunk(std::vector<std::shared_ptr<const std::string>> parts) {
    auto* w = new WriteReq();
    w->conn = this;
    for (const auto& p : parts) w->bytes += p->size();
    int n = std::snprintf(w->head, sizeof(w->head), "%zx\r\n", w->bytes);
    w->parts = std::move(parts);
    std::vector<uv_buf_t> bufs;
    bufs.reserve(w->parts.size() + 2);
    bufs.push_back(uv_buf_init(w->head, static_cast<unsigned>(n)));
    for (const auto& p : w->parts) {
      if (!p->empty()) {
        bufs.push_back(uv_buf_init(const_cast<char*>(p->data()), static_cast<unsigned>(p->size())));
      }
    }
    bufs.push_back(uv_buf_init(const_cast<char*>("\r\n"), 2));
    // libuv copies the buffer array (not the bytes) into the request.
    submit(w, bufs.data(), static_cast<unsigned>(bufs.size()));
  }

  void finishStream() {
    if (closing_) return;
    closing_ = true;
    writeOwned("0\r\n\r\n", true);
  }

  void setDeadPeerTimeout(std::chrono::milliseconds timeout) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return;
    const int secs = std::max<int>(1, static_cast<int>(timeout.count() / 1000));
    const int one = 1;
    const int idle = std::max(1, secs / 2);
    const int interval = std::max(1, secs / 6);
    const int count = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
#ifdef TCP_USER_TIMEOUT
    const unsigned int user_timeout = static_cast<unsigned int>(timeout.count());
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
#endif
  }

  std::string peer() const {
    sockaddr_storage ss{};
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char ip[64] = "?";
    char out[96];
    if (ss.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      uv_ip4_name(a, ip, sizeof(ip));
      std::snprintf(out, sizeof(out), "%s:%d", ip, ntohs(a->sin_port));
    } else {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      uv_ip6_name(a, ip, sizeof(ip));
      std::snprintf(out, sizeof(out), "[%s]:%d", ip, ntohs(a->sin6_port));
    }
    return out;
  }

  bool closing() const { return closing_; }
  size_t pendingBytes() const { return pending_bytes_; }

  // Parses what the client pipelined while an answer was outstanding; see resumeParsing().
  void parseStash() {
    resume_queued_ = false;
    if (closing_ || busy()) return;
    std::string data;
    data.swap(stash_);
    if (!reading_) startReading();
    if (!data.empty()) execute(data.data(), data.size());
  }
  bool resume_queued_ = false;

 private:
  struct WriteReq {
    uv_write_t req;
    Connection* conn = nullptr;
    std::string owned;
    std::vector<std::shared_ptr<const std::string>> parts;
    char head[24];
    size_t bytes = 0;
    bool close_after = false;
  };

  bool busy() const { return responder_ != nullptr || stream_ != nullptr; }

  void startReading() {
    reading_ = true;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp_),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* c = static_cast<Connection*>(h->data);
          *buf = uv_buf_init(c->read_buf_, sizeof(c->read_buf_));
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          static_cast<Connection*>(s->data)->onRead(nread, buf->base);
        });
  }

  void onRead(ssize_t nread, const char* data) {
    if (!tls_ || nread <= 0 || closing_handle_) {
      onPlain(nread, data);
      return;
    }
    tls_->receive(data, static_cast<size_t>(nread));
    // The ciphertext is in the session: read_buf_ can take the plaintext.
    for (;;) {
      ssize_t n = tls_->read(read_buf_, sizeof(read_buf_));
      if (n > 0) {
        onPlain(n, read_buf_);
        if (closing_handle_) return;
        continue;
      }
      flushTls();
      if (n == tls::Session::kWantMore) return;
      if (n == tls::Session::kClosed) {
        onPlain(UV_EOF, nullptr);
      } else {
        spdlog::debug("TLS with {} failed: {}", peer(), tls_->error());
        close();
      }
      return;
    }
  }

  // Sends what the TLS session produced on its own (handshake, tickets, alerts).
  void flushTls() {
    if (!tls_->hasOutput() || closing_handle_) return;
    auto* w = new WriteReq();
    w->conn = this;
    w->owned = std::string(tls_->output());
    tls_->clearOutput();
    w->bytes = w->owned.size();
    uv_buf_t b = uv_buf_init(w->owned.data(), static_cast<unsigned>(w->owned.size()));
    submitRaw(w, &b, 1);
  }

  void onPlain(ssize_t nread, const char* data) {
    if (nread < 0) {
      // A client that half-closes after its request still gets a deferred answer; a streaming
      // client that closes is gone, as is one whose connection failed.
      closing_ = true;
      if (nread != UV_EOF || stream_ != nullptr ||
          (responder_ == nullptr && pending_writes_ == 0)) {
        close();
      } else {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
        reading_ = false;
      }
      return;
    }
    if (nread == 0 || closing_ || stream_ != nullptr) return;
    if (paused_ || resume_queued_) {
      stash_.append(data, static_cast<size_t>(nread));
      if (stash_.size() > kMaxStashBytes) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
        reading_ = false;
      }
      return;
    }
    execute(data, static_cast<size_t>(nread));
  }

  void execute(const char* data, size_t len) {
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_PAUSED) {
      // Paused in on_message_complete: keep what follows the message for later.
      const char* pos = llhttp_get_error_pos(&parser_);
      if (pos != nullptr && pos >= data && pos < data + len && stream_ == nullptr && !closing_) {
        stash_.append(pos, static_cast<size_t>(data + len - pos));
      }
      return;
    }
    if (err != HPE_OK && !closing_ && !busy()) {
      keep_alive_ = false;
      if (body_too_large_) {
        SimpleResponse r = SimpleResponse::text(
            413, "request body larger than " + std::to_string(server_.max_body_bytes_) +
                     " bytes; send less at a time\n");
        sendResponse(r);
        return;
      }
      const char* reason = llhttp_get_error_reason(&parser_);
      SimpleResponse r = SimpleResponse::text(
          400, std::string("malformed request: ") +
                   (reason != nullptr ? reason : llhttp_errno_name(err)) + "\n");
      sendResponse(r);
    }
  }

  // Called after an answer when the connection stays open: parse what the client pipelined.
  void resumeParsing() {
    if (!paused_ || dispatching_) {
      // Answered from inside the handler: on_message_complete sees busy() == false and lets
      // the parser go on by itself.
      return;
    }
    paused_ = false;
    llhttp_resume(&parser_);
    if (stash_.empty()) {
      if (!reading_) startReading();
      return;
    }
    // Parsing the stash here could run the handler again from inside whatever code answered
    // the previous request (a persistence callback looping over waiters, say); do it on the
    // next loop iteration instead.
    server_.queueResume(this);
  }

  void commitHeader() {
    toLowerInPlace(field_);
    req_.headers.add(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
    in_value_ = false;
  }

  void dispatch() {
    size_t q = req_.url.find('?');
    req_.path = req_.url.substr(0, q);
    if (q != std::string::npos) req_.query = req_.url.substr(q + 1);
    keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    auto responder = std::make_shared<ConnectionResponder>(this);
    responder_ = responder;
    dispatching_ = true;
    server_.handler_(req_, responder);
    dispatching_ = false;
  }

  void appendStatusLine(std::string& out, int status, const std::string& content_type) {
    out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
    out.append(reasonPhrase(status)).append("\r\ncontent-type: ").append(content_type);
    out.append("\r\n");
  }

  void writeOwned(std::string data, bool close_after) {
    auto* w = new WriteReq();
    w->conn = this;
    w->owned = std::move(data);
    w->bytes = w->owned.size();
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init(w->owned.data(), static_cast<unsigned>(w->owned.size()));
    submit(w, &b, 1);
  }

  void submit(WriteReq* w, uv_buf_t* bufs, unsigned int nbufs) {
    if (tls_) {
      // Encrypt now; the request then owns the records instead of the plaintext parts.
      if (!tls_->write(bufs, nbufs)) {
        delete w;
        close();
        return;
      }
      w->owned = std::string(tls_->output());
      tls_->clearOutput();
      w->parts.clear();
      w->bytes = w->owned.size();
      uv_buf_t b = uv_buf_init(w->owned.data(), static_cast<unsigned>(w->owned.size()));
      submitRaw(w, &b, 1);
      return;
    }
    submitRaw(w, bufs, nbufs);
  }

  void submitRaw(WriteReq* w, uv_buf_t* bufs, unsigned int nbufs) {
    // Most answers are small and the socket is idle: write at once. A uv_write that completes
    // costs an epoll_ctl() to arm and another to disarm the socket (libuv 1.44), i.e. two more
    // syscalls per heartbeat. Only when nothing is queued (order) and nothing waits on the
    // completion (closing after it).
    if (pending_writes_ == 0 && !w->close_after && !closing_) {
      int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), bufs, nbufs);
      if (n > 0) {
        size_t written = static_cast<size_t>(n);
        while (nbufs > 0 && written >= bufs->len) {
          written -= bufs->len;
          ++bufs;
          --nbufs;
        }
        if (nbufs == 0) {
          delete w;
          return;
        }
        // The rest goes through uv_write (it copies the uv_buf_t array, not the bytes, which
        // the request owns).
        bufs->base += written;
        bufs->len -= written;
        w->bytes -= static_cast<size_t>(n);
      } else if (n != UV_EAGAIN) {
        delete w;
        close();
        return;
      }
    }
    w->req.data = w;
    ++pending_writes_;
    pending_bytes_ += w->bytes;
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), bufs, nbufs,
                      [](uv_write_t* r, int status) {
                        auto* wr = static_cast<WriteReq*>(r->data);
                        wr->conn->onWritten(wr, status);
                      });
    if (rc != 0) {
      --pending_writes_;
      pending_bytes_ -= w->bytes;
      delete w;
      close();
    }
  }

  void onWritten(WriteReq* w, int status) {
    const bool close_after = w->close_after;
    --pending_writes_;
    pending_bytes_ -= w->bytes;
    delete w;
    if (closing_handle_) return;
    if (status < 0 || close_after || (closing_ && pending_writes_ == 0 && responder_ == nullptr)) {
      close();
      return;
    }
    if (pending_writes_ == 0 && stream_ != nullptr && stream_->drain_callback_) {
      // Copied: the callback may replace itself.
      auto callback = stream_->drain_callback_;
      callback();
    }
  }

  void detach() {
    if (responder_ != nullptr) responder_->conn_ = nullptr;
    if (stream_ != nullptr) {
      stream_->conn_ = nullptr;
      auto callback = std::move(stream_->close_callback_);
      stream_->close_callback_ = nullptr;
      stream_->drain_callback_ = nullptr;
      auto keep = stream_;  // the callback may drop the owner's last reference
      if (callback) callback();
    }
  }

  friend class SimpleHttpServer;

  SimpleHttpServer& server_;
  uv_tcp_t tcp_;
  llhttp_t parser_;
  llhttp_settings_t settings_;
  SimpleRequest req_;
  std::string field_;
  std::string value_;
  std::string stash_;                               // received while paused, not parsed yet
  std::shared_ptr<ConnectionResponder> responder_;  // the unanswered request, if any
  std::shared_ptr<ConnectionStream> stream_;        // the running stream, if any
  bool in_value_ = false;
  bool keep_alive_ = true;
  bool body_too_large_ = false;  // over the server's max_body_bytes: 413, not 400
  bool paused_ = false;
  bool dispatching_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool closing_handle_ = false;
  int pending_writes_ = 0;
  size_t pending_bytes_ = 0;
  tls::SessionPtr tls_;  // the server has TLS
  char read_buf_[16384];
};

// --- ConnectionResponder ---

void SimpleHttpServer::ConnectionResponder::respond(SimpleResponse response) {
  Connection* c = conn_;
  if (c == nullptr) return;
  conn_ = nullptr;
  c->sendResponse(response);
}

ResponseStreamSharedPtr SimpleHttpServer::ConnectionResponder::startStream(int status,
                                                                           std::string content_type,
                                                                           HeaderMap headers) {
  Connection* c = conn_;
  if (c == nullptr) return std::make_shared<ConnectionStream>(nullptr);
  conn_ = nullptr;
  return c->beginStream(status, content_type, headers);
}

bool SimpleHttpServer::ConnectionResponder::pending() const { return conn_ != nullptr; }

// --- ConnectionStream ---

bool SimpleHttpServer::ConnectionStream::writeParts(
    std::vector<std::shared_ptr<const std::string>> parts) {
  if (!isOpen()) return false;
  size_t total = 0;
  for (const auto& p : parts) total += p == nullptr ? 0 : p->size();
  // An empty chunk would end the body.
  if (total == 0) return true;
  std::erase_if(parts, [](const auto& p) { return p == nullptr; });
  conn_->writeChunk(std::move(parts));
  return true;
}

void SimpleHttpServer::ConnectionStream::finish() {
  if (isOpen()) conn_->finishStream();
}

void SimpleHttpServer::ConnectionStream::abort() {
  if (conn_ != nullptr) conn_->close();
}

bool SimpleHttpServer::ConnectionStream::isOpen() const {
  return conn_ != nullptr && !conn_->closing();
}

size_t SimpleHttpServer::ConnectionStream::bufferedBytes() const {
  return conn_ == nullptr ? 0 : conn_->pendingBytes();
}

void SimpleHttpServer::ConnectionStream::setDeadPeerTimeout(std::chrono::milliseconds timeout) {
  if (conn_ != nullptr) conn_->setDeadPeerTimeout(timeout);
}

std::string SimpleHttpServer::ConnectionStream::peer() const {
  return conn_ == nullptr ? "?" : conn_->peer();
}

// --- SimpleHttpServer ---

SimpleHttpServer::SimpleHttpServer(uv_loop_t* loop, SimpleHandler handler, size_t max_body_bytes)
    : loop_(loop),
      handler_([h = std::move(handler)](const SimpleRequest& req, const ResponderSharedPtr& r) {
        r->respond(h(req));
      }),
      max_body_bytes_(max_body_bytes) {}

SimpleHttpServer::SimpleHttpServer(uv_loop_t* loop, AsyncHandler handler, size_t max_body_bytes)
    : loop_(loop), handler_(std::move(handler)), max_body_bytes_(max_body_bytes) {}

SimpleHttpServer::~SimpleHttpServer() { close(); }

int SimpleHttpServer::listen(const config::Address& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string err = resolveAddress(address, ss, len);
  if (!err.empty()) return UV_EADDRNOTAVAIL;
  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  int rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&ss), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 511, &onConnection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  return rc;
}

uint16_t SimpleHttpServer::boundPort() const {
  if (listener_ == nullptr) return 0;
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void SimpleHttpServer::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<SimpleHttpServer*>(server->data);
  if (status < 0) return;
  auto* c = new Connection(*self);
  c->accept(server);
}

void SimpleHttpServer::queueResume(Connection* c) {
  if (c->resume_queued_) return;
  c->resume_queued_ = true;
  resume_queue_.insert(c);
  if (resume_idle_ == nullptr) {
    resume_idle_ = new uv_idle_t;
    uv_idle_init(loop_, resume_idle_);
    resume_idle_->data = this;
  }
  uv_idle_start(resume_idle_, [](uv_idle_t* h) {
    auto* self = static_cast<SimpleHttpServer*>(h->data);
    uv_idle_stop(h);
    // One at a time: a connection that closes meanwhile takes itself out of the queue.
    while (!self->resume_queue_.empty()) {
      Connection* conn = *self->resume_queue_.begin();
      self->resume_queue_.erase(self->resume_queue_.begin());
      conn->parseStash();
    }
  });
}

void SimpleHttpServer::close() {
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  if (resume_idle_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(resume_idle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
    resume_idle_ = nullptr;
  }
  resume_queue_.clear();
  auto conns = connections_;
  for (auto* c : conns) c->close();
}

std::string queryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == key) {
      std::string v(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1));
      for (char& c : v) {
        if (c == '+') c = ' ';
      }
      return v;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

std::string percentDecode(std::string_view s) {
  const auto hex = hexDigitValue;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string percentEncode(std::string_view s, std::string_view also_keep) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved || also_keep.find(ch) != std::string_view::npos) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace remora::http
