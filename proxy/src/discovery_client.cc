#include "discovery_client.h"

#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "http/simple_server.h"
#include "remora/config/json.h"
#include "remora/config/parser.h"
#include "remora/config/utf8.h"
#include "snapshot.h"
#include "tls/client_pump.h"
#include "uv_util.h"

namespace remora {

namespace {

// A stream that delivers nothing (not even the control plane's idle heartbeat lines) for this long
// is presumed dead and reopened.
constexpr uint64_t kStreamIdleTimeoutMs = 45000;
constexpr uint64_t kConnectTimeoutMs = 5000;
// An ACK/NACK not answered within this long is given up on: the connection is closed (and the
// ACK sent once more on a new one).
constexpr uint64_t kAckTimeoutMs = 5000;
// A snapshot line larger than this is refused (and the stream reopened): a bound on memory.
constexpr size_t kMaxLineBytes = 64 * 1024 * 1024;

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
    if (o == nullptr) return;
    if (is_ack) {
      if (!why.empty()) spdlog::debug("control plane ACK connection closed: {}", why);
      o->onAckConnectionClosed(this);
    } else {
      o->onStreamClosed(why);
    }
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
  // Another request on an established connection (the ACK connection). Failures close().
  void send(std::string text);
  void armIdle(uint64_t ms) {
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<Stream*>(t->data);
          s->close(s->established && !s->is_ack ? "no data from the control plane for 45s"
                                                : "connect or response timeout");
        },
        ms, 0);
  }
};

namespace {

// A write that owns its bytes (requests after the first on the ACK connection).
struct OwnedWrite {
  uv_write_t req;
  std::string data;
};

}  // namespace

