#include "http/simple_server.h"

#include <spdlog/spdlog.h>

#include "snapshot.h"

namespace remora::http {

class SimpleHttpServer::Connection {
 public:
  Connection(SimpleHttpServer& server) : server_(server) {
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
      return c->req_.body.size() > c->server_.max_body_bytes_ ? -1 : 0;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      static_cast<Connection*>(p->data)->dispatch();
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
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp_),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* c = static_cast<Connection*>(h->data);
          *buf = uv_buf_init(c->read_buf_, sizeof(c->read_buf_));
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          auto* c = static_cast<Connection*>(s->data);
          if (nread < 0) {
            c->closeAfterWrites();
            return;
          }
          if (nread == 0 || c->closing_) return;
          llhttp_errno_t err = llhttp_execute(&c->parser_, buf->base, static_cast<size_t>(nread));
          if (err != HPE_OK && !c->closing_) {
            c->respond(SimpleResponse::text(400, "malformed request\n"), false);
          }
        });
    return 0;
  }

  void close() {
    if (closing_handle_) return;
    closing_handle_ = true;
    closing_ = true;
    server_.connections_.erase(this);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
             [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
  }

 private:
  struct WriteReq {
    uv_write_t req;
    std::string data;
    Connection* conn;
    bool close_after;
  };

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
    bool keep_alive = llhttp_should_keep_alive(&parser_) != 0;
    SimpleResponse resp = server_.handler_(req_);
    respond(resp, keep_alive);
  }

  void respond(const SimpleResponse& resp, bool keep_alive) {
    auto* w = new WriteReq();
    w->conn = this;
    w->close_after = !keep_alive;
    std::string& out = w->data;
    out.append("HTTP/1.1 ").append(std::to_string(resp.status)).append(" ");
    out.append(reasonPhrase(resp.status)).append("\r\ncontent-type: ").append(resp.content_type);
    out.append("\r\ncontent-length: ").append(std::to_string(resp.body.size())).append("\r\n");
    serializeHeaders(resp.headers, out);
    if (!keep_alive) out.append("connection: close\r\n");
    out.append("\r\n");
    if (req_.method != "HEAD") out.append(resp.body);
    if (!keep_alive) closing_ = true;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    ++pending_writes_;
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, [](uv_write_t* r, int) {
          auto* wr = static_cast<WriteReq*>(r->data);
          Connection* c = wr->conn;
          bool close_after = wr->close_after;
          delete wr;
          --c->pending_writes_;
          if (close_after || (c->closing_ && c->pending_writes_ == 0)) c->close();
        }) != 0) {
      --pending_writes_;
      delete w;
      close();
    }
  }

  void closeAfterWrites() {
    closing_ = true;
    if (pending_writes_ == 0) close();
  }

  SimpleHttpServer& server_;
  uv_tcp_t tcp_;
  llhttp_t parser_;
  llhttp_settings_t settings_;
  SimpleRequest req_;
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  bool closing_ = false;
  bool closing_handle_ = false;
  int pending_writes_ = 0;
  char read_buf_[16384];
};

SimpleHttpServer::SimpleHttpServer(uv_loop_t* loop, SimpleHandler handler, size_t max_body_bytes)
    : loop_(loop), handler_(std::move(handler)), max_body_bytes_(max_body_bytes) {}

SimpleHttpServer::~SimpleHttpServer() = default;

int SimpleHttpServer::listen(const config::Address& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string err = resolveAddress(address, ss, len);
  if (!err.empty()) return UV_EADDRNOTAVAIL;
  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  int rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&ss), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 128, &onConnection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  return rc;
}

void SimpleHttpServer::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<SimpleHttpServer*>(server->data);
  if (status < 0) return;
  auto* c = new Connection(*self);
  c->accept(server);
}

void SimpleHttpServer::close() {
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
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

}  // namespace remora::http
