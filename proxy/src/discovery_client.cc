#include "discovery_client.h"

#include <spdlog/spdlog.h>

#include <fstream>

#include "snapshot.h"
#include "tls/client_pump.h"
#include "uv_util.h"

namespace remora {

namespace {

// A stream that delivers nothing (not even the control plane's idle heartbeat lines) for this long
// is presumed dead and reopened.
constexpr uint64_t kStreamIdleTimeoutMs = 45000;
constexpr uint64_t kConnectTimeoutMs = 5000;
// A snapshot line larger than this is refused (and the stream reopened): a bound on memory.
constexpr size_t kMaxLineBytes = 64 * 1024 * 1024;

std::string percentEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace

// One connection: the discovery stream, or a one-shot ACK request. Owns its handles and frees
// itself after they are closed; `owner` is cleared when the client stops first.
struct DiscoveryClient::Stream {
  DiscoveryClient* owner = nullptr;
  bool is_ack = false;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  uv_write_t write_req;
  llhttp_t parser;
  llhttp_settings_t settings;
  std::string request;
  std::string line;
  std::unique_ptr<tls::ClientPump> tls;  // control_plane.tls
  int status = 0;
  bool established = false;
  bool closing = false;
  int open_handles = 2;

  void close(const std::string& why) {
    if (closing) return;
    closing = true;
    uv_timer_stop(&timer);
    DiscoveryClient* o = owner;
    owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), onClose);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), onClose);
    if (o != nullptr && !is_ack) o->onStreamClosed(why);
  }
  static void onClose(uv_handle_t* h) {
    auto* s = static_cast<Stream*>(h->data);
    if (--s->open_handles == 0) delete s;
  }
  void init(uv_loop_t* loop) {
    uv_tcp_init(loop, &tcp);
    uv_timer_init(loop, &timer);
    tcp.data = this;
    timer.data = this;
    connect_req.data = this;
    write_req.data = this;
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = this;
  }
  // Connects, sends `request`, and feeds what comes back to the parser. Failures close().
  void open(const config::Address& server, const tls::ClientContextConstSharedPtr& tls_ctx);
  void onConnected();
  void onBytes(const char* data, size_t len);
  void armIdle(uint64_t ms) {
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<Stream*>(t->data);
          s->close(s->established ? "no data from the control plane for 45s"
                                  : "connect or response timeout");
        },
        ms, 0);
  }
};

DiscoveryClient::DiscoveryClient(uv_loop_t* loop, config::Address server, std::string node_id,
                                 std::string token_file, UpdateCallback on_update)
    : loop_(loop),
      server_(std::move(server)),
      node_id_(std::move(node_id)),
      token_file_(std::move(token_file)),
      on_update_(std::move(on_update)) {}

DiscoveryClient::~DiscoveryClient() { stop(); }

bool DiscoveryClient::connected() const { return stream_ != nullptr && stream_->established; }

uint64_t DiscoveryClient::backoffMs(uint32_t n, uint64_t random) {
  uint64_t cap = 250;
  for (uint32_t i = 0; i < n && cap < 30000; ++i) cap *= 2;
  cap = std::min<uint64_t>(cap, 30000);
  return random % (cap + 1);
}

void DiscoveryClient::start() {
  stopped_ = false;
  retry_timer_ = new uv_timer_t;
  uv_timer_init(loop_, retry_timer_);
  retry_timer_->data = this;
  connect();
}

void DiscoveryClient::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (stream_ != nullptr) {
    Stream* s = stream_;
    stream_ = nullptr;
    s->owner = nullptr;
    s->close("stopping");
  }
  if (retry_timer_ != nullptr) {
    uv_timer_stop(retry_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(retry_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    retry_timer_ = nullptr;
  }
}

std::string DiscoveryClient::authHeader() {
  if (token_file_.empty()) return {};
  std::ifstream in(token_file_);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) {
    spdlog::warn("control plane: token_file {} is empty or unreadable; connecting without a "
                 "token",
                 token_file_);
    return {};
  }
  return "authorization: Bearer " + token + "\r\n";
}