void DiscoveryClient::Stream::send(std::string text) {
  armIdle(kAckTimeoutMs);
  if (tls) {
    if (!tls->send(text)) close("TLS: " + tls->error());
    return;
  }
  auto* w = new OwnedWrite();
  w->data = std::move(text);
  w->req.data = this;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  // The callback runs (with UV_ECANCELED) before the handle's close callback frees the stream.
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1,
                    [](uv_write_t* req, int status) {
                      auto* st = static_cast<Stream*>(req->data);
                      delete reinterpret_cast<OwnedWrite*>(req);
                      if (status < 0 && !st->closing) st->close("write: " + uvError(status));
                    });
  if (rc != 0) {
    delete w;
    close("write: " + uvError(rc));
  }
}

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
  if (ack_stream_ != nullptr) {
    Stream* s = ack_stream_;
    ack_stream_ = nullptr;
    s->owner = nullptr;
    s->close("stopping");
  }
  ack_queue_.clear();
  ack_in_flight_ = false;
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
  s->request = "GET /v1/discovery?node=" + http::percentEncode(node_id_) + " HTTP/1.1\r\nhost: " +
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
    const char* end = at + len;
    while (at < end) {
      const auto* nl = static_cast<const char*>(std::memchr(at, '\n', end - at));
      if (nl == nullptr) {
        st->line.append(at, end);
        break;
      }
      // A line that arrived in one piece is parsed where it lies; otherwise it is completed.
      std::string_view line;
      if (st->line.empty()) {
        line = std::string_view(at, nl - at);
      } else {
        st->line.append(at, nl);
        line = st->line;
      }
      at = nl + 1;
      if (st->owner != nullptr && !line.empty()) st->owner->onLine(line);
      st->line.clear();
      if (st->closing) return static_cast<int>(HPE_PAUSED);
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
  if (is_ack) established = true;
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

namespace {

// Bytes that stand for themselves inside a JSON string: printable ASCII but '"' and '\\'.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = true;
  t['"'] = false;
  t['\\'] = false;
  return t;
}();

// A strict JSON (RFC 8259) reader that checks the syntax and tells where values start and end,
// without building anything: what parseLine() needs to split a snapshot into its clusters' texts
// in one pass. Nesting is tracked on the heap, so no input can exhaust the stack.
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view text) : s_(text) {}

  size_t pos() const { return pos_; }
  bool atEnd() const { return pos_ >= s_.size(); }
  void skipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  // After whitespace: the next character, or '\0' at the end.
  char peek() {
    skipSpace();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  // Consumes `c` if it comes next (after whitespace).
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }

  // A string at the current position: `raw` is its content between the quotes, escapes left as
  // they are (`escaped` tells whether there are any).
  bool string(std::string_view& raw, bool& escaped) {
    if (peek() != '"') return false;
    const size_t start = pos_ + 1;
    size_t i = start;
    while (i < s_.size()) {
      // Most of a snapshot is plain ASCII inside strings: skip it in a tight loop.
      while (i < s_.size() && kPlain[static_cast<unsigned char>(s_[i])]) ++i;
      if (i >= s_.size()) break;
      const auto c = static_cast<unsigned char>(s_[i]);
      if (c == '"') {
        raw = s_.substr(start, i - start);
        pos_ = i + 1;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        if (i + 1 >= s_.size()) return false;
        const char e = s_[i + 1];
        if (e == 'u') {
          const int cp = codeUnitAt(i + 2);
          if (cp < 0) return false;
          i += 6;
          if (cp >= 0xdc00 && cp <= 0xdfff) return false;  // a lone low surrogate
          if (cp >= 0xd800 && cp <= 0xdbff) {
            // A high surrogate must be followed by an escaped low one.
            if (i + 1 >= s_.size() || s_[i] != '\\' || s_[i + 1] != 'u') return false;
            const int low = codeUnitAt(i + 2);
            if (low < 0xdc00 || low > 0xdfff) return false;
            i += 6;
          }
          continue;
        }
        if (std::strchr("\"\\/bfnrt", e) == nullptr || e == '\0') return false;
        i += 2;
        continue;
      }
      if (c < 0x20) return false;
      if (c < 0x80) {
        ++i;
        continue;
      }
      const size_t len = config::utf8SequenceAt(s_, i);
      if (len == 0) return false;
      i += len;
    }
    return false;
  }

  // Any value at the current position.
  bool value() {
    stack_.clear();
    for (;;) {
      // A value starts here.
      const char c = peek();
      if (c == '{') {
        ++pos_;
        if (!consume('}')) {
          if (!memberKey()) return false;
          stack_.push_back('{');
          continue;
        }
      } else if (c == '[') {
        ++pos_;
        if (!consume(']')) {
          stack_.push_back('[');
          continue;
        }
      } else if (c == '"') {
        std::string_view raw;
        bool escaped = false;
        if (!string(raw, escaped)) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (!number()) return false;
      } else if (!literal("true") && !literal("false") && !literal("null")) {
        return false;
      }
      // A value ended: close what it ends, or go on to the next element.
      for (;;) {
        if (stack_.empty()) return true;
        const char d = peek();
        if (d == '\0') return false;
        ++pos_;
        if (d == ',') {
          if (stack_.back() == '{' && !memberKey()) return false;
          break;
        }
        if (d != (stack_.back() == '{' ? '}' : ']')) return false;
        stack_.pop_back();
      }
    }
  }

 private:
  // "key": (a member's key and the colon).
  bool memberKey() {
    std::string_view raw;
    bool escaped = false;
    return string(raw, escaped) && consume(':');
  }

  // The 4 hex digits of a \u escape at s_[i], or -1.
  int codeUnitAt(size_t i) const {
    if (i + 4 > s_.size()) return -1;
    int v = 0;
    for (size_t k = 0; k < 4; ++k) {
      const int h = http::hexDigitValue(s_[i + k]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    return v;
  }

  bool digits() {
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  // -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
  bool number() {
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size()) return false;
    if (s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return false;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) return false;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return false;
    }
    return true;
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::vector<char> stack_;  // '{' or '[' per open container
};

// "version" and "nonce" as the proxy reports them: a string as is, anything else as its JSON.
std::string scalarText(std::string_view json) {
  if (json.size() >= 2 && json.front() == '"' && json.find('\\') == std::string_view::npos) {
    return std::string(json.substr(1, json.size() - 2));
  }
  // Too deep for dump(), which recurses once per level: its text as sent is its JSON too.
  if (config::jsonNestsDeeperThan(json)) return std::string(json);
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded()) return std::string(json);
  return j.is_string() ? j.get<std::string>() : j.dump();
}

}  // namespace

std::optional<DiscoveryClient::Update> DiscoveryClient::parseLine(std::string_view line,
                                                                  std::string& error) {
  error.clear();
  auto notJson = [&error] {
    error = "a line that is not a JSON object";
    return std::nullopt;
  };
  JsonScanner j(line);
  if (!j.consume('{')) return notJson();
  // As in any JSON reader, a repeated key's last value wins.
  std::optional<std::string_view> version;
  std::optional<std::string_view> nonce;
  std::vector<std::string_view> clusters;
  bool has_clusters = false;
  bool clusters_is_array = false;
  if (!j.consume('}')) {
    do {
      std::string_view raw;
      bool escaped = false;
      j.skipSpace();
      const size_t key_start = j.pos();
      if (!j.string(raw, escaped)) return notJson();
      const std::string key =
          escaped ? scalarText(line.substr(key_start, j.pos() - key_start)) : std::string(raw);
      if (!j.consume(':')) return notJson();
      const char first = j.peek();
      const size_t start = j.pos();
      if (key == "clusters" && first == '[') {
        // Element by element, to keep each one's text.
        has_clusters = true;
        clusters_is_array = true;
        clusters.clear();
        j.consume('[');
        if (!j.consume(']')) {
          do {
            j.skipSpace();
            const size_t element = j.pos();
            if (!j.value()) return notJson();
            clusters.push_back(line.substr(element, j.pos() - element));
          } while (j.consume(','));
          if (!j.consume(']')) return notJson();
        }
        continue;
      }
      if (!j.value()) return notJson();
      const std::string_view text = line.substr(start, j.pos() - start);
      if (key == "version") {
        version = text;
      } else if (key == "nonce") {
        nonce = text;
      } else if (key == "clusters") {
        has_clusters = true;
        clusters_is_array = false;
        clusters.clear();
      }
    } while (j.consume(','));
    if (!j.consume('}')) return notJson();
  }
  j.skipSpace();
  if (!j.atEnd()) return notJson();
  if (!version) return std::nullopt;  // heartbeat or other notice
  Update u;
  u.version = scalarText(*version);
  if (nonce) u.nonce = scalarText(*nonce);
  if (has_clusters && !clusters_is_array) {
    error = "\"clusters\" is not an array";
    return u;
  }
  u.clusters.reserve(clusters.size());
  for (std::string_view c : clusters) u.clusters.emplace_back(c);
  return u;
}

void DiscoveryClient::onLine(std::string_view line) {
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
  // Never throws: a reason with invalid UTF-8 (a file name, say) is sent with U+FFFD.
  const std::string payload = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  ack_queue_.push_back("POST /v1/discovery/ack HTTP/1.1\r\nhost: " + server_.str() + "\r\n" +
                       authHeader() + "content-type: application/json\r\ncontent-length: " +
                       std::to_string(payload.size()) + "\r\n\r\n" + payload);
  flushAcks();
}