void DiscoveryClient::connect() {
  if (stopped_) return;
  auto* s = new Stream();
  s->owner = this;
  stream_ = s;
  s->init(loop_);  // llhttp keeps a pointer to s->settings, filled in below
  s->request = "GET /v1/discovery?node=" + percentEncode(node_id_) + " HTTP/1.1\r\nhost: " +
               server_.str() + "\r\n" + authHeader() + "accept: application/x-ndjson\r\n\r\n";
  llhttp_settings_init(&s->settings);
  s->settings.on_headers_complete = [](llhttp_t* p) {
    auto* st = static_cast<Stream*>(p->data);
    st->status = p->status_code;
    return 0;
  };
  s->settings.on_body = [](llhttp_t* p, const char* at, size_t len) {
    auto* st = static_cast<Stream*>(p->data);
    if (st->status != 200) {
      st->line.append(at, std::min(len, size_t{4096}));
      return 0;
    }
    for (size_t i = 0; i < len; ++i) {
      if (at[i] == '\n') {
        std::string line;
        line.swap(st->line);
        if (st->owner != nullptr && !line.empty()) st->owner->onLine(line);
        if (st->closing) return static_cast<int>(HPE_PAUSED);
      } else {
        st->line.push_back(at[i]);
      }
    }
    if (st->line.size() > kMaxLineBytes) return -1;
    return 0;
  };

  s->open(server_, tls_);
}

void DiscoveryClient::Stream::open(const config::Address& server,
                                   const tls::ClientContextConstSharedPtr& tls_ctx) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string err = resolveAddress(server, ss, len);
  if (!err.empty()) {
    close("cannot resolve the control plane address: " + err);
    return;
  }
  if (tls_ctx) {
    tls = std::make_unique<tls::ClientPump>(
        tls::Session::client(tls_ctx, server.str(), server.host),
        reinterpret_cast<uv_stream_t*>(&tcp));
  }
  armIdle(kConnectTimeoutMs);
  int rc = uv_tcp_connect(&connect_req, &tcp, reinterpret_cast<const sockaddr*>(&ss),
                          [](uv_connect_t* req, int status) {
                            auto* st = static_cast<Stream*>(req->data);
                            if (st->closing) return;
                            if (status < 0) {
                              st->close("connect: " + uvError(status));
                              return;
                            }
                            st->onConnected();
                          });
  if (rc != 0) close("connect: " + uvError(rc));
}

void DiscoveryClient::Stream::onConnected() {
  if (tls) {
    if (!tls->start() || !tls->send(request)) {
      close("TLS: " + tls->error());
      return;
    }
  } else {
    uv_buf_t b = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    uv_write(&write_req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* w, int wst) {
      auto* sw = static_cast<Stream*>(w->data);
      if (wst < 0 && !sw->closing) sw->close("write: " + uvError(wst));
    });
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp),
      [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
        buf->base = new char[suggested];
        buf->len = suggested;
      },
      [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
        auto* sp = static_cast<Stream*>(stream->data);
        std::unique_ptr<char[]> owned(buf->base);
        if (sp->closing) return;
        if (nread < 0) {
          sp->close(nread == UV_EOF ? "the control plane closed the stream"
                                    : "read: " + uvError(static_cast<int>(nread)));
          return;
        }
        if (nread == 0) return;
        if (!sp->tls) {
          sp->onBytes(buf->base, static_cast<size_t>(nread));
          return;
        }
        std::string plain;
        auto r = sp->tls->onRead(buf->base, static_cast<size_t>(nread), plain);
        if (!plain.empty()) sp->onBytes(plain.data(), plain.size());
        if (sp->closing) return;
        if (r == tls::ClientPump::Result::Error) {
          sp->close("TLS: " + sp->tls->error());
        } else if (r == tls::ClientPump::Result::Closed) {
          sp->close("the control plane closed the stream");
        }
      });
}