void DiscoveryClient::flushAcks() {
  if (ack_in_flight_ || ack_queue_.empty()) return;
  ack_in_flight_ = true;
  if (ack_stream_ != nullptr) {
    ack_stream_->send(ack_queue_.front());
    return;
  }
  auto* s = new Stream();
  s->is_ack = true;
  s->owner = this;
  ack_stream_ = s;
  s->init(loop_);  // llhttp keeps a pointer to s->settings, filled in below
  s->request = ack_queue_.front();
  llhttp_settings_init(&s->settings);
  s->settings.on_headers_complete = [](llhttp_t* p) {
    static_cast<Stream*>(p->data)->status = p->status_code;
    return 0;
  };
  s->settings.on_body = [](llhttp_t* p, const char* at, size_t len) {
    auto* st = static_cast<Stream*>(p->data);
    if (st->status >= 300 && st->line.size() < 4096) {
      st->line.append(at, std::min(len, 4096 - st->line.size()));
    }
    return 0;
  };
  s->settings.on_message_complete = [](llhttp_t* p) -> int {
    auto* st = static_cast<Stream*>(p->data);
    if (st->status >= 300) {
      spdlog::warn("control plane refused an ACK/NACK: HTTP {}: {}", st->status, st->line);
    }
    st->line.clear();
    uv_timer_stop(&st->timer);
    DiscoveryClient* o = st->owner;
    const bool keep_alive = llhttp_should_keep_alive(p) != 0;
    if (!keep_alive) {
      // The next ACK goes on a new connection.
      st->owner = nullptr;
      if (o != nullptr && o->ack_stream_ == st) o->ack_stream_ = nullptr;
      st->close("");
    }
    if (o != nullptr) {
      o->ack_queue_.pop_front();
      o->ack_in_flight_ = false;
      o->ack_retries_ = 0;
      o->flushAcks();
    }
    return keep_alive ? 0 : static_cast<int>(HPE_PAUSED);
  };
  s->open(server_, tls_);
}

void DiscoveryClient::onAckConnectionClosed(Stream* s) {
  if (ack_stream_ == s) ack_stream_ = nullptr;
  if (!ack_in_flight_) return;  // an idle connection closed: the next ACK opens another
  ack_in_flight_ = false;
  // The control plane may have closed an idle connection just as the ACK went out: once more on
  // a new connection, then give up (the next snapshot brings another ACK).
  if (ack_retries_ == 0) {
    ++ack_retries_;
  } else {
    spdlog::warn(
        "control plane {}: could not deliver an ACK/NACK (the connection closed twice "
        "before an answer); the next snapshot will be acknowledged again",
        server_.str());
    ack_queue_.pop_front();
    ack_retries_ = 0;
  }
  if (!stopped_) flushAcks();
}

std::vector<config::Cluster> PushedClusters::parse(const DiscoveryClient::Update& update,
                                                   std::vector<config::ConfigError>& errors) {
  std::vector<config::Cluster> out;
  out.reserve(update.clusters.size());
  std::unordered_map<std::string, config::Cluster> next;
  last_parsed_ = 0;
  for (const std::string& text : update.clusters) {
    if (auto it = by_text_.find(text); it != by_text_.end()) {
      out.push_back(it->second);
      next.insert(by_text_.extract(it));
      continue;
    }
    if (auto it = next.find(text); it != next.end()) {  // the same cluster twice in one push
      out.push_back(it->second);
      continue;
    }
    ++last_parsed_;
    if (config::jsonNestsDeeperThan(text)) {
      // The validator's error messages dump() values, and dump() recurses once per level.
      config::ConfigError e;
      e.loc.file = "control-plane";
      e.reason = "unreadable cluster: it nests arrays or objects more than " +
                 std::to_string(config::kMaxJsonDepth) + " levels deep";
      errors.push_back(std::move(e));
      continue;
    }
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) {
      // parseLine() checked the syntax, so this does not happen; still, a NACK beats a crash.
      config::ConfigError e;
      e.loc.file = "control-plane";
      e.reason = "unreadable cluster: not valid JSON";
      errors.push_back(std::move(e));
      continue;
    }
    std::optional<config::Cluster> c =
        config::parseClusterJson(j, "control-plane", errors, /*endpoints_required=*/false);
    if (!c) continue;
    out.push_back(*c);
    next.emplace(text, std::move(*c));
  }
  by_text_ = std::move(next);
  return out;
}

}  // namespace remora