void DiscoveryClient::Stream::onBytes(const char* data, size_t len) {
  armIdle(is_ack ? kConnectTimeoutMs : kStreamIdleTimeoutMs);
  llhttp_errno_t e = llhttp_execute(&parser, data, len);
  if (closing) return;
  if (status != 0 && status != 200 && !is_ack) {
    close("the control plane answered " + std::to_string(status) + ": " + line);
    return;
  }
  if (e != HPE_OK) close("invalid HTTP from the control plane");
}

void DiscoveryClient::onStreamClosed(const std::string& why) {
  bool was_established = stream_ != nullptr && stream_->established;
  stream_ = nullptr;
  if (stopped_) return;
  if (was_established) failures_ = 0;
  uint64_t delay = backoffMs(failures_, rng_());
  ++failures_;
  ++reconnects_;
  spdlog::warn("control plane {}: {}; serving the last good config, reconnecting in {}ms",
               server_.str(), why, delay);
  uv_timer_start(
      retry_timer_, [](uv_timer_t* t) { static_cast<DiscoveryClient*>(t->data)->connect(); },
      delay, 0);
}

std::optional<DiscoveryClient::Update> DiscoveryClient::parseLine(std::string_view line,
                                                                  std::string& error) {
  error.clear();
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "a line that is not a JSON object";
    return std::nullopt;
  }
  if (!j.contains("version")) return std::nullopt;  // heartbeat or other notice
  // Field types are checked, never assumed: json::get/value throw on a mismatch, and an exception
  // here would end the process from inside a libuv callback.
  Update u;
  const nlohmann::json& version = j["version"];
  u.version = version.is_string() ? version.get<std::string>() : version.dump();
  if (j.contains("nonce")) {
    const nlohmann::json& nonce = j["nonce"];
    u.nonce = nonce.is_string() ? nonce.get<std::string>() : nonce.dump();
  }
  u.clusters = j.contains("clusters") ? j["clusters"] : nlohmann::json::array();
  if (!u.clusters.is_array()) error = "\"clusters\" is not an array";
  return u;
}

void DiscoveryClient::onLine(const std::string& line) {
  std::string error;
  std::optional<Update> u = parseLine(line, error);
  if (!u) {
    if (!error.empty()) spdlog::warn("control plane sent {}; ignoring it", error);
    return;
  }
  if (stream_ != nullptr && !stream_->established) {
    stream_->established = true;
    spdlog::info("control plane {}: discovery stream open for node {}", server_.str(), node_id_);
  }
  if (error.empty()) error = on_update_(*u);
  sendAck(u->version, u->nonce, error);
}

void DiscoveryClient::sendAck(const std::string& version, const std::string& nonce,
                              const std::string& error) {
  nlohmann::json body = {{"node", node_id_}, {"version", version}, {"nonce", nonce}};
  if (!error.empty()) body["error"] = error;
  std::string payload = body.dump();
  auto* s = new Stream();
  s->is_ack = true;
  s->init(loop_);  // llhttp keeps a pointer to s->settings, filled in below
  s->request = "POST /v1/discovery/ack HTTP/1.1\r\nhost: " + server_.str() + "\r\n" +
               authHeader() + "content-type: application/json\r\ncontent-length: " +
               std::to_string(payload.size()) + "\r\nconnection: close\r\n\r\n" + payload;
  llhttp_settings_init(&s->settings);
  s->settings.on_headers_complete = [](llhttp_t* p) {
    static_cast<Stream*>(p->data)->status = p->status_code;
    return 0;
  };
  s->settings.on_message_complete = [](llhttp_t* p) -> int {
    auto* st = static_cast<Stream*>(p->data);
    if (st->status >= 300) {
      spdlog::warn("control plane refused an ACK/NACK: HTTP {}", st->status);
    }
    st->close("");
    return HPE_PAUSED;
  };
  s->open(server_, tls_);
}

}  // namespace remora
